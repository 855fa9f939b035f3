//! `/metrics` through kubectl: the request counters, the stored-object gauge and the process
//! figures move with traffic; a user without the `system:monitoring` permission gets 403 and
//! is let in once bound to it.

use std::path::PathBuf;
use std::time::Duration;

use keel_control_plane::apiserver::auth::{self, Pki};

use super::harness::{TestApiserver, require_kubectl};

/// The value of the sample whose line starts with `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

const CREATE_CONFIGMAP: &str = "apiserver_request_total{verb=\"POST\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"namespace\",component=\"apiserver\",code=\"201\"}";
const GET_CONFIGMAP: &str = "apiserver_request_total{verb=\"GET\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"resource\",component=\"apiserver\",code=\"200\"}";
const GET_MISSING: &str = "apiserver_request_total{verb=\"GET\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"resource\",component=\"apiserver\",code=\"404\"}";
const CONFIGMAPS_STORED: &str = "apiserver_storage_objects{resource=\"configmaps\"}";
const CREATE_LATENCY_COUNT: &str = "apiserver_request_duration_seconds_count{verb=\"POST\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"namespace\",component=\"apiserver\"}";

#[test]
fn metrics_count_requests_and_objects() {
    if !require_kubectl("metrics_count_requests_and_objects") {
        return;
    }
    let api = TestApiserver::start();
    let before = api.ok(&["get", "--raw", "/metrics"], None);
    let created_before = sample(&before, CREATE_CONFIGMAP).unwrap_or(0.0);
    let stored_before = sample(&before, CONFIGMAPS_STORED).unwrap_or(0.0);
    for name in ["m1", "m2", "m3"] {
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"default"}}}}"#
        );
        api.ok(&["create", "-f", "-"], Some(&manifest));
    }
    api.ok(&["get", "configmap", "m1", "-n", "default"], None);
    api.fails(&["get", "configmap", "absent", "-n", "default"], None);
    let after = api.ok(&["get", "--raw", "/metrics"], None);
    assert_eq!(
        sample(&after, CREATE_CONFIGMAP),
        Some(created_before + 3.0),
        "{after}"
    );
    assert!(
        sample(&after, GET_CONFIGMAP).unwrap_or(0.0) >= 1.0,
        "{after}"
    );
    assert!(sample(&after, GET_MISSING).unwrap_or(0.0) >= 1.0, "{after}");
    assert!(
        sample(&after, CREATE_LATENCY_COUNT).unwrap_or(0.0) >= 3.0,
        "{after}"
    );
    // The gauge counts the watch cache, which may trail the writes by a moment.
    let mut stored = sample(&after, CONFIGMAPS_STORED).unwrap_or(0.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored < stored_before + 3.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let text = api.ok(&["get", "--raw", "/metrics"], None);
        stored = sample(&text, CONFIGMAPS_STORED).unwrap_or(0.0);
    }
    assert_eq!(stored, stored_before + 3.0);
    assert!(
        sample(&after, "process_resident_memory_bytes").unwrap_or(0.0) > 1e6,
        "{after}"
    );
    assert!(
        sample(&after, "process_start_time_seconds").unwrap_or(0.0) > 1.6e9,
        "{after}"
    );
    assert!(after.contains("# TYPE apiserver_request_duration_seconds histogram"));
    assert!(
        after.contains("apiserver_storage_request_duration_seconds_count{operation=\"create\"}")
    );
    assert!(!after.contains("go_"), "no Go runtime metrics");
}

/// A kubeconfig for `user` in `group`, signed by the test cluster's CA.
fn kubeconfig_for(api: &TestApiserver, user: &str, group: &str) -> PathBuf {
    let pki = Pki::load_or_create(api.dir.path(), &[]).expect("load the PKI");
    let pair = pki
        .issue_client_cert(user, &[group.to_string()], Duration::from_secs(3600))
        .expect("issue a client certificate");
    let server = auth::kubeconfig::server_url("127.0.0.1", api.port);
    let credential = auth::kubeconfig::Credential::ClientCert {
        cert_pem: pair.cert_pem.clone(),
        key_pem: pair.key_pem.clone(),
    };
    let kubeconfig = auth::kubeconfig::render(&server, pki.ca_pem(), user, &credential);
    let path = api.dir.path().join(format!("{user}.kubeconfig"));
    auth::kubeconfig::write(&path, &kubeconfig).expect("write kubeconfig");
    path
}

#[test]
fn metrics_need_the_monitoring_permission() {
    if !require_kubectl("metrics_need_the_monitoring_permission") {
        return;
    }
    let api = TestApiserver::start();
    let bob = kubeconfig_for(&api, "bob", "devs");
    let denied = api.kubectl_as(&bob, &["get", "--raw", "/metrics"], None);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success());
    assert!(stderr.contains("Forbidden"), "{stderr}");
    assert!(
        stderr.contains("cannot get path \\\"/metrics\\\"")
            || stderr.contains("cannot get path \"/metrics\""),
        "{stderr}"
    );
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: bob-monitoring\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: system:monitoring\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: bob\n";
    api.ok(&["apply", "-f", "-"], Some(binding));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let allowed = api.kubectl_as(&bob, &["get", "--raw", "/metrics"], None);
        if allowed.status.success() {
            assert!(String::from_utf8_lossy(&allowed.stdout).contains("apiserver_request_total"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob is still refused: {}",
            String::from_utf8_lossy(&allowed.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
