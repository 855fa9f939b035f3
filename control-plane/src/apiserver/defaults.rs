//! Defaulting on create and update: the values kube-apiserver fills in (its defaulting funcs and
//! the ServiceAccount, Priority and DefaultTolerationSeconds admission steps), so `kubectl get -o
//! yaml` shows what it shows against kube. Idempotent, and never overwrites a value the user set.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::quantity::parse_quantity;

/// The defaulting of one kind.
type Defaulter = fn(&mut Map<String, Value>);

/// Kinds with defaults, by (group, kind).
const DEFAULTERS: &[(&str, &str, Defaulter)] = &[
    ("", "Pod", default_pod),
    ("", "PodTemplate", default_pod_template_object),
    ("", "Service", default_service),
    ("", "Namespace", default_namespace),
    ("", "Secret", default_secret),
    ("", "Endpoints", default_endpoints),
    ("", "PersistentVolumeClaim", default_pvc),
    ("", "PersistentVolume", default_pv),
    ("", "ReplicationController", default_replication_controller),
    ("apps", "Deployment", default_deployment),
    ("apps", "ReplicaSet", default_replica_set),
    ("apps", "StatefulSet", default_stateful_set),
    ("apps", "DaemonSet", default_daemon_set),
    ("batch", "Job", default_job),
    ("batch", "CronJob", default_cron_job),
    ("discovery.k8s.io", "EndpointSlice", default_endpoint_slice),
    ("scheduling.k8s.io", "PriorityClass", default_priority_class),
    (
        "rbac.authorization.k8s.io",
        "RoleBinding",
        default_role_binding,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        default_role_binding,
    ),
    ("networking.k8s.io", "NetworkPolicy", default_network_policy),
];

/// Fills in kube's defaults for an object of `group/version, kind`. Unknown kinds (and CRDs)
/// are left alone.
pub fn apply_defaults(group: &str, _version: &str, kind: &str, obj: &mut Value) {
    let Some(object) = obj.as_object_mut() else {
        return;
    };
    if let Some((_, _, defaulter)) = DEFAULTERS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
    {
        defaulter(object);
    }
}

/// Inserts `key: value` unless the key holds a non-null value already.
fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        Some(existing) if !existing.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

/// The object under `key`, created empty when missing or null.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    set_default(map, key, json!({}));
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The object under `key` if it exists (without creating it).
fn existing<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// Each object element of the array under `key`.
fn each_item(map: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(items) = map.get_mut(key).and_then(Value::as_array_mut) {
        items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(&mut f);
    }
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

// ---- Pods -----------------------------------------------------------------------------------

/// A field and the value it defaults to (built on use: `Value` has no const constructor).
type FieldDefault = (&'static str, fn() -> Value);

const POD_SPEC_DEFAULTS: &[FieldDefault] = &[
    ("restartPolicy", || json!("Always")),
    ("dnsPolicy", || json!("ClusterFirst")),
    ("terminationGracePeriodSeconds", || json!(30)),
    ("schedulerName", || json!("default-scheduler")),
    ("securityContext", || json!({})),
];

/// Defaults of a Pod object only (admission and SetDefaults_Pod), not of templates.
const POD_ONLY_SPEC_DEFAULTS: &[FieldDefault] = &[
    ("enableServiceLinks", || json!(true)),
    ("serviceAccountName", || json!("default")),
    ("priority", || json!(0)),
    ("preemptionPolicy", || json!("PreemptLowerPriority")),
];

const CONTAINER_DEFAULTS: &[FieldDefault] = &[
    ("terminationMessagePath", || json!("/dev/termination-log")),
    ("terminationMessagePolicy", || json!("File")),
    ("resources", || json!({})),
];

const PROBE_DEFAULTS: &[(&str, i64)] = &[
    ("timeoutSeconds", 1),
    ("periodSeconds", 10),
    ("successThreshold", 1),
    ("failureThreshold", 3),
];

const CONTAINER_LISTS: &[&str] = &["initContainers", "containers", "ephemeralContainers"];

/// Taints every Pod tolerates for 300s unless it says otherwise (DefaultTolerationSeconds).
const DEFAULT_TOLERATED_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Volume sources with a file mode that defaults to 0644.
const MODE_VOLUME_SOURCES: &[&str] = &["secret", "configMap", "downwardAPI", "projected"];
const DEFAULT_FILE_MODE: i64 = 0o644;

fn default_pod(pod: &mut Map<String, Value>) {
    let Some(spec) = child(pod, "spec") else {
        return;
    };
    default_pod_spec(spec);
    for (key, value) in POD_ONLY_SPEC_DEFAULTS {
        set_default(spec, key, value());
    }
    mirror_service_account(spec);
    for list in CONTAINER_LISTS {
        each_item(spec, list, default_requests_from_limits);
    }
    default_tolerations(spec);
    let qos = qos_class(spec);
    if let Some(status) = child(pod, "status") {
        set_default(status, "phase", json!("Pending"));
        set_default(status, "qosClass", json!(qos));
    }
}

fn default_pod_template_object(obj: &mut Map<String, Value>) {
    default_template_at(obj, &["template"]);
}

/// Pod-template defaults for the template at `path` (e.g. ["spec", "template"]).
fn default_template_at(obj: &mut Map<String, Value>, path: &[&str]) {
    let mut current = obj;
    for key in path {
        let Some(next) = existing(current, key) else {
            return;
        };
        current = next;
    }
    if let Some(spec) = existing(current, "spec") {
        default_pod_spec(spec);
        mirror_service_account(spec);
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    for (key, value) in POD_SPEC_DEFAULTS {
        set_default(spec, key, value());
    }
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in CONTAINER_LISTS {
        each_item(spec, list, |c| default_container(c, host_network));
    }
    each_item(spec, "volumes", default_volume);
}

/// The deprecated `serviceAccount` mirrors `serviceAccountName` (as the v1 conversion does).
fn mirror_service_account(spec: &mut Map<String, Value>) {
    let name = str_of(spec, "serviceAccountName").to_string();
    if !name.is_empty() {
        set_default(spec, "serviceAccount", json!(name));
    }
}

fn default_container(container: &mut Map<String, Value>, host_network: bool) {
    let policy = image_pull_policy(str_of(container, "image"));
    set_default(container, "imagePullPolicy", json!(policy));
    for (key, value) in CONTAINER_DEFAULTS {
        set_default(container, key, value());
    }
    each_item(container, "ports", |port| {
        set_default(port, "protocol", json!("TCP"));
        if host_network && let Some(container_port) = port.get("containerPort").cloned() {
            set_default(port, "hostPort", container_port);
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing(container, probe) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = existing(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = existing(lifecycle, hook) {
                default_http_get(handler);
            }
        }
    }
    each_item(container, "env", |env| {
        if let Some(field_ref) = existing(env, "valueFrom").and_then(|v| existing(v, "fieldRef")) {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    });
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (digests included).
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last_component = image.rsplit('/').next().unwrap_or(image);
    match last_component.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_probe(probe: &mut Map<String, Value>) {
    for (key, value) in PROBE_DEFAULTS {
        set_default(probe, key, json!(value));
    }
    default_http_get(probe);
}

fn default_http_get(handler: &mut Map<String, Value>) {
    if let Some(http_get) = existing(handler, "httpGet") {
        set_default(http_get, "path", json!("/"));
        set_default(http_get, "scheme", json!("HTTP"));
    }
}

fn default_volume(volume: &mut Map<String, Value>) {
    let has_source = volume.keys().any(|k| k != "name");
    if !has_source {
        volume.insert("emptyDir".to_string(), json!({}));
    }
    for source in MODE_VOLUME_SOURCES {
        if let Some(source) = existing(volume, source) {
            set_default(source, "defaultMode", json!(DEFAULT_FILE_MODE));
        }
    }
    if let Some(host_path) = existing(volume, "hostPath") {
        set_default(host_path, "type", json!(""));
    }
}

/// A Pod's container with only limits gets requests equal to them.
fn default_requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = existing(container, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    if let Some(requests) = child(resources, "requests") {
        for (name, quantity) in limits {
            set_default(requests, &name, quantity);
        }
    }
}

fn default_tolerations(spec: &mut Map<String, Value>) {
    set_default(spec, "tolerations", json!([]));
    let Some(tolerations) = spec.get_mut("tolerations").and_then(Value::as_array_mut) else {
        return;
    };
    for taint in DEFAULT_TOLERATED_TAINTS {
        let already = tolerations.iter().any(|t| tolerates_no_execute(t, taint));
        if !already {
            tolerations.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

fn tolerates_no_execute(toleration: &Value, taint: &str) -> bool {
    let field = |k: &str| {
        toleration
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    (field("key") == taint || field("key").is_empty())
        && (field("effect") == "NoExecute" || field("effect").is_empty())
}

/// BestEffort, Burstable or Guaranteed from the cpu/memory requests and limits of the
/// containers and init containers.
pub fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|list| spec.get(*list).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any_set = false;
    let mut guaranteed = !containers.is_empty();
    for container in containers {
        let requests = container
            .pointer("/resources/requests")
            .and_then(Value::as_object);
        let limits = container
            .pointer("/resources/limits")
            .and_then(Value::as_object);
        for resource in ["cpu", "memory"] {
            let request = requests.and_then(|r| r.get(resource)).and_then(quantity_of);
            let limit = limits.and_then(|l| l.get(resource)).and_then(quantity_of);
            let request_set = request.is_some_and(|q| q.nanos() != 0);
            let limit_set = limit.is_some_and(|q| q.nanos() != 0);
            any_set |= request_set || limit_set;
            guaranteed &= limit_set && request.is_none_or(|r| Some(r) == limit);
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn quantity_of(value: &Value) -> Option<super::quantity::Quantity> {
    match value {
        Value::String(s) => parse_quantity(s).ok(),
        Value::Number(n) => parse_quantity(&n.to_string()).ok(),
        _ => None,
    }
}

// ---- Workloads ------------------------------------------------------------------------------

fn default_deployment(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "replicas", json!(1));
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
        if let Some(strategy) = child(spec, "strategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            if str_of(strategy, "type") == "RollingUpdate"
                && let Some(rolling) = child(strategy, "rollingUpdate")
            {
                set_default(rolling, "maxUnavailable", json!("25%"));
                set_default(rolling, "maxSurge", json!("25%"));
            }
        }
    }
    default_template_at(obj, &["spec", "template"]);
}

fn default_replica_set(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "replicas", json!(1));
    }
    default_template_at(obj, &["spec", "template"]);
}

/// Also selects the template's labels when no selector is given, as v1 defaulting does.
fn default_replication_controller(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "replicas", json!(1));
        let template_labels = spec
            .get("template")
            .and_then(|t| t.pointer("/metadata/labels"))
            .cloned();
        if let Some(labels) = template_labels {
            set_default(spec, "selector", labels);
        }
    }
    default_template_at(obj, &["spec", "template"]);
}

fn default_stateful_set(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "replicas", json!(1));
        set_default(spec, "podManagementPolicy", json!("OrderedReady"));
        set_default(spec, "revisionHistoryLimit", json!(10));
        if let Some(strategy) = child(spec, "updateStrategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            if str_of(strategy, "type") == "RollingUpdate"
                && let Some(rolling) = child(strategy, "rollingUpdate")
            {
                set_default(rolling, "partition", json!(0));
            }
        }
        if let Some(retention) = child(spec, "persistentVolumeClaimRetentionPolicy") {
            set_default(retention, "whenDeleted", json!("Retain"));
            set_default(retention, "whenScaled", json!("Retain"));
        }
        each_item(spec, "volumeClaimTemplates", default_pvc);
    }
    default_template_at(obj, &["spec", "template"]);
}

fn default_daemon_set(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "revisionHistoryLimit", json!(10));
        if let Some(strategy) = child(spec, "updateStrategy") {
            set_default(strategy, "type", json!("RollingUpdate"));
            if str_of(strategy, "type") == "RollingUpdate"
                && let Some(rolling) = child(strategy, "rollingUpdate")
            {
                set_default(rolling, "maxUnavailable", json!(1));
                set_default(rolling, "maxSurge", json!(0));
            }
        }
    }
    default_template_at(obj, &["spec", "template"]);
}

fn default_job(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        default_job_spec(spec);
    }
    default_template_at(obj, &["spec", "template"]);
}

fn default_job_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "completionMode", json!("NonIndexed"));
    let unset = |spec: &Map<String, Value>, key: &str| spec.get(key).is_none_or(Value::is_null);
    if unset(spec, "completions")
        && unset(spec, "parallelism")
        && str_of(spec, "completionMode") == "NonIndexed"
    {
        spec.insert("completions".to_string(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if unset(spec, "backoffLimitPerIndex") {
        json!(6)
    } else {
        json!(i32::MAX)
    };
    set_default(spec, "backoffLimit", backoff);
    set_default(spec, "suspend", json!(false));
    let replacement = if unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    if let Some(policy) = existing(spec, "podFailurePolicy") {
        each_item(policy, "rules", |rule| {
            each_item(rule, "onPodConditions", |pattern| {
                set_default(pattern, "status", json!("True"));
            });
        });
    }
}

/// Labels that tie a Job's pods to it; kube generates them from the Job's uid on create.
const JOB_UID_LABELS: &[&str] = &["batch.kubernetes.io/controller-uid", "controller-uid"];
const JOB_NAME_LABELS: &[&str] = &["batch.kubernetes.io/job-name", "job-name"];

/// What the Job registry does on create, once the uid is known: unless `manualSelector` is
/// true, selects `batch.kubernetes.io/controller-uid=<uid>` and labels the template to match.
pub fn generate_job_selector(obj: &mut Value, uid: &str) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(selector) = child(spec, "selector")
        && selector.is_empty()
    {
        selector.insert("matchLabels".to_string(), json!({ JOB_UID_LABELS[0]: uid }));
    }
    let labels = child(spec, "template")
        .and_then(|t| child(t, "metadata"))
        .and_then(|m| child(m, "labels"));
    if let Some(labels) = labels {
        for key in JOB_UID_LABELS {
            set_default(labels, key, json!(uid));
        }
        for key in JOB_NAME_LABELS {
            set_default(labels, key, json!(name));
        }
    }
}

fn default_cron_job(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "concurrencyPolicy", json!("Allow"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
    }
    default_template_at(obj, &["spec", "jobTemplate", "spec", "template"]);
}

// ---- Services and networking ----------------------------------------------------------------

fn default_service(obj: &mut Map<String, Value>) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let service_type = str_of(spec, "type").to_string();
    each_item(spec, "ports", |port| {
        set_default(port, "protocol", json!("TCP"));
        if let Some(number) = port.get("port").cloned() {
            set_default(port, "targetPort", number);
        }
    });
    if str_of(spec, "sessionAffinity") == "ClientIP" {
        let config = child(spec, "sessionAffinityConfig").and_then(|c| child(c, "clientIP"));
        if let Some(client_ip) = config {
            set_default(client_ip, "timeoutSeconds", json!(10800));
        }
    }
    if service_type == "ExternalName" {
        return;
    }
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    let family = if str_of(spec, "clusterIP").contains(':') {
        "IPv6"
    } else {
        "IPv4"
    };
    set_default(spec, "ipFamilies", json!([family]));
    if service_type == "NodePort" || service_type == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

fn default_endpoints(obj: &mut Map<String, Value>) {
    each_item(obj, "subsets", |subset| {
        each_item(subset, "ports", |port| {
            set_default(port, "protocol", json!("TCP"))
        });
    });
}

fn default_endpoint_slice(obj: &mut Map<String, Value>) {
    each_item(obj, "ports", |port| {
        set_default(port, "name", json!(""));
        set_default(port, "protocol", json!("TCP"));
    });
}

fn default_network_policy(obj: &mut Map<String, Value>) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    for rules in ["ingress", "egress"] {
        each_item(spec, rules, |rule| {
            each_item(rule, "ports", |port| {
                set_default(port, "protocol", json!("TCP"))
            });
        });
    }
    let has_egress = spec
        .get("egress")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    let types = if has_egress {
        json!(["Ingress", "Egress"])
    } else {
        json!(["Ingress"])
    };
    set_default(spec, "policyTypes", types);
}

// ---- Everything else ------------------------------------------------------------------------

fn default_namespace(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child(obj, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

/// Type Opaque, and `stringData` folded into base64 `data` (it is write-only in kube).
fn default_secret(obj: &mut Map<String, Value>) {
    set_default(obj, "type", json!("Opaque"));
    let Some(Value::Object(string_data)) = obj.remove("stringData") else {
        return;
    };
    if let Some(data) = child(obj, "data") {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key, json!(encoded));
        }
    }
}

fn default_pvc(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child(obj, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

fn default_pv(obj: &mut Map<String, Value>) {
    if let Some(spec) = child(obj, "spec") {
        set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child(obj, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

fn default_priority_class(obj: &mut Map<String, Value>) {
    set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
}

fn default_role_binding(obj: &mut Map<String, Value>) {
    each_item(obj, "subjects", |subject| {
        let kind = str_of(subject, "kind");
        if kind == "User" || kind == "Group" {
            set_default(subject, "apiGroup", json!("rbac.authorization.k8s.io"));
        }
    });
}

#[cfg(test)]
mod tests;
