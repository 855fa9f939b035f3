//! Privileged tests of the `bridge` plugin binary, with Debian's host-local as IPAM, and side by
//! side with Debian's reference bridge plugin (/usr/lib/cni/bridge).
//!
//! Every test makes its own netns (`keel_testkit::Netns`), bridge (`keel_testkit::HostLink`,
//! `ktb<pid%1000><n>`), subnet (10.249.<n>.0/24) and IPAM store (a temp dir); the guards remove
//! them even when an assertion fails. Deleting a netns deletes its veth and so the host end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keel_testkit::{HostLink, Netns, require_root};
use serde_json::{Value, json};

const REFERENCE: &str = "/usr/lib/cni/bridge";
const CNI_PATH: &str = "/usr/lib/cni";

fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bridge"))
}

/// A third octet for 10.249.x.0/24 no other test (of this or a parallel run) uses.
fn subnet_octet() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    (std::process::id() as usize % 36) * 7 + N.fetch_add(1, Ordering::Relaxed) % 7
}

/// One network: a bridge, a subnet and an IPAM store, all removed on drop.
struct Net {
    bridge: HostLink,
    octet: usize,
    ipam_dir: tempfile::TempDir,
}

impl Net {
    fn new() -> Net {
        Net {
            bridge: HostLink::unique("ktb"),
            octet: subnet_octet(),
            ipam_dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn subnet(&self) -> String {
        format!("10.249.{}.0/24", self.octet)
    }

    fn conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "ktbnet",
            "type": "bridge",
            "bridge": self.bridge.name(),
            "isDefaultGateway": true,
            "ipam": {
                "type": "host-local",
                "subnet": self.subnet(),
                "dataDir": self.ipam_dir.path(),
            },
        });
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            c.extend(extra);
        }
        c
    }

    /// The IPs host-local still has reserved.
    fn allocations(&self) -> Vec<String> {
        let dir = self.ipam_dir.path().join("ktbnet");
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    json: Value,
    elapsed: Duration,
}

fn invoke(
    bin: &Path,
    command: Option<&str>,
    conf: &str,
    netns: &str,
    container_id: &str,
) -> Outcome {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(c) = command {
        cmd.env("CNI_COMMAND", c);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(conf.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait plugin");
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Outcome {
        code: out.status.code(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        elapsed,
    }
}

fn add(bin: &Path, conf: &Value, ns: &Netns, id: &str) -> Value {
    let o = invoke(
        bin,
        Some("ADD"),
        &conf.to_string(),
        &ns.path().to_string_lossy(),
        id,
    );
    assert_eq!(
        o.code,
        Some(0),
        "{} ADD failed: {}",
        bin.display(),
        o.stdout
    );
    o.json
}

fn del(bin: &Path, conf: &Value, ns: &Netns, id: &str) {
    let o = invoke(
        bin,
        Some("DEL"),
        &conf.to_string(),
        &ns.path().to_string_lossy(),
        id,
    );
    assert_eq!(
        o.code,
        Some(0),
        "{} DEL failed: {}",
        bin.display(),
        o.stdout
    );
}

/// Runs our plugin with `command` on `conf` in `ns`, whatever the outcome.
fn ours_in(command: &str, conf: &Value, ns: &Netns, id: &str) -> Outcome {
    invoke(
        &ours(),
        Some(command),
        &conf.to_string(),
        &ns.path().to_string_lossy(),
        id,
    )
}

fn ip_json(ns: Option<&Netns>, args: &[&str]) -> Value {
    let mut argv = vec!["ip", "-j"];
    argv.extend_from_slice(args);
    let out = match ns {
        Some(ns) => ns.exec(&argv),
        None => Command::new("ip").args(&argv[1..]).output().expect("ip"),
    };
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The global addresses in a netns, with the subnet's third octet replaced by `x`.
fn addresses(ns: &Netns, octet: usize) -> Vec<String> {
    let mut out = Vec::new();
    for link in ip_json(Some(ns), &["addr"])
        .as_array()
        .into_iter()
        .flatten()
    {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "global" {
                out.push(format!(
                    "{} {}/{}",
                    link["ifname"].as_str().unwrap_or(""),
                    a["local"].as_str().unwrap_or(""),
                    a["prefixlen"]
                ));
            }
        }
    }
    out.iter()
        .map(|s| s.replace(&format!(".{octet}."), ".x."))
        .collect()
}

/// The IPv4 routes in a netns, normalised the same way.
fn routes(ns: &Netns, octet: usize) -> Vec<String> {
    let mut out: Vec<String> = ip_json(Some(ns), &["route"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} via {} dev {} scope {}",
                r["dst"].as_str().unwrap_or(""),
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap_or(""),
                r["scope"].as_str().unwrap_or("global")
            )
            .replace(&format!(".{octet}."), ".x.")
        })
        .collect();
    out.sort();
    out
}

/// The links in a netns as `name kind`, and the bridge's ports as their kinds.
fn roles(ns: &Netns, bridge: &HostLink) -> (Vec<String>, Vec<String>) {
    let inside = ip_json(Some(ns), &["-d", "link"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{} {}",
                l["ifname"].as_str().unwrap_or(""),
                l["linkinfo"]["info_kind"].as_str().unwrap_or("-")
            )
        })
        .collect();
    let ports = ip_json(None, &["-d", "link", "show", "master", bridge.name()])
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            l["linkinfo"]["info_kind"]
                .as_str()
                .unwrap_or("-")
                .to_string()
        })
        .collect();
    (inside, ports)
}

/// A JSON value's shape: objects keep their keys (empty objects dropped), strings become "s".
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !matches!(v, Value::Object(o) if o.is_empty()))
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(_) => Value::String("s".into()),
        other => other.clone(),
    }
}

fn ping(from: &Netns, to: &str) -> bool {
    from.exec(&["busybox", "ping", "-c1", "-W2", to])
        .status
        .success()
}

fn container_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"]
        .as_str()
        .expect("an IP in the result");
    addr.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn two_containers_on_one_bridge_reach_each_other_and_del_leaves_nothing() {
    if !require_root("two_containers_on_one_bridge") {
        return;
    }
    let net = Net::new();
    let conf = net.conf(json!({}));
    let a = Netns::new("ktb-a");
    let b = Netns::new("ktb-b");
    let ra = add(&ours(), &conf, &a, "ctr-a");
    let rb = add(&ours(), &conf, &b, "ctr-b");

    for (ns, r) in [(&a, &ra), (&b, &rb)] {
        let addrs = addresses(ns, net.octet);
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        assert!(addrs[0].starts_with("eth0 10.249.x."), "{addrs:?}");
        assert!(
            routes(ns, net.octet)
                .contains(&"default via 10.249.x.1 dev eth0 scope global".to_string())
        );
        assert_eq!(r["interfaces"][0]["name"], net.bridge.name());
        assert_eq!(
            r["interfaces"][2]["sandbox"],
            ns.path().to_string_lossy().as_ref()
        );
        assert_eq!(r["ips"][0]["interface"], 2);
    }
    let gw = format!("10.249.{}.1", net.octet);
    assert!(ping(&a, &container_ip(&rb)), "a -> b");
    assert!(ping(&b, &container_ip(&ra)), "b -> a");
    assert!(ping(&a, &gw), "a -> gateway");
    assert_eq!(net.bridge.ports().len(), 2);
    assert_eq!(net.allocations().len(), 2);

    // CHECK with the result as prevResult passes, and fails once the address is gone.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = ra.clone();
    let ok = invoke(
        &ours(),
        Some("CHECK"),
        &check_conf.to_string(),
        &a.path().to_string_lossy(),
        "ctr-a",
    );
    assert_eq!(ok.code, Some(0), "CHECK: {}", ok.stdout);

    del(&ours(), &conf, &a, "ctr-a");
    del(&ours(), &conf, &b, "ctr-b");
    assert!(
        net.bridge.ports().is_empty(),
        "veths left: {:?}",
        net.bridge.ports()
    );
    assert!(
        net.allocations().is_empty(),
        "IPs left: {:?}",
        net.allocations()
    );
    assert_eq!(roles(&a, &net.bridge).0, ["lo -"]);
    // DEL again, and DEL of a netns that is gone, still succeed.
    del(&ours(), &conf, &a, "ctr-a");
    let gone = invoke(
        &ours(),
        Some("DEL"),
        &conf.to_string(),
        "/run/netns/keel-test-gone",
        "ctr-x",
    );
    assert_eq!(gone.code, Some(0), "{}", gone.stdout);

    let failed = invoke(
        &ours(),
        Some("CHECK"),
        &check_conf.to_string(),
        &a.path().to_string_lossy(),
        "ctr-a",
    );
    assert_eq!(failed.code, Some(1), "CHECK after DEL must fail");
}

#[test]
fn dual_stack_addresses_are_usable_at_once_without_dad() {
    if !require_root("dual_stack_addresses_are_usable_at_once") {
        return;
    }
    let net = Net::new();
    let mut conf = net.conf(json!({}));
    conf["ipam"] = json!({
        "type": "host-local",
        "dataDir": net.ipam_dir.path(),
        "ranges": [[{"subnet": net.subnet()}], [{"subnet": format!("fd00:249:{}::/64", net.octet)}]],
    });
    let a = Netns::new("ktb-6a");
    let b = Netns::new("ktb-6b");
    let ra = add(&ours(), &conf, &a, "ctr-6a");
    let rb = add(&ours(), &conf, &b, "ctr-6b");
    let v6_of = |r: &Value| {
        r["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .find(|a| a.contains(':'))
            .map(|a| a.split('/').next().unwrap_or_default().to_string())
            .expect("an IPv6 address in the result")
    };
    // No DAD: the address is not tentative, and reachable at once.
    let flags = ip_json(
        Some(&a),
        &["-6", "addr", "show", "dev", "eth0", "scope", "global"],
    );
    let info = &flags[0]["addr_info"][0];
    assert!(info.get("tentative").is_none(), "{flags}");
    assert_eq!(
        a.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad"])
            .stdout,
        b"0\n"
    );
    let routes6 = ip_json(Some(&a), &["-6", "route"]);
    assert!(
        routes6
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["dst"] == "default" && r["gateway"] == format!("fd00:249:{}::1", net.octet)),
        "{routes6}"
    );
    assert!(ping(&a, &v6_of(&rb)), "a -> b over IPv6");
    assert!(ping(&b, &v6_of(&ra)), "b -> a over IPv6");
    del(&ours(), &conf, &a, "ctr-6a");
    del(&ours(), &conf, &b, "ctr-6b");
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
}

#[test]
fn a_failed_add_rolls_back_the_veth_and_the_allocation() {
    if !require_root("a_failed_add_rolls_back") {
        return;
    }
    let net = Net::new();
    let ns = Netns::new("ktb-rb");
    // The IPAM ADD succeeds, then a route through a gateway outside the subnet is refused.
    let mut conf = net.conf(json!({}));
    conf["ipam"]["routes"] = json!([{"dst": "192.0.2.0/24", "gw": "203.0.113.1"}]);
    let o = invoke(
        &ours(),
        Some("ADD"),
        &conf.to_string(),
        &ns.path().to_string_lossy(),
        "ctr-rb",
    );
    assert_eq!(o.code, Some(1), "ADD should fail: {}", o.stdout);
    assert!(
        net.bridge.ports().is_empty(),
        "veth left: {:?}",
        net.bridge.ports()
    );
    assert!(
        net.allocations().is_empty(),
        "IP left: {:?}",
        net.allocations()
    );
    assert_eq!(roles(&ns, &net.bridge).0, ["lo -"]);
}

#[test]
fn same_outcome_as_the_reference_plugin() {
    if !require_root("same_outcome_as_the_reference_plugin") {
        return;
    }
    let ours_net = Net::new();
    let ref_net = Net::new();
    let extra = json!({"mtu": 1400, "hairpinMode": true});
    let ours_conf = ours_net.conf(extra.clone());
    let ref_conf = ref_net.conf(extra);
    let ours_ns = Netns::new("ktb-o");
    let ref_ns = Netns::new("ktb-r");

    let ours_result = add(&ours(), &ours_conf, &ours_ns, "ctr-o");
    let ref_result = add(Path::new(REFERENCE), &ref_conf, &ref_ns, "ctr-r");

    assert_eq!(
        roles(&ours_ns, &ours_net.bridge),
        roles(&ref_ns, &ref_net.bridge)
    );
    assert_eq!(
        addresses(&ours_ns, ours_net.octet),
        addresses(&ref_ns, ref_net.octet)
    );
    assert_eq!(
        routes(&ours_ns, ours_net.octet),
        routes(&ref_ns, ref_net.octet)
    );
    assert_eq!(
        shape(&ours_result),
        shape(&ref_result),
        "ours {ours_result}\nreference {ref_result}"
    );
    let mtu = |ns: &Netns| ip_json(Some(ns), &["link", "show", "eth0"])[0]["mtu"].clone();
    assert_eq!(mtu(&ours_ns), mtu(&ref_ns));
    let hairpin = |bridge: &HostLink| {
        ip_json(None, &["-d", "link", "show", "master", bridge.name()])[0]["linkinfo"]
            ["info_slave_data"]["hairpin"]
            .clone()
    };
    assert_eq!(hairpin(&ours_net.bridge), json!(true));
    assert_eq!(hairpin(&ours_net.bridge), hairpin(&ref_net.bridge));

    // Each plugin's DEL removes the other's kind of setup as well.
    del(&ours(), &ref_conf, &ref_ns, "ctr-r");
    del(Path::new(REFERENCE), &ours_conf, &ours_ns, "ctr-o");
    assert!(ours_net.bridge.ports().is_empty() && ref_net.bridge.ports().is_empty());
    assert!(ours_net.allocations().is_empty() && ref_net.allocations().is_empty());
}

#[test]
fn error_codes_match_the_reference() {
    if !require_root("error_codes_match_the_reference") {
        return;
    }
    let net = Net::new();
    // Each plugin gets its own namespace: both name the container interface eth0.
    let ours_ns = Netns::new("ktb-e");
    let ref_ns = Netns::new("ktb-e");
    let ours_path = ours_ns.path().to_string_lossy().into_owned();
    let ref_path = ref_ns.path().to_string_lossy().into_owned();
    let no_ipam = {
        let mut c = net.conf(json!({}));
        c.as_object_mut().map(|m| m.remove("ipam"));
        c.to_string()
    };
    let missing = "/run/netns/keel-test-missing";
    let cases: Vec<(&str, String, bool)> = vec![
        ("malformed JSON", "{\"cniVersion\": ".to_string(), true),
        (
            "invalid mtu",
            net.conf(json!({"mtu": "abc"})).to_string(),
            true,
        ),
        ("missing netns", net.conf(json!({})).to_string(), false),
        ("missing ipam (layer 2 only)", no_ipam, true),
    ];
    for (what, conf, netns_exists) in &cases {
        let (op, rp) = if *netns_exists {
            (ours_path.as_str(), ref_path.as_str())
        } else {
            (missing, missing)
        };
        let o = invoke(&ours(), Some("ADD"), conf, op, "ctr-e1");
        let r = invoke(Path::new(REFERENCE), Some("ADD"), conf, rp, "ctr-e2");
        assert_eq!(
            o.code, r.code,
            "{what}: exit status; ours {} reference {}",
            o.stdout, r.stdout
        );
        assert_eq!(
            o.json["code"], r.json["code"],
            "{what}: ours {} reference {}",
            o.stdout, r.stdout
        );
        if o.code == Some(0) {
            invoke(&ours(), Some("DEL"), conf, op, "ctr-e1");
            invoke(Path::new(REFERENCE), Some("DEL"), conf, rp, "ctr-e2");
        }
    }
    assert!(net.bridge.ports().is_empty(), "{:?}", net.bridge.ports());
}

/// An unset CNI_COMMAND is a spec error on stdout (code 4) and a non-zero exit, on purpose:
/// the reference instead prints its "about" text and exits 0, which a runtime cannot tell from
/// success.
#[test]
fn cni_command_unset_is_an_error() {
    let o = invoke(&ours(), None, "{}", "/run/netns/none", "c");
    assert_ne!(o.code, Some(0), "{}", o.stdout);
    assert_eq!(o.json["code"], 4, "{}", o.stdout);
}

/// Removes, on drop, the masquerade rules a test's container got, and the `keel-cni` tables
/// if the test created them and they are empty.
/// Removes, on drop, the rules commented `<network>:<container id>` from a table of ours in the
/// given families, and the table itself where this test created it and it is left empty.
struct RuleGuard {
    table: &'static str,
    comment: String,
    created: Vec<keel_netkit::nft::Family>,
}

impl RuleGuard {
    fn new(
        table: &'static str,
        families: &[keel_netkit::nft::Family],
        network: &str,
        container_id: &str,
    ) -> RuleGuard {
        let created = families
            .iter()
            .copied()
            .filter(|f| {
                // A table that lists no rules may still exist (empty): only a missing one counts.
                !keel_testkit::run("nft", &["list", "tables", f.name()])
                    .contains(&format!("table {} {table}", f.name()))
            })
            .collect();
        RuleGuard {
            table,
            comment: keel_cni::bridge::masq::comment(network, container_id),
            created,
        }
    }

    fn masq(network: &str, container_id: &str) -> RuleGuard {
        use keel_netkit::nft::Family;
        Self::new(
            keel_cni::bridge::masq::TABLE,
            &[Family::Ipv4, Family::Ipv6],
            network,
            container_id,
        )
    }
}

impl Drop for RuleGuard {
    fn drop(&mut self) {
        use keel_netkit::nft::{Batch, Nft};
        let Ok(mut nft) = Nft::open() else { return };
        for family in [
            keel_netkit::nft::Family::Ipv4,
            keel_netkit::nft::Family::Ipv6,
            keel_netkit::nft::Family::Bridge,
        ] {
            let _ = nft.delete_rules_with_comment(family, self.table, &self.comment);
            if self.created.contains(&family)
                && nft.rules(family, self.table).is_ok_and(|r| r.is_empty())
            {
                let mut b = Batch::new();
                b.del_table(family, self.table);
                let _ = nft.apply(&b);
            }
        }
    }
}

#[test]
fn ip_masq_lets_a_container_reach_a_network_that_has_no_route_back() {
    if !require_root("ip_masq") {
        return;
    }
    let net = Net::new();
    let id = format!("ctr-masq-{}", std::process::id());
    let _masq = RuleGuard::masq("ktbnet", &id);
    let conf = net.conf(json!({"ipMasq": true}));
    let ctr = Netns::new("ktb-m");
    // "Outside": a netns behind a host veth, with no route to the container subnet.
    let outside = Netns::new("ktb-out");
    let uplink = HostLink::unique("ktbo");
    let (host_ip, out_ip) = (
        format!("10.248.{}.1", net.octet),
        format!("10.248.{}.2", net.octet),
    );
    keel_testkit::run(
        "ip",
        &[
            "link",
            "add",
            uplink.name(),
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            outside.name(),
        ],
    );
    keel_testkit::run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            uplink.name(),
        ],
    );
    keel_testkit::run("ip", &["link", "set", uplink.name(), "up"]);
    keel_testkit::run(
        "ip",
        &[
            "-n",
            outside.name(),
            "addr",
            "add",
            &format!("{out_ip}/30"),
            "dev",
            "up0",
        ],
    );
    keel_testkit::run("ip", &["-n", outside.name(), "link", "set", "up0", "up"]);

    add(&ours(), &conf, &ctr, &id);
    let rules = keel_testkit::run(
        "nft",
        &["list", "table", "ip", keel_cni::bridge::masq::TABLE],
    );
    assert_eq!(
        rules.matches(&format!("comment \"ktbnet:{id}\"")).count(),
        2,
        "{rules}"
    );
    assert!(rules.contains("masquerade"), "{rules}");
    assert!(
        ping(&ctr, &out_ip),
        "container -> outside through masquerade"
    );
    // The control: a container of the same network without ipMasq gets no answer.
    let plain = Netns::new("ktb-p");
    let plain_conf = net.conf(json!({}));
    add(&ours(), &plain_conf, &plain, "ctr-plain");
    assert!(
        !ping(&plain, &out_ip),
        "no reply expected without masquerade"
    );
    del(&ours(), &plain_conf, &plain, "ctr-plain");

    del(&ours(), &conf, &ctr, &id);
    let rules = keel_testkit::run(
        "nft",
        &["list", "table", "ip", keel_cni::bridge::masq::TABLE],
    );
    assert!(!rules.contains(&id), "{rules}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// ADD and DEL times, ours against the reference: `cargo test -p keel-cni --test bridge --
/// --ignored bench --nocapture` (BENCH_ITERATIONS, default 50; KEEL_BRIDGE_BIN to time a
/// release build of ours).
#[test]
#[ignore = "benchmark"]
fn bench_add_del() {
    if !require_root("bench_add_del") {
        return;
    }
    let n: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    // KEEL_BRIDGE_BIN: time another build of ours (e.g. target/release/bridge).
    let keel = std::env::var_os("KEEL_BRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(ours);
    for (label, bin) in [("keel", keel), ("reference", PathBuf::from(REFERENCE))] {
        let net = Net::new();
        let conf = net.conf(json!({})).to_string();
        let ns = Netns::new("ktb-bench");
        let path = ns.path().to_string_lossy().into_owned();
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let id = format!("bench-{i}");
            let a = invoke(&bin, Some("ADD"), &conf, &path, &id);
            assert_eq!(a.code, Some(0), "{label} ADD: {}", a.stdout);
            let d = invoke(&bin, Some("DEL"), &conf, &path, &id);
            assert_eq!(d.code, Some(0), "{label} DEL: {}", d.stdout);
            adds.push(a.elapsed);
            dels.push(d.elapsed);
        }
        println!(
            "{label}: ADD median {:?}, DEL median {:?} ({n} iterations)",
            median(adds),
            median(dels)
        );
    }
}

/// The VLANs of a bridge port (or of the bridge itself) as `bridge vlan show` lists them:
/// `vid flags...`, sorted.
fn port_vlans(dev: &str) -> Vec<String> {
    let out = Command::new("bridge")
        .args(["-j", "vlan", "show", "dev", dev])
        .output()
        .expect("bridge vlan show");
    assert!(out.status.success(), "bridge vlan show dev {dev}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut vlans: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["vlans"].as_array().cloned().unwrap_or_default())
        .map(|vl| {
            let mut s = vl["vlan"].to_string();
            if let Some(end) = vl.get("vlanEnd") {
                s = format!("{s}-{end}");
            }
            for f in vl["flags"].as_array().into_iter().flatten() {
                s.push(' ');
                s.push_str(f.as_str().unwrap_or(""));
            }
            s
        })
        .collect();
    vlans.sort();
    vlans
}

fn host_veth(result: &Value) -> String {
    result["interfaces"][1]["name"]
        .as_str()
        .expect("host veth in the result")
        .to_string()
}

fn check(conf: &Value, result: &Value, ns: &Netns, id: &str) -> Outcome {
    let mut c = conf.clone();
    c["prevResult"] = result.clone();
    ours_in("CHECK", &c, ns, id)
}

/// Whether this kernel filters bridge traffic by VLAN (CONFIG_BRIDGE_VLAN_FILTERING).
fn kernel_has_bridge_vlans() -> bool {
    let probe = HostLink::unique("ktbv");
    Command::new("ip")
        .args([
            "link",
            "add",
            probe.name(),
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// On a kernel without bridge VLAN filtering, a VLAN config is refused with an error saying so,
/// and nothing is left behind (no bridge, no veth, no allocation). Returns true when it was.
fn vlans_refused_cleanly(net: &Net, conf: &Value) -> bool {
    if kernel_has_bridge_vlans() {
        return false;
    }
    eprintln!("this kernel has no bridge VLAN filtering: checking the refusal only");
    let ns = Netns::new("ktb-vr");
    let o = ours_in("ADD", conf, &ns, "ctr-vr");
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(
        o.json["msg"]
            .as_str()
            .is_some_and(|m| m.contains("CONFIG_BRIDGE_VLAN_FILTERING")),
        "{}",
        o.stdout
    );
    assert!(!net.bridge.exists(), "bridge left behind");
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
    let inside = ip_json(Some(&ns), &["link"]);
    assert_eq!(inside.as_array().map(Vec::len), Some(1), "{inside}");
    true
}

/// VLAN isolation (on kernels with bridge VLAN filtering; elsewhere the clean refusal).
#[test]
fn vlans_isolate_containers_and_show_in_bridge_vlan() {
    if !require_root("vlans_isolate_containers") {
        return;
    }
    let net = Net::new();
    if vlans_refused_cleanly(&net, &net.conf(json!({"vlan": 100}))) {
        return;
    }
    let l2 = |extra: Value| {
        let mut c = net.conf(json!({"isDefaultGateway": false}));
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            c.extend(extra);
        }
        c
    };
    let v100 = l2(json!({"vlan": 100}));
    let v200 = l2(json!({"vlan": 200}));
    let trunk = l2(json!({
        "vlan": 300, "preserveDefaultVlan": false,
        "vlanTrunk": [{"id": 10}, {"minID": 20, "maxID": 22}]
    }));
    let (a, b, c, d) = (
        Netns::new("ktb-va"),
        Netns::new("ktb-vb"),
        Netns::new("ktb-vc"),
        Netns::new("ktb-vd"),
    );
    let ra = add(&ours(), &v100, &a, "ctr-va");
    let rb = add(&ours(), &v100, &b, "ctr-vb");
    let rc = add(&ours(), &v200, &c, "ctr-vc");
    let rd = add(&ours(), &trunk, &d, "ctr-vd");

    let link = ip_json(None, &["-d", "link", "show", net.bridge.name()]);
    assert_eq!(
        link[0]["linkinfo"]["info_data"]["vlan_filtering"], 1,
        "{link}"
    );
    assert_eq!(
        port_vlans(&host_veth(&ra)),
        ["1 Egress Untagged", "100 PVID Egress Untagged"]
    );
    assert_eq!(
        port_vlans(&host_veth(&rc)),
        ["1 Egress Untagged", "200 PVID Egress Untagged"]
    );
    assert_eq!(
        port_vlans(&host_veth(&rd)),
        ["10", "20", "21", "22", "300 PVID Egress Untagged"]
    );

    assert!(ping(&a, &container_ip(&rb)), "same vlan: a -> b");
    assert!(!ping(&a, &container_ip(&rc)), "vlan 100 -> vlan 200");
    assert!(!ping(&c, &container_ip(&rb)), "vlan 200 -> vlan 100");

    assert_eq!(check(&v100, &ra, &a, "ctr-va").code, Some(0), "CHECK a");
    assert_eq!(check(&trunk, &rd, &d, "ctr-vd").code, Some(0), "CHECK d");
    // CHECK compares with the port's VLANs: another VLAN in the config fails.
    let wrong = check(&v200, &ra, &a, "ctr-va");
    assert_eq!(
        wrong.code,
        Some(999),
        "CHECK with vlan 200: {}",
        wrong.stdout
    );
    assert!(wrong.stdout.contains("vlan 200"), "{}", wrong.stdout);

    del(&ours(), &v100, &a, "ctr-va");
    del(&ours(), &v100, &b, "ctr-vb");
    del(&ours(), &v200, &c, "ctr-vc");
    del(&ours(), &trunk, &d, "ctr-vd");
    assert!(net.bridge.ports().is_empty(), "{:?}", net.bridge.ports());
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
}

#[test]
fn a_gateway_bridge_joins_the_vlan_of_its_containers() {
    if !require_root("a_gateway_bridge_joins_the_vlan") {
        return;
    }
    let net = Net::new();
    let conf = net.conf(json!({"vlan": 42}));
    if vlans_refused_cleanly(&net, &conf) {
        return;
    }
    let a = Netns::new("ktb-vg");
    let r = add(&ours(), &conf, &a, "ctr-vg");
    assert!(
        port_vlans(net.bridge.name()).contains(&"42 PVID Egress Untagged".to_string()),
        "{:?}",
        port_vlans(net.bridge.name())
    );
    assert!(ping(&a, &format!("10.249.{}.1", net.octet)), "a -> gateway");
    assert_eq!(check(&conf, &r, &a, "ctr-vg").code, Some(0));
    del(&ours(), &conf, &a, "ctr-vg");
}

#[test]
fn vlan_config_errors_carry_the_invalid_config_code() {
    let net = Net::new();
    let ns = Netns::new("ktb-ve");
    for extra in [
        json!({"vlan": 4095}),
        json!({"vlan": -3}),
        json!({"vlanTrunk": [{"minID": 9, "maxID": 3}]}),
        json!({"vlanTrunk": [{"id": 0}]}),
    ] {
        let o = ours_in("ADD", &net.conf(extra.clone()), &ns, "ctr-ve");
        assert_eq!(o.json["code"], 7, "{extra}: {}", o.stdout);
        assert!(
            o.json["msg"]
                .as_str()
                .is_some_and(|m| m.contains("invalid"))
        );
    }
    // Nothing was touched: no bridge, no allocation.
    assert!(!net.bridge.exists());
    assert!(net.allocations().is_empty());
}

#[test]
fn macspoofchk_drops_frames_with_a_foreign_source_mac() {
    if !require_root("macspoofchk") {
        return;
    }
    use keel_cni::bridge::spoofcheck;
    use keel_netkit::nft::Family;
    let net = Net::new();
    let id = format!("ctr-spoof-{}", std::process::id());
    let _rules = RuleGuard::new(spoofcheck::TABLE, &[Family::Bridge], "ktbnet", &id);
    let conf = net.conf(json!({"macspoofchk": true}));
    let a = Netns::new("ktb-sa");
    let b = Netns::new("ktb-sb");
    let ra = add(&ours(), &conf, &a, &id);
    let rb = add(&ours(), &net.conf(json!({})), &b, "ctr-sb");
    let b_ip = container_ip(&rb);
    let comment = format!("comment \"ktbnet:{id}\"");

    let rules = keel_testkit::run("nft", &["list", "table", "bridge", spoofcheck::TABLE]);
    let rule = rules
        .lines()
        .find(|l| l.contains(&comment))
        .unwrap_or_else(|| panic!("no rule for {id}: {rules}"));
    let mac = ra["interfaces"][2]["mac"].as_str().expect("container mac");
    assert!(rule.contains(&host_veth(&ra)), "{rule}");
    assert!(rule.contains(&format!("ether saddr != {mac}")), "{rule}");
    assert!(rule.contains("drop"), "{rule}");
    // nft names priority -300 of the bridge family "dstnat".
    assert!(
        rules.contains("type filter hook prerouting priority dstnat"),
        "{rules}"
    );

    assert!(ping(&a, &b_ip), "a -> b with its own MAC");
    let set_mac = |m: &str| {
        let out = a.exec(&["ip", "link", "set", "dev", "eth0", "address", m]);
        assert!(out.status.success(), "set MAC {m}");
    };
    set_mac("02:de:ad:be:ef:01");
    assert!(!ping(&a, &b_ip), "a -> b with a spoofed source MAC");
    set_mac(mac);
    assert!(ping(&a, &b_ip), "a -> b with its MAC restored");
    assert_eq!(check(&conf, &ra, &a, &id).code, Some(0), "CHECK");

    del(&ours(), &conf, &a, &id);
    let rules = keel_testkit::run("nft", &["list", "table", "bridge", spoofcheck::TABLE]);
    assert!(!rules.contains(&comment), "{rules}");
    // CHECK notices a missing rule (the container is re-added without it, CHECK asks for it).
    let plain = net.conf(json!({}));
    let ra2 = add(&ours(), &plain, &a, &id);
    let missing = check(&conf, &ra2, &a, &id);
    assert_eq!(missing.json["code"], 999, "{}", missing.stdout);
    assert!(missing.stdout.contains("spoof"), "{}", missing.stdout);
    del(&ours(), &plain, &a, &id);
    del(&ours(), &net.conf(json!({})), &b, "ctr-sb");
}
