//! keel-cri's pod network (`CniNetwork`) and keel-cni's chains against Debian's reference CNI
//! plugins in /usr/lib/cni (bridge, host-local, loopback, tuning).
//!
//! Privileged tests make their own netns, a bridge named uniquely per test (removed by a guard
//! even on failure), a conf dir, cache dir and host-local dataDir in a tempdir, and use a subnet
//! 10.250.<n>.0/24 per test with no address on the host: all traffic stays inside namespaces
//! the test created. No iptables/nftables rules are made (no ipMasq, no portmap).

use std::path::{Path, PathBuf};

use keel_cri::config::CniConfig;
use keel_cri::network::CniNetwork;
use keel_cri::runtime::{NetworkAttachment, PodNetwork, PortMapping};
use keel_testkit::{HostLink, Netns, require_root};
use serde_json::json;

const PLUGINS: &str = "/usr/lib/cni";

struct Lab {
    dir: tempfile::TempDir,
    bridge: HostLink,
    subnet: u8,
}

impl Lab {
    fn new(subnet: u8) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["conf", "cache", "ipam"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Lab {
            dir,
            bridge: HostLink::unique("kt-br"),
            subnet,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn network_name(&self) -> String {
        format!("kt-net{}", self.subnet)
    }

    fn bridge_plugin(&self) -> serde_json::Value {
        let n = self.subnet;
        json!({
            "type": "bridge",
            "bridge": self.bridge.name(),
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": self.path("ipam"),
                "ranges": [[{"subnet": format!("10.250.{n}.0/24"), "gateway": format!("10.250.{n}.1")}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        })
    }

    fn write_conflist(&self, file: &str, plugins: serde_json::Value) {
        let list = json!({"cniVersion": "1.0.0", "name": self.network_name(), "plugins": plugins});
        std::fs::write(
            self.path("conf").join(file),
            serde_json::to_vec_pretty(&list).expect("json"),
        )
        .expect("write conflist");
    }

    fn network(&self) -> CniNetwork {
        let cfg = CniConfig {
            conf_dir: self.path("conf"),
            bin_dirs: vec![self.path("no-such-bin"), PathBuf::from(PLUGINS)],
            cache_dir: PathBuf::new(),
        };
        CniNetwork::new(&cfg, self.path("cache"))
    }

    /// IPs host-local still holds (files named like an address in its dataDir).
    fn allocations(&self) -> Vec<String> {
        let dir = self.path("ipam").join(self.network_name());
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        v.sort();
        v
    }

    fn cache_entries(&self) -> usize {
        std::fs::read_dir(self.path("cache/results"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }
}

fn attachment(id: &str, netns: &Path) -> NetworkAttachment {
    NetworkAttachment {
        sandbox_id: id.to_string(),
        netns: netns.to_path_buf(),
        pod_name: "web".into(),
        pod_namespace: "default".into(),
        pod_uid: "uid-1".into(),
        port_mappings: Vec::new(),
    }
}

fn ip_addr_show(ns: &Netns, dev: &str) -> String {
    let out = ns.exec(&["ip", "-o", "addr", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_link(ns: &Netns, dev: &str) -> bool {
    ns.exec(&["ip", "link", "show", "dev", dev])
        .status
        .success()
}

#[test]
fn reference_plugins_attach_ping_and_release() {
    if !require_root("reference_plugins_attach_ping_and_release") {
        return;
    }
    let lab = Lab::new(1);
    lab.write_conflist("10-kt.conflist", json!([lab.bridge_plugin()]));
    let net = lab.network();
    net.ready().expect("ready");
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    // lo starts down in a fresh netns; the loopback plugin must bring it up.
    keel_testkit::run("ip", &["-n", a.name(), "link", "set", "lo", "down"]);

    let att_a = attachment("sandboxa", &a.path());
    let att_b = attachment("sandboxb", &b.path());
    let ips_a = net.setup(&att_a).expect("setup a");
    let ips_b = net.setup(&att_b).expect("setup b");
    assert_eq!(ips_a.len(), 1, "{ips_a:?}");
    assert!(ips_a[0].starts_with("10.250.1."), "{ips_a:?}");
    assert!(ips_b[0].starts_with("10.250.1.") && ips_b[0] != ips_a[0]);
    assert!(ip_addr_show(&a, "eth0").contains(&format!("{}/24", ips_a[0])));
    let routes = String::from_utf8_lossy(&a.exec(&["ip", "route"]).stdout).into_owned();
    assert!(
        routes.contains("default via 10.250.1.1 dev eth0"),
        "{routes}"
    );
    let lo =
        String::from_utf8_lossy(&a.exec(&["ip", "-o", "link", "show", "lo"]).stdout).into_owned();
    assert!(lo.contains("UP"), "{lo}");
    assert_eq!(lab.allocations(), {
        let mut v = vec![ips_a[0].clone(), ips_b[0].clone()];
        v.sort();
        v
    });
    assert_eq!(lab.bridge.ports().len(), 2);

    let ping = b.exec(&["busybox", "ping", "-c1", "-W2", &ips_a[0]]);
    assert!(
        ping.status.success(),
        "ping {}: {}{}",
        ips_a[0],
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );

    net.teardown(&att_a).expect("teardown a");
    assert!(!has_link(&a, "eth0"));
    assert_eq!(lab.allocations(), vec![ips_b[0].clone()]);
    assert_eq!(lab.bridge.ports().len(), 1);
    net.teardown(&att_a).expect("teardown a twice");

    // The conf dir disappears: teardown still works from the cache.
    std::fs::remove_dir_all(lab.path("conf")).expect("rm conf");
    net.teardown(&att_b).expect("teardown b without a conf dir");
    assert!(!has_link(&b, "eth0"));
    assert!(lab.allocations().is_empty());
    assert!(lab.bridge.ports().is_empty());
    assert_eq!(lab.cache_entries(), 0);
    net.teardown(&att_b).expect("teardown b twice");
}

#[test]
fn port_mappings_reach_only_plugins_declaring_the_capability() {
    if !require_root("port_mappings_reach_only_plugins_declaring_the_capability") {
        return;
    }
    // Portmap itself would write host iptables rules; instead the cache shows what was passed.
    let lab = Lab::new(2);
    lab.write_conflist("10-kt.conflist", json!([lab.bridge_plugin()]));
    let net = lab.network();
    let ns = Netns::new("cnipm");
    let mut att = attachment("sandboxpm", &ns.path());
    att.port_mappings = vec![PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: "TCP".into(),
        host_ip: String::new(),
    }];
    net.setup(&att).expect("setup");
    let cached: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            lab.path("cache/results")
                .join(format!("{}-sandboxpm-eth0", lab.network_name())),
        )
        .expect("cache entry"),
    )
    .expect("json");
    assert_eq!(
        cached["capabilityArgs"]["portMappings"],
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    );
    assert_eq!(
        cached["cniArgs"],
        json!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandboxpm;K8S_POD_UID=uid-1"
        )
    );
    net.teardown(&att).expect("teardown");
    assert!(lab.allocations().is_empty());
}

#[test]
fn a_failing_second_plugin_leaves_no_veth_and_no_ip() {
    if !require_root("a_failing_second_plugin_leaves_no_veth_and_no_ip") {
        return;
    }
    let lab = Lab::new(3);
    let ns = Netns::new("cnifail");
    let att = attachment("sandboxfail", &ns.path());
    for (what, second) in [
        (
            "tuning with an invalid sysctl",
            json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}),
        ),
        ("a missing plugin", json!({"type": "kt-no-such-plugin"})),
    ] {
        lab.write_conflist("10-kt.conflist", json!([lab.bridge_plugin(), second]));
        let net = lab.network();
        let err = net.setup(&att).expect_err(what).to_string();
        assert!(err.contains("sandboxfail"), "{what}: {err}");
        assert!(!has_link(&ns, "eth0"), "{what}: eth0 left behind");
        assert!(lab.bridge.ports().is_empty(), "{what}: veth left behind");
        assert!(lab.allocations().is_empty(), "{what}: IP left allocated");
        assert_eq!(lab.cache_entries(), 0, "{what}: cache entry left");
        eprintln!("{what}: {err}");
    }
}

#[test]
fn a_missing_netns_is_refused_and_leaves_nothing() {
    if !require_root("a_missing_netns_is_refused_and_leaves_nothing") {
        return;
    }
    let lab = Lab::new(4);
    lab.write_conflist("10-kt.conflist", json!([lab.bridge_plugin()]));
    let net = lab.network();
    let att = attachment("sandboxnons", Path::new("/run/netns/kt-does-not-exist"));
    let err = net.setup(&att).expect_err("no netns").to_string();
    assert!(
        err.contains("netns /run/netns/kt-does-not-exist does not exist"),
        "{err}"
    );
    assert!(lab.allocations().is_empty());
    assert_eq!(lab.cache_entries(), 0);
    assert!(lab.bridge.ports().is_empty());
    net.teardown(&att).expect("teardown of nothing");
}

/// No root needed: `ready()` only reads the conf dir.
#[test]
fn ready_follows_the_conf_dir_without_a_restart() {
    let lab = Lab::new(5);
    let net = lab.network();
    let err = net.ready().expect_err("empty dir");
    assert!(err.contains("no network config found in"), "{err}");

    lab.write_conflist("10-kt.conflist", json!([lab.bridge_plugin()]));
    net.ready().expect("ready after the conflist appeared");

    std::fs::remove_file(lab.path("conf/10-kt.conflist")).expect("rm");
    assert!(net.ready().is_err());

    std::fs::write(lab.path("conf/05-bad.conflist"), "{\"cniVersion\": ").expect("write");
    let err = net.ready().expect_err("malformed");
    assert!(err.contains("05-bad.conflist: invalid JSON"), "{err}");

    std::fs::write(
        lab.path("conf/06-notype.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"bridge":"b"}]}"#,
    )
    .expect("write");
    std::fs::write(
        lab.path("conf/07-version.conf"),
        r#"{"cniVersion":"7.0.0","name":"x","type":"bridge"}"#,
    )
    .expect("write");
    let err = net.ready().expect_err("all invalid");
    assert!(
        err.contains("06-notype.conflist: plugin 0 has no type"),
        "{err}"
    );
    assert!(
        err.contains("07-version.conf: unsupported cniVersion \"7.0.0\""),
        "{err}"
    );

    // A valid file later in lexical order is used; the invalid ones are skipped.
    lab.write_conflist("99-kt.conflist", json!([lab.bridge_plugin()]));
    net.ready()
        .expect("ready with a valid file after invalid ones");

    let gone = Lab::new(6);
    std::fs::remove_dir_all(gone.path("conf")).expect("rm");
    let err = gone.network().ready().expect_err("missing dir");
    assert!(err.contains("does not exist"), "{err}");
}
