//! Privileged tests of the `portmap` plugin binary, chained after this workspace's bridge and
//! host-local binaries, and side by side with Debian's reference portmap (/usr/lib/cni/portmap,
//! which writes iptables rules) for the same reachability.
//!
//! Topology of each test (all names unique per test and process; guards remove every netns,
//! link, nft rule and iptables chain the test made, even when an assertion fails):
//! ```text
//!   outside netns ──veth 10.248.k.0/30── host ──bridge 10.247.n.0/24── pod netns (busybox nc server)
//!   client: outside → <host side>:<hostPort>,  host → 127.0.0.1:<hostPort>
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_netkit::nft::{Batch, Family, Nft};
use keel_testkit::{HostLink, Netns, require_root, run, wait_for};
use serde_json::{Value, json};

const NETWORK: &str = "ktpnet";
const REFERENCE_PORTMAP: &str = "/usr/lib/cni/portmap";
const TABLE: &str = keel_cni::portmap::rules::TABLE;

/// A small number unique among the tests of this process, mixed with the pid so that parallel
/// runs of this binary differ too.
fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    (std::process::id() as usize % 40) * 6 + N.fetch_add(1, Ordering::Relaxed) % 6
}

/// A directory with our plugin binaries, to be `CNI_PATH`.
fn cni_path() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bin) in [
        ("bridge", env!("CARGO_BIN_EXE_bridge")),
        ("host-local", env!("CARGO_BIN_EXE_host-local")),
        ("portmap", env!("CARGO_BIN_EXE_portmap")),
    ] {
        std::os::unix::fs::symlink(bin, dir.path().join(name)).expect("symlink plugin");
    }
    dir
}

struct Outcome {
    ok: bool,
    stdout: String,
    json: Value,
}

fn invoke(bin: &Path, command: &str, conf: &Value, netns: &Path, id: &str, path: &Path) -> Outcome {
    let out = common::run_plugin(bin, command, conf, netns, id, path);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Outcome {
        ok: out.status.success(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn must(o: Outcome, what: &str) -> Value {
    assert!(o.ok, "{what} failed: {}", o.stdout);
    o.json
}

/// One network: a bridge (with gateway), a subnet, an IPAM store, our plugins as CNI_PATH.
struct Net {
    bridge: HostLink,
    octet: usize,
    ipam: tempfile::TempDir,
    path: tempfile::TempDir,
}

impl Net {
    fn new() -> Net {
        Net {
            bridge: HostLink::unique("ktp"),
            octet: unique(),
            ipam: tempfile::tempdir().expect("temp dir"),
            path: cni_path(),
        }
    }

    fn bridge_conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "bridge",
            "bridge": self.bridge.name(),
            "isDefaultGateway": true,
            "ipam": {
                "type": "host-local",
                "subnet": format!("10.247.{}.0/24", self.octet),
                "dataDir": self.ipam.path(),
            },
        })
    }

    fn portmap_conf(&self, mappings: Value, prev: &Value) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": mappings},
            "prevResult": prev,
        })
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.path.path().join(name)
    }

    /// bridge ADD, then `portmap` ADD chained on its result; returns the final result.
    fn add(&self, portmap: &Path, ns: &Netns, id: &str, mappings: Value) -> Value {
        let prev = must(
            invoke(
                &self.bin("bridge"),
                "ADD",
                &self.bridge_conf(),
                &ns.path(),
                id,
                self.path.path(),
            ),
            "bridge ADD",
        );
        let out = must(
            invoke(
                portmap,
                "ADD",
                &self.portmap_conf(mappings, &prev),
                &ns.path(),
                id,
                self.path.path(),
            ),
            "portmap ADD",
        );
        assert_eq!(out["ips"], prev["ips"], "portmap changed the result");
        assert_eq!(
            out["interfaces"], prev["interfaces"],
            "portmap changed the result"
        );
        out
    }

    /// DEL in reverse order: portmap, then bridge.
    fn del(&self, portmap: &Path, ns: &Netns, id: &str, mappings: Value, prev: &Value) {
        must(
            invoke(
                portmap,
                "DEL",
                &self.portmap_conf(mappings, prev),
                &ns.path(),
                id,
                self.path.path(),
            ),
            "portmap DEL",
        );
        must(
            invoke(
                &self.bin("bridge"),
                "DEL",
                &self.bridge_conf(),
                &ns.path(),
                id,
                self.path.path(),
            ),
            "bridge DEL",
        );
    }
}

/// A process the test started (a server in a netns), killed by its pid on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `busybox nc` answering every connection to `port` in `ns` with `reply`.
fn serve(ns: &Netns, port: u16, reply: &str) -> Server {
    let s = Server(
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "busybox", "nc", "-ll", "-p"])
            .arg(port.to_string())
            .args(["-e", "echo", reply])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start busybox nc"),
    );
    wait_for("the server to listen", Duration::from_secs(5), || {
        let out = ns.exec(&["ss", "-ltnH"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!(":{port} "))
            .then_some(())
    });
    s
}

/// What a TCP connection to `addr:port` reads (empty when it fails), from `ns` or the host.
fn fetch(ns: Option<&Netns>, addr: &str, port: u16) -> String {
    let port = port.to_string();
    let argv = ["busybox", "nc", "-w", "2", addr, &port];
    let out = match ns {
        Some(ns) => ns.exec(&argv),
        None => Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .expect("busybox nc"),
    };
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An "outside" netns connected to the host by a veth: host side 10.248.k.1/30, outside
/// 10.248.k.2/30 with a default route to the host.
struct Outside {
    ns: Netns,
    _link: HostLink,
    host_ip: String,
}

impl Outside {
    fn new(k: usize) -> Outside {
        let ns = Netns::new("pmo");
        let link = HostLink::unique("ktpo");
        let host_ip = format!("10.248.{k}.1");
        run(
            "ip",
            &[
                "link",
                "add",
                link.name(),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", link.name()],
        );
        run("ip", &["link", "set", link.name(), "up"]);
        run(
            "ip",
            &[
                "-n",
                ns.name(),
                "addr",
                "add",
                &format!("10.248.{k}.2/30"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", ns.name(), "link", "set", "eth0", "up"]);
        run(
            "ip",
            &["-n", ns.name(), "route", "add", "default", "via", &host_ip],
        );
        Outside {
            ns,
            _link: link,
            host_ip,
        }
    }
}

/// Removes on drop the keel-portmap rules of the test's containers, and the tables if the test
/// created them and they are empty.
struct RuleGuard {
    comments: Vec<String>,
    created: Vec<Family>,
}

fn table_exists(family: Family) -> bool {
    run("nft", &["list", "tables", family.name()])
        .contains(&format!("table {} {TABLE}", family.name()))
}

impl RuleGuard {
    fn new(ids: &[&str]) -> RuleGuard {
        RuleGuard {
            comments: ids
                .iter()
                .map(|id| keel_cni::bridge::masq::comment(NETWORK, id))
                .collect(),
            created: [Family::Ipv4, Family::Ipv6]
                .into_iter()
                .filter(|f| !table_exists(*f))
                .collect(),
        }
    }
}

impl Drop for RuleGuard {
    fn drop(&mut self) {
        let Ok(mut nft) = Nft::open() else { return };
        for family in [Family::Ipv4, Family::Ipv6] {
            for c in &self.comments {
                let _ = nft.delete_rules_with_comment(family, TABLE, c);
            }
            if self.created.contains(&family)
                && nft.rules(family, TABLE).is_ok_and(|r| r.is_empty())
            {
                let mut b = Batch::new();
                b.del_table(family, TABLE);
                let _ = nft.apply(&b);
            }
        }
    }
}

/// How many keel-portmap rules (both families) carry a container's comment.
fn rules_of(id: &str) -> usize {
    let comment = keel_cni::bridge::masq::comment(NETWORK, id);
    let mut nft = Nft::open().expect("nft socket");
    [Family::Ipv4, Family::Ipv6]
        .into_iter()
        .flat_map(|f| nft.rules(f, TABLE).expect("list rules"))
        .filter(|r| r.comment.as_deref() == Some(comment.as_str()))
        .count()
}

fn mapping(host_port: u16, container_port: u16) -> Value {
    json!([{"hostPort": host_port, "containerPort": container_port, "protocol": "tcp"}])
}

/// Host ports of a test: two per test, unique per process and test.
fn host_port(n: usize, i: u16) -> u16 {
    20000 + (n as u16) * 2 + i
}

/// Checks reachability through `portmap` (ours or the reference): from the outside netns to the
/// host side address and from the host to 127.0.0.1, then that DEL of one container removes its
/// forwarding and leaves the other's. Returns nothing; panics naming what failed.
fn reachability(portmap: &Path, ids: [&str; 2]) {
    let net = Net::new();
    let outside = Outside::new(net.octet);
    let (pod_a, pod_b) = (Netns::new("pma"), Netns::new("pmb"));
    let (hp_a, hp_b) = (host_port(net.octet, 0), host_port(net.octet, 1));
    let _a = serve(&pod_a, 8080, "hello-a");
    let _b = serve(&pod_b, 8080, "hello-b");
    let res_a = net.add(portmap, &pod_a, ids[0], mapping(hp_a, 8080));
    let res_b = net.add(portmap, &pod_b, ids[1], mapping(hp_b, 8080));

    assert_eq!(
        fetch(Some(&outside.ns), &outside.host_ip, hp_a),
        "hello-a",
        "outside → host:{hp_a}"
    );
    assert_eq!(
        fetch(Some(&outside.ns), &outside.host_ip, hp_b),
        "hello-b",
        "outside → host:{hp_b}"
    );
    assert_eq!(
        fetch(None, "127.0.0.1", hp_a),
        "hello-a",
        "host → 127.0.0.1:{hp_a}"
    );
    let key = format!("net/ipv4/conf/{}/route_localnet", net.bridge.name());
    assert_eq!(
        keel_netkit::sysctl::read(&key).ok().as_deref(),
        Some("1"),
        "{key}"
    );

    net.del(portmap, &pod_a, ids[0], mapping(hp_a, 8080), &res_a);
    assert_eq!(
        fetch(Some(&outside.ns), &outside.host_ip, hp_a),
        "",
        "host:{hp_a} after DEL"
    );
    assert_eq!(
        fetch(Some(&outside.ns), &outside.host_ip, hp_b),
        "hello-b",
        "the other container after DEL"
    );
    assert_eq!(
        fetch(None, "127.0.0.1", hp_b),
        "hello-b",
        "the other container from the host"
    );
    net.del(portmap, &pod_b, ids[1], mapping(hp_b, 8080), &res_b);
    assert_eq!(fetch(None, "127.0.0.1", hp_b), "", "host:{hp_b} after DEL");
}

#[test]
fn ours_forwards_host_ports_and_del_removes_exactly_one_containers_rules() {
    if !require_root("portmap ours") {
        return;
    }
    let pid = std::process::id();
    let (a, b) = (format!("pm-a-{pid}"), format!("pm-b-{pid}"));
    let _rules = RuleGuard::new(&[&a, &b]);
    let portmap = PathBuf::from(env!("CARGO_BIN_EXE_portmap"));

    // The rules, DEL and CHECK, before the reachability run.
    let net = Net::new();
    let (pod_a, pod_b) = (Netns::new("pmra"), Netns::new("pmrb"));
    let res_a = net.add(&portmap, &pod_a, &a, mapping(9001, 80));
    let res_b = net.add(&portmap, &pod_b, &b, mapping(9002, 80));
    // Per container: prerouting, output, two postrouting (hairpin and localhost); IPv4 only.
    assert_eq!((rules_of(&a), rules_of(&b)), (4, 4));
    let check = net.portmap_conf(mapping(9001, 80), &res_a);
    must(
        invoke(
            &portmap,
            "CHECK",
            &check,
            &pod_a.path(),
            &a,
            net.path.path(),
        ),
        "CHECK",
    );
    // A repeated ADD replaces, not doubles.
    must(
        invoke(&portmap, "ADD", &check, &pod_a.path(), &a, net.path.path()),
        "second ADD",
    );
    assert_eq!(rules_of(&a), 4);
    net.del(&portmap, &pod_a, &a, mapping(9001, 80), &res_a);
    assert_eq!(
        (rules_of(&a), rules_of(&b)),
        (0, 4),
        "DEL of a left b's rules"
    );
    let failed = invoke(
        &portmap,
        "CHECK",
        &check,
        &pod_a.path(),
        &a,
        net.path.path(),
    );
    assert!(!failed.ok, "CHECK after DEL passed");
    // DEL again, and without prevResult: nothing to do, no error.
    let mut bare = net.portmap_conf(mapping(9001, 80), &Value::Null);
    if let Some(o) = bare.as_object_mut() {
        o.remove("prevResult");
        o.remove("runtimeConfig");
    }
    must(
        invoke(&portmap, "DEL", &bare, &pod_a.path(), &a, net.path.path()),
        "DEL again",
    );
    net.del(&portmap, &pod_b, &b, mapping(9002, 80), &res_b);
    assert_eq!((rules_of(&a), rules_of(&b)), (0, 0));

    // No portMappings: the result passes through and nothing is written.
    let prev = must(
        invoke(
            &net.bin("bridge"),
            "ADD",
            &net.bridge_conf(),
            &pod_a.path(),
            &a,
            net.path.path(),
        ),
        "bridge ADD",
    );
    let none = must(
        invoke(
            &portmap,
            "ADD",
            &net.portmap_conf(json!([]), &prev),
            &pod_a.path(),
            &a,
            net.path.path(),
        ),
        "portmap ADD without mappings",
    );
    assert_eq!(none, prev);
    assert_eq!(rules_of(&a), 0);
    must(
        invoke(
            &net.bin("bridge"),
            "DEL",
            &net.bridge_conf(),
            &pod_a.path(),
            &a,
            net.path.path(),
        ),
        "bridge DEL",
    );

    reachability(&portmap, [&a, &b]);
    assert_eq!(
        (rules_of(&a), rules_of(&b)),
        (0, 0),
        "rules left after both DELs"
    );
}

/// Removes on drop what the reference portmap leaves in iptables' nat table: any rule naming
/// the test's containers, and its shared CNI-HOSTPORT-* chains (with the jumps to them) if the
/// test created them and no other container uses them.
struct IptablesGuard {
    ids: Vec<String>,
    created: bool,
    /// The `nat` tables (`ip`, `ip6`) that did not exist before: the reference creates them,
    /// and they are deleted again when left empty.
    new_tables: Vec<&'static str>,
}

fn nat_table_exists(family: &str) -> bool {
    run("nft", &["list", "tables", family]).contains(&format!("table {family} nat"))
}

fn nat_rules() -> Vec<String> {
    run("iptables", &["-w", "-t", "nat", "-S"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn iptables_delete(rule: &str) {
    // `-A CHAIN args...` → `-D CHAIN args...`; the rule text is iptables' own, so quoting is
    // only around comments, which `-S` prints in double quotes.
    let args = shell_words(rule.trim_start_matches("-A "));
    let mut argv = vec!["-w".to_string(), "-t".into(), "nat".into(), "-D".into()];
    argv.extend(args);
    let _ = Command::new("iptables").args(&argv).output();
}

/// Splits an `iptables -S` line into arguments (double quotes group, `\"` escapes).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped, mut any) = (false, false, false);
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
            any = true;
        } else if c == ' ' && !quoted {
            if any || !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            any = false;
        } else {
            cur.push(c);
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl IptablesGuard {
    fn new(ids: &[&str]) -> IptablesGuard {
        IptablesGuard {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            created: !nat_rules().iter().any(|l| l == "-N CNI-HOSTPORT-DNAT"),
            new_tables: ["ip", "ip6"]
                .into_iter()
                .filter(|f| !nat_table_exists(f))
                .collect(),
        }
    }
}

impl Drop for IptablesGuard {
    fn drop(&mut self) {
        self.drop_chains();
        for family in &self.new_tables {
            let listing = run("nft", &["list", "table", family, "nat"]);
            // Only base chains with no rule in them: nothing but `chain`, `type` lines and braces.
            let empty = listing.lines().map(str::trim).all(|l| {
                l.is_empty()
                    || l == "}"
                    || l.starts_with("table ")
                    || l.starts_with("chain ")
                    || l.starts_with("type ")
            });
            if empty {
                let _ = Command::new("nft")
                    .args(["delete", "table", family, "nat"])
                    .output();
            }
        }
    }
}

impl IptablesGuard {
    fn drop_chains(&self) {
        for l in nat_rules() {
            if l.starts_with("-A ") && self.ids.iter().any(|id| l.contains(id.as_str())) {
                iptables_delete(&l);
            }
        }
        let rules = nat_rules();
        let in_use = rules.iter().any(|l| l.starts_with("-A CNI-HOSTPORT-DNAT "));
        if !self.created || in_use {
            return;
        }
        for l in &rules {
            if l.starts_with("-A ") && l.contains("-j CNI-HOSTPORT-") {
                iptables_delete(l);
            }
        }
        for l in nat_rules() {
            if let Some(chain) = l
                .strip_prefix("-N ")
                .filter(|c| c.starts_with("CNI-HOSTPORT-") || c.starts_with("CNI-DN-"))
            {
                let _ = Command::new("iptables")
                    .args(["-w", "-t", "nat", "-F", chain])
                    .output();
                let _ = Command::new("iptables")
                    .args(["-w", "-t", "nat", "-X", chain])
                    .output();
            }
        }
    }
}

#[test]
fn the_reference_portmap_gives_the_same_reachability() {
    if !require_root("portmap reference") {
        return;
    }
    if !Path::new(REFERENCE_PORTMAP).exists() {
        eprintln!("skipping: {REFERENCE_PORTMAP} is not installed");
        return;
    }
    let pid = std::process::id();
    let (a, b) = (format!("pmref-a-{pid}"), format!("pmref-b-{pid}"));
    let _ipt = IptablesGuard::new(&[&a, &b]);
    reachability(Path::new(REFERENCE_PORTMAP), [&a, &b]);
}
