//! Tests of the runtime side without root: config dir loading, capability injection, the result
//! cache, and the chain protocol against fake plugins (shell scripts that record their
//! environment and stdin, then print a result or an error object).

use std::path::PathBuf;
use std::time::Duration;

use expect_test::expect;
use serde_json::{Value, json};

use super::chain::plugin_config;
use super::*;
use crate::spec::NetworkConfigList;

/// A scratch area: `bin/` for fake plugins, `log/` for what they saw, `cache/`, `netns` (a
/// plain file standing in for the netns path).
struct Lab {
    dir: tempfile::TempDir,
}

/// What a fake plugin does on ADD (DEL/CHECK/GC/STATUS always succeed, printing nothing).
enum Fake {
    /// Prints a result with one interface named after the plugin and `ip` on it.
    Ok(&'static str),
    /// Prints an error object with this code and exits 1.
    Fail(u32),
    /// Exits 2 printing only to stderr.
    Crash,
    /// Prints something that is not JSON.
    Garbage,
    /// Sleeps for a long time.
    Hang,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for d in ["bin", "log", "cache", "conf"] {
            std::fs::create_dir_all(lab.dir.path().join(d)).expect("mkdir");
        }
        std::fs::write(lab.netns(), "").expect("netns stand-in");
        lab
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn netns(&self) -> PathBuf {
        self.path("netns")
    }

    fn fake(&self, name: &str, add: Fake) {
        use std::os::unix::fs::PermissionsExt;
        let on_add = match add {
            Fake::Ok(ip) => format!(
                r#"printf '{{"cniVersion":"1.0.0","interfaces":[{{"name":"%s","sandbox":"%s"}}],"ips":[{{"address":"{ip}","interface":0}}]}}' "$CNI_IFNAME" "$CNI_NETNS""#
            ),
            Fake::Fail(code) => format!(
                r#"printf '{{"cniVersion":"1.0.0","code":{code},"msg":"{name} refused","details":"because"}}'; exit 1"#
            ),
            Fake::Crash => "echo 'segfault-ish' >&2; exit 2".to_string(),
            Fake::Garbage => "echo 'not json'".to_string(),
            Fake::Hang => "sleep 30".to_string(),
        };
        let script = format!(
            r#"#!/bin/sh
log="{log}"
input=$(cat)
echo "$CNI_COMMAND {name} $CNI_IFNAME" >> "$log/calls"
printf '%s' "$input" > "$log/{name}.$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "$log/{name}.$CNI_COMMAND.env"
if [ "$CNI_COMMAND" = ADD ]; then
{on_add}
fi
exit 0
"#,
            log = self.path("log").display()
        );
        let p = self.path("bin").join(name);
        std::fs::write(&p, script).expect("write fake");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn cni(&self) -> Cni {
        Cni::new(
            vec![self.path("missing-bin"), self.path("bin")],
            &self.path("cache"),
        )
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path("log/calls")).unwrap_or_default()
    }

    fn stdin(&self, plugin: &str, cmd: &str) -> Value {
        let p = self.path(&format!("log/{plugin}.{cmd}.stdin"));
        serde_json::from_slice(&std::fs::read(&p).expect("stdin recorded")).expect("stdin json")
    }

    fn env(&self, plugin: &str, cmd: &str) -> String {
        std::fs::read_to_string(self.path(&format!("log/{plugin}.{cmd}.env")))
            .expect("env recorded")
            .replace(&self.dir.path().display().to_string(), "$LAB")
    }

    fn att(&self, id: &str) -> Attachment {
        Attachment {
            container_id: id.to_string(),
            netns: self.netns(),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "web".into()),
            ],
            capability_args: serde_json::Map::new(),
        }
    }
}

fn list(version: &str, plugins: Value) -> NetworkConfigList {
    let v = json!({"cniVersion": version, "name": "testnet", "plugins": plugins});
    NetworkConfigList::from_list_bytes(&serde_json::to_vec(&v).expect("json")).expect("valid list")
}

#[test]
fn capabilities_are_injected_only_where_declared() {
    let l = list(
        "1.0.0",
        json!([
            {"type": "bridge", "runtimeConfig": {"stale": 1}},
            {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}, "snat": true},
            {"type": "tuning", "capabilities": {"mac": true}}
        ]),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    caps.insert("bandwidth".into(), json!({"ingressRate": 1}));
    let prev = json!({"cniVersion": "1.0.0"});
    let rendered: Vec<String> = l
        .plugins
        .iter()
        .map(|p| serde_json::to_string(&plugin_config(&l, p, Some(&prev), &caps)).expect("json"))
        .collect();
    expect![[r#"
        {"cniVersion":"1.0.0","name":"testnet","prevResult":{"cniVersion":"1.0.0"},"runtimeConfig":{"stale":1},"type":"bridge"}
        {"capabilities":{"bandwidth":false,"portMappings":true},"cniVersion":"1.0.0","name":"testnet","prevResult":{"cniVersion":"1.0.0"},"runtimeConfig":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},"snat":true,"type":"portmap"}
        {"capabilities":{"mac":true},"cniVersion":"1.0.0","name":"testnet","prevResult":{"cniVersion":"1.0.0"},"type":"tuning"}"#]]
    .assert_eq(&rendered.join("\n"));
}

#[test]
fn conf_dir_picks_the_first_valid_file_and_explains_rejections() {
    let lab = Lab::new();
    let conf = lab.path("conf");
    let dir = ConfDir::new(conf.clone());
    let shown = |r: Result<Loaded, LoadError>| match r {
        Ok(l) => format!(
            "ok {} {}",
            l.path.file_name().expect("name").to_string_lossy(),
            l.list.name
        ),
        Err(e) => format!(
            "err {}",
            e.to_string()
                .replace(&lab.dir.path().display().to_string(), "$LAB")
        ),
    };
    expect![[r#"err no network config found in $LAB/conf (no .conflist, .conf or .json file)"#]]
        .assert_eq(&shown(dir.current()));
    expect![[r#"err cni config dir $LAB/nope does not exist"#]]
        .assert_eq(&shown(ConfDir::new(lab.path("nope")).current()));

    std::fs::write(conf.join("README"), "ignored").expect("write");
    std::fs::write(conf.join("00-broken.conflist"), "{").expect("write");
    std::fs::write(
        conf.join("05-notype.conflist"),
        r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"bridge":"x"}]}"#,
    )
    .expect("write");
    std::fs::write(
        conf.join("07-old.conf"),
        r#"{"cniVersion":"0.1.0","name":"a","type":"bridge"}"#,
    )
    .expect("write");
    expect![[r#"err no valid network config in $LAB/conf: 00-broken.conflist: invalid JSON: EOF while parsing an object at line 1 column 1; 05-notype.conflist: plugin 0 has no type; 07-old.conf: unsupported cniVersion "0.1.0" (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)"#]]
        .assert_eq(&shown(dir.current()));

    std::fs::write(
        conf.join("10-good.conf"),
        r#"{"cniVersion":"1.0.0","name":"good","type":"bridge"}"#,
    )
    .expect("write");
    std::fs::write(
        conf.join("20-later.conflist"),
        r#"{"cniVersion":"1.0.0","name":"later","plugins":[{"type":"bridge"}]}"#,
    )
    .expect("write");
    expect![[r#"ok 10-good.conf good"#]].assert_eq(&shown(dir.current()));

    // An in-place edit with the same size is still noticed (mtime), and a removal too.
    std::fs::write(
        conf.join("10-good.conf"),
        r#"{"cniVersion":"1.0.0","name":"gooD","type":"bridge"}"#,
    )
    .expect("write");
    expect![[r#"ok 10-good.conf gooD"#]].assert_eq(&shown(dir.current()));
    std::fs::remove_file(conf.join("10-good.conf")).expect("rm");
    expect![[r#"ok 20-later.conflist later"#]].assert_eq(&shown(dir.current()));
}

#[test]
fn add_runs_the_chain_in_order_with_prev_result_env_and_capabilities() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    lab.fake("second", Fake::Ok("10.0.0.3/24"));
    let l = list(
        "1.0.0",
        json!([{"type": "first"}, {"type": "second", "capabilities": {"portMappings": true}}]),
    );
    let mut att = lab.att("c1");
    att.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]),
    );
    let result = lab.cni().add(&l, &att).expect("add");
    assert_eq!(result.ips[0].address.to_string(), "10.0.0.3/24");
    assert_eq!(lab.calls(), "ADD first eth0\nADD second eth0\n");
    expect![[r#"
        CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web
        CNI_COMMAND=ADD
        CNI_CONTAINERID=c1
        CNI_IFNAME=eth0
        CNI_NETNS=$LAB/netns
        CNI_PATH=$LAB/missing-bin:$LAB/bin
    "#]]
    .assert_eq(&lab.env("first", "ADD"));
    let first_in = lab.stdin("first", "ADD");
    assert_eq!(first_in.get("prevResult"), None);
    assert_eq!(first_in.get("runtimeConfig"), None);
    let second_in = lab.stdin("second", "ADD");
    assert_eq!(
        second_in["prevResult"]["ips"][0]["address"],
        json!("10.0.0.2/24")
    );
    assert_eq!(
        second_in["runtimeConfig"]["portMappings"][0]["hostPort"],
        json!(80)
    );
    assert_eq!(second_in["name"], json!("testnet"));

    // The cache holds the final result and the config used.
    let cached = lab
        .cni()
        .cache()
        .load("testnet", "c1", "eth0")
        .expect("read")
        .expect("cached");
    assert_eq!(cached.result["ips"][0]["address"], json!("10.0.0.3/24"));
    assert_eq!(cached.config, l.to_value());
    assert_eq!(cached.cni_args, "IgnoreUnknown=1;K8S_POD_NAME=web");
}

#[test]
fn del_uses_the_cached_config_in_reverse_order_and_is_idempotent() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    lab.fake("second", Fake::Ok("10.0.0.3/24"));
    let l = list("1.0.0", json!([{"type": "first"}, {"type": "second"}]));
    let att = lab.att("c1");
    lab.cni().add(&l, &att).expect("add");

    // The conf dir changed since: DEL still runs what was added, with the cached result.
    let changed = list("1.0.0", json!([{"type": "other"}]));
    lab.cni().del(&changed, &att).expect("del");
    assert_eq!(
        lab.calls(),
        "ADD first eth0\nADD second eth0\nDEL second eth0\nDEL first eth0\n"
    );
    assert_eq!(
        lab.stdin("first", "DEL")["prevResult"]["ips"][0]["address"],
        json!("10.0.0.3/24")
    );
    assert!(lab.cni().cached_attachments("c1").is_empty());

    // Second DEL: no cache, runs the current list without prevResult; the missing binary
    // `other` is skipped because nothing is known to be attached.
    lab.cni().del(&changed, &att).expect("del again");
    lab.cni().del(&l, &att).expect("del of the original list");
    assert_eq!(lab.stdin("first", "DEL").get("prevResult"), None);
}

#[test]
fn del_of_a_cached_attachment_with_a_missing_binary_fails_and_keeps_the_entry() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    let l = list("1.0.0", json!([{"type": "first"}]));
    let att = lab.att("c1");
    lab.cni().add(&l, &att).expect("add");
    std::fs::remove_file(lab.path("bin/first")).expect("rm");
    let err = lab.cni().del(&l, &att).expect_err("must fail");
    assert!(
        err.to_string()
            .starts_with("network testnet: plugin first DEL for container c1: binary not found in"),
        "{err}"
    );
    assert_eq!(lab.cni().cached_attachments("c1").len(), 1);
}

#[test]
fn a_failing_add_rolls_back_what_was_added() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    lab.fake("second", Fake::Ok("10.0.0.3/24"));
    lab.fake("bad", Fake::Fail(7));
    let l = list(
        "1.0.0",
        json!([{"type": "first"}, {"type": "second"}, {"type": "bad"}]),
    );
    let err = lab.cni().add(&l, &lab.att("c1")).expect_err("must fail");
    expect![[r#"network testnet: plugin bad ADD for container c1: bad refused (code 7): because"#]]
        .assert_eq(&err.to_string());
    assert_eq!(err.code(), Some(7));
    assert!(!err.is_transient());
    assert_eq!(
        lab.calls(),
        "ADD first eth0\nADD second eth0\nADD bad eth0\nDEL bad eth0\nDEL second eth0\nDEL first eth0\n"
    );
    assert_eq!(
        lab.stdin("first", "DEL")["prevResult"]["ips"][0]["address"],
        json!("10.0.0.3/24")
    );
    assert!(lab.cni().cached_attachments("c1").is_empty());
}

#[test]
fn a_missing_second_plugin_rolls_back_the_first_only() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    let l = list("1.0.0", json!([{"type": "first"}, {"type": "nonexistent"}]));
    let err = lab.cni().add(&l, &lab.att("c1")).expect_err("must fail");
    assert!(
        err.to_string()
            .contains("plugin nonexistent ADD for container c1: binary not found in"),
        "{err}"
    );
    assert_eq!(lab.calls(), "ADD first eth0\nDEL first eth0\n");
    assert!(lab.cni().cached_attachments("c1").is_empty());
}

#[test]
fn crashes_garbage_and_try_again_are_reported_with_context() {
    let lab = Lab::new();
    lab.fake("crash", Fake::Crash);
    lab.fake("garbage", Fake::Garbage);
    lab.fake("busy", Fake::Fail(11));
    let cni = lab.cni();
    let err = cni
        .add(&list("1.0.0", json!([{"type": "crash"}])), &lab.att("c1"))
        .expect_err("crash");
    expect![[r#"network testnet: plugin crash ADD for container c1: exited with exit status: 2 without an error object: segfault-ish"#]]
        .assert_eq(&err.to_string());
    let err = cni
        .add(&list("1.0.0", json!([{"type": "garbage"}])), &lab.att("c1"))
        .expect_err("garbage");
    expect![[r#"network testnet: plugin garbage ADD for container c1: bad result: invalid JSON: expected ident at line 1 column 2"#]]
        .assert_eq(&err.to_string());
    let err = cni
        .add(&list("1.0.0", json!([{"type": "busy"}])), &lab.att("c1"))
        .expect_err("busy");
    assert!(err.is_transient(), "{err}");
    // Each failure was rolled back (DEL of the failing plugin) and nothing is cached.
    assert!(cni.cache().all().is_empty());
}

#[test]
fn a_hanging_plugin_is_killed_after_the_timeout() {
    let lab = Lab::new();
    lab.fake("hang", Fake::Hang);
    let cni = lab.cni().with_timeout(Duration::from_millis(300));
    let start = std::time::Instant::now();
    let err = cni
        .add(&list("1.0.0", json!([{"type": "hang"}])), &lab.att("c1"))
        .expect_err("hang");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(err.is_transient());
    expect![[
        r#"network testnet: plugin hang ADD for container c1: killed after 300ms without finishing"#
    ]]
    .assert_eq(&err.to_string());
}

#[test]
fn bad_attachments_are_refused_before_any_plugin_runs() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    let l = list("1.0.0", json!([{"type": "first"}]));
    let mut att = lab.att("c1");
    att.netns = lab.path("no-such-netns");
    let err = lab.cni().add(&l, &att).expect_err("netns");
    assert!(
        err.to_string().ends_with("no-such-netns does not exist"),
        "{err}"
    );
    let err = lab.cni().add(&l, &lab.att("../x")).expect_err("id");
    expect![[r#"container ../x: invalid container id "../x""#]].assert_eq(&err.to_string());
    assert_eq!(lab.calls(), "");
}

#[test]
fn old_versions_get_no_prev_result_on_del_and_skip_check() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    let l = list("0.3.1", json!([{"type": "first"}]));
    let att = lab.att("c1");
    lab.cni().add(&l, &att).expect("add");
    lab.cni().check(&l, &att).expect("check skipped");
    lab.cni().del(&l, &att).expect("del");
    assert_eq!(lab.calls(), "ADD first eth0\nDEL first eth0\n");
    assert_eq!(lab.stdin("first", "DEL").get("prevResult"), None);
}

#[test]
fn check_uses_the_cached_result_and_needs_one() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    let l = list("1.0.0", json!([{"type": "first"}]));
    let att = lab.att("c1");
    let err = lab.cni().check(&l, &att).expect_err("no cache");
    expect![[r#"network testnet: CHECK for container c1: no cached result (no ADD was done)"#]]
        .assert_eq(&err.to_string());
    lab.cni().add(&l, &att).expect("add");
    lab.cni().check(&l, &att).expect("check");
    assert_eq!(
        lab.stdin("first", "CHECK")["prevResult"]["ips"][0]["address"],
        json!("10.0.0.2/24")
    );
    let mut disabled = l.clone();
    disabled.disable_check = true;
    std::fs::remove_file(lab.path("log/calls")).expect("rm");
    lab.cni().check(&disabled, &att).expect("disabled");
    assert_eq!(lab.calls(), "");
}

#[test]
fn gc_deletes_stale_attachments_and_passes_valid_ones() {
    let lab = Lab::new();
    lab.fake("first", Fake::Ok("10.0.0.2/24"));
    let l = list("1.1.0", json!([{"type": "first"}]));
    lab.cni().add(&l, &lab.att("keep")).expect("add");
    lab.cni().add(&l, &lab.att("stale")).expect("add");
    lab.cni()
        .gc(&l, &[("keep".to_string(), "eth0".to_string())])
        .expect("gc");
    assert_eq!(
        lab.calls(),
        "ADD first eth0\nADD first eth0\nDEL first eth0\nGC first \n"
    );
    let gc_in = lab.stdin("first", "GC");
    assert_eq!(
        gc_in["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    let left: Vec<String> = lab
        .cni()
        .cache()
        .all()
        .into_iter()
        .map(|e| e.container_id)
        .collect();
    assert_eq!(left, ["keep"]);
    // GC and STATUS run without container variables.
    expect![[r#"
        CNI_COMMAND=GC
        CNI_PATH=$LAB/missing-bin:$LAB/bin
    "#]]
    .assert_eq(&lab.env("first", "GC"));
    lab.cni().status(&l).expect("status");
    assert!(lab.calls().ends_with("STATUS first \n"));
    // STATUS and GC are 1.1.0 only.
    std::fs::remove_file(lab.path("log/calls")).expect("rm");
    let old = list("1.0.0", json!([{"type": "first"}]));
    lab.cni().status(&old).expect("status");
    lab.cni()
        .gc(&old, &[])
        .expect("gc of 1.0.0 only deletes stale attachments");
    assert_eq!(lab.calls(), "DEL first eth0\n");
    assert!(lab.cni().cache().all().is_empty());
}

#[test]
fn cache_round_trip_and_corruption() {
    let lab = Lab::new();
    let cache = ResultCache::new(&lab.path("cache"));
    assert_eq!(cache.load("n", "c", "eth0").expect("read"), None);
    let entry = CacheEntry {
        kind: cache::KIND.into(),
        container_id: "c".into(),
        if_name: "eth0".into(),
        network_name: "n".into(),
        netns: "/run/netns/x".into(),
        cni_args: "A=1".into(),
        capability_args: serde_json::Map::new(),
        config: json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x"}]}),
        result: json!({"cniVersion": "1.0.0"}),
    };
    let path = cache.save(&entry).expect("save");
    assert_eq!(path, lab.path("cache/results/n-c-eth0"));
    assert_eq!(
        cache.load("n", "c", "eth0").expect("read"),
        Some(entry.clone())
    );
    assert_eq!(cache.all(), vec![entry]);
    // No temp files are left behind.
    assert_eq!(
        std::fs::read_dir(lab.path("cache/results"))
            .expect("ls")
            .count(),
        1
    );
    std::fs::write(&path, "{").expect("corrupt");
    assert!(cache.load("n", "c", "eth0").is_err());
    assert!(cache.all().is_empty());
    cache.remove("n", "c", "eth0").expect("rm");
    cache.remove("n", "c", "eth0").expect("rm twice");
}
