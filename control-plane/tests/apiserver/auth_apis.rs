//! The authentication and authorization APIs end to end: the review resources (can-i, rules,
//! whoami, TokenReview, SubjectAccessReview), TokenRequest and the tokens it issues,
//! NodeRestriction (what a kubelet identity may write and read), and RBAC escalation prevention.
//! Requests are JSON (`kubectl create -f - -o json`, `kubectl create --raw`), and the
//! kubectl-native commands (`auth can-i`, `auth whoami`, `create token`), which send protobuf
//! bodies, in `kubectl_native_commands`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_control_plane::apiserver::auth::Pki;
use keel_control_plane::apiserver::auth::service_account::{
    DEFAULT_ISSUER, ObjectRef, TokenRequest, TokenSigner,
};
use serde_json::{Value, json};

use super::harness::{TestApiserver, kubeconfig_for_cert, kubeconfig_for_token, require_kubectl};

/// Waits up to 20 s for `condition` (RBAC and the Node graph follow the watch cache).
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stdout_json(output: &std::process::Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `kubectl create -f - -o json` as `kubeconfig`; the created (answered) object. Client-side
/// validation is off: for kinds without a PATCH operation kubectl 1.32 falls back to listing
/// CRDs, which an unprivileged user may not do (kube-apiserver behaves the same).
fn create(api: &TestApiserver, kubeconfig: &Path, manifest: &Value) -> Value {
    let output = api.kubectl_as(
        kubeconfig,
        &["create", "--validate=false", "-f", "-", "-o", "json"],
        Some(&manifest.to_string()),
    );
    stdout_json(&output, &format!("create {manifest}"))
}

/// `kubectl create -f -` that must fail; its stderr.
fn create_fails(api: &TestApiserver, kubeconfig: &Path, manifest: &Value) -> String {
    let output = api.kubectl_as(
        kubeconfig,
        &["create", "--validate=false", "-f", "-"],
        Some(&manifest.to_string()),
    );
    assert!(
        !output.status.success(),
        "create {manifest} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `kubectl create --raw PATH -f -` as `kubeconfig`: the response, or kubectl's stderr.
fn raw_post(
    api: &TestApiserver,
    kubeconfig: &Path,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let output = api.kubectl_as(
        kubeconfig,
        &["create", "--raw", path, "-f", "-"],
        Some(&body.to_string()),
    );
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(stdout_json(&output, path))
}

fn can_i(
    api: &TestApiserver,
    kubeconfig: &Path,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> bool {
    // `roles.rbac.authorization.k8s.io`: the resource, then its group.
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "verb": verb, "group": group, "resource": resource, "namespace": namespace } }
    });
    let answer = create(api, kubeconfig, &review);
    assert_eq!(answer["kind"], "SelfSubjectAccessReview", "{answer}");
    answer["status"]["allowed"] == true
}

fn whoami(api: &TestApiserver, kubeconfig: &Path) -> Value {
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {} });
    create(api, kubeconfig, &review)["status"]["userInfo"].clone()
}

fn token_review(api: &TestApiserver, token: &str, audiences: &[&str]) -> Value {
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": { "token": token, "audiences": audiences }
    });
    create(api, &api.kubeconfig, &review)["status"].clone()
}

fn apply(api: &TestApiserver, manifest: &Value) {
    api.ok(&["apply", "-f", "-"], Some(&manifest.to_string()));
}

fn binding(name: &str, namespace: &str, role_kind: &str, role: &str, user: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": name, "namespace": namespace },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }]
    })
}

fn role(name: &str, namespace: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": name, "namespace": namespace }, "rules": rules
    })
}

fn uid_of(api: &TestApiserver, args: &[&str]) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
    let uid = api.ok(&all, None);
    assert!(!uid.is_empty(), "no uid for {args:?}");
    uid
}

#[test]
fn can_i_rules_and_subject_access_reviews() {
    if !require_kubectl("can_i_rules_and_subject_access_reviews") {
        return;
    }
    let api = TestApiserver::start();
    let alice = kubeconfig_for_cert(&api, "alice", &["devs"]);
    assert!(!can_i(&api, &alice, "list", "pods", "default"));
    assert!(can_i(&api, &api.kubeconfig, "delete", "nodes", ""));
    let rules_review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
        "spec": { "namespace": "default" }
    });
    let before = create(&api, &alice, &rules_review);
    let before_text = before["status"]["resourceRules"].to_string();
    assert!(before_text.contains("selfsubjectaccessreviews"), "{before}");
    assert!(!before_text.contains("\"pods\""), "{before}");
    assert!(
        before["status"]["nonResourceRules"]
            .to_string()
            .contains("/api"),
        "{before}"
    );

    apply(
        &api,
        &binding("alice-view", "default", "ClusterRole", "view", "alice"),
    );
    eventually("alice to list pods", || {
        can_i(&api, &alice, "list", "pods", "default")
    });
    assert!(!can_i(&api, &alice, "create", "pods", "default"));
    assert!(!can_i(&api, &alice, "list", "pods", "kube-system"));
    let after = create(&api, &alice, &rules_review);
    let pods_rule = after["status"]["resourceRules"]
        .as_array()
        .expect("resourceRules")
        .iter()
        .find(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|l| l.contains(&json!("pods")))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no pods rule: {after}"));
    assert!(
        pods_rule["verbs"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("list"))),
        "{pods_rule}"
    );

    // An administrator asks about alice; a LocalSubjectAccessReview is scoped to its namespace.
    let sar = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": { "user": "alice", "groups": ["devs"], "resourceAttributes": { "verb": "get", "resource": "pods", "namespace": "default" } }
    });
    let answer = create(&api, &api.kubeconfig, &sar);
    assert_eq!(answer["status"]["allowed"], true, "{answer}");
    assert_eq!(answer["spec"]["user"], "alice");
    let mut denied = sar.clone();
    denied["spec"]["resourceAttributes"]["verb"] = json!("delete");
    assert_eq!(
        create(&api, &api.kubeconfig, &denied)["status"]["allowed"],
        false
    );
    let local = |ns: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
            "metadata": { "namespace": "default" },
            "spec": { "user": "alice", "resourceAttributes": { "verb": "list", "resource": "configmaps", "namespace": ns } }
        })
    };
    let answer = create(&api, &api.kubeconfig, &local("default"));
    assert_eq!(answer["kind"], "LocalSubjectAccessReview");
    assert_eq!(answer["status"]["allowed"], true, "{answer}");
    let stderr = create_fails(&api, &api.kubeconfig, &local("kube-system"));
    assert!(stderr.contains("must match metadata.namespace"), "{stderr}");

    // Bad input: no user or group, no attributes, no namespace for the rules review.
    let nobody = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": { "resourceAttributes": { "verb": "get", "resource": "pods" } }
    });
    let stderr = create_fails(&api, &api.kubeconfig, &nobody);
    assert!(
        stderr.contains("at least one of user or group must be specified"),
        "{stderr}"
    );
    let empty = json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {} });
    let healthz = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "nonResourceAttributes": { "verb": "get", "path": "/healthz" } }
    });
    assert_eq!(create(&api, &alice, &healthz)["status"]["allowed"], true);
    let metrics = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "nonResourceAttributes": { "verb": "get", "path": "/metrics" } }
    });
    assert_eq!(create(&api, &alice, &metrics)["status"]["allowed"], false);
    let stderr = create_fails(&api, &alice, &empty);
    assert!(
        stderr.contains(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified"
        ),
        "{stderr}"
    );
    let no_namespace = json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {} });
    let stderr = create_fails(&api, &alice, &no_namespace);
    assert!(stderr.contains("no namespace on request"), "{stderr}");
    // alice may not ask about others.
    let stderr = create_fails(&api, &alice, &sar);
    assert!(
        stderr.contains("cannot create resource \"subjectaccessreviews\""),
        "{stderr}"
    );
    api.ok(
        &["delete", "rolebinding", "alice-view", "-n", "default"],
        None,
    );
}

/// Issues a TokenRequest for `account` in default; the TokenRequest answered.
fn request_token(api: &TestApiserver, account: &str, spec: Value) -> Result<Value, String> {
    let body =
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec });
    raw_post(
        api,
        &api.kubeconfig,
        &format!("/api/v1/namespaces/default/serviceaccounts/{account}/token"),
        &body,
    )
}

/// The claims of a JWT (not verified: the server verified it).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn pod(name: &str, node: &str, account: &str, secret: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "nodeName": node, "serviceAccountName": account,
            "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10",
                "env": [{ "name": "CM", "valueFrom": { "configMapKeyRef": { "name": format!("{secret}-cm"), "key": "k" } } }] }],
            "volumes": [{ "name": "s", "secret": { "secretName": secret } }]
        }
    })
}

#[test]
fn token_requests_whoami_and_token_reviews() {
    if !require_kubectl("token_requests_whoami_and_token_reviews") {
        return;
    }
    let api = TestApiserver::start();
    service_account(&api, "builder");

    // Defaults: one hour, the apiserver's audience.
    let started = chrono::Utc::now();
    let issued = request_token(&api, "builder", json!({})).expect("token request");
    assert_eq!(issued["kind"], "TokenRequest", "{issued}");
    assert_eq!(issued["spec"]["expirationSeconds"], 3600);
    assert_eq!(issued["spec"]["audiences"], json!([DEFAULT_ISSUER]));
    let expires = chrono::DateTime::parse_from_rfc3339(
        issued["status"]["expirationTimestamp"]
            .as_str()
            .expect("expirationTimestamp"),
    )
    .expect("RFC 3339 expiration");
    let lifetime = expires.timestamp() - started.timestamp();
    assert!((3595..=3605).contains(&lifetime), "lifetime {lifetime}");
    let token = issued["status"]["token"]
        .as_str()
        .expect("token")
        .to_string();

    // The token authenticates: whoami, and a TokenReview.
    let sa_config = kubeconfig_for_token(&api, "builder", &token);
    let me = whoami(&api, &sa_config);
    assert_eq!(
        me["username"], "system:serviceaccount:default:builder",
        "{me}"
    );
    assert_eq!(
        me["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(
        me["uid"],
        uid_of(&api, &["serviceaccount", "builder", "-n", "default"])
    );
    let review = token_review(&api, &token, &[]);
    assert_eq!(review["authenticated"], true, "{review}");
    assert_eq!(
        review["user"]["username"],
        "system:serviceaccount:default:builder"
    );
    assert_eq!(review["audiences"], json!([DEFAULT_ISSUER]));
    let review = token_review(&api, &token, &["someone-else"]);
    assert_eq!(review["authenticated"], false, "{review}");
    assert!(
        review["error"]
            .as_str()
            .is_some_and(|e| e.contains("audience")),
        "{review}"
    );

    // Garbage and expired tokens do not authenticate.
    let review = token_review(&api, "not-a-token", &[]);
    assert_eq!(review["authenticated"], false, "{review}");
    assert!(
        !review["error"].as_str().unwrap_or_default().is_empty(),
        "{review}"
    );
    let pki = Pki::load_or_create(api.dir.path(), &[]).expect("PKI");
    let signer =
        TokenSigner::from_pem(pki.service_account_key_pem(), DEFAULT_ISSUER).expect("signer");
    let expired = signer
        .issue(&TokenRequest {
            namespace: "default".into(),
            service_account: ObjectRef {
                name: "builder".into(),
                uid: uid_of(&api, &["serviceaccount", "builder", "-n", "default"]),
            },
            expiration_seconds: 600,
            now: chrono::Utc::now().timestamp() - 7200,
            ..TokenRequest::default()
        })
        .expect("sign an expired token");
    let review = token_review(&api, &expired, &[]);
    assert_eq!(review["authenticated"], false, "{review}");
    assert!(
        review["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{review}"
    );
    let stale = kubeconfig_for_token(&api, "expired", &expired);
    let output = api.kubectl_as(&stale, &["get", "pods"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Unauthorized"));

    // Bad input.
    let error = request_token(&api, "builder", json!({ "expirationSeconds": 599 }))
        .expect_err("the request must fail");
    assert!(
        error.contains("spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"),
        "{error}"
    );
    let error = request_token(&api, "nobody", json!({})).expect_err("the request must fail");
    assert!(
        error.contains("serviceaccounts \"nobody\" not found"),
        "{error}"
    );
    let error = request_token(
        &api,
        "builder",
        json!({ "boundObjectRef": { "apiVersion": "v1", "kind": "ConfigMap", "name": "x" } }),
    )
    .expect_err("the request must fail");
    assert!(
        error.contains("cannot bind token to object of type /v1, Kind=ConfigMap"),
        "{error}"
    );

    // A token bound to a pod carries the pod and its node, and dies with the pod.
    apply(
        &api,
        &json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } }),
    );
    apply(&api, &pod("web", "n1", "builder", "web-secret"));
    let pod_uid = uid_of(&api, &["pod", "web", "-n", "default"]);
    let node_uid = uid_of(&api, &["node", "n1"]);
    let error = request_token(
        &api,
        "builder",
        json!({ "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "not-the-uid" } }),
    )
    .expect_err("the request must fail");
    assert!(
        error.contains("does not match the UID in record"),
        "{error}"
    );
    service_account(&api, "other");
    let error = request_token(
        &api,
        "other",
        json!({ "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "web" } }),
    )
    .expect_err("the request must fail");
    assert!(error.contains("different serviceaccount name"), "{error}");
    let bound = request_token(
        &api,
        "builder",
        json!({ "audiences": ["vault"], "expirationSeconds": 600,
                "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "web", "uid": pod_uid } }),
    )
    .expect("pod-bound token");
    assert_eq!(bound["spec"]["audiences"], json!(["vault"]));
    let bound_token = bound["status"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let review = token_review(&api, &bound_token, &["vault"]);
    assert_eq!(review["authenticated"], true, "{review}");
    let extra = &review["user"]["extra"];
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        json!(["web"]),
        "{review}"
    );
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid])
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        json!(["n1"])
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-uid"],
        json!([node_uid])
    );
    assert_eq!(
        token_review(&api, &bound_token, &[])["authenticated"],
        false,
        "wrong audience"
    );
    let pod_bound_default = request_token(
        &api,
        "builder",
        json!({ "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "web" } }),
    )
    .expect("pod-bound token for the apiserver");
    // A kubelet's projected token (3607 s, pod-bound, the apiserver's audience) lives a year,
    // with `warnafter` at the requested lifetime; the status reports the requested lifetime.
    let kubelet_token = request_token(
        &api,
        "builder",
        json!({ "expirationSeconds": 3607, "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "web" } }),
    )
    .expect("kubelet-style token");
    let claims = jwt_claims(kubelet_token["status"]["token"].as_str().expect("token"));
    let issued_at = claims["iat"].as_i64().expect("iat");
    assert_eq!(
        claims["exp"].as_i64(),
        Some(issued_at + 365 * 24 * 3600),
        "{claims}"
    );
    assert_eq!(
        claims["kubernetes.io"]["warnafter"].as_i64(),
        Some(issued_at + 3607),
        "{claims}"
    );
    let reported = chrono::DateTime::parse_from_rfc3339(
        kubelet_token["status"]["expirationTimestamp"]
            .as_str()
            .expect("expirationTimestamp"),
    )
    .expect("RFC 3339 expiration");
    assert_eq!(reported.timestamp(), issued_at + 3607);
    let plain = jwt_claims(bound["status"]["token"].as_str().expect("token"));
    assert_eq!(
        plain["exp"].as_i64(),
        Some(plain["iat"].as_i64().expect("iat") + 600)
    );
    assert!(plain["kubernetes.io"].get("warnafter").is_none(), "{plain}");
    let pod_config = kubeconfig_for_token(
        &api,
        "builder-web",
        pod_bound_default["status"]["token"]
            .as_str()
            .expect("token"),
    );
    assert_eq!(
        whoami(&api, &pod_config)["username"],
        "system:serviceaccount:default:builder"
    );
    api.ok(
        &[
            "delete",
            "pod",
            "web",
            "-n",
            "default",
            "--grace-period=0",
            "--force",
        ],
        None,
    );
    eventually("the pod-bound token to stop authenticating", || {
        token_review(&api, &bound_token, &["vault"])["authenticated"] == false
    });
    let review = token_review(&api, &bound_token, &["vault"]);
    assert!(
        review["error"].as_str().is_some_and(|e| e.contains("pod")),
        "{review}"
    );
    let output = api.kubectl_as(&pod_config, &["get", "pods"], None);
    assert!(String::from_utf8_lossy(&output.stderr).contains("Unauthorized"));
    // The unbound token lives on with its service account, and dies with it.
    assert_eq!(token_review(&api, &token, &[])["authenticated"], true);
    api.ok(
        &["delete", "serviceaccount", "builder", "-n", "default"],
        None,
    );
    eventually("the service account token to stop authenticating", || {
        token_review(&api, &token, &[])["authenticated"] == false
    });

    // A bootstrap token is reviewed through its Secret.
    apply(
        &api,
        &json!({
            "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": { "name": "bootstrap-token-abcdef", "namespace": "kube-system" },
            "stringData": { "token-id": "abcdef", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true" }
        }),
    );
    eventually("the bootstrap token to authenticate", || {
        token_review(&api, "abcdef.0123456789abcdef", &[])["authenticated"] == true
    });
    let review = token_review(&api, "abcdef.0123456789abcdef", &[]);
    assert_eq!(
        review["user"]["username"], "system:bootstrap:abcdef",
        "{review}"
    );
    assert_eq!(
        token_review(&api, "abcdef.0123456789abcdee", &[])["authenticated"],
        false
    );
    let error = raw_post(
        &api,
        &api.kubeconfig,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {} }),
    )
    .expect_err("the request must fail");
    assert!(
        error.contains("token is required for TokenReview"),
        "{error}"
    );
    api.ok(
        &[
            "delete",
            "secret",
            "bootstrap-token-abcdef",
            "-n",
            "kube-system",
        ],
        None,
    );
    api.ok(
        &["delete", "serviceaccount", "other", "-n", "default"],
        None,
    );
    api.ok(&["delete", "node", "n1"], None);
}

#[test]
fn whoami_for_admin_user_and_node() {
    if !require_kubectl("whoami_for_admin_user_and_node") {
        return;
    }
    let api = TestApiserver::start();
    let admin = whoami(&api, &api.kubeconfig);
    assert_eq!(admin["username"], "kubernetes-admin", "{admin}");
    assert_eq!(
        admin["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    let alice = kubeconfig_for_cert(&api, "alice", &["devs"]);
    let me = whoami(&api, &alice);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["groups"], json!(["devs", "system:authenticated"]));
    let node = kubeconfig_for_cert(&api, "system:node:n1", &["system:nodes"]);
    let me = whoami(&api, &node);
    assert_eq!(me["username"], "system:node:n1");
    assert_eq!(
        me["groups"],
        json!(["system:nodes", "system:authenticated"])
    );
}

fn node_object(name: &str, labels: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": labels } })
}

fn lease(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40 }
    })
}

fn service_account(api: &TestApiserver, name: &str) {
    apply(
        api,
        &json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name, "namespace": "default" } }),
    );
}

/// A status write as a kubelet makes it: the object read (by the admin), changed by `change`,
/// and PUT to its `status` subresource as `kubeconfig` (nodes may not read `*/status`).
fn put_status(
    api: &TestApiserver,
    kubeconfig: &Path,
    kind: &str,
    name: &str,
    change: impl Fn(&mut Value),
) -> std::process::Output {
    let (namespace_args, path): (&[&str], String) = if kind == "node" {
        (&[], format!("/api/v1/nodes/{name}/status"))
    } else {
        (
            &["-n", "default"],
            format!("/api/v1/namespaces/default/pods/{name}/status"),
        )
    };
    let mut args = vec!["get", kind, name, "-o", "json"];
    args.extend_from_slice(namespace_args);
    let mut object: Value = serde_json::from_str(&api.ok(&args, None)).expect("object JSON");
    change(&mut object);
    api.kubectl_as(
        kubeconfig,
        &["replace", "--raw", &path, "-f", "-"],
        Some(&object.to_string()),
    )
}

fn stderr_of(output: &std::process::Output) -> String {
    assert!(
        !output.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeds(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn node_restriction_and_node_authorizer() {
    if !require_kubectl("node_restriction_and_node_authorizer") {
        return;
    }
    let api = TestApiserver::start();
    let n1: PathBuf = kubeconfig_for_cert(&api, "system:node:n1", &["system:nodes"]);
    let run = |args: &[&str], stdin: Option<&Value>| {
        let text = stdin.map(Value::to_string);
        api.kubectl_as(&n1, args, text.as_deref())
    };

    // Its own Node, with labels it may set; not another's, nor restricted labels.
    let restricted = node_object("n1", json!({ "node-restriction.kubernetes.io/pool": "x" }));
    let stderr = stderr_of(&run(&["create", "-f", "-"], Some(&restricted)));
    assert!(
        stderr.contains("node \"n1\" is not allowed to set the following labels: node-restriction.kubernetes.io/pool"),
        "{stderr}"
    );
    let own = node_object(
        "n1",
        json!({ "kubernetes.io/hostname": "n1", "example.com/rack": "r1" }),
    );
    succeeds(
        &run(&["create", "-f", "-"], Some(&own)),
        "n1 registers itself",
    );
    let stderr = stderr_of(&run(
        &["create", "-f", "-"],
        Some(&node_object("n2", json!({}))),
    ));
    assert!(
        stderr.contains(
            "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
        ),
        "{stderr}"
    );
    apply(&api, &node_object("n2", json!({})));
    let stderr = stderr_of(&run(&["label", "node", "n2", "example.com/x=y"], None));
    assert!(
        stderr.contains("node \"n1\" is not allowed to modify node \"n2\""),
        "{stderr}"
    );
    succeeds(
        &run(&["label", "node", "n1", "example.com/zone=a"], None),
        "n1 labels itself",
    );
    let stderr = stderr_of(&run(
        &[
            "label",
            "node",
            "n1",
            "node-role.kubernetes.io/control-plane=",
        ],
        None,
    ));
    assert!(
        stderr.contains("nodes \"n1\" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane"),
        "{stderr}"
    );
    let stderr = stderr_of(&run(
        &["taint", "node", "n1", "dedicated=x:NoSchedule"],
        None,
    ));
    assert!(
        stderr.contains("node \"n1\" is not allowed to modify taints"),
        "{stderr}"
    );
    let ready = |node: &mut Value| {
        node["status"]["conditions"] = json!([{ "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok" }]);
    };
    succeeds(
        &put_status(&api, &n1, "node", "n1", ready),
        "n1 updates its status",
    );
    let stderr = stderr_of(&put_status(&api, &n1, "node", "n2", ready));
    assert!(
        stderr.contains("is not allowed to modify node \"n2\""),
        "{stderr}"
    );

    // Its own Lease in kube-node-lease only.
    succeeds(
        &run(
            &["create", "-f", "-"],
            Some(&lease("n1", "kube-node-lease")),
        ),
        "n1 creates its lease",
    );
    let stderr = stderr_of(&run(
        &["create", "-f", "-"],
        Some(&lease("n2", "kube-node-lease")),
    ));
    assert!(
        stderr.contains("leases.coordination.k8s.io \"n2\" is forbidden: can only access node lease with the same name as the requesting node"),
        "{stderr}"
    );
    let stderr = stderr_of(&run(&["create", "-f", "-"], Some(&lease("n1", "default"))));
    assert!(
        stderr.contains("can only access leases in the \"kube-node-lease\" system namespace"),
        "{stderr}"
    );
    apply(&api, &lease("n2", "kube-node-lease"));
    let renew = r#"{"spec":{"renewTime":"2026-01-01T00:00:00.000000Z"}}"#;
    succeeds(
        &api.kubectl_as(
            &n1,
            &[
                "patch",
                "lease",
                "n1",
                "-n",
                "kube-node-lease",
                "--type=merge",
                "-p",
                renew,
            ],
            None,
        ),
        "n1 renews its lease",
    );
    let stderr = stderr_of(&api.kubectl_as(
        &n1,
        &[
            "patch",
            "lease",
            "n2",
            "-n",
            "kube-node-lease",
            "--type=merge",
            "-p",
            renew,
        ],
        None,
    ));
    assert!(
        stderr.contains("can only access node lease with the same name"),
        "{stderr}"
    );

    // Pods: status of its own pods only; reads of what its pods reference only.
    service_account(&api, "app");
    for (name, node, secret) in [("p1", "n1", "s1"), ("p2", "n2", "s2")] {
        apply(&api, &pod(name, node, "app", secret));
        apply(
            &api,
            &json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": secret, "namespace": "default" }, "stringData": { "k": "v" } }),
        );
        apply(
            &api,
            &json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("{secret}-cm"), "namespace": "default" }, "data": { "k": "v" } }),
        );
    }
    apply(
        &api,
        &json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "unreferenced", "namespace": "default" }, "stringData": { "k": "v" } }),
    );
    let running = |pod: &mut Value| pod["status"]["phase"] = json!("Running");
    succeeds(
        &put_status(&api, &n1, "pod", "p1", running),
        "n1 updates the status of its pod",
    );
    let stderr = stderr_of(&put_status(&api, &n1, "pod", "p2", running));
    assert!(
        stderr.contains("pods \"p2\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself"),
        "{stderr}"
    );
    let relabel = |pod: &mut Value| pod["metadata"]["labels"] = json!({ "x": "y" });
    let stderr = stderr_of(&put_status(&api, &n1, "pod", "p1", relabel));
    assert!(
        stderr.contains("cannot update labels through pod status"),
        "{stderr}"
    );
    eventually("n1 to read the secret of its pod", || {
        run(&["get", "secret", "s1", "-n", "default"], None)
            .status
            .success()
    });
    succeeds(
        &run(&["get", "configmap", "s1-cm", "-n", "default"], None),
        "n1 reads its pod's configmap",
    );
    for (kind, name) in [
        ("secret", "s2"),
        ("configmap", "s2-cm"),
        ("secret", "unreferenced"),
    ] {
        let stderr = stderr_of(&run(&["get", kind, name, "-n", "default"], None));
        assert!(
            stderr.contains(&format!(
                "{kind}s \"{name}\" is forbidden: User \"system:node:n1\" cannot get resource \"{kind}s\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object"
            )),
            "{kind} {name}: {stderr}"
        );
    }
    let eviction = |pod_name: &str| {
        let body = json!({ "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": { "name": pod_name, "namespace": "default" } });
        raw_post(
            &api,
            &n1,
            &format!("/api/v1/namespaces/default/pods/{pod_name}/eviction"),
            &body,
        )
    };
    let error = eviction("p2").expect_err("n1 may not evict another node's pod");
    assert!(
        error.contains("node \"n1\" can only evict pods with spec.nodeName set to itself"),
        "{error}"
    );
    let stderr = stderr_of(&run(&["get", "secrets", "-n", "default"], None));
    assert!(
        stderr.contains("cannot list resource \"secrets\""),
        "{stderr}"
    );
    let stderr = stderr_of(&run(&["delete", "pod", "p2", "-n", "default"], None));
    assert!(
        stderr.contains("node \"n1\" can only delete pods with spec.nodeName set to itself"),
        "{stderr}"
    );

    // Mirror pods: bound to and owned by itself, referencing nothing secret.
    let n1_uid = uid_of(&api, &["node", "n1"]);
    let mirror = |name: &str, owner_uid: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "default",
                "annotations": { "kubernetes.io/config.mirror": "hash" },
                "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": "n1", "uid": owner_uid, "controller": true }] },
            "spec": { "nodeName": "n1", "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }] }
        })
    };
    succeeds(
        &run(&["create", "-f", "-"], Some(&mirror("static-n1", &n1_uid))),
        "n1 creates its mirror pod",
    );
    let stderr = stderr_of(&run(
        &["create", "-f", "-"],
        Some(&mirror("static-x", "wrong")),
    ));
    assert!(stderr.contains("UID mismatch"), "{stderr}");
    let stderr = stderr_of(&run(
        &["create", "-f", "-"],
        Some(&pod("plain", "n1", "app", "s1")),
    ));
    assert!(
        stderr.contains("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods"),
        "{stderr}"
    );
    succeeds(
        &run(
            &[
                "delete",
                "pod",
                "static-n1",
                "-n",
                "default",
                "--grace-period=0",
                "--force",
            ],
            None,
        ),
        "n1 deletes its mirror pod",
    );

    // Tokens: only for its pods' service accounts, bound to such a pod.
    let token_for = |pod_name: &str| {
        let uid = uid_of(&api, &["pod", pod_name, "-n", "default"]);
        let body = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": { "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": uid } } });
        raw_post(
            &api,
            &n1,
            "/api/v1/namespaces/default/serviceaccounts/app/token",
            &body,
        )
    };
    let issued = token_for("p1").expect("n1 requests a token for its pod");
    assert!(
        issued["status"]["token"]
            .as_str()
            .is_some_and(|t| t.len() > 20)
    );
    let error = token_for("p2").expect_err("the request must fail");
    assert!(
        error.contains("node requested token bound to a pod scheduled on a different node"),
        "{error}"
    );
    let unbound = raw_post(
        &api,
        &n1,
        "/api/v1/namespaces/default/serviceaccounts/app/token",
        &json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {} }),
    )
    .expect_err("the request must fail");
    assert!(
        unbound.contains("node requested token not bound to a pod"),
        "{unbound}"
    );

    // Once its pod is gone, the node loses the pod's secret.
    api.ok(
        &[
            "delete",
            "pod",
            "p1",
            "-n",
            "default",
            "--grace-period=0",
            "--force",
        ],
        None,
    );
    eventually("n1 to lose the secret of its deleted pod", || {
        !run(&["get", "secret", "s1", "-n", "default"], None)
            .status
            .success()
    });
    api.ok(
        &[
            "delete",
            "pod",
            "p2",
            "-n",
            "default",
            "--grace-period=0",
            "--force",
        ],
        None,
    );
    api.ok(&["delete", "node", "n1", "n2"], None);
}

#[test]
fn rbac_escalation_is_prevented() {
    if !require_kubectl("rbac_escalation_is_prevented") {
        return;
    }
    let api = TestApiserver::start();
    let alice = kubeconfig_for_cert(&api, "alice", &["devs"]);
    apply(
        &api,
        &role(
            "rbac-writer",
            "default",
            json!([{ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "get", "update", "patch", "delete"] },
                   { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] }]),
        ),
    );
    apply(
        &api,
        &binding(
            "alice-rbac-writer",
            "default",
            "Role",
            "rbac-writer",
            "alice",
        ),
    );
    eventually("alice to hold the rbac-writer role", || {
        can_i(
            &api,
            &alice,
            "create",
            "roles.rbac.authorization.k8s.io",
            "default",
        )
    });

    let secrets_reader = role(
        "secrets-reader",
        "default",
        json!([{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }]),
    );
    let stderr = create_fails(&api, &alice, &secrets_reader);
    assert!(
        stderr.contains("roles.rbac.authorization.k8s.io \"secrets-reader\" is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"),
        "{stderr}"
    );
    let admin_binding = binding(
        "alice-admin",
        "default",
        "ClusterRole",
        "cluster-admin",
        "alice",
    );
    let stderr = create_fails(&api, &alice, &admin_binding);
    assert!(
        stderr.contains(
            "rolebindings.rbac.authorization.k8s.io \"alice-admin\" is forbidden: user \"alice\""
        ),
        "{stderr}"
    );
    // What she holds she may grant.
    let cm_reader = role(
        "cm-reader",
        "default",
        json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] }]),
    );
    create(&api, &alice, &cm_reader);
    create(
        &api,
        &alice,
        &binding("bob-cm-reader", "default", "Role", "cm-reader", "bob"),
    );
    // Nor may she widen a role she may update.
    let widened = role(
        "cm-reader",
        "default",
        json!([{ "apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"] }]),
    );
    let output = api.kubectl_as(&alice, &["replace", "-f", "-"], Some(&widened.to_string()));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("attempting to grant RBAC permissions not currently held"),
        "{stderr}"
    );

    // Cluster-wide: a ClusterRole she may create may not hold more than she does, nor
    // aggregate (which gathers anything); a ClusterRoleBinding to cluster-admin is refused.
    apply(
        &api,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": "alice-cluster-rbac" },
            "rules": [{ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles", "clusterrolebindings"], "verbs": ["create", "get"] },
                      { "apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"] }]
        }),
    );
    apply(
        &api,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": "alice-cluster-rbac" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "alice-cluster-rbac" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice" }]
        }),
    );
    eventually("alice to create cluster roles", || {
        can_i(
            &api,
            &alice,
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            "",
        )
    });
    let cluster_role = |name: &str, extra: Value| {
        let mut role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": name },
            "rules": [{ "apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"] }]
        });
        if let (Some(role), Some(extra)) = (role.as_object_mut(), extra.as_object()) {
            role.extend(extra.clone());
        }
        role
    };
    create(&api, &alice, &cluster_role("ns-getter", json!({})));
    let stderr = create_fails(
        &api,
        &alice,
        &cluster_role(
            "ns-deleter",
            json!({ "rules": [{ "apiGroups": [""], "resources": ["namespaces"], "verbs": ["delete"] }] }),
        ),
    );
    assert!(
        stderr.contains(
            "clusterroles.rbac.authorization.k8s.io \"ns-deleter\" is forbidden: user \"alice\""
        ),
        "{stderr}"
    );
    let stderr = create_fails(
        &api,
        &alice,
        &cluster_role(
            "aggregated",
            json!({ "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "x": "y" } }] } }),
        ),
    );
    assert!(
        stderr.contains("must have cluster-admin privileges to use the aggregationRule"),
        "{stderr}"
    );
    let cluster_admin_binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": "alice-cluster-admin" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice" }]
    });
    let stderr = create_fails(&api, &alice, &cluster_admin_binding);
    assert!(
        stderr.contains(
            "clusterrolebindings.rbac.authorization.k8s.io \"alice-cluster-admin\" is forbidden"
        ),
        "{stderr}"
    );
    api.ok(&["delete", "clusterrole", "ns-getter"], None);
    api.ok(
        &["delete", "clusterrolebinding", "alice-cluster-rbac"],
        None,
    );
    api.ok(&["delete", "clusterrole", "alice-cluster-rbac"], None);

    // With escalate and bind she can.
    apply(
        &api,
        &role(
            "escalator",
            "default",
            json!([{ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"] },
                   { "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["cluster-admin"] }]),
        ),
    );
    apply(
        &api,
        &binding("alice-escalator", "default", "Role", "escalator", "alice"),
    );
    eventually("alice to hold escalate", || {
        can_i(
            &api,
            &alice,
            "escalate",
            "roles.rbac.authorization.k8s.io",
            "default",
        )
    });
    create(&api, &alice, &secrets_reader);
    create(&api, &alice, &admin_binding);
    eventually("alice to be admin in default", || {
        can_i(&api, &alice, "delete", "secrets", "default")
    });
    assert!(!can_i(&api, &alice, "delete", "secrets", "kube-system"));
    for (kind, name) in [
        ("rolebinding", "alice-admin"),
        ("rolebinding", "alice-escalator"),
        ("rolebinding", "alice-rbac-writer"),
        ("rolebinding", "bob-cm-reader"),
        ("role", "escalator"),
        ("role", "rbac-writer"),
        ("role", "cm-reader"),
        ("role", "secrets-reader"),
    ] {
        api.ok(&["delete", kind, name, "-n", "default"], None);
    }
}

// kubectl's own `auth can-i`, `auth whoami` and `create token` send protobuf request bodies.
#[test]
fn kubectl_native_commands() {
    if !require_kubectl("kubectl_native_commands") {
        return;
    }
    let api = TestApiserver::start();
    let alice = kubeconfig_for_cert(&api, "alice", &["devs"]);
    let output = api.kubectl_as(
        &alice,
        &["auth", "can-i", "list", "pods", "-n", "default"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "no");
    apply(
        &api,
        &binding("alice-view", "default", "ClusterRole", "view", "alice"),
    );
    eventually("kubectl auth can-i to say yes", || {
        let output = api.kubectl_as(
            &alice,
            &["auth", "can-i", "list", "pods", "-n", "default"],
            None,
        );
        String::from_utf8_lossy(&output.stdout).trim() == "yes"
    });
    let output = api.kubectl_as(&alice, &["auth", "can-i", "--list", "-n", "default"], None);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("pods"),
        "{output:?}"
    );
    let whoami = api.kubectl_as(&alice, &["auth", "whoami", "-o", "json"], None);
    let me = stdout_json(&whoami, "kubectl auth whoami");
    assert_eq!(me["status"]["userInfo"]["username"], "alice");
    service_account(&api, "builder");
    let token = api.ok(&["create", "token", "builder", "-n", "default"], None);
    let sa = kubeconfig_for_token(&api, "builder", token.trim());
    let whoami = api.kubectl_as(&sa, &["auth", "whoami", "-o", "json"], None);
    let me = stdout_json(&whoami, "kubectl auth whoami with a token");
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:default:builder"
    );
    let stderr = api.fails(
        &[
            "create",
            "token",
            "builder",
            "-n",
            "default",
            "--duration=5m",
        ],
        None,
    );
    assert!(
        stderr.contains("may not specify a duration less than 10 minutes"),
        "{stderr}"
    );
    api.ok(
        &["delete", "rolebinding", "alice-view", "-n", "default"],
        None,
    );
    api.ok(
        &["delete", "serviceaccount", "builder", "-n", "default"],
        None,
    );
}
