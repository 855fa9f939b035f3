//! kubectl's typed clients send `application/vnd.kubernetes.protobuf` bodies (`create
//! deployment|configmap|secret|...`, `drain`'s DeleteOptions): the objects they create must
//! come back through `kubectl get -o json` exactly as if they had been sent as JSON.

use serde_json::Value;

use super::harness::{TestApiserver, require_kubectl};

const NODE: &str = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"worker-1","labels":{"kubernetes.io/hostname":"worker-1"}}}"#;

const POD_ON_NODE: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bound","namespace":"default"},
"spec":{"nodeName":"worker-1","containers":[{"name":"c","image":"busybox"}]}}"#;

fn get_json(api: &TestApiserver, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = api.ok(&all, None);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl get {args:?}: {e}: {out}"))
}

/// Runs kubectl at -v=8 and returns stderr (request headers are logged there).
fn verbose(api: &TestApiserver, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("-v=8");
    let output = api.kubectl(&all, None);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "kubectl {args:?} failed: {stderr}");
    stderr
}

#[test]
fn typed_creates_are_sent_as_protobuf_and_read_back_as_json() {
    if !require_kubectl("typed_creates_are_sent_as_protobuf_and_read_back_as_json") {
        return;
    }
    let api = TestApiserver::start();

    let log = verbose(
        &api,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
        ],
    );
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf: {log}"
    );
    let deployment = get_json(&api, &["deployment", "web"]);
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "busybox");
    assert_eq!(container["image"], "busybox");
    assert!(
        container.get("ports").is_none() && container.get("command").is_none(),
        "{container}"
    );
    assert_ne!(deployment["metadata"]["uid"], "");
    assert!(
        deployment["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| !t.starts_with("1970")),
        "{deployment}"
    );

    api.ok(
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
        ],
        None,
    );
    let configmap = get_json(&api, &["configmap", "settings"]);
    assert_eq!(configmap["data"]["color"], "blue");

    api.ok(
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=p@ss w0rd",
        ],
        None,
    );
    let secret = get_json(&api, &["secret", "creds"]);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "cEBzcyB3MHJk");
    assert_eq!(
        api.ok(
            &[
                "get",
                "secret",
                "creds",
                "-o",
                "go-template={{.data.password | base64decode}}"
            ],
            None
        ),
        "p@ss w0rd"
    );

    api.ok(&["create", "namespace", "team-a"], None);
    let namespace = get_json(&api, &["namespace", "team-a"]);
    assert_eq!(namespace["metadata"]["name"], "team-a");

    api.ok(
        &["create", "job", "once", "--image=busybox", "--", "true"],
        None,
    );
    let job = get_json(&api, &["job", "once"]);
    let job_container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(job_container["image"], "busybox");
    assert_eq!(job_container["command"], serde_json::json!(["true"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    api.ok(
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "team-a",
        ],
        None,
    );
    let role = get_json(&api, &["role", "pod-reader", "-n", "team-a"]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    api.ok(
        &[
            "create",
            "rolebinding",
            "read-pods",
            "--role=pod-reader",
            "--user=alice",
            "-n",
            "team-a",
        ],
        None,
    );
    let binding = get_json(&api, &["rolebinding", "read-pods", "-n", "team-a"]);
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], "pod-reader");
    assert_eq!(binding["subjects"][0]["name"], "alice");
    assert_eq!(binding["subjects"][0]["kind"], "User");

    api.ok(&["create", "serviceaccount", "robot", "-n", "team-a"], None);
    let account = get_json(&api, &["serviceaccount", "robot", "-n", "team-a"]);
    assert_eq!(account["metadata"]["namespace"], "team-a");

    api.ok(&["create", "priorityclass", "high", "--value=1000"], None);
    let high = get_json(&api, &["priorityclass", "high"]);
    assert_eq!(high["value"], 1000);
    // `value` is required in the Go type: an explicit 0 must survive the zero-dropping.
    api.ok(&["create", "priorityclass", "zero", "--value=0"], None);
    let zero = get_json(&api, &["priorityclass", "zero"]);
    assert_eq!(zero["value"], 0);

    for (kind, name) in [
        ("priorityclass", "high"),
        ("priorityclass", "zero"),
        ("namespace", "team-a"),
        ("deployment", "web"),
        ("job", "once"),
        ("configmap", "settings"),
        ("secret", "creds"),
    ] {
        api.ok(&["delete", kind, name, "--wait=false"], None);
    }
}

#[test]
fn cordon_and_drain_with_protobuf_delete_options() {
    if !require_kubectl("cordon_and_drain_with_protobuf_delete_options") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(&["create", "-f", "-"], Some(NODE));
    api.ok(&["create", "-f", "-"], Some(POD_ON_NODE));

    api.ok(&["cordon", "worker-1"], None);
    assert_eq!(
        get_json(&api, &["node", "worker-1"])["spec"]["unschedulable"],
        true
    );
    api.ok(&["uncordon", "worker-1"], None);
    assert!(
        get_json(&api, &["node", "worker-1"])["spec"]
            .get("unschedulable")
            .is_none_or(|v| v == false)
    );

    let log = verbose(
        &api,
        &[
            "drain",
            "worker-1",
            "--disable-eviction",
            "--force",
            "--grace-period=0",
            "--timeout=30s",
        ],
    );
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "drain did not send a protobuf DeleteOptions: {log}"
    );
    let gone = api.fails(&["get", "pod", "bound"], None);
    assert!(gone.contains("not found"), "{gone}");
    assert_eq!(
        get_json(&api, &["node", "worker-1"])["spec"]["unschedulable"],
        true
    );
    api.ok(&["delete", "node", "worker-1"], None);
}
