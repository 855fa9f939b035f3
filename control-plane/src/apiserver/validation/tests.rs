//! Table-driven tests of `validate`: one case per rule, compared as kube-apiserver's messages.

use serde_json::{Value, json};

use super::super::defaults::apply_defaults;
use super::{validate, validate_status_update};

const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Defaults then validates (as the server does), returning the messages.
fn messages(group: &str, kind: &str, mut obj: Value, old: Option<&Value>) -> Vec<String> {
    apply_defaults(group, "v1", kind, &mut obj);
    validate(group, "v1", kind, &obj, old)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}]}]}
    })
}

/// Applies `edit` to a valid pod and expects exactly `expected`.
fn pod_case(edit: fn(&mut Value), expected: &[&str]) {
    let mut p = pod();
    edit(&mut p);
    assert_eq!(messages("", "Pod", p, None), expected);
}

#[test]
fn valid_objects_have_no_errors() {
    assert_eq!(messages("", "Pod", pod(), None), Vec::<String>::new());
    assert_eq!(
        messages("apps", "Deployment", deployment(), None),
        Vec::<String>::new()
    );
    assert_eq!(
        messages("", "Service", service(), None),
        Vec::<String>::new()
    );
    assert_eq!(messages("batch", "Job", job(), None), Vec::<String>::new());
    assert_eq!(
        messages("batch", "CronJob", cron_job("*/5 * * * *"), None),
        Vec::<String>::new()
    );
}

#[test]
fn metadata_rules() {
    pod_case(
        |p| p["metadata"]["name"] = json!("Web_1"),
        &[&format!(
            "metadata.name: Invalid value: \"Web_1\": {SUBDOMAIN_MESSAGE}"
        )],
    );
    pod_case(
        |p| {
            p["metadata"].as_object_mut().map(|m| m.remove("name"));
        },
        &["metadata.name: Required value: name or generateName is required"],
    );
    pod_case(
        |p| {
            p["metadata"].as_object_mut().map(|m| m.remove("name"));
            p["metadata"]["generateName"] = json!("web-");
        },
        &[],
    );
    pod_case(
        |p| p["metadata"]["labels"] = json!({"app": "a b"}),
        &[
            "metadata.labels[app]: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ],
    );
    pod_case(
        |p| p["metadata"]["labels"] = json!({"a/b/c": "x"}),
        &[
            "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ],
    );
    pod_case(
        |p| p["metadata"]["annotations"] = json!({"big": "x".repeat(262_145)}),
        &["metadata.annotations: Too long: must have at most 262144 bytes"],
    );
    let ns = messages("", "Namespace", json!({"metadata": {"name": "a.b"}}), None);
    assert_eq!(ns.len(), 1);
    assert!(
        ns[0].starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"),
        "{ns:?}"
    );
    let svc_name = messages(
        "",
        "Service",
        json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}),
        None,
    );
    assert!(
        svc_name[0].contains("a DNS-1035 label must consist"),
        "{svc_name:?}"
    );
}

#[test]
fn metadata_update_rules() {
    let old = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "data": {}});
    let renamed = messages(
        "",
        "ConfigMap",
        json!({"metadata": {"name": "other", "namespace": "default", "uid": "u1"}}),
        Some(&old),
    );
    assert_eq!(
        renamed,
        ["metadata.name: Invalid value: \"other\": field is immutable"]
    );
    let new_uid = messages(
        "",
        "ConfigMap",
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u2"}}),
        Some(&old),
    );
    assert_eq!(
        new_uid,
        ["metadata.uid: Invalid value: \"u2\": field is immutable"]
    );
    let no_uid = messages(
        "",
        "ConfigMap",
        json!({"metadata": {"name": "web", "namespace": "default"}}),
        Some(&old),
    );
    assert!(no_uid.is_empty());
}

#[test]
fn pod_rules() {
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &[&str])] = &[
        (
            |p| p["spec"]["containers"] = json!([]),
            &["spec.containers: Required value"],
        ),
        (
            |p| p["spec"]["containers"][0]["image"] = json!(""),
            &["spec.containers[0].image: Required value"],
        ),
        (
            |p| p["spec"]["containers"][0]["name"] = json!(""),
            &["spec.containers[0].name: Required value"],
        ),
        (
            |p| p["spec"]["containers"][0]["name"] = json!("Web"),
            &[
                "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            |p| p["spec"]["initContainers"] = json!([{"name": "web", "image": "busybox"}]),
            &["spec.containers[0].name: Duplicate value: \"web\""],
        ),
        (
            |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000),
            &[
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(0),
            &["spec.containers[0].ports[0].containerPort: Required value"],
        ),
        (
            |p| p["spec"]["containers"][0]["ports"][0]["protocol"] = json!("HTTP"),
            &[
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            |p| p["spec"]["restartPolicy"] = json!("Sometimes"),
            &[
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ],
        ),
        (
            |p| p["spec"]["volumes"] = json!([{"name": "data"}, {"name": "data"}]),
            &["spec.volumes[1].name: Duplicate value: \"data\""],
        ),
        (
            |p| {
                p["spec"]["volumes"] =
                    json!([{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}])
            },
            &["spec.volumes[0]: Forbidden: may not specify more than 1 volume type"],
        ),
        (
            |p| {
                p["spec"]["containers"][0]["volumeMounts"] =
                    json!([{"name": "data", "mountPath": "/d"}])
            },
            &[
                "spec.containers[0].volumeMounts[0].name: Invalid value: \"data\": not found in the pod's volumes",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data"}]),
            &[
                "spec.containers[0].volumeMounts[0].name: Invalid value: \"data\": not found in the pod's volumes",
                "spec.containers[0].volumeMounts[0].mountPath: Required value",
            ],
        ),
        (
            |p| {
                p["spec"]["containers"][0]["resources"] =
                    json!({"limits": {"cpu": "abc"}, "requests": {"cpu": "1"}})
            },
            &[
                "spec.containers[0].resources.limits[cpu]: Invalid value: \"abc\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ],
        ),
        (
            |p| {
                p["spec"]["containers"][0]["resources"] =
                    json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}})
            },
            &[
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": "-1Mi"}}),
            &[
                "spec.containers[0].resources.requests[memory]: Invalid value: \"-1Mi\": must be greater than or equal to 0",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["env"] = json!([{"name": "A=B", "value": "x"}]),
            &[
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            ],
        ),
        (
            |p| p["spec"]["containers"][0]["env"] = json!([{"value": "x"}]),
            &["spec.containers[0].env[0].name: Required value"],
        ),
        (
            |p| {
                p["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists", "value": "v"}])
            },
            &[
                "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
            ],
        ),
    ];
    for (edit, expected) in cases {
        pod_case(*edit, expected);
    }
}

#[test]
fn pod_updates() {
    let mut old = pod();
    apply_defaults("", "v1", "Pod", &mut old);
    let mut new_image = old.clone();
    new_image["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    new_image["spec"]["activeDeadlineSeconds"] = json!(60);
    new_image["metadata"]["labels"]["extra"] = json!("yes");
    assert!(validate("", "v1", "Pod", &new_image, Some(&old)).is_empty());
    let mut new_port = old.clone();
    new_port["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(81);
    let errors: Vec<String> = validate("", "v1", "Pod", &new_port, Some(&old))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{errors:?}");
    let mut dropped = old.clone();
    dropped["spec"]["tolerations"] = json!([]);
    assert_eq!(validate("", "v1", "Pod", &dropped, Some(&old)).len(), 1);

    let mut running = old.clone();
    running["status"]["phase"] = json!("Running");
    assert!(validate_status_update("", "v1", "Pod", &running, &old).is_empty());
    let mut bogus = old.clone();
    bogus["status"]["phase"] = json!("Sleeping");
    assert_eq!(
        validate_status_update("", "v1", "Pod", &bogus, &old).len(),
        1
    );
    let mut failed = old.clone();
    failed["status"]["phase"] = json!("Failed");
    assert_eq!(
        validate_status_update("", "v1", "Pod", &running, &failed).len(),
        1
    );
}

fn deployment() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
        }
    })
}

#[test]
fn workload_rules() {
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &[&str])] = &[
        (
            |d| d["spec"]["replicas"] = json!(-1),
            &["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            |d| {
                d["spec"].as_object_mut().map(|s| s.remove("selector"));
            },
            &["spec.selector: Required value"],
        ),
        (
            |d| d["spec"]["selector"] = json!({}),
            &["spec.selector: Invalid value: {}: empty selector is invalid for deployment"],
        ),
        (
            |d| d["spec"]["selector"] = json!({"matchLabels": {"app": "db"}}),
            &[
                "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
            ],
        ),
        (
            |d| d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never"),
            &[
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ],
        ),
        (
            |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(""),
            &["spec.template.spec.containers[0].image: Required value"],
        ),
        (
            |d| {
                d["spec"]["strategy"] =
                    json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
            },
            &[
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ],
        ),
        (
            |d| {
                d["spec"]["strategy"] =
                    json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
            },
            &[
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ],
        ),
        (
            |d| d["spec"]["strategy"] = json!({"type": "Blue"}),
            &[
                "spec.strategy.type: Unsupported value: \"Blue\": supported values: \"Recreate\", \"RollingUpdate\"",
            ],
        ),
    ];
    for (edit, expected) in cases {
        let mut d = deployment();
        edit(&mut d);
        assert_eq!(messages("apps", "Deployment", d, None), *expected);
    }
    let old = deployment();
    let mut reselected = deployment();
    reselected["spec"]["selector"] = json!({"matchLabels": {"app": "web", "x": "y"}});
    reselected["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
    assert_eq!(
        messages("apps", "Deployment", reselected, Some(&old)),
        [
            "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"x\":\"y\"}}: field is immutable"
        ]
    );
    for kind in ["ReplicaSet", "StatefulSet", "DaemonSet"] {
        let mut w = deployment();
        w["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        assert_eq!(messages("apps", kind, w, None).len(), 1, "{kind}");
    }
    let mut sts = deployment();
    apply_defaults("apps", "v1", "StatefulSet", &mut sts);
    let mut changed = sts.clone();
    changed["spec"]["podManagementPolicy"] = json!("Parallel");
    let errors = validate("apps", "v1", "StatefulSet", &changed, Some(&sts));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with(
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"
    ));
    changed["spec"]["podManagementPolicy"] = json!("OrderedReady");
    changed["spec"]["replicas"] = json!(5);
    assert!(validate("apps", "v1", "StatefulSet", &changed, Some(&sts)).is_empty());
}

fn job() -> Value {
    json!({
        "metadata": {"name": "pi", "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}
    })
}

#[test]
fn job_rules() {
    let mut always = job();
    always["spec"]["template"]["spec"]
        .as_object_mut()
        .map(|s| s.remove("restartPolicy"));
    assert_eq!(
        messages("batch", "Job", always, None),
        [
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        ]
    );
    let mut negative = job();
    negative["spec"]["parallelism"] = json!(-1);
    negative["spec"]["backoffLimit"] = json!(-2);
    assert_eq!(
        messages("batch", "Job", negative, None),
        [
            "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
            "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0"
        ]
    );
    let mut indexed = job();
    indexed["spec"]["completionMode"] = json!("Indexed");
    indexed["spec"]["parallelism"] = json!(2);
    assert_eq!(
        messages("batch", "Job", indexed, None),
        ["spec.completions: Required value: when completion mode is Indexed"]
    );
    let mut old = job();
    apply_defaults("batch", "v1", "Job", &mut old);
    let mut new_template = old.clone();
    new_template["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
    let errors = validate("batch", "v1", "Job", &new_template, Some(&old));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("spec.template: Invalid value: ")
    );
    assert!(errors[0].to_string().ends_with(": field is immutable"));
}

#[test]
fn daemon_set_rolling_update_surges_or_goes_unavailable() {
    let daemon_set = |rolling: Value| {
        json!({
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
                "template": {"metadata": {"labels": {"app": "agent"}},
                             "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}
            }
        })
    };
    let check = |rolling: Value| messages("apps", "DaemonSet", daemon_set(rolling), None);
    assert!(check(json!({"maxSurge": 1, "maxUnavailable": 0})).is_empty());
    assert!(check(json!({"maxSurge": "50%", "maxUnavailable": "0%"})).is_empty());
    assert!(check(json!({})).is_empty());
    // maxUnavailable defaults to 1, so a surge alone is refused.
    assert_eq!(
        check(json!({"maxSurge": 1})),
        [
            "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"
        ]
    );
    assert_eq!(
        check(json!({"maxSurge": 0, "maxUnavailable": 0})),
        [
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
        ]
    );
}

#[test]
fn job_policy_rules() {
    let mut valid = job();
    valid["spec"]["completionMode"] = json!("Indexed");
    valid["spec"]["completions"] = json!(4);
    valid["spec"]["backoffLimitPerIndex"] = json!(1);
    valid["spec"]["maxFailedIndexes"] = json!(2);
    valid["spec"]["podFailurePolicy"] = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "pi", "operator": "In", "values": [42]}},
        {"action": "FailIndex", "onExitCodes": {"operator": "NotIn", "values": [0, 1]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    ]});
    valid["spec"]["successPolicy"] =
        json!({"rules": [{"succeededIndexes": "0,2-3", "succeededCount": 2}]});
    assert_eq!(
        messages("batch", "Job", valid.clone(), None),
        Vec::<String>::new()
    );

    let mut on_failure = job();
    on_failure["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    on_failure["spec"]["podFailurePolicy"] = json!({"rules": []});
    assert_eq!(
        messages("batch", "Job", on_failure, None),
        [
            "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"
        ]
    );

    let mut bad_rules = job();
    bad_rules["spec"]["podFailurePolicy"] = json!({"rules": [
        {"action": "FailIndex", "onExitCodes": {"containerName": "other", "operator": "In", "values": [0, 3, 2, 3]}},
        {"action": "Restart", "onExitCodes": {"operator": "In", "values": [1]}, "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "Count"}
    ]});
    bad_rules["spec"]["podReplacementPolicy"] = json!("TerminatingOrFailed");
    assert_eq!(
        messages("batch", "Job", bad_rules, None),
        [
            "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
            "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"other\": must be one of the container or initContainer names in the pod template",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[3]: Duplicate value: 3",
            "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,3,2,3]: must be ordered",
            "spec.podFailurePolicy.rules[1].action: Unsupported value: \"Restart\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
            "spec.podFailurePolicy.rules[1]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            "spec.podFailurePolicy.rules[2]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
            "spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\"",
        ]
    );

    let mut not_indexed = job();
    not_indexed["spec"]["maxFailedIndexes"] = json!(1);
    not_indexed["spec"]["successPolicy"] = json!({"rules": [{}]});
    assert_eq!(
        messages("batch", "Job", not_indexed, None),
        [
            "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
            "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode",
            "spec.successPolicy: Invalid value: {\"rules\":[{}]}: requires indexed completion mode",
            "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be specified",
        ]
    );

    let mut bad_success = valid;
    bad_success["spec"]["maxFailedIndexes"] = json!(5);
    bad_success["spec"]["successPolicy"] = json!({"rules": [
        {"succeededIndexes": "2,1"},
        {"succeededIndexes": "0-1", "succeededCount": 3}
    ]});
    assert_eq!(
        messages("batch", "Job", bad_success, None),
        [
            "spec.maxFailedIndexes: Invalid value: 5: must be less than or equal to completions",
            "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"2,1\": error parsing succeededIndexes: non-increasing order, previous: 2, current: 1",
            "spec.successPolicy.rules[1].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number of indexes in the specified succeededIndexes field)",
        ]
    );
}

fn cron_job(schedule: &str) -> Value {
    json!({
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}
    })
}

#[test]
fn cron_job_rules() {
    let cases: &[(&str, &[&str])] = &[
        ("@hourly", &[]),
        ("0 0 * * MON-FRI", &[]),
        (
            "* * *",
            &["spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: * * *"],
        ),
        (
            "61 * * * *",
            &[
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
            ],
        ),
        (
            "TZ=UTC 0 * * * *",
            &[
                "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ],
        ),
        ("", &["spec.schedule: Required value"]),
    ];
    for (schedule, expected) in cases {
        assert_eq!(
            messages("batch", "CronJob", cron_job(schedule), None),
            *expected,
            "{schedule}"
        );
    }
    let mut zoned = cron_job("@daily");
    zoned["spec"]["timeZone"] = json!("Europe/Paris");
    assert!(messages("batch", "CronJob", zoned.clone(), None).is_empty());
    zoned["spec"]["timeZone"] = json!("Local");
    assert_eq!(
        messages("batch", "CronJob", zoned, None),
        [
            "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
        ]
    );
    let mut long = cron_job("@daily");
    long["metadata"]["name"] = json!("a".repeat(53));
    assert_eq!(messages("batch", "CronJob", long, None).len(), 1);
}

fn service() -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
}

#[test]
fn service_rules() {
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &[&str])] = &[
        (
            |s| s["spec"]["ports"] = json!([]),
            &["spec.ports: Required value"],
        ),
        (
            |s| {
                s["spec"]["ports"] = json!([]);
                s["spec"]["clusterIP"] = json!("None");
            },
            &[],
        ),
        (
            |s| s["spec"]["ports"] = json!([{"port": 80}, {"port": 443, "name": "https"}]),
            &["spec.ports[0].name: Required value"],
        ),
        (
            |s| s["spec"]["ports"] = json!([{"port": 80, "name": "a"}, {"port": 443, "name": "a"}]),
            &["spec.ports[1].name: Duplicate value: \"a\""],
        ),
        (
            |s| s["spec"]["ports"] = json!([{"port": 0}]),
            &["spec.ports[0].port: Required value"],
        ),
        (
            |s| s["spec"]["ports"] = json!([{"port": 80, "nodePort": 30080}]),
            &["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
        (
            |s| {
                s["spec"]["type"] = json!("NodePort");
                s["spec"]["ports"] = json!([{"port": 80, "nodePort": 30080}]);
            },
            &[],
        ),
        (
            |s| s["spec"]["type"] = json!("Magic"),
            &[
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ],
        ),
        (
            |s| {
                s["spec"]["type"] = json!("ExternalName");
                s["spec"]["ports"] = json!([]);
            },
            &["spec.externalName: Required value"],
        ),
        (
            |s| s["spec"]["clusterIP"] = json!("10.96.0.300"),
            &[
                "spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ],
        ),
    ];
    for (edit, expected) in cases {
        let mut s = service();
        edit(&mut s);
        assert_eq!(messages("", "Service", s, None), *expected);
    }
    let mut old = service();
    old["spec"]["clusterIP"] = json!("10.96.0.10");
    let mut moved = old.clone();
    moved["spec"]["clusterIP"] = json!("10.96.0.11");
    assert_eq!(
        messages("", "Service", moved, Some(&old)),
        ["spec.clusterIP: Invalid value: \"10.96.0.11\": field is immutable"]
    );
}

#[test]
fn config_and_secret_rules() {
    let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"bad key": "x", "ok.key": "y"}});
    assert_eq!(
        messages("", "ConfigMap", cm, None),
        [
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        ]
    );
    let secret = json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "not base64!"}});
    assert_eq!(
        messages("", "Secret", secret, None),
        ["data[a]: Invalid value: \"not base64!\": must be base64-encoded data"]
    );
    let tls = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}});
    assert_eq!(
        messages("", "Secret", tls, None),
        ["data[tls.key]: Required value"]
    );
    let old =
        json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
    let changed =
        json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}});
    assert_eq!(
        messages("", "ConfigMap", changed, Some(&old)),
        ["data: Forbidden: field is immutable when `immutable` is set"]
    );
}

#[test]
fn small_kind_rules() {
    let role = json!({"metadata": {"name": "r", "namespace": "d"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]});
    assert_eq!(
        messages("rbac.authorization.k8s.io", "Role", role, None),
        ["rules[0].verbs: Required value: verbs must contain at least one value"]
    );
    let binding = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "alice"}]});
    assert_eq!(
        messages(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            binding,
            None
        ),
        ["roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""]
    );
    let pc = json!({"metadata": {"name": "huge"}, "value": 2_000_000_000});
    assert_eq!(
        messages("scheduling.k8s.io", "PriorityClass", pc, None),
        ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
    let lease =
        json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}});
    assert_eq!(
        messages("coordination.k8s.io", "Lease", lease, None),
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
    let slice = json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv5", "endpoints": [{"addresses": ["10.0.0.1"]}]});
    assert_eq!(
        messages("discovery.k8s.io", "EndpointSlice", slice, None),
        [
            "addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
        ]
    );
    let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
    assert_eq!(
        messages("", "Node", node, None),
        [
            "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\""
        ]
    );
    let csr = json!({"metadata": {"name": "c"}, "spec": {"request": "", "signerName": "kubernetes.io/kube-apiserver-client"}});
    assert_eq!(
        messages(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            csr,
            None
        ),
        ["spec.request: Invalid value: \"\": PEM block type must be CERTIFICATE REQUEST"]
    );
    let event =
        json!({"metadata": {"name": "e", "namespace": "a"}, "involvedObject": {"namespace": "b"}});
    assert_eq!(
        messages("", "Event", event, None),
        ["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"]
    );
}

#[test]
fn stateful_set_templates_may_mount_their_claim_templates() {
    let mut sts = deployment();
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/data"}]);
    assert_eq!(
        messages("apps", "StatefulSet", sts.clone(), None),
        [
            "spec.template.spec.containers[0].volumeMounts[0].name: Invalid value: \"data\": not found in the pod's volumes"
        ]
    );
    sts["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}, "spec": {}}]);
    assert!(messages("apps", "StatefulSet", sts, None).is_empty());
}

#[test]
fn stateful_set_ordinals_and_claim_retention() {
    let mut sts = deployment();
    sts["spec"]["ordinals"] = json!({"start": -1});
    sts["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenDeleted": "Delete", "whenScaled": "Sometimes"});
    assert_eq!(
        messages("apps", "StatefulSet", sts.clone(), None),
        [
            "spec.ordinals.start: Invalid value: -1: must be greater than or equal to 0",
            "spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: \"Sometimes\": supported values: \"Retain\", \"Delete\"",
        ]
    );
    sts["spec"]["ordinals"] = json!({"start": 5});
    sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = json!("Delete");
    assert!(messages("apps", "StatefulSet", sts.clone(), None).is_empty());
    // Both may change on update.
    let mut old = sts.clone();
    apply_defaults("apps", "v1", "StatefulSet", &mut old);
    let mut changed = old.clone();
    changed["spec"]["ordinals"] = json!({"start": 2});
    changed["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"});
    assert!(validate("apps", "v1", "StatefulSet", &changed, Some(&old)).is_empty());
}

fn claim() -> Value {
    json!({
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    })
}

#[test]
fn persistent_volume_claims() {
    assert!(messages("", "PersistentVolumeClaim", claim(), None).is_empty());
    let empty = json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {}});
    assert_eq!(
        messages("", "PersistentVolumeClaim", empty, None),
        [
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ]
    );
    let mut bad = claim();
    bad["spec"]["accessModes"] = json!(["ReadWriteOncePod", "Sometimes"]);
    bad["spec"]["volumeMode"] = json!("Tape");
    bad["spec"]["resources"]["requests"]["storage"] = json!("0");
    assert_eq!(
        messages("", "PersistentVolumeClaim", bad, None),
        [
            "spec.accessModes[1]: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
            "spec.volumeMode: Unsupported value: \"Tape\": supported values: \"Block\", \"Filesystem\"",
            "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
        ]
    );
    // The request may grow; the access modes may not change.
    let mut old = claim();
    apply_defaults("", "v1", "PersistentVolumeClaim", &mut old);
    let mut grown = old.clone();
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert!(validate("", "v1", "PersistentVolumeClaim", &grown, Some(&old)).is_empty());
    grown["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let errors = validate("", "v1", "PersistentVolumeClaim", &grown, Some(&old));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("spec: Forbidden: spec is immutable")
    );
}
