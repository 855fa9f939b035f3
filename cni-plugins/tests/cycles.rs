//! The leak test of the CNI plugins: 1,000 ADD/DEL cycles of bridge (ipMasq on) + host-local +
//! portmap (one port mapping each), through this workspace's binaries, 8 at a time, each
//! container in a netns of its own. Afterwards nothing may be left: no veth on the bridge, no
//! allocation in host-local's dataDir, no nft rule of the network in the `keel-portmap` and
//! `keel-cni` tables. `KEEL_CNI_CYCLES` overrides the number of cycles.
//!
//! The network's name carries the pid (`ktc<pid>`), so the rule comments (`<network>:<id>`)
//! and the allocation directory are this run's alone; a guard removes whatever a failed run
//! leaves (rules with that prefix, the bridge, the tables if this run created them empty).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use keel_netkit::nft::{Batch, Family, Nft};
use keel_testkit::{HostLink, Netns, require_root, run};
use serde_json::{Value, json};

const TABLES: [&str; 2] = [
    keel_cni::portmap::rules::TABLE,
    keel_cni::bridge::masq::TABLE,
];
const THREADS: usize = 8;

fn invoke(bin: &Path, command: &str, conf: &Value, netns: &Path, id: &str, path: &Path) -> Value {
    let out = common::run_plugin(bin, command, conf, netns, id, path);
    assert!(
        out.status.success(),
        "{} {command} of {id}: {}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The rules of `table` whose comment starts with `prefix`.
fn rules_with_prefix(nft: &mut Nft, family: Family, table: &str, prefix: &str) -> usize {
    nft.rules(family, table)
        .expect("list rules")
        .iter()
        .filter(|r| r.comment.as_deref().is_some_and(|c| c.starts_with(prefix)))
        .count()
}

/// Removes on drop every rule of this run's network and the tables this run created, if empty.
struct Cleanup {
    prefix: String,
    created: Vec<(Family, &'static str)>,
}

impl Cleanup {
    fn new(network: &str) -> Cleanup {
        let mut created = Vec::new();
        for family in [Family::Ipv4, Family::Ipv6] {
            let listing = run("nft", &["list", "tables", family.name()]);
            for table in TABLES {
                if !listing.contains(&format!("table {} {table}", family.name())) {
                    created.push((family, table));
                }
            }
        }
        Cleanup {
            prefix: format!("{network}:"),
            created,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut nft) = Nft::open() else { return };
        for family in [Family::Ipv4, Family::Ipv6] {
            for table in TABLES {
                let mut b = Batch::new();
                for r in nft.rules(family, table).unwrap_or_default() {
                    if r.comment
                        .as_deref()
                        .is_some_and(|c| c.starts_with(&self.prefix))
                    {
                        b.del_rule(family, table, &r.chain, r.handle);
                    }
                }
                let _ = nft.apply(&b);
                if self.created.contains(&(family, table))
                    && nft.rules(family, table).is_ok_and(|r| r.is_empty())
                {
                    let mut b = Batch::new();
                    b.del_table(family, table);
                    let _ = nft.apply(&b);
                }
            }
        }
    }
}

#[test]
fn a_thousand_add_del_cycles_leave_nothing_behind() {
    if !require_root("cni cycles") {
        return;
    }
    let cycles: usize = std::env::var("KEEL_CNI_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let pid = std::process::id();
    let network = format!("ktc{pid}");
    let _cleanup = Cleanup::new(&network);
    let bridge = HostLink::unique("ktc");
    let ipam = tempfile::tempdir().expect("temp dir");
    let bins = Path::new(env!("CARGO_BIN_EXE_bridge"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let bridge_conf = json!({
        "cniVersion": "1.0.0",
        "name": network,
        "type": "bridge",
        "bridge": bridge.name(),
        "isDefaultGateway": true,
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "subnet": format!("10.245.{}.0/24", pid % 250),
            "dataDir": ipam.path(),
        },
    });

    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (bins, bridge_conf, network) = (&bins, &bridge_conf, &network);
            scope.spawn(move || {
                let host_port = 31000 + t as u16;
                for i in (t..cycles).step_by(THREADS) {
                    let ns = Netns::new("cyc");
                    let id = format!("cyc-{pid}-{i}");
                    let prev = invoke(
                        &bins.join("bridge"),
                        "ADD",
                        bridge_conf,
                        &ns.path(),
                        &id,
                        bins,
                    );
                    let portmap_conf = json!({
                        "cniVersion": "1.0.0",
                        "name": network,
                        "type": "portmap",
                        "runtimeConfig": {"portMappings": [
                            {"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}
                        ]},
                        "prevResult": prev,
                    });
                    invoke(
                        &bins.join("portmap"),
                        "ADD",
                        &portmap_conf,
                        &ns.path(),
                        &id,
                        bins,
                    );
                    invoke(
                        &bins.join("portmap"),
                        "DEL",
                        &portmap_conf,
                        &ns.path(),
                        &id,
                        bins,
                    );
                    invoke(
                        &bins.join("bridge"),
                        "DEL",
                        bridge_conf,
                        &ns.path(),
                        &id,
                        bins,
                    );
                }
            });
        }
    });
    let elapsed = start.elapsed();
    eprintln!(
        "{cycles} ADD/DEL cycles (bridge + host-local + portmap, {THREADS} at a time): {elapsed:.1?}, {:.1?} per cycle per thread",
        elapsed * THREADS as u32 / cycles.max(1) as u32
    );

    assert_eq!(
        bridge.ports(),
        Vec::<String>::new(),
        "veths left on the bridge"
    );
    let allocations: Vec<String> = std::fs::read_dir(ipam.path().join(&network))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        allocations,
        Vec::<String>::new(),
        "host-local allocations left"
    );
    let mut nft = Nft::open().expect("nft socket");
    for family in [Family::Ipv4, Family::Ipv6] {
        for table in TABLES {
            let n = rules_with_prefix(&mut nft, family, table, &format!("{network}:"));
            assert_eq!(n, 0, "rules of {network} left in {} {table}", family.name());
        }
    }
    assert!(
        elapsed < Duration::from_secs(600),
        "{cycles} cycles took {elapsed:?}"
    );
}
