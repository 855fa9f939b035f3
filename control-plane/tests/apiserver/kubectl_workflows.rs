//! The kubectl workflows a cluster user runs every day, against the real server on both
//! backends: output formats (table, wide, json, jsonpath), `describe`, `edit` (with a scripted
//! editor), `apply --server-side` with its conflicts, `explain`, `api-resources` and graceful
//! pod deletion.

use std::path::Path;

use serde_json::Value;

use super::harness::{Backend, TestApiserver, require_backend};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels:
    app: web
spec:
  containers:
  - name: main
    image: registry.example/web:1.0
    ports:
    - containerPort: 8080
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels:
      app: shop
  template:
    metadata:
      labels:
        app: shop
    spec:
      containers:
      - name: main
        image: registry.example/shop:1.0
";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("kubectl printed no JSON ({e}): {text}"))
}

fn output_formats_and_describe(backend: Backend) {
    if !require_backend("output_formats_and_describe", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    api.ok(&["apply", "-f", "-"], Some(POD));

    let table = api.ok(&["get", "pods"], None);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("web") && table.contains("0/1") && table.contains("Pending"),
        "{table}"
    );

    let wide = api.ok(&["get", "pods", "-o", "wide"], None);
    assert!(wide.contains("NODE") && wide.contains("IP"), "{wide}");

    let pod = json(&api.ok(&["get", "pod", "web", "-o", "json"], None));
    assert_eq!(pod["spec"]["restartPolicy"], "Always", "defaulted: {pod}");
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert!(
        pod["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );

    let ports = api.ok(
        &[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.spec.containers[0].ports[0].containerPort}",
        ],
        None,
    );
    assert_eq!(ports, "8080");

    let described = api.ok(&["describe", "pod", "web"], None);
    for expected in [
        "Name:",
        "web",
        "Namespace:",
        "default",
        "app=web",
        "registry.example/web:1.0",
        "8080/TCP",
        "Pending",
    ] {
        assert!(
            described.contains(expected),
            "describe lacks {expected:?}:\n{described}"
        );
    }

    api.ok(&["apply", "-f", "-"], Some(DEPLOYMENT));
    let described = api.ok(&["describe", "deployment", "shop"], None);
    for expected in [
        "Name:",
        "shop",
        "Replicas:",
        "2 desired",
        "StrategyType:",
        "RollingUpdate",
        "app=shop",
    ] {
        assert!(
            described.contains(expected),
            "describe lacks {expected:?}:\n{described}"
        );
    }
    let deployments = api.ok(&["get", "deployments"], None);
    let header: Vec<&str> = deployments
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{deployments}"
    );
}

/// `kubectl edit` with an "editor" that rewrites the file it is given.
fn edit_through_an_editor(backend: Backend) {
    if !require_backend("edit_through_an_editor", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    api.ok(&["apply", "-f", "-"], Some(DEPLOYMENT));
    let editor = api.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 5/' \"$1\"\n",
    )
    .expect("write the editor");
    make_executable(&editor);
    let output = api.kubectl_env(
        &["edit", "deployment", "shop"],
        &[("KUBE_EDITOR", editor.to_str().unwrap_or_default())],
    );
    assert!(
        output.status.success(),
        "kubectl edit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deployment.apps/shop edited"));
    let replicas = api.ok(
        &[
            "get",
            "deployment",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(replicas, "5");
    let generation = api.ok(
        &[
            "get",
            "deployment",
            "shop",
            "-o",
            "jsonpath={.metadata.generation}",
        ],
        None,
    );
    assert_eq!(generation, "2", "a spec change bumps the generation");

    // An edit that makes the object invalid is refused with the field, and nothing changes.
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 5/replicas: -3/' \"$1\"\n",
    )
    .expect("write the editor");
    let output = api.kubectl_env(
        &["edit", "deployment", "shop"],
        &[("KUBE_EDITOR", editor.to_str().unwrap_or_default())],
    );
    assert!(!output.status.success(), "an invalid edit must fail");
    // kubectl keeps the refused edit in a file headed by the server's field errors.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let kept = stderr
        .split('"')
        .find(|part| part.starts_with("/tmp/kubectl-edit-"))
        .unwrap_or_else(|| panic!("kubectl kept no copy of the edit: {stderr}"));
    let copy = std::fs::read_to_string(kept).unwrap_or_default();
    let _ = std::fs::remove_file(kept);
    assert!(
        copy.contains("spec.replicas: Invalid value: -3"),
        "the kept copy lacks the field error:\n{copy}"
    );
    let replicas = api.ok(
        &[
            "get",
            "deployment",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(replicas, "5");
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the editor");
}

fn server_side_apply_and_conflicts(backend: Backend) {
    if !require_backend("server_side_apply_and_conflicts", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let applied = api.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=team-a",
            "-f",
            "-",
        ],
        Some(DEPLOYMENT),
    );
    assert!(
        applied.contains("deployment.apps/shop serverside-applied"),
        "{applied}"
    );
    let managers = api.ok(
        &[
            "get",
            "deployment",
            "shop",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
        None,
    );
    assert!(managers.contains("team-a"), "{managers}");

    let other = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    let conflict = api.fails(
        &[
            "apply",
            "--server-side",
            "--field-manager=team-b",
            "-f",
            "-",
        ],
        Some(&other),
    );
    assert!(
        conflict.contains("conflict")
            && conflict.contains("team-a")
            && conflict.contains(".spec.replicas"),
        "{conflict}"
    );
    assert_eq!(
        api.ok(
            &[
                "get",
                "deployment",
                "shop",
                "-o",
                "jsonpath={.spec.replicas}"
            ],
            None
        ),
        "2"
    );

    let forced = api.ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=team-b",
            "-f",
            "-",
        ],
        Some(&other),
    );
    assert!(forced.contains("serverside-applied"), "{forced}");
    assert_eq!(
        api.ok(
            &[
                "get",
                "deployment",
                "shop",
                "-o",
                "jsonpath={.spec.replicas}"
            ],
            None
        ),
        "3"
    );
}

fn explain_and_api_resources(backend: Backend) {
    if !require_backend("explain_and_api_resources", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let explained = api.ok(&["explain", "pod.spec.containers"], None);
    assert!(
        explained.contains("KIND:") && explained.contains("Pod"),
        "{explained}"
    );
    assert!(
        explained.contains("image") && explained.contains("livenessProbe"),
        "{explained}"
    );
    let resources = api.ok(&["api-resources"], None);
    for line in [
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["nodes", "no", "v1", "false", "Node"],
    ] {
        assert!(
            resources
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == line),
            "api-resources lacks {line:?}:\n{resources}"
        );
    }
}

fn graceful_pod_deletion(backend: Backend) {
    if !require_backend("graceful_pod_deletion", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let bound = POD.replace("spec:\n", "spec:\n  nodeName: node-1\n");
    api.ok(&["apply", "-f", "-"], Some(&bound));
    // A pod bound to a node is only marked: its kubelet finishes the deletion.
    api.ok(&["delete", "pod", "web", "--wait=false"], None);
    let pod = json(&api.ok(&["get", "pod", "web", "-o", "json"], None));
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30, "{pod}");
    let table = api.ok(&["get", "pods"], None);
    assert!(table.contains("Terminating"), "{table}");
    // --grace-period=0 --force removes it at once.
    api.ok(
        &["delete", "pod", "web", "--grace-period=0", "--force"],
        None,
    );
    let gone = api.fails(&["get", "pod", "web"], None);
    assert!(gone.contains("not found"), "{gone}");
}

/// A Job without a selector gets one on its own uid, and its pods' template the labels.
fn job_selector_is_generated(backend: Backend) {
    if !require_backend("job_selector_is_generated", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let job = "apiVersion: batch/v1
kind: Job
metadata:
  name: once
  namespace: default
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: registry.example/once:1.0
";
    api.ok(&["apply", "-f", "-"], Some(job));
    let job = json(&api.ok(&["get", "job", "once", "-o", "json"], None));
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    assert!(!uid.is_empty(), "{job}");
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid,
        "{job}"
    );
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid, "{job}");
    assert_eq!(labels["batch.kubernetes.io/job-name"], "once", "{job}");
    assert_eq!(labels["job-name"], "once", "{job}");
}

crate::both_backends!(job_selector_is_generated);
crate::both_backends!(output_formats_and_describe);
crate::both_backends!(edit_through_an_editor);
crate::both_backends!(server_side_apply_and_conflicts);
crate::both_backends!(explain_and_api_resources);
crate::both_backends!(graceful_pod_deletion);
