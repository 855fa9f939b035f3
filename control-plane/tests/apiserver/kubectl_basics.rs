//! kubectl against keel-apiserver: apply/get/label/annotate/delete, `get -w`, bad input that
//! must be refused without writing anything, and objects that survive a restart.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::{Backend, TestApiserver, require_backend};

const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  color: blue\n";

fn crud_round_trip(backend: Backend) {
    if !require_backend("crud_round_trip", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let applied = api.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    assert!(applied.contains("configmap/settings created"), "{applied}");
    assert_eq!(
        api.ok(
            &[
                "get",
                "configmap",
                "settings",
                "-o",
                "jsonpath={.data.color}"
            ],
            None
        ),
        "blue"
    );
    api.ok(&["label", "configmap", "settings", "tier=web"], None);
    api.ok(&["annotate", "configmap", "settings", "note=hello"], None);
    let yaml = api.ok(&["get", "cm", "settings", "-o", "yaml"], None);
    assert!(
        yaml.contains("tier: web") && yaml.contains("note: hello"),
        "{yaml}"
    );
    let table = api.ok(&["get", "configmaps"], None);
    assert!(
        table.lines().next().is_some_and(|h| h.starts_with("NAME")),
        "{table}"
    );
    assert!(table.contains("settings"), "{table}");
    let selected = api.ok(&["get", "configmaps", "-l", "tier=web", "-o", "name"], None);
    assert_eq!(selected.trim(), "configmap/settings");
    let none = api.ok(
        &["get", "configmaps", "-l", "tier!=web", "-o", "name"],
        None,
    );
    assert!(!none.contains("settings"), "{none}");
    api.ok(&["delete", "configmap", "settings"], None);
    let gone = api.fails(&["get", "configmap", "settings"], None);
    assert!(gone.contains("configmaps \"settings\" not found"), "{gone}");
}

fn watch_sees_changes(backend: Backend) {
    if !require_backend("watch_sees_changes", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let mut watcher = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&api.kubeconfig)
        .args([
            "get",
            "configmaps",
            "-w",
            "-o",
            "name",
            "--request-timeout=30s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl get -w");
    let stdout = watcher.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut created = false;
    while !seen
        .iter()
        .any(|l: &String| l.contains("configmap/watched"))
    {
        assert!(
            Instant::now() < deadline,
            "kubectl get -w never printed the new configmap; saw {seen:?}"
        );
        if !created {
            // Give the watch a moment to open, then create; the watch must see it either way.
            std::thread::sleep(Duration::from_millis(300));
            api.ok(
                &[
                    "create",
                    "--raw",
                    "/api/v1/namespaces/default/configmaps",
                    "-f",
                    "-",
                ],
                Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"watched"}}"#),
            );
            created = true;
        }
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
}

fn bad_input_is_refused_and_writes_nothing(backend: Backend) {
    if !require_backend("bad_input_is_refused_and_writes_nothing", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let before = api.ok(
        &["get", "--raw", "/api/v1/namespaces/default/configmaps"],
        None,
    );
    let malformed = api.fails(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        Some("{nope"),
    );
    assert!(
        malformed.contains("error decoding JSON body"),
        "{malformed}"
    );
    let wrong_kind = api.fails(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#),
    );
    assert!(
        wrong_kind.contains("does not match the expected kind"),
        "{wrong_kind}"
    );
    let bad_name = api.fails(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#),
    );
    assert!(
        bad_name.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{bad_name}"
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  containers:\n  - name: app\n";
    let invalid = api.fails(&["apply", "-f", "-"], Some(pod));
    assert!(
        invalid.contains("spec.containers[0].image: Required value"),
        "{invalid}"
    );
    let unknown = api.fails(&["get", "frobnicators"], None);
    assert!(
        unknown.contains("doesn't have a resource type"),
        "{unknown}"
    );
    let huge = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"huge"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let too_large = api.fails(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        Some(&huge),
    );
    assert!(
        too_large.contains("larger than the limit") || too_large.contains("413"),
        "{too_large}"
    );
    api.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    let stale = CONFIGMAP.replace(
        "  namespace: default\n",
        "  namespace: default\n  resourceVersion: \"1\"\n",
    );
    let conflict = api.fails(&["replace", "-f", "-"], Some(&stale));
    assert!(
        conflict.contains("the object has been modified"),
        "{conflict}"
    );
    api.ok(&["delete", "configmap", "settings"], None);
    let after = api.ok(
        &["get", "--raw", "/api/v1/namespaces/default/configmaps"],
        None,
    );
    let items = |list: &str| {
        serde_json::from_str::<serde_json::Value>(list)
            .map(|v| v["items"].clone())
            .ok()
    };
    assert_eq!(
        items(&before),
        items(&after),
        "refused writes must leave nothing behind"
    );
    let pods = api.ok(&["get", "pods", "-o", "name"], None);
    assert!(pods.trim().is_empty(), "{pods}");
}

fn objects_survive_a_restart(backend: Backend) {
    if !require_backend("objects_survive_a_restart", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    api.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    let api = api.restart();
    assert_eq!(
        api.ok(
            &[
                "get",
                "configmap",
                "settings",
                "-o",
                "jsonpath={.data.color}"
            ],
            None
        ),
        "blue"
    );
}

/// A watch of one resource carries that resource's events only, though every change of the
/// store passes through the same cache.
fn watch_carries_only_its_resource(backend: Backend) {
    if !require_backend("watch_carries_only_its_resource", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let list = api.ok(&["get", "--raw", "/api/v1/namespaces"], None);
    let list: serde_json::Value = serde_json::from_str(&list).expect("a namespace list");
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("/api/v1/namespaces?watch=true&resourceVersion={revision}&timeoutSeconds=2");
    let watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&api.kubeconfig)
        .args(["get", "--raw", &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the watch");
    // The watch is open once kubectl has connected; the writes below come after it either way
    // (it starts from `revision`).
    api.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    api.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: extra\n"),
    );
    let output = watch.wait_with_output().expect("the watch output");
    let events = String::from_utf8_lossy(&output.stdout);
    let kinds: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or(""),
                e["object"]["kind"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(kinds, ["ADDED Namespace"], "{events}");
}

crate::both_backends!(watch_carries_only_its_resource);
crate::both_backends!(crud_round_trip);
crate::both_backends!(watch_sees_changes);
crate::both_backends!(bad_input_is_refused_and_writes_nothing);
crate::both_backends!(objects_survive_a_restart);
