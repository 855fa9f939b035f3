//! Authentication and authorization as kubectl sees them: a user with a client certificate but
//! no binding is refused with kube's message, and allowed once a RoleBinding grants `view`.

use std::path::PathBuf;
use std::time::Duration;

use keel_control_plane::apiserver::auth::{self, Pki};

use super::harness::{Backend, TestApiserver, require_backend};

/// A kubeconfig for `user` (client certificate signed by the test cluster's CA).
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

fn rbac_denies_then_allows(backend: Backend) {
    if !require_backend("rbac_denies_then_allows", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    let alice = kubeconfig_for(&api, "alice", "devs");
    let denied = api.kubectl_as(&alice, &["get", "configmaps", "-n", "default"], None);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success());
    assert!(
        stderr.contains("User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""),
        "{stderr}"
    );
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: alice-view\n  namespace: default\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: view\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: alice\n";
    api.ok(&["apply", "-f", "-"], Some(binding));
    let allowed = api.kubectl_as(&alice, &["get", "configmaps", "-n", "default"], None);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let write = api.kubectl_as(
        &alice,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#),
    );
    assert!(!write.status.success(), "view must not allow create");
    let other_namespace = api.kubectl_as(&alice, &["get", "configmaps", "-n", "kube-system"], None);
    assert!(
        !other_namespace.status.success(),
        "the binding is namespaced"
    );
}

crate::both_backends!(rbac_denies_then_allows);
