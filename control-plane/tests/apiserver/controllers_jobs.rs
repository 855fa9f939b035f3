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

/// Writes a pod's status as its kubelet would (a merge patch of the status subresource).
fn patch_pod_status(api: &TestApiserver, pod: &str, patch: &str) -> std::process::Output {
    api.kubectl(
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ],
        None,
    )
}

fn set_phase(api: &TestApiserver, pod: &str, phase: &str) {
    let patch = format!("{{\"status\":{{\"phase\":\"{phase}\"}}}}");
    // The pod may be gone already (counted and released); that is fine.
    let _ = patch_pod_status(api, pod, &patch);
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
    wait_condition(&api, "job/calc", "complete");
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
    wait_condition(&api, "job/slow", "failed");
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

/// Plays the kubelet for a pod that failed: phase Failed, container `main` terminated with
/// `exit_code` (finished now), and the extra pod `conditions`.
fn fail_pod(api: &TestApiserver, pod: &str, exit_code: i32, conditions: &str) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let patch = format!(
        "{{\"status\":{{\"phase\":\"Failed\",\"conditions\":{conditions},\"containerStatuses\":[{{\"name\":\"main\",\"image\":\"registry.example/task:1\",\"imageID\":\"\",\"ready\":false,\"restartCount\":0,\"state\":{{\"terminated\":{{\"exitCode\":{exit_code},\"reason\":\"Error\",\"finishedAt\":\"{now}\"}}}}}}]}}}}"
    );
    let output = patch_pod_status(api, pod, &patch);
    assert!(
        output.status.success(),
        "failing {pod}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits (30 s at most) for `object`'s condition, as `kubectl wait` does.
fn wait_condition(api: &TestApiserver, object: &str, condition: &str) {
    api.ok(
        &[
            "wait",
            &format!("--for=condition={condition}"),
            object,
            "--timeout=30s",
        ],
        None,
    );
}

/// Waits (30 s at most) until the Job's field at `path` (`.status.active`) satisfies `done`.
fn wait_job_field(
    api: &TestApiserver,
    job: &str,
    path: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let jsonpath = format!("jsonpath={{{path}}}");
    wait_for(api, &["get", "job", job, "-o", &jsonpath], what, done);
}

fn job_field(api: &TestApiserver, job: &str, path: &str) -> String {
    api.ok(
        &["get", "job", job, "-o", &format!("jsonpath={{{path}}}")],
        None,
    )
}

/// The running (not finished, not deleted) pods of `job`, by name.
fn running_pods(api: &TestApiserver, job: &str, extra_selector: &str) -> Vec<String> {
    let out = api.ok(
        &[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={job}{extra_selector}"),
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ],
        None,
    );
    out.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let finished = matches!(fields.get(1), Some(&"Succeeded" | &"Failed"));
            let deleting = fields.get(2).is_some_and(|d| !d.is_empty());
            (!finished && !deleting).then(|| fields[0].to_string())
        })
        .collect()
}

/// The one running pod of an Indexed Job's `index`, waiting for it to exist.
fn index_pod(api: &TestApiserver, job: &str, index: i32) -> String {
    let selector = format!(",batch.kubernetes.io/job-completion-index={index}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let [pod] = running_pods(api, job, &selector).as_slice() {
            return pod.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no running pod of {job} index {index} in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const POD_FAILURE_POLICY: &str = "  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]\n    - action: Ignore\n      onPodConditions:\n      - type: DisruptionTarget\n    - action: Count\n      onExitCodes:\n        operator: NotIn\n        values: [42]\n";

#[test]
fn pod_failure_policy_ignores_counts_and_fails_the_job() {
    if !require_kubectl("pod_failure_policy_ignores_counts_and_fails_the_job") {
        return;
    }
    let api = TestApiserver::start();
    // Only restartPolicy Never goes with a pod failure policy.
    let on_failure = job(
        "retrying",
        &format!("  completions: 2\n{POD_FAILURE_POLICY}"),
    )
    .replace("restartPolicy: Never", "restartPolicy: OnFailure");
    let refused = api.fails(&["create", "-f", "-"], Some(&on_failure));
    assert!(
        refused.contains("spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"),
        "{refused}"
    );

    let _controllers = start(&api, &["job"], ControllerConfig::default());
    let spec =
        format!("  parallelism: 2\n  completions: 4\n  backoffLimit: 3\n{POD_FAILURE_POLICY}");
    api.ok(&["create", "-f", "-"], Some(&job("policed", &spec)));
    wait_job_field(&api, "policed", ".status.active", "2 active pods", |a| {
        a == "2"
    });
    // A disrupted pod (evicted, preempted) matches Ignore: not counted, replaced at once.
    let first = running_pods(&api, "policed", "");
    let disruption = "[{\"type\":\"DisruptionTarget\",\"status\":\"True\",\"reason\":\"EvictionByEvictionAPI\"}]";
    fail_pod(&api, &first[0], 137, disruption);
    wait_for(
        &api,
        &[
            "get",
            "pod",
            &first[0],
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
        "the ignored pod to be released and replaced",
        |finalizers| finalizers.is_empty() && running_pods(&api, "policed", "").len() == 2,
    );
    assert_eq!(job_field(&api, "policed", ".status.failed"), "0");

    // Exit code 1 matches Count: one failure toward the backoff limit.
    let second = running_pods(&api, "policed", "");
    fail_pod(&api, &second[0], 1, "[]");
    wait_job_field(
        &api,
        "policed",
        ".status.failed",
        "the counted failure",
        |f| f == "1",
    );
    // A deleted pod is not a failure until the kubelet reports it Failed.
    api.ok(&["delete", "pod", &second[1], "--wait=false"], None);
    wait_job_field(
        &api,
        "policed",
        ".status.terminating",
        "the deleted pod to be terminating",
        |t| t == "1",
    );
    assert_eq!(job_field(&api, "policed", ".status.failed"), "1");
    // The deleted pod keeps its place; the counted failure waits out its backoff.
    assert_eq!(running_pods(&api, "policed", ""), Vec::<String>::new());

    // Exit code 42 of container main matches FailJob.
    fail_pod(&api, &second[1], 42, "[]");
    wait_condition(&api, "job/policed", "failed");
    let expected = format!(
        "Container main for pod default/{} failed with exit code 42 matching FailJob rule at index 0",
        second[1]
    );
    assert_eq!(
        condition(&api, "job/policed", "Failed", "reason"),
        "PodFailurePolicy"
    );
    assert_eq!(
        condition(&api, "job/policed", "Failed", "message"),
        expected
    );
    assert_eq!(
        condition(&api, "job/policed", "FailureTarget", "reason"),
        "PodFailurePolicy"
    );
    assert_eq!(job_field(&api, "policed", ".status.failed"), "2");
    assert_eq!(job_field(&api, "policed", ".status.active"), "0");
    let described = wait_for(&api, &["describe", "job", "policed"], "the event", |d| {
        d.contains("PodFailurePolicy")
    });
    assert!(described.contains(&expected), "{described}");
}

#[test]
fn backoff_limit_per_index_fails_indexes_not_the_job() {
    if !require_kubectl("backoff_limit_per_index_fails_indexes_not_the_job") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(&api, &["job"], ControllerConfig::default());
    let fail_index = "  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes:\n        operator: In\n        values: [42]\n";
    let spec = format!(
        "  completionMode: Indexed\n  completions: 3\n  parallelism: 3\n  backoffLimitPerIndex: 1\n{fail_index}"
    );
    api.ok(&["create", "-f", "-"], Some(&job("per-index", &spec)));
    // A second Job tolerates no failed index at all.
    let strict = format!(
        "  completionMode: Indexed\n  completions: 2\n  parallelism: 2\n  backoffLimitPerIndex: 1\n  maxFailedIndexes: 0\n{fail_index}"
    );
    api.ok(&["create", "-f", "-"], Some(&job("strict", &strict)));

    let zero = index_pod(&api, "per-index", 0);
    let annotation = |pod: &str| {
        api.ok(
            &[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.metadata.annotations.batch\\.kubernetes\\.io/job-index-failure-count}",
            ],
            None,
        )
    };
    assert_eq!(annotation(&zero), "0");
    // Index 0 fails once: within its limit, so it runs again (after the index's backoff)
    // with the failure carried in the annotation.
    fail_pod(&api, &zero, 1, "[]");
    // Meanwhile the strict Job's index 0 fails by the FailIndex rule: over maxFailedIndexes.
    fail_pod(&api, &index_pod(&api, "strict", 0), 42, "[]");
    wait_condition(&api, "job/strict", "failed");
    assert_eq!(
        condition(&api, "job/strict", "Failed", "reason"),
        "MaxFailedIndexesExceeded"
    );
    assert_eq!(
        condition(&api, "job/strict", "Failed", "message"),
        "Job has exceeded the specified maximal number of failed indexes"
    );
    assert_eq!(job_field(&api, "strict", ".status.failedIndexes"), "0");

    let zero_again = index_pod(&api, "per-index", 0);
    assert_ne!(zero_again, zero);
    assert_eq!(annotation(&zero_again), "1");
    assert_eq!(job_field(&api, "per-index", ".status.failed"), "1");
    assert_eq!(job_field(&api, "per-index", ".status.failedIndexes"), "");
    // Index 1 fails by the FailIndex rule; index 0 fails a second time, over its limit.
    fail_pod(&api, &index_pod(&api, "per-index", 1), 42, "[]");
    fail_pod(&api, &zero_again, 1, "[]");
    wait_job_field(
        &api,
        "per-index",
        ".status.failedIndexes",
        "indexes 0 and 1 to fail",
        |f| f == "0,1",
    );
    // The Job runs on: index 2 still completes, then the Job fails for its failed indexes.
    assert!(!job_field(&api, "per-index", ".status.conditions").contains("Failed"));
    set_phase(&api, &index_pod(&api, "per-index", 2), "Succeeded");
    wait_condition(&api, "job/per-index", "failed");
    assert_eq!(
        condition(&api, "job/per-index", "Failed", "reason"),
        "FailedIndexes"
    );
    assert_eq!(
        condition(&api, "job/per-index", "Failed", "message"),
        "Job has failed indexes"
    );
    let status = job_field(
        &api,
        "per-index",
        ".status.completedIndexes} {.status.failedIndexes} {.status.succeeded} {.status.failed",
    );
    assert_eq!(status, "2 0,1 1 3");
    let described = wait_for(&api, &["describe", "job", "per-index"], "the event", |d| {
        d.contains("FailedIndexes")
    });
    assert!(
        described.contains("0 Active (0 Ready) / 1 Succeeded / 3 Failed"),
        "{described}"
    );
    // Every pod of an index is named and hosted after it.
    let hostnames = api.ok(
        &[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=per-index,batch.kubernetes.io/job-completion-index=2",
            "-o",
            "jsonpath={.items[*].spec.hostname}",
        ],
        None,
    );
    assert_eq!(hostnames, "per-index-2");
}

#[test]
fn success_policy_completes_the_job_early() {
    if !require_kubectl("success_policy_completes_the_job_early") {
        return;
    }
    let api = TestApiserver::start();
    let _controllers = start(&api, &["job"], ControllerConfig::default());
    let spec = "  completionMode: Indexed\n  completions: 4\n  parallelism: 4\n  successPolicy:\n    rules:\n    - succeededIndexes: \"0-2\"\n      succeededCount: 2\n";
    api.ok(&["create", "-f", "-"], Some(&job("leader", spec)));
    // Index 3 is outside the rule's indexes; one of 0-2 is not enough.
    set_phase(&api, &index_pod(&api, "leader", 3), "Succeeded");
    set_phase(&api, &index_pod(&api, "leader", 0), "Succeeded");
    wait_job_field(
        &api,
        "leader",
        ".status.completedIndexes",
        "indexes 0 and 3",
        |c| c == "0,3",
    );
    assert!(!job_field(&api, "leader", ".status.conditions").contains("SuccessCriteriaMet"));
    // A second of indexes 0-2 meets the rule: the Job is complete, the rest terminated.
    set_phase(&api, &index_pod(&api, "leader", 2), "Succeeded");
    wait_condition(&api, "job/leader", "complete");
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        assert_eq!(
            condition(&api, "job/leader", type_, "reason"),
            "SuccessPolicy"
        );
        assert_eq!(
            condition(&api, "job/leader", type_, "message"),
            "Matched rules at index 0"
        );
    }
    wait_for(
        &api,
        &[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-completion-index=1",
            "-o",
            "name",
        ],
        "the pod of index 1 to be removed",
        |p| p.trim().is_empty(),
    );
    let status = job_field(
        &api,
        "leader",
        ".status.completedIndexes} {.status.succeeded} {.status.failed} {.status.active",
    );
    // As in kube, the pod removed before it finished counts as failed.
    assert_eq!(status, "0,2,3 3 1 0");
    let described = api.ok(&["describe", "job", "leader"], None);
    assert!(
        described.contains("Completed Indexes:  0,2,3"),
        "{described}"
    );
}
