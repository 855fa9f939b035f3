//! keel-controller-manager's batch and cleanup controllers against the real apiserver, run
//! in-process: Jobs complete, fail on backoff and deadline, expire by TTL; CronJobs start
//! Jobs; the garbage collector deletes in the background and foreground and orphans; the
//! namespace controller reports what holds a terminating namespace; every namespace gets its
//! `default` ServiceAccount and `kube-root-ca.crt`; podgc removes pods of vanished nodes. The
//! test plays the kubelet by writing pod phases through the status subresource.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_control_plane::controllers::{self, Context, ControllerConfig, podgc};

use super::harness::{Component, TestApiserver, require_kubectl, wait_for_kubectl as wait_for};

/// Runs the named controllers against `api`.
fn start(api: &TestApiserver, names: &[&str], config: ControllerConfig) -> Component {
    let list: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let selected = controllers::select(&list).expect("known controllers");
    Component::start(api, move |client, token| async move {
        let context = Arc::new(Context { client, config });
        controllers::run(context, &selected, token).await;
    })
}

fn job(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: registry.example/task:1\n"
    )
}

fn job_pods(api: &TestApiserver, job: &str) -> Vec<(String, String)> {
    let out = api.ok(
        &[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={job}"),
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
        ],
        None,
    );
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((
                parts.next()?.to_string(),
                parts.next().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

fn set_phase(api: &TestApiserver, pod: &str, phase: &str) {
    let patch = format!("{{\"status\":{{\"phase\":\"{phase}\"}}}}");
    // The pod may be gone already (counted and released); that is fine.
    let _ = api.kubectl(
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
}

/// Plays the kubelet: every pod of `job` that has not finished ends in `phase`, until
/// `done` holds (30 s at most).
fn finish_pods_until(api: &TestApiserver, job: &str, phase: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "job {job} did not get there in 30 s"
        );
        for (pod, current) in job_pods(api, job) {
            if current != "Succeeded" && current != "Failed" {
                set_phase(api, &pod, phase);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn condition(api: &TestApiserver, kind_name: &str, type_: &str, field: &str) -> String {
    api.ok(
        &[
            "get",
            kind_name,
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].{field}}}"),
        ],
        None,
    )
}

#[test]
fn job_runs_its_completions_with_bounded_parallelism() {
    if !require_kubectl("job_runs_its_completions_with_bounded_parallelism") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(&api, &["job"], ControllerConfig::default());
    api.ok(
        &["create", "-f", "-"],
        Some(&job("calc", "  completions: 3\n  parallelism: 2\n")),
    );
    // Two pods at once, owned by the Job and holding the tracking finalizer.
    wait_for(
        &api,
        &["get", "job", "calc", "-o", "jsonpath={.status.active}"],
        "2 active pods",
        |a| a == "2",
    );
    let pods = job_pods(&api, "calc");
    assert_eq!(pods.len(), 2, "{pods:?}");
    let meta = api.ok(
        &["get", "pod", &pods[0].0, "-o", "jsonpath={.metadata.finalizers} {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.labels.job-name}"],
        None,
    );
    assert_eq!(meta, "[\"batch.kubernetes.io/job-tracking\"] Job/calc calc");

    let complete = || {
        let out = api.kubectl(
            &[
                "wait",
                "--for=condition=complete",
                "job/calc",
                "--timeout=1s",
            ],
            None,
        );
        out.status.success()
    };
    finish_pods_until(&api, "calc", "Succeeded", complete);
    api.ok(
        &[
            "wait",
            "--for=condition=complete",
            "job/calc",
            "--timeout=30s",
        ],
        None,
    );
    let status = api.ok(
        &["get", "job", "calc", "-o", "jsonpath={.status.succeeded} {.status.failed} {.status.active} {.status.completionTime}"],
        None,
    );
    let fields: Vec<&str> = status.split(' ').collect();
    assert_eq!(&fields[..3], ["3", "0", "0"], "{status}");
    assert!(!fields[3].is_empty(), "completionTime set: {status}");
    // Every counted pod was released from the finalizer; no pod beyond the 3 completions.
    let finalizers = api.ok(
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={.items[*].metadata.finalizers}",
        ],
        None,
    );
    assert!(!finalizers.contains("job-tracking"), "{finalizers}");
    assert_eq!(job_pods(&api, "calc").len(), 3);
    let described = api.ok(&["describe", "job", "calc"], None);
    assert!(described.contains("SuccessfulCreate"), "{described}");
    assert!(described.contains("Completed"), "{described}");
}

#[test]
fn failing_pods_exhaust_the_backoff_limit() {
    if !require_kubectl("failing_pods_exhaust_the_backoff_limit") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(&api, &["job"], ControllerConfig::default());
    api.ok(
        &["create", "-f", "-"],
        Some(&job(
            "flaky",
            "  parallelism: 2\n  completions: 4\n  backoffLimit: 1\n",
        )),
    );
    wait_for(
        &api,
        &["get", "job", "flaky", "-o", "jsonpath={.status.active}"],
        "2 active pods",
        |a| a == "2",
    );
    let failed = || {
        api.kubectl(
            &[
                "wait",
                "--for=condition=failed",
                "job/flaky",
                "--timeout=1s",
            ],
            None,
        )
        .status
        .success()
    };
    finish_pods_until(&api, "flaky", "Failed", failed);
    assert_eq!(
        condition(&api, "job/flaky", "Failed", "reason"),
        "BackoffLimitExceeded"
    );
    assert_eq!(
        api.ok(
            &["get", "job", "flaky", "-o", "jsonpath={.status.failed}"],
            None
        ),
        "2"
    );
    let described = wait_for(&api, &["describe", "job", "flaky"], "the event", |d| {
        d.contains("BackoffLimitExceeded")
    });
    assert!(
        described.contains("Job has reached the specified backoff limit"),
        "{described}"
    );
}

#[test]
fn active_deadline_fails_the_job_and_removes_its_pods() {
    if !require_kubectl("active_deadline_fails_the_job_and_removes_its_pods") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(&api, &["job"], ControllerConfig::default());
    api.ok(
        &["create", "-f", "-"],
        Some(&job("slow", "  activeDeadlineSeconds: 2\n")),
    );
    wait_for(
        &api,
        &["get", "job", "slow", "-o", "jsonpath={.status.active}"],
        "1 active pod",
        |a| a == "1",
    );
    api.ok(
        &[
            "wait",
            "--for=condition=failed",
            "job/slow",
            "--timeout=30s",
        ],
        None,
    );
    assert_eq!(
        condition(&api, "job/slow", "Failed", "reason"),
        "DeadlineExceeded"
    );
    wait_for(
        &api,
        &["get", "pods", "-o", "name"],
        "the pod to be deleted",
        |p| p.trim().is_empty(),
    );
    assert_eq!(
        api.ok(
            &["get", "job", "slow", "-o", "jsonpath={.status.active}"],
            None
        ),
        "0"
    );
}

#[test]
fn finished_job_with_zero_ttl_is_deleted_with_its_pods() {
    if !require_kubectl("finished_job_with_zero_ttl_is_deleted_with_its_pods") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(
        &api,
        &["job", "ttl-after-finished", "garbagecollector"],
        ControllerConfig::default(),
    );
    api.ok(
        &["create", "-f", "-"],
        Some(&job("brief", "  ttlSecondsAfterFinished: 0\n")),
    );
    let gone = || {
        let out = api.kubectl(&["get", "job", "brief"], None);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
    };
    finish_pods_until(&api, "brief", "Succeeded", gone);
    wait_for(
        &api,
        &["get", "pods", "-o", "name"],
        "the job's pods to be collected",
        |p| p.trim().is_empty(),
    );
}

fn replica_set(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  replicas: 0\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: main\n        image: registry.example/app:1\n"
    )
}

/// A ReplicaSet and `count` pods owned by it (made by hand: no ReplicaSet controller runs).
fn owner_with_pods(api: &TestApiserver, name: &str, count: usize, pod_finalizer: Option<&str>) {
    api.ok(&["create", "-f", "-"], Some(&replica_set(name)));
    let uid = api.ok(&["get", "rs", name, "-o", "jsonpath={.metadata.uid}"], None);
    let finalizers = pod_finalizer
        .map(|f| format!("  finalizers: [\"{f}\"]\n"))
        .unwrap_or_default();
    for i in 0..count {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-{i}\n  namespace: default\n  labels:\n    app: {name}\n{finalizers}  ownerReferences:\n  - apiVersion: apps/v1\n    kind: ReplicaSet\n    name: {name}\n    uid: {uid}\n    controller: true\n    blockOwnerDeletion: true\nspec:\n  containers:\n  - name: main\n    image: registry.example/app:1\n"
        );
        api.ok(&["create", "-f", "-"], Some(&pod));
    }
}

fn pods_of(api: &TestApiserver, app: &str) -> String {
    api.ok(
        &["get", "pods", "-l", &format!("app={app}"), "-o", "name"],
        None,
    )
}

#[test]
fn garbage_collector_background_foreground_and_orphan() {
    if !require_kubectl("garbage_collector_background_foreground_and_orphan") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(&api, &["garbagecollector"], ControllerConfig::default());

    // Background: the owner goes at once, then its dependents.
    owner_with_pods(&api, "bg", 2, None);
    api.ok(&["delete", "rs", "bg", "--cascade=background"], None);
    wait_for(
        &api,
        &["get", "pods", "-l", "app=bg", "-o", "name"],
        "bg's pods to be collected",
        |p| p.trim().is_empty(),
    );

    // A ConfigMap owned by a Secret that is deleted: resources beyond workloads count too.
    api.ok(
        &[
            "create",
            "secret",
            "generic",
            "keeper",
            "--from-literal=k=v",
        ],
        None,
    );
    let uid = api.ok(
        &["get", "secret", "keeper", "-o", "jsonpath={.metadata.uid}"],
        None,
    );
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  namespace: default\n  ownerReferences:\n  - apiVersion: v1\n    kind: Secret\n    name: keeper\n    uid: {uid}\ndata:\n  a: b\n"
    );
    api.ok(&["create", "-f", "-"], Some(&cm));
    api.ok(&["delete", "secret", "keeper"], None);
    wait_for(
        &api,
        &["get", "configmaps", "-o", "name"],
        "the owned configmap to be collected",
        |c| !c.contains("configmap/kept"),
    );

    // Foreground: the owner waits (with the foregroundDeletion finalizer) while a blocking
    // dependent remains, and goes once it is gone.
    owner_with_pods(&api, "fg", 1, Some("example.com/hold"));
    api.ok(
        &["delete", "rs", "fg", "--cascade=foreground", "--wait=false"],
        None,
    );
    wait_for(
        &api,
        &[
            "get",
            "pod",
            "fg-0",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        "the dependent to be deleted",
        |t| !t.is_empty(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let owner = api.ok(
        &["get", "rs", "fg", "-o", "jsonpath={.metadata.finalizers}"],
        None,
    );
    assert!(
        owner.contains("foregroundDeletion"),
        "the owner waits: {owner}"
    );
    api.ok(
        &[
            "patch",
            "pod",
            "fg-0",
            "--type=merge",
            "-p",
            "{\"metadata\":{\"finalizers\":null}}",
        ],
        None,
    );
    wait_for(
        &api,
        &["get", "rs", "-o", "name"],
        "the owner to go after its dependent",
        |r| !r.contains("replicaset.apps/fg"),
    );

    // Orphan: the owner goes, the dependents stay without the reference.
    owner_with_pods(&api, "or", 2, None);
    api.ok(&["delete", "rs", "or", "--cascade=orphan"], None);
    wait_for(
        &api,
        &["get", "rs", "-o", "name"],
        "the orphaning owner to go",
        |r| !r.contains("replicaset.apps/or"),
    );
    assert_eq!(pods_of(&api, "or").lines().count(), 2);
    let refs = api.ok(
        &[
            "get",
            "pods",
            "-l",
            "app=or",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences}",
        ],
        None,
    );
    assert!(refs.trim().is_empty(), "orphans keep no reference: {refs}");
}

#[test]
fn namespace_deletion_reports_and_waits_for_finalizers() {
    if !require_kubectl("namespace_deletion_reports_and_waits_for_finalizers") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(&api, &["namespace"], ControllerConfig::default());
    api.ok(&["create", "namespace", "doomed"], None);
    api.ok(
        &[
            "-n",
            "doomed",
            "create",
            "configmap",
            "plain",
            "--from-literal=a=b",
        ],
        None,
    );
    api.ok(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: doomed\n  finalizers: [\"example.com/hold\"]\n"),
    );
    api.ok(
        &[
            "-n",
            "doomed",
            "run",
            "worker",
            "--image=registry.example/app:1",
        ],
        None,
    );
    api.ok(&["delete", "namespace", "doomed", "--wait=false"], None);
    let message = wait_for(
        &api,
        &[
            "get",
            "namespace",
            "doomed",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"NamespaceFinalizersRemaining\")].message}",
        ],
        "the finalizers condition",
        |m| !m.is_empty(),
    );
    assert_eq!(
        message,
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(
        condition(
            &api,
            "namespace/doomed",
            "NamespaceDeletionContentFailure",
            "status"
        ),
        "False"
    );
    let left = api.ok(
        &["-n", "doomed", "get", "configmaps,pods", "-o", "name"],
        None,
    );
    assert_eq!(left.trim(), "configmap/held", "everything else is gone");
    api.ok(
        &[
            "-n",
            "doomed",
            "patch",
            "configmap",
            "held",
            "--type=merge",
            "-p",
            "{\"metadata\":{\"finalizers\":null}}",
        ],
        None,
    );
    wait_for(
        &api,
        &["get", "namespaces", "-o", "name"],
        "the namespace to go",
        |n| !n.contains("namespace/doomed"),
    );
}

#[test]
fn every_namespace_gets_its_service_account_and_root_ca() {
    if !require_kubectl("every_namespace_gets_its_service_account_and_root_ca") {
        return;
    }
    let api = TestApiserver::start();
    let ca = api.dir.path().join("test-ca.crt");
    let bundle = "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca, bundle).expect("write the CA file");
    let config = ControllerConfig {
        root_ca_file: Some(ca),
        ..ControllerConfig::default()
    };
    let _controllers = start(&api, &["serviceaccount", "root-ca-cert-publisher"], config);
    api.ok(&["create", "namespace", "team"], None);
    for ns in ["default", "kube-system", "team"] {
        wait_for(
            &api,
            &["-n", ns, "get", "serviceaccount", "default", "-o", "name"],
            "the default service account",
            |s| s.trim() == "serviceaccount/default",
        );
        let data = wait_for(
            &api,
            &[
                "-n",
                ns,
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
            "kube-root-ca.crt",
            |d| !d.is_empty(),
        );
        assert_eq!(data, bundle);
    }
    // Deleted or edited, they come back.
    api.ok(&["-n", "team", "delete", "serviceaccount", "default"], None);
    api.ok(
        &[
            "-n",
            "team",
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "--type=merge",
            "-p",
            "{\"data\":{\"ca.crt\":\"tampered\"}}",
        ],
        None,
    );
    wait_for(
        &api,
        &[
            "-n",
            "team",
            "get",
            "serviceaccount",
            "default",
            "-o",
            "name",
        ],
        "the recreated service account",
        |s| s.trim() == "serviceaccount/default",
    );
    wait_for(
        &api,
        &[
            "-n",
            "team",
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
        "the restored bundle",
        |d| d == bundle,
    );
}

#[test]
fn podgc_removes_pods_of_nodes_that_do_not_exist() {
    if !require_kubectl("podgc_removes_pods_of_nodes_that_do_not_exist") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Node\nmetadata:\n  name: real\n"),
    );
    for (name, node) in [("stranded", "ghost"), ("placed", "real")] {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  nodeName: {node}\n  containers:\n  - name: main\n    image: registry.example/app:1\n"
        );
        api.ok(&["create", "-f", "-"], Some(&pod));
    }
    let settings = podgc::PodGcSettings {
        period: Duration::from_millis(200),
        quarantine: Duration::from_millis(500),
        terminated_pod_threshold: 12500,
    };
    let _podgc = Component::start(&api, move |client, token| {
        podgc::run_with(client, settings, token)
    });
    wait_for(
        &api,
        &["get", "pods", "-o", "name"],
        "the stranded pod to be collected",
        |p| !p.contains("pod/stranded"),
    );
    assert!(
        api.ok(&["get", "pods", "-o", "name"], None)
            .contains("pod/placed")
    );
}

#[test]
fn cronjob_starts_the_job_that_is_due() {
    if !require_kubectl("cronjob_starts_the_job_that_is_due") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(
        &["create", "-f", "-"],
        Some("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\n  namespace: default\nspec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: main\n            image: registry.example/task:1\n"),
    );
    // Without any controller, kubectl can start a Job from the template.
    api.ok(&["create", "job", "--from=cronjob/tick", "by-hand"], None);
    let owner = api.ok(
        &[
            "get",
            "job",
            "by-hand",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].name}",
        ],
        None,
    );
    assert_eq!(owner, "tick");
    // The CronJob last ran ten minutes ago, so a start is due now: no need to wait for the
    // clock to reach the next minute.
    let earlier = chrono::Utc::now() - chrono::Duration::minutes(10);
    let patch = format!(
        "{{\"status\":{{\"lastScheduleTime\":\"{}\"}}}}",
        earlier.format("%Y-%m-%dT%H:%M:%SZ")
    );
    api.ok(
        &[
            "patch",
            "cronjob",
            "tick",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
    let _controllers = start(&api, &["cronjob"], ControllerConfig::default());
    let active = wait_for(
        &api,
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.active[*].name}",
        ],
        "the scheduled job",
        |a| a.starts_with("tick-"),
    );
    let minutes: i64 = active
        .trim_start_matches("tick-")
        .parse()
        .expect("minutes since the epoch");
    let now_minutes = chrono::Utc::now().timestamp() / 60;
    assert!(
        (now_minutes - 1..=now_minutes).contains(&minutes),
        "{minutes} vs {now_minutes}"
    );
    let stamp = api.ok(
        &[
            "get",
            "job",
            &active,
            "-o",
            "jsonpath={.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
        ],
        None,
    );
    let scheduled: chrono::DateTime<chrono::Utc> = stamp.parse().expect("an RFC 3339 timestamp");
    assert_eq!(scheduled.timestamp() / 60, minutes);
    let last = api.ok(
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ],
        None,
    );
    assert_eq!(last, stamp);
    let described = api.ok(&["describe", "cronjob", "tick"], None);
    assert!(
        described.contains(&format!("Created job {active}")),
        "{described}"
    );
}
