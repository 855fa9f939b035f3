//! Our plugin binaries side by side with the reference plugins in /usr/lib/cni: the same config
//! through both must give the same result, the same store layout, the same error codes.
//!
//! host-local needs no root (each run gets its own temp `dataDir`); loopback does (a netns per
//! plugin), behind `keel_testkit::require_root`. Without the reference plugins a comparison
//! test skips, except under CI where it fails. Nothing here touches the host's own namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const OURS_HOST_LOCAL: &str = env!("CARGO_BIN_EXE_host-local");
const OURS_LOOPBACK: &str = env!("CARGO_BIN_EXE_loopback");
const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The reference plugin `name`, or `None` (after saying why) when it is not installed.
fn reference(test: &str, name: &str) -> Option<PathBuf> {
    let path = Path::new(REFERENCE_DIR).join(name);
    if path.is_file() {
        return Some(path);
    }
    if keel_testkit::in_ci() {
        panic!(
            "{test}: reference plugin {} missing, and CI is set",
            path.display()
        );
    }
    eprintln!(
        "{test}: skipped, reference plugin {} missing",
        path.display()
    );
    None
}

/// One plugin run: exit success, stdout parsed (Null when empty or not JSON).
#[derive(Debug)]
struct Outcome {
    ok: bool,
    out: Value,
}

impl Outcome {
    fn code(&self) -> Option<u64> {
        self.out.get("code").and_then(Value::as_u64)
    }

    /// `ok`, or the error code.
    fn summary(&self) -> String {
        match (self.ok, self.code()) {
            (true, _) => "ok".into(),
            (false, Some(c)) => c.to_string(),
            (false, None) => format!("fail({})", self.out),
        }
    }
}

/// The environment of an ADD for `container`; `overrides` set (Some) or remove (None) variables.
fn env_for(command: &str, container: &str) -> Vec<(String, Option<String>)> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_NETNS", "/var/run/netns/keel-test-unused"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", REFERENCE_DIR),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    .collect()
}

fn set(env: &mut Vec<(String, Option<String>)>, key: &str, value: Option<&str>) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.map(str::to_string)));
}

fn exec(binary: &Path, env: &[(String, Option<String>)], stdin: &str) -> Outcome {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Outcome {
        ok: out.status.success(),
        out: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    }
}

/// The reference prints an empty `"dns": {}`; ours leaves empty fields out, as the spec allows.
fn normalize(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut()
        && obj
            .get("dns")
            .is_some_and(|d| d.as_object().is_some_and(|d| d.is_empty()))
    {
        obj.remove("dns");
    }
    v
}

/// A store directory as file name → content.
fn layout(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).expect("read"))
        })
        .collect()
}

fn host_local_config(version: &str, data_dir: &Path, resolv: &Path) -> String {
    json!({
        "cniVersion": version,
        "name": "keelnet",
        "type": "bridge",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "resolvConf": resolv,
            "ranges": [
                [{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10", "rangeEnd": "10.77.0.20"},
                 {"subnet": "10.78.0.0/29", "gateway": "10.78.0.6"}],
                [{"subnet": "fd77::/120"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.77.0.1"}]
        }
    })
    .to_string()
}

#[test]
fn host_local_matches_reference() {
    let Some(reference) = reference("host_local_matches_reference", "host-local") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.0.0.10\nsearch svc.local local\noptions ndots:5\n",
    )
    .expect("resolv.conf");
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let dirs = [
            ("ours", OURS_HOST_LOCAL.as_ref()),
            ("reference", reference.as_path()),
        ]
        .map(|(who, bin): (&str, &Path)| (bin, tmp.path().join(format!("{who}-{version}"))));
        let run = |bin: &Path, data_dir: &Path, command: &str, container: &str, args: &str| {
            let mut env = env_for(command, container);
            if !args.is_empty() {
                set(&mut env, "CNI_ARGS", Some(args));
            }
            let mut config: Value =
                serde_json::from_str(&host_local_config(version, data_dir, &resolv)).expect("json");
            if container == "req" {
                // The `ips` capability (the reference of 1.1.1 takes one address per `IP=`).
                config["runtimeConfig"] = json!({"ips": ["fd77::99/120"]});
            }
            exec(bin, &env, &config.to_string())
        };
        let both = |command: &str, container: &str, args: &str| {
            let [a, b] = &dirs;
            let ours = run(a.0, &a.1, command, container, args);
            let theirs = run(b.0, &b.1, command, container, args);
            if ours.ok || theirs.ok {
                assert_eq!(
                    (ours.ok, normalize(ours.out.clone())),
                    (theirs.ok, normalize(theirs.out.clone())),
                    "{version} {command} {container} {args}: ours vs reference"
                );
            } else {
                // Messages are worded differently; the codes must agree.
                assert_eq!(
                    ours.code(),
                    theirs.code(),
                    "{version} {command} {container}: {} vs {}",
                    ours.out,
                    theirs.out
                );
            }
            ours
        };
        // Requested addresses (which also move round robin on), then round robin through both
        // ranges of set 0 (11 + 5 addresses, the gateways left out) until it is full.
        let r = both("ADD", "req", "IgnoreUnknown=1;IP=10.77.0.15");
        assert!(r.ok, "{version} ADD with IP=: {}", r.out);
        for i in 0..15 {
            let r = both("ADD", &format!("c{i}"), "");
            assert!(r.ok, "{version} ADD c{i}: {}", r.out);
        }
        assert!(!both("ADD", "c15", "").ok, "set 0 is exhausted");
        assert!(!both("ADD", "c0", "").ok, "duplicate ADD");
        if version != "0.3.1" {
            assert!(both("CHECK", "c3", "").ok);
            assert!(!both("CHECK", "nobody", "").ok);
        }
        let stores = dirs.each_ref().map(|(_, d)| layout(&d.join("keelnet")));
        assert_eq!(stores[0], stores[1], "{version}: store layouts differ");
        assert!(both("DEL", "c3", "").ok);
        assert!(both("DEL", "c3", "").ok, "DEL is idempotent");
        assert!(both("ADD", "c3again", "").ok);
        let stores = dirs.each_ref().map(|(_, d)| layout(&d.join("keelnet")));
        assert_eq!(
            stores[0], stores[1],
            "{version}: store layouts differ after DEL"
        );
        println!("{version}: {} store entries identical", stores[0].len());
    }
}

/// One error-code case: a config (`DATADIR` replaced), environment changes, ADDs run first.
struct Case {
    name: &'static str,
    config: String,
    env: Vec<(&'static str, Option<&'static str>)>,
    setup: Vec<&'static str>,
}

fn case(name: &'static str, ipam: Value) -> Case {
    let mut config = json!({"cniVersion": "1.0.0", "name": "keelnet", "type": "bridge"});
    if !ipam.is_null() {
        config["ipam"] = ipam;
    }
    Case {
        name,
        config: config.to_string(),
        env: Vec::new(),
        setup: Vec::new(),
    }
}

/// Cases where ours and the reference differ on purpose or outside this plugin.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "CNI_COMMAND unset",
    "the reference skeleton prints its about text and exits 0; keel_cni::plugin::run reports \
     error 4 (the plugin skeleton's choice, not host-local's)",
)];

#[test]
fn host_local_error_codes_match_reference() {
    let Some(reference) = reference("host_local_error_codes_match_reference", "host-local") else {
        return;
    };
    let ok_ipam = json!({"type": "host-local", "dataDir": "DATADIR", "subnet": "10.77.0.0/24"});
    let with_version = |v: &str| {
        let mut c = case("", ok_ipam.clone());
        c.config = c.config.replace("\"1.0.0\"", &format!("{v:?}"));
        c
    };
    let cases = vec![
        Case {
            name: "malformed JSON",
            config: "{\"cniVersion\": \"1.0.0\",".into(),
            ..case("", Value::Null)
        },
        case("no ipam section", Value::Null),
        case(
            "no ipam type",
            json!({"dataDir": "DATADIR", "subnet": "10.77.0.0/24"}),
        ),
        case(
            "no ranges",
            json!({"type": "host-local", "dataDir": "DATADIR"}),
        ),
        case(
            "invalid subnet",
            json!({"type": "host-local", "dataDir": "DATADIR", "subnet": "10.77.0.0/33"}),
        ),
        case(
            "subnet not an address",
            json!({"type": "host-local", "dataDir": "DATADIR", "ranges": [[{"subnet": "banana"}]]}),
        ),
        case(
            "subnet with host bits",
            json!({"type": "host-local", "dataDir": "DATADIR", "subnet": "10.77.0.1/24"}),
        ),
        case(
            "subnet too small (/31)",
            json!({"type": "host-local", "dataDir": "DATADIR", "subnet": "10.77.0.0/31"}),
        ),
        case(
            "rangeStart outside subnet",
            json!({"type": "host-local", "dataDir": "DATADIR", "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.78.0.5"}]]}),
        ),
        case(
            "rangeEnd outside subnet",
            json!({"type": "host-local", "dataDir": "DATADIR", "ranges": [[{"subnet": "10.77.0.0/24", "rangeEnd": "10.78.0.5"}]]}),
        ),
        case(
            "overlapping ranges",
            json!({"type": "host-local", "dataDir": "DATADIR", "ranges": [[{"subnet": "10.77.0.0/24"}, {"subnet": "10.77.0.0/25"}]]}),
        ),
        case(
            "overlapping range sets",
            json!({"type": "host-local", "dataDir": "DATADIR", "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "10.77.0.0/25"}]]}),
        ),
        case(
            "mixed families in a set",
            json!({"type": "host-local", "dataDir": "DATADIR", "ranges": [[{"subnet": "10.77.0.0/24"}, {"subnet": "fd77::/64"}]]}),
        ),
        case(
            "ranges not a list",
            json!({"type": "host-local", "dataDir": "DATADIR", "ranges": "10.77.0.0/24"}),
        ),
        Case {
            name: "unknown cniVersion 9.9.9",
            ..with_version("9.9.9")
        },
        Case {
            name: "cniVersion not a version",
            ..with_version("abc")
        },
        Case {
            name: "CNI_COMMAND unset",
            env: vec![("CNI_COMMAND", None)],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "CNI_COMMAND unknown",
            env: vec![("CNI_COMMAND", Some("FROB"))],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "CNI_CONTAINERID unset",
            env: vec![("CNI_CONTAINERID", None)],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "CNI_IFNAME unset",
            env: vec![("CNI_IFNAME", None)],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "exhausted range",
            setup: vec!["first", "second"],
            ..case(
                "",
                json!({"type": "host-local", "dataDir": "DATADIR", "ranges": [[{"subnet": "10.77.0.0/29", "rangeStart": "10.77.0.5"}]]}),
            )
        },
        Case {
            name: "duplicate ADD",
            setup: vec!["c"],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "requested IP outside ranges",
            env: vec![("CNI_ARGS", Some("IgnoreUnknown=1;IP=10.99.0.5"))],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "requested IP taken",
            env: vec![("CNI_ARGS", Some("IgnoreUnknown=1;IP=10.77.0.2"))],
            setup: vec!["first"],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "requested IP is the gateway",
            env: vec![("CNI_ARGS", Some("IgnoreUnknown=1;IP=10.77.0.1"))],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "CNI_ARGS unknown key",
            env: vec![("CNI_ARGS", Some("K8S_POD_NAME=p"))],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "CNI_ARGS with IgnoreUnknown",
            env: vec![("CNI_ARGS", Some("IgnoreUnknown=1;K8S_POD_NAME=p"))],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "CHECK without allocation",
            env: vec![("CNI_COMMAND", Some("CHECK"))],
            ..case("", ok_ipam.clone())
        },
        Case {
            name: "DEL without allocation",
            env: vec![("CNI_COMMAND", Some("DEL"))],
            ..case("", ok_ipam.clone())
        },
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut table = vec![format!("{:<32} {:>9} {:>9}", "case", "ours", "reference")];
    let mut mismatches = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut results = Vec::new();
        for (who, bin) in [
            ("ours", Path::new(OURS_HOST_LOCAL)),
            ("ref", reference.as_path()),
        ] {
            let data_dir = tmp.path().join(format!("{who}-{i}"));
            let config = c.config.replace("DATADIR", &data_dir.to_string_lossy());
            for id in &c.setup {
                let r = exec(bin, &env_for("ADD", id), &config);
                assert!(r.ok, "{}: setup ADD {id} by {who}: {}", c.name, r.out);
            }
            let mut env = env_for("ADD", "c");
            for (k, v) in &c.env {
                set(&mut env, k, *v);
            }
            results.push(exec(bin, &env, &config));
        }
        let (ours, theirs) = (results[0].summary(), results[1].summary());
        let known = KNOWN_DIFFERENCES.iter().find(|(name, _)| *name == c.name);
        table.push(format!(
            "{:<32} {ours:>9} {theirs:>9}{}",
            c.name,
            if known.is_some() {
                "  (known, see below)"
            } else {
                ""
            }
        ));
        if ours != theirs && known.is_none() {
            mismatches.push(format!(
                "{}: ours {} / reference {}",
                c.name, results[0].out, results[1].out
            ));
        }
    }
    for (name, why) in KNOWN_DIFFERENCES {
        table.push(format!("known difference, {name}: {why}"));
    }
    println!("{}", table.join("\n"));
    assert!(
        mismatches.is_empty(),
        "codes differ:\n{}",
        mismatches.join("\n")
    );
}

/// Runs `n` ADDs at once (one process each, `bins` taking turns) on one store, then `n` DELs.
fn concurrent_adds(bins: &[&Path], n: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = json!({
        "cniVersion": "1.0.0", "name": "keelnet", "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": tmp.path(), "subnet": "10.80.0.0/24"}
    })
    .to_string();
    // DEL runs with the next binary in `bins`: each plugin frees what the other allocated.
    let run_all = |command: &'static str, shift: usize| -> Vec<Outcome> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let config = &config;
                    let bin = bins[(i + shift) % bins.len()];
                    s.spawn(move || exec(bin, &env_for(command, &format!("ctr-{i}")), config))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        })
    };
    let adds = run_all("ADD", 0);
    let ips: BTreeSet<String> = adds
        .iter()
        .map(|r| {
            assert!(r.ok, "ADD failed: {}", r.out);
            r.out["ips"][0]["address"]
                .as_str()
                .expect("address")
                .to_string()
        })
        .collect();
    assert_eq!(ips.len(), n, "{n} ADDs must get {n} distinct addresses");
    let store = tmp.path().join("keelnet");
    let allocated = |store: &Path| {
        layout(store)
            .into_keys()
            .filter(|k| k.parse::<std::net::IpAddr>().is_ok())
            .count()
    };
    assert_eq!(allocated(&store), n);
    for r in run_all("DEL", 1) {
        assert!(r.ok, "DEL failed: {}", r.out);
    }
    assert_eq!(allocated(&store), 0, "DELs left allocations behind");
}

#[test]
fn host_local_200_concurrent_adds() {
    concurrent_adds(&[Path::new(OURS_HOST_LOCAL)], 200);
}

/// Ours and the reference share a store through the same `lock` file.
#[test]
fn host_local_concurrent_adds_mixed_with_reference() {
    let Some(reference) = reference(
        "host_local_concurrent_adds_mixed_with_reference",
        "host-local",
    ) else {
        return;
    };
    concurrent_adds(&[Path::new(OURS_HOST_LOCAL), &reference], 200);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// ADD+DEL wall time per plugin, 100 rounds each, interleaved; prints the medians. A
/// measurement, not a check: run it with `cargo test -p keel-cni --test plugins -- --ignored`.
#[test]
#[ignore = "benchmark"]
fn host_local_add_del_timing() {
    let Some(reference) = reference("host_local_add_del_timing", "host-local") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for i in 0..100 {
        for (who, bin) in [
            ("ours", Path::new(OURS_HOST_LOCAL)),
            ("reference", reference.as_path()),
        ] {
            let config = json!({
                "cniVersion": "1.0.0", "name": "keelnet", "type": "bridge",
                "ipam": {"type": "host-local", "dataDir": tmp.path().join(who), "subnet": "10.81.0.0/16"}
            })
            .to_string();
            let id = format!("ctr-{i}");
            let start = Instant::now();
            assert!(exec(bin, &env_for("ADD", &id), &config).ok);
            assert!(exec(bin, &env_for("DEL", &id), &config).ok);
            times.entry(who).or_default().push(start.elapsed());
        }
    }
    for (who, t) in times {
        println!(
            "host-local ADD+DEL median over 100 ({who}): {:?}",
            median(t)
        );
    }
}

/// The loopback result with the netns path and the pre-1.0 `version` of each IP taken out: the
/// reference's loopback leaves `version` out even for 0.3.x, which that format requires.
fn loopback_normalized(mut v: Value) -> Value {
    v = normalize(v);
    if let Some(ifaces) = v.get_mut("interfaces").and_then(Value::as_array_mut) {
        for i in ifaces {
            i["sandbox"] = "NETNS".into();
        }
    }
    if let Some(ips) = v.get_mut("ips").and_then(Value::as_array_mut) {
        for ip in ips {
            if let Some(o) = ip.as_object_mut() {
                o.remove("version");
            }
        }
    }
    v
}

#[test]
fn loopback_matches_reference() {
    if !keel_testkit::require_root("loopback_matches_reference") {
        return;
    }
    let Some(reference) = reference("loopback_matches_reference", "loopback") else {
        return;
    };
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let config = json!({"cniVersion": version, "name": "lo", "type": "loopback"}).to_string();
        let mut outs = Vec::new();
        for bin in [Path::new(OURS_LOOPBACK), reference.as_path()] {
            let ns = keel_testkit::Netns::new("lo");
            keel_testkit::run("ip", &["-n", ns.name(), "link", "set", "lo", "down"]);
            let flags = || {
                let out = ns.exec(&["cat", "/sys/class/net/lo/flags"]);
                let text = String::from_utf8_lossy(&out.stdout);
                u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).expect("flags")
            };
            assert_eq!(flags() & 1, 0, "lo starts down");
            let netns = ns.path().to_string_lossy().into_owned();
            let env = |command: &str| {
                let mut env = env_for(command, "ctr");
                set(&mut env, "CNI_NETNS", Some(&netns));
                set(&mut env, "CNI_IFNAME", Some("lo"));
                env
            };
            let add = exec(bin, &env("ADD"), &config);
            assert!(add.ok, "{} ADD: {}", bin.display(), add.out);
            assert_eq!(add.out["interfaces"][0]["sandbox"], netns.as_str());
            assert_eq!(flags() & 1, 1, "{}: lo is UP after ADD", bin.display());
            if version != "0.3.1" {
                assert!(exec(bin, &env("CHECK"), &config).ok);
            }
            assert!(exec(bin, &env("DEL"), &config).ok);
            assert_eq!(flags() & 1, 0, "{}: lo is down after DEL", bin.display());
            let check = exec(bin, &env("CHECK"), &config);
            let del_again = exec(bin, &env("DEL"), &config);
            let mut gone = env("DEL");
            set(
                &mut gone,
                "CNI_NETNS",
                Some("/run/netns/keel-test-no-such-netns"),
            );
            let del_gone = exec(bin, &gone, &config);
            outs.push((
                loopback_normalized(add.out).to_string(),
                if version == "0.3.1" {
                    "-".into()
                } else {
                    check.summary()
                },
                del_again.summary(),
                del_gone.summary(),
            ));
        }
        println!(
            "loopback {version} (result, CHECK after DEL, DEL again, DEL without netns):\n  ours      {:?}\n  reference {:?}",
            outs[0], outs[1]
        );
        assert_eq!(outs[0], outs[1], "loopback {version}: ours vs reference");
    }
}

/// GC and STATUS (CNI 1.1; the reference of Debian 12 predates them, so ours alone).
#[test]
fn host_local_gc_and_status() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = |extra: Value| {
        let mut c = json!({
            "cniVersion": "1.1.0", "name": "keelnet", "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": tmp.path(), "subnet": "10.82.0.0/29"}
        });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        c.to_string()
    };
    let bin = Path::new(OURS_HOST_LOCAL);
    let status = || exec(bin, &env_for("STATUS", ""), &config(Value::Null)).summary();
    assert_eq!(status(), "ok");
    for i in 0..5 {
        assert!(exec(bin, &env_for("ADD", &format!("c{i}")), &config(Value::Null)).ok);
    }
    // 10.82.0.2-6: full.
    assert_eq!(
        status(),
        "50",
        "STATUS of an exhausted range is the spec's 50"
    );
    let gc = config(json!({"cni.dev/valid-attachments": [
        {"containerID": "c1", "ifname": "eth0"},
        {"containerID": "c3", "ifname": "eth1"}
    ]}));
    let r = exec(bin, &env_for("GC", ""), &gc);
    assert!(r.ok, "GC: {}", r.out);
    let left: Vec<String> = layout(&tmp.path().join("keelnet"))
        .into_iter()
        .filter(|(k, _)| k.parse::<std::net::IpAddr>().is_ok())
        .map(|(k, v)| format!("{k}={}", v.replace("\r\n", "/")))
        .collect();
    assert_eq!(
        left,
        ["10.82.0.3=c1/eth0"],
        "GC keeps only valid attachments"
    );
    assert_eq!(status(), "ok");
}
