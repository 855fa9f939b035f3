//! Data-driven tests of host-local without root: config parsing and range validation, the
//! round-robin order, and ADD/DEL/CHECK/GC/STATUS against a store in a temp dir.

use std::net::IpAddr;

use expect_test::{Expect, expect};
use serde_json::{Map, Value, json};

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn parse(ipam: Value, args: &[(&str, &str)]) -> Result<IpamConfig, Error> {
    let args: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    IpamConfig::from_config(
        &obj(json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": ipam})),
        &args,
    )
}

fn check_config(ipam: Value, expect: Expect) {
    let got = match parse(ipam, &[]) {
        Ok(c) => c
            .range_sets
            .iter()
            .map(|s| {
                s.ranges
                    .iter()
                    .map(|r| format!("{} {} gw {}", r.subnet, r, r.gateway))
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("err {e}"),
    };
    expect.assert_eq(&got);
}

#[test]
fn range_parsing_and_validation() {
    check_config(
        json!({"type": "host-local", "subnet": "10.1.0.0/24"}),
        expect!["10.1.0.0/24 10.1.0.1-10.1.0.254 gw 10.1.0.1"],
    );
    check_config(
        json!({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.254"}),
        expect!["10.1.0.0/24 10.1.0.10-10.1.0.20 gw 10.1.0.254"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.2.0.0/30"}], [{"subnet": "fd00::/120"}]]}),
        expect![[r#"
            10.1.0.0/24 10.1.0.1-10.1.0.254 gw 10.1.0.1 | 10.2.0.0/30 10.2.0.1-10.2.0.2 gw 10.2.0.1
            fd00::/120 fd00::1-fd00::ff gw fd00::1"#]],
    );
    // The legacy form comes first, before `ranges`.
    check_config(
        json!({"subnet": "10.9.0.0/16", "ranges": [[{"subnet": "10.1.0.0/24"}]]}),
        expect![[r#"
            10.9.0.0/16 10.9.0.1-10.9.255.254 gw 10.9.0.1
            10.1.0.0/24 10.1.0.1-10.1.0.254 gw 10.1.0.1"#]],
    );
    check_config(
        json!({"type": "host-local"}),
        expect!["err no ip ranges specified"],
    );
    check_config(
        json!({"subnet": "10.1.0.0/33"}),
        expect!["err invalid range set 0: invalid CIDR address: 10.1.0.0/33"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "banana"}]]}),
        expect!["err invalid range set 0: invalid CIDR address: banana"],
    );
    check_config(
        json!({"ranges": [[{"rangeStart": "10.1.0.1"}]]}),
        expect!["err invalid range set 0: invalid CIDR address: "],
    );
    check_config(
        json!({"subnet": "10.1.0.5/24"}),
        expect![
            "err invalid range set 0: network 10.1.0.5/24 has host bits set (the network address is 10.1.0.0)"
        ],
    );
    check_config(
        json!({"subnet": "10.1.0.0/31"}),
        expect!["err invalid range set 0: network 10.1.0.0/31 too small to allocate from"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.5"}]]}),
        expect!["err invalid range set 0: rangeStart 10.2.0.5 not in network 10.1.0.0/24"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeEnd": "10.1.1.0"}]]}),
        expect!["err invalid range set 0: rangeEnd 10.1.1.0 not in network 10.1.0.0/24"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.8"}]]}),
        expect!["err invalid range set 0: rangeStart 10.1.0.9 is after rangeEnd 10.1.0.8"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "x"}]]}),
        expect![[r#"err invalid range set 0: invalid IP address "x" for rangeStart"#]],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24", "gateway": "fd00::1"}]]}),
        expect!["err invalid range set 0: gateway fd00::1 not in network 10.1.0.0/24"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}),
        expect!["err invalid range set 0: mixed address families in one range set"],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}),
        expect![
            "err invalid range set 0: ranges 10.1.0.1-10.1.0.254 and 10.1.0.1-10.1.0.126 overlap"
        ],
    );
    check_config(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.128/25"}]]}),
        expect!["err range set 0 overlaps with range set 1"],
    );
    check_config(
        json!({"ranges": [[]]}),
        expect!["err invalid range set 0: empty range set"],
    );
    check_config(
        json!({"ranges": "10.1.0.0/24"}),
        expect![
            "err invalid ipam config: invalid type: string \"10.1.0.0/24\", expected a sequence"
        ],
    );
}

#[test]
fn config_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "# comment\nnameserver 10.0.0.10\nnameserver fd00::10\ndomain example.org\nsearch a.example b.example\noptions ndots:5 edns0\n",
    )
    .expect("write");
    let cfg = IpamConfig::from_config(
        &obj(json!({
            "name": "net1",
            "ipam": {
                "subnet": "10.1.0.0/24",
                "dataDir": "/tmp/x",
                "resolvConf": resolv,
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}]
            },
            "args": {"cni": {"ips": ["10.1.0.7"]}},
            "runtimeConfig": {"ips": ["10.1.0.8/24"]}
        })),
        &[
            ("IgnoreUnknown".into(), "1".into()),
            ("IP".into(), "10.1.0.5,10.1.0.6".into()),
        ],
    )
    .expect("config");
    expect![[r#"
        net1 /tmp/x/net1
        requested [10.1.0.5, 10.1.0.6, 10.1.0.7, 10.1.0.8]
        routes [{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.1.0.254"}]
        dns {"nameservers":["10.0.0.10","fd00::10"],"domain":"example.org","search":["a.example","b.example"],"options":["ndots:5","edns0"]}"#]]
    .assert_eq(&format!(
        "{} {}\nrequested {:?}\nroutes {}\ndns {}",
        cfg.name,
        cfg.store_dir().display(),
        cfg.requested,
        serde_json::to_string(&cfg.routes).expect("json"),
        serde_json::to_string(&cfg.dns).expect("json"),
    ));

    let defaults = parse(json!({"subnet": "10.1.0.0/24"}), &[]).expect("config");
    assert_eq!(
        defaults.store_dir(),
        std::path::Path::new("/var/lib/cni/networks/net1")
    );

    for (ipam, args, want) in [
        (
            json!({"subnet": "10.1.0.0/24"}),
            vec![("IP", "nope")],
            "invalid requested ip \"nope\"",
        ),
        (
            json!({"subnet": "10.1.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}),
            vec![],
            "/nonexistent/resolv.conf: No such file or directory (os error 2)",
        ),
    ] {
        let err = parse(ipam, &args).expect_err("must fail");
        assert_eq!(err.to_string(), want);
    }
    for (args, want) in [
        (
            vec![("K8S_POD_NAME", "p")],
            r#"unknown CNI_ARGS ["K8S_POD_NAME=p"] (without IgnoreUnknown=1)"#,
        ),
        (
            vec![("IgnoreUnknown", "maybe")],
            r#"invalid CNI_ARGS pair "IgnoreUnknown=maybe""#,
        ),
    ] {
        let err = parse(json!({"subnet": "10.1.0.0/24"}), &args).expect_err("must fail");
        assert_eq!(err.to_string(), want);
    }
    let ok = parse(
        json!({"subnet": "10.1.0.0/24"}),
        &[
            ("IgnoreUnknown", "true"),
            ("K8S_POD_NAME", "p"),
            ("IP", "10.1.0.9"),
            ("IP", "10.1.0.9"),
        ],
    )
    .expect("config");
    assert_eq!(ok.requested, ["10.1.0.9".parse::<IpAddr>().expect("ip")]);
    let err = IpamConfig::from_config(&obj(json!({"name": "n"})), &[]).expect_err("no ipam");
    assert_eq!(err.to_string(), "ipam config missing 'ipam' key");
    let err = IpamConfig::from_config(
        &obj(json!({"name": "../etc", "ipam": {"subnet": "10.1.0.0/24"}})),
        &[],
    )
    .expect_err("bad name");
    assert_eq!(
        err.to_string(),
        "invalid network name \"../etc\" (the store directory is named after it)"
    );
}

fn order(set: &RangeSet, last: Option<&str>) -> String {
    let last = last.map(|l| l.parse::<IpAddr>().expect("ip"));
    set.candidates(last)
        .map(|(ip, _)| ip.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn round_robin_order() {
    let set = RangeSet::new(vec![
        Range::new("10.1.0.0/29", Some("10.1.0.1"), Some("10.1.0.3"), None).expect("range"),
        Range::new("10.2.0.0/29", Some("10.2.0.4"), None, Some("10.2.0.5")).expect("range"),
    ])
    .expect("set");
    // The gateways (10.1.0.1, 10.2.0.5) are never offered.
    expect!["10.1.0.2 10.1.0.3 10.2.0.4 10.2.0.6"].assert_eq(&order(&set, None));
    expect!["10.1.0.3 10.2.0.4 10.2.0.6 10.1.0.2"].assert_eq(&order(&set, Some("10.1.0.2")));
    expect!["10.1.0.2 10.1.0.3 10.2.0.4 10.2.0.6"].assert_eq(&order(&set, Some("10.2.0.6")));
    // A last address outside the set (the config changed) starts over.
    expect!["10.1.0.2 10.1.0.3 10.2.0.4 10.2.0.6"].assert_eq(&order(&set, Some("10.9.9.9")));
    let v6 = RangeSet::new(vec![
        Range::new("fd00::/126", None, None, None).expect("range"),
    ])
    .expect("set");
    expect!["fd00::2 fd00::3"].assert_eq(&order(&v6, None));
}

struct Fixture {
    _dir: tempfile::TempDir,
    data_dir: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().to_string_lossy().into_owned();
        Fixture {
            _dir: dir,
            data_dir,
        }
    }

    fn cfg(&self, mut ipam: Value, args: &[(&str, &str)]) -> IpamConfig {
        ipam["dataDir"] = self.data_dir.clone().into();
        parse(ipam, args).expect("config")
    }

    /// The store as `ip=id/ifname` lines plus the last_reserved files.
    fn listing(&self) -> String {
        let mut names: Vec<String> = std::fs::read_dir(format!("{}/net1", self.data_dir))
            .expect("store dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let text =
                    std::fs::read_to_string(format!("{}/net1/{n}", self.data_dir)).expect("read");
                format!("{n}={}", text.replace("\r\n", "/"))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn add(cfg: &IpamConfig, id: &str) -> String {
    match host_local::add(cfg, id, "eth0") {
        Ok(r) => serde_json::to_string(&r).expect("json"),
        Err(e) => format!("err {e}"),
    }
}

#[test]
fn add_del_check_dual_stack() {
    let f = Fixture::new();
    let cfg = f.cfg(
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/120", "gateway": "fd00::ff"}]], "routes": [{"dst": "0.0.0.0/0"}]}),
        &[],
    );
    expect![[r#"{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1"},{"address":"fd00::1/120","gateway":"fd00::ff"}],"routes":[{"dst":"0.0.0.0/0"}]}"#]]
        .assert_eq(&add(&cfg, "c1"));
    expect!["err failed to allocate for range set 0: 10.1.0.2 has been allocated to c1, duplicate allocation is not allowed"]
        .assert_eq(&add(&cfg, "c1"));
    host_local::check(&cfg, "c1", "eth0").expect("check");
    expect!["10.1.0.2=c1/eth0 fd00::1=c1/eth0 last_reserved_ip.0=10.1.0.2 last_reserved_ip.1=fd00::1 lock="]
        .assert_eq(&f.listing());
    assert_eq!(host_local::del(&cfg, "c1", "eth0").expect("del").len(), 2);
    assert!(
        host_local::del(&cfg, "c1", "eth0")
            .expect("del again")
            .is_empty()
    );
    expect!["err no address allocated to container c1 on eth0"].assert_eq(
        &host_local::check(&cfg, "c1", "eth0")
            .map_or_else(|e| format!("err {e}"), |()| "ok".into()),
    );
    // Round robin: the next ADD continues after the last address handed out.
    expect![[r#"{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.3/24","gateway":"10.1.0.1"},{"address":"fd00::2/120","gateway":"fd00::ff"}],"routes":[{"dst":"0.0.0.0/0"}]}"#]]
        .assert_eq(&add(&cfg, "c2"));
}

#[test]
fn requested_ips() {
    let f = Fixture::new();
    let cfg = |args: &[(&str, &str)]| {
        f.cfg(json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"}]]}), args)
    };
    expect![[r#"{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.15/24","gateway":"10.1.0.1"}]}"#]]
        .assert_eq(&add(&cfg(&[("IP", "10.1.0.15")]), "c1"));
    expect!["err failed to allocate for range set 0: requested ip 10.1.0.15 is not available in range set 10.1.0.10-10.1.0.20"]
        .assert_eq(&add(&cfg(&[("IP", "10.1.0.15")]), "c2"));
    expect!["err requested ip 10.1.0.30 is not in any range set"]
        .assert_eq(&add(&cfg(&[("IP", "10.1.0.30")]), "c2"));
    expect!["err requested ip 10.9.0.1 is not in any range set"]
        .assert_eq(&add(&cfg(&[("IP", "10.9.0.1")]), "c2"));
    expect!["err requested ips [10.1.0.12] could not all be allocated (one address per range set)"]
        .assert_eq(&add(&cfg(&[("IP", "10.1.0.11,10.1.0.12")]), "c2"));
    let gw = f.cfg(
        json!({"ranges": [[{"subnet": "10.2.0.0/24", "gateway": "10.2.0.9"}]]}),
        &[("IP", "10.2.0.9")],
    );
    expect![
        "err failed to allocate for range set 0: requested ip 10.2.0.9 is the subnet's gateway"
    ]
    .assert_eq(&add(&gw, "c3"));
    // The failed ADDs left nothing behind.
    expect!["10.1.0.15=c1/eth0 last_reserved_ip.0=10.1.0.15 lock="].assert_eq(&f.listing());
}

#[test]
fn exhausted_range_rolls_back_and_status_reports_it() {
    let f = Fixture::new();
    let cfg = f.cfg(
        json!({"ranges": [[{"subnet": "fd00::/120"}], [{"subnet": "10.1.0.0/29", "rangeStart": "10.1.0.5"}]]}),
        &[],
    );
    assert!(host_local::status(&cfg).is_ok());
    assert!(add(&cfg, "c1").starts_with('{'));
    assert!(add(&cfg, "c2").starts_with('{'));
    expect!["err failed to allocate for range set 1: no ip addresses available in range set 10.1.0.5-10.1.0.6"]
        .assert_eq(&add(&cfg, "c3"));
    // The IPv6 address taken before the IPv4 set failed (fd00::4) was given back; like the
    // reference, last_reserved_ip still moves on.
    expect!["10.1.0.5=c1/eth0 10.1.0.6=c2/eth0 fd00::2=c1/eth0 fd00::3=c2/eth0 last_reserved_ip.0=fd00::4 last_reserved_ip.1=10.1.0.6 lock="]
        .assert_eq(&f.listing());
    let err = host_local::status(&cfg).expect_err("exhausted");
    expect!["failed to allocate for range set 1: no ip addresses available in range set 10.1.0.5-10.1.0.6"]
        .assert_eq(&err.to_string());
    host_local::del(&cfg, "c1", "eth0").expect("del");
    assert!(host_local::status(&cfg).is_ok());
}

#[test]
fn gc_frees_what_is_not_valid() {
    let f = Fixture::new();
    let cfg = f.cfg(json!({"subnet": "10.1.0.0/24"}), &[]);
    for id in ["a", "b", "c"] {
        assert!(add(&cfg, id).starts_with('{'));
    }
    // A file written by an old plugin (container id only) and a stray file.
    std::fs::write(format!("{}/net1/10.1.0.100", f.data_dir), "old").expect("write");
    std::fs::write(format!("{}/net1/notes", f.data_dir), "x").expect("write");
    let valid = config::valid_attachments(&obj(json!({
        "cni.dev/valid-attachments": [{"containerID": "b", "ifname": "eth0"}, {"containerID": "old", "ifname": "eth1"}]
    })))
    .expect("attachments");
    let freed = host_local::gc(&cfg, &valid).expect("gc");
    assert_eq!(
        freed,
        vec![
            "10.1.0.2".parse::<IpAddr>().expect("ip"),
            "10.1.0.4".parse().expect("ip")
        ]
    );
    expect!["10.1.0.100=old 10.1.0.3=b/eth0 last_reserved_ip.0=10.1.0.4 lock= notes=x"]
        .assert_eq(&f.listing());
    assert!(
        config::valid_attachments(&obj(
            json!({"cni.dev/valid-attachments": [{"containerID": 1}]})
        ))
        .is_err()
    );
}
