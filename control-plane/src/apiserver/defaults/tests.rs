//! Tests of `apply_defaults`: what kube fills in per kind, idempotence, and user values kept.

use super::*;
use serde_json::json;

fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    apply_defaults(group, "v1", kind, &mut obj);
    obj
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
            }],
            "volumes": [{"name": "cache"}, {"name": "cfg", "configMap": {"name": "c"}}, {"name": "h", "hostPath": {"path": "/x"}}]
        }
    })
}

#[test]
fn pod_defaults() {
    let p = defaulted("", "Pod", pod());
    let expect: &[(&str, Value)] = &[
        ("/spec/restartPolicy", json!("Always")),
        ("/spec/dnsPolicy", json!("ClusterFirst")),
        ("/spec/terminationGracePeriodSeconds", json!(30)),
        ("/spec/schedulerName", json!("default-scheduler")),
        ("/spec/securityContext", json!({})),
        ("/spec/enableServiceLinks", json!(true)),
        ("/spec/serviceAccountName", json!("default")),
        ("/spec/serviceAccount", json!("default")),
        ("/spec/priority", json!(0)),
        ("/spec/preemptionPolicy", json!("PreemptLowerPriority")),
        ("/spec/containers/0/imagePullPolicy", json!("Always")),
        (
            "/spec/containers/0/terminationMessagePath",
            json!("/dev/termination-log"),
        ),
        ("/spec/containers/0/terminationMessagePolicy", json!("File")),
        ("/spec/containers/0/resources", json!({})),
        ("/spec/containers/0/ports/0/protocol", json!("TCP")),
        ("/spec/containers/0/livenessProbe/timeoutSeconds", json!(1)),
        ("/spec/containers/0/livenessProbe/periodSeconds", json!(10)),
        (
            "/spec/containers/0/livenessProbe/successThreshold",
            json!(1),
        ),
        (
            "/spec/containers/0/livenessProbe/failureThreshold",
            json!(3),
        ),
        (
            "/spec/containers/0/livenessProbe/httpGet/scheme",
            json!("HTTP"),
        ),
        ("/spec/containers/0/livenessProbe/httpGet/path", json!("/")),
        (
            "/spec/containers/0/env/0/valueFrom/fieldRef/apiVersion",
            json!("v1"),
        ),
        ("/spec/volumes/0/emptyDir", json!({})),
        ("/spec/volumes/1/configMap/defaultMode", json!(420)),
        ("/spec/volumes/2/hostPath/type", json!("")),
        (
            "/spec/tolerations/0/key",
            json!("node.kubernetes.io/not-ready"),
        ),
        (
            "/spec/tolerations/1/key",
            json!("node.kubernetes.io/unreachable"),
        ),
        ("/spec/tolerations/1/tolerationSeconds", json!(300)),
        ("/status/phase", json!("Pending")),
        ("/status/qosClass", json!("BestEffort")),
    ];
    for (pointer, value) in expect {
        assert_eq!(p.pointer(pointer), Some(value), "{pointer}");
    }
}

#[test]
fn defaulting_is_idempotent_and_keeps_user_values() {
    let mut p = pod();
    p["spec"]["restartPolicy"] = json!("Never");
    p["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    let once = defaulted("", "Pod", p);
    let twice = defaulted("", "Pod", once.clone());
    assert_eq!(once, twice);
    assert_eq!(once["spec"]["restartPolicy"], "Never");
    assert_eq!(once["spec"]["tolerations"], json!([{"operator": "Exists"}]));
}

#[test]
fn image_pull_policies() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
        ("localhost:5000/app:v2", "IfNotPresent"),
        ("nginx@sha256:abcd", "IfNotPresent"),
    ];
    for (image, policy) in cases {
        assert_eq!(image_pull_policy(image), policy, "{image}");
    }
}

#[test]
fn requests_from_limits_and_qos() {
    let mut p = pod();
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "500m", "memory": "128Mi"}});
    let p = defaulted("", "Pod", p);
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "128Mi"})
    );
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
    let mut burst = pod();
    burst["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "100m"}});
    assert_eq!(
        defaulted("", "Pod", burst)["status"]["qosClass"],
        "Burstable"
    );
}

#[test]
fn deployment_template_gets_pod_spec_defaults_only() {
    let d = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "w", "image": "nginx:1"}]}}}}),
    );
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    let template = &d["spec"]["template"]["spec"];
    assert_eq!(template["restartPolicy"], "Always");
    assert_eq!(template["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert!(template.get("tolerations").is_none());
    assert!(template.get("serviceAccountName").is_none());
    let recreate = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn other_workloads() {
    let sts = defaulted("apps", "StatefulSet", json!({"spec": {}}));
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"],
        json!({"maxUnavailable": 1, "maxSurge": 0})
    );
    let job = defaulted(
        "batch",
        "Job",
        json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}}),
    );
    for (key, value) in [
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        assert_eq!(job["spec"][key], value, "{key}");
    }
    let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
    assert!(parallel["spec"].get("completions").is_none());
    let cj = defaulted(
        "batch",
        "CronJob",
        json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}}),
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
}

#[test]
fn job_selector_generation() {
    let mut job = json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {}}}});
    generate_job_selector(&mut job, "u-1");
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["job-name"],
        "pi"
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["controller-uid"],
        "u-1"
    );
}

#[test]
fn services() {
    let svc = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    );
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(
        svc["spec"]["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    let cluster_ip = defaulted(
        "",
        "Service",
        json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}),
    );
    assert_eq!(cluster_ip["spec"]["type"], "ClusterIP");
    assert_eq!(cluster_ip["spec"]["ports"][0]["targetPort"], "http");
    assert!(cluster_ip["spec"].get("externalTrafficPolicy").is_none());
    let external = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "x.com"}}),
    );
    assert!(external["spec"].get("ipFamilies").is_none());
}

#[test]
fn small_kinds() {
    let ns = defaulted("", "Namespace", json!({"metadata": {"name": "a"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    let secret = defaulted("", "Secret", json!({"stringData": {"password": "hunter2"}}));
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert!(secret.get("stringData").is_none());
    let pc = defaulted("scheduling.k8s.io", "PriorityClass", json!({"value": 5}));
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    let rb = defaulted(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"subjects": [{"kind": "User", "name": "a"}, {"kind": "ServiceAccount", "name": "b"}]}),
    );
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert!(rb["subjects"][1].get("apiGroup").is_none());
    let eps = defaulted(
        "discovery.k8s.io",
        "EndpointSlice",
        json!({"ports": [{"port": 80}]}),
    );
    assert_eq!(
        eps["ports"][0],
        json!({"port": 80, "name": "", "protocol": "TCP"})
    );
    let unknown = defaulted("example.com", "Widget", json!({"spec": {}}));
    assert_eq!(unknown, json!({"spec": {}}));
}
