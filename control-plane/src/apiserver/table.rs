//! Table output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): the columns kube's
//! printers produce for each built-in resource, and `additionalPrinterColumns` for custom ones.
//!
//! All columns are always computed; `priority: 1` columns are the ones kubectl shows only with
//! `-o wide`. Cells are JSON strings or numbers; a missing value in a custom column is `null`,
//! which kubectl prints as `<none>`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::resources::ResourceInfo;

/// What each row carries in `object` (the `includeObject` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` (kube's default).
    Metadata,
    Object,
}

impl IncludeObject {
    /// From the `includeObject` query value; absent or unknown means `Metadata`.
    pub fn from_query(value: Option<&str>) -> IncludeObject {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Whether an `Accept` header asks for a `meta.k8s.io` Table (v1 or v1beta1).
pub fn table_accepted(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<String> = part.split(';').map(|p| p.trim().replace(' ', "")).collect();
        let has = |p: &str| params.iter().any(|x| x == p);
        has("as=Table") && has("g=meta.k8s.io")
    })
}

/// One column of a custom resource's table, from a CRD's `additionalPrinterColumns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// integer, number, string, boolean or date.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    /// A simple JSONPath: `.spec.replicas`, `.status.conditions[0].type`.
    pub json_path: String,
}

impl PrinterColumn {
    /// Reads one entry of `additionalPrinterColumns`; `None` without a name or jsonPath.
    pub fn from_crd(v: &Value) -> Option<PrinterColumn> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let column = PrinterColumn {
            name: text("name"),
            type_: text("type"),
            format: text("format"),
            description: text("description"),
            priority: v.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path: text("jsonPath"),
        };
        (!column.name.is_empty() && !column.json_path.is_empty()).then_some(column)
    }
}

// ---------------------------------------------------------------------------------------
// Reading objects leniently: a missing or mistyped field reads as empty/zero.

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(v, |cur, key| cur.get(key).unwrap_or(&Value::Null))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or("")
}

fn int(v: &Value, path: &[&str]) -> i64 {
    at(v, path).as_i64().unwrap_or(0)
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).as_array().map_or(&[], Vec::as_slice)
}

fn map_len(v: &Value, path: &[&str]) -> i64 {
    at(v, path).as_object().map_or(0, |m| m.len() as i64)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// kube's `HumanDuration`: `45s`, `3m2s`, `15m`, `4h5m`, `20h`, `2d3h`, `45d`, `2y30d`, `9y`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_rest(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_rest(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

fn with_rest(major: i64, major_unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{rest}{rest_unit}")
    }
}

/// Human age of an RFC 3339 timestamp; `<unknown>` when absent or unparsable (as kube).
fn since(ts: &str, now: DateTime<Utc>) -> String {
    match timestamp(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    since(text(obj, &["metadata", "creationTimestamp"]), now).into()
}

fn name(obj: &Value) -> Value {
    text(obj, &["metadata", "name"]).into()
}

/// `k=v,k2=v2` sorted by key (a JSON object's keys are already sorted), `<none>` if empty.
fn format_labels(v: &Value) -> String {
    let pairs: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    or_none(&pairs.join(","))
}

/// A LabelSelector as kube prints it: `app=web,tier in (a,b)`; `<none>` when empty.
fn format_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        parts.extend(
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
        );
    }
    for e in list(sel, &["matchExpressions"]) {
        let key = text(e, &["key"]);
        let values: Vec<&str> = list(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let expr = match text(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        };
        parts.push(expr);
    }
    or_none(&parts.join(","))
}

fn containers_and_images(pod_spec: &Value) -> (Value, Value) {
    let cs = list(pod_spec, &["containers"]);
    let names: Vec<&str> = cs.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| text(c, &["image"])).collect();
    (names.join(",").into(), images.join(",").into())
}

/// CONTAINERS, IMAGES, SELECTOR of a workload with `spec.template` and `spec.selector`.
fn workload_wide(obj: &Value, selector: bool) -> Vec<Value> {
    let (names, images) = containers_and_images(at(obj, &["spec", "template", "spec"]));
    let mut cells = vec![names, images];
    if selector {
        cells.push(format_selector(at(obj, &["spec", "selector"])).into());
    }
    cells
}

fn condition_true(obj: &Value, path: &[&str], kind: &str) -> bool {
    list(obj, path)
        .iter()
        .any(|c| text(c, &["type"]) == kind && text(c, &["status"]) == "True")
}

// ---------------------------------------------------------------------------------------
// Pods

/// The STATUS cell, the READY pair and the restart count (with the last restart time).
struct PodSummary {
    reason: String,
    ready: usize,
    total: usize,
    restarts: i64,
    last_restart: Option<DateTime<Utc>>,
}

impl PodSummary {
    fn note_restarts(&mut self, status: &Value) {
        self.restarts += int(status, &["restartCount"]);
        let finished = text(status, &["lastState", "terminated", "finishedAt"]);
        if let Some(t) = timestamp(finished) {
            self.last_restart = Some(self.last_restart.map_or(t, |l| l.max(t)));
        }
    }
}

fn terminated_reason(term: &Value, prefix: &str) -> String {
    let reason = text(term, &["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    match int(term, &["signal"]) {
        0 => format!("{prefix}ExitCode:{}", int(term, &["exitCode"])),
        signal => format!("{prefix}Signal:{signal}"),
    }
}

fn is_sidecar(pod: &Value, name: &str) -> bool {
    list(pod, &["spec", "initContainers"])
        .iter()
        .any(|c| text(c, &["name"]) == name && text(c, &["restartPolicy"]) == "Always")
}

/// Walks init containers as kube does; returns whether the pod is still initializing.
fn pod_init_status(pod: &Value, s: &mut PodSummary) -> bool {
    let init_count = list(pod, &["spec", "initContainers"]).len();
    for (i, c) in list(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        s.note_restarts(c);
        let sidecar = is_sidecar(pod, text(c, &["name"]));
        if sidecar {
            s.total += 1;
            if at(c, &["ready"]).as_bool() == Some(true) {
                s.ready += 1;
            }
        }
        let state = at(c, &["state"]);
        let term = at(state, &["terminated"]);
        let waiting = text(state, &["waiting", "reason"]);
        if term.is_object() && int(term, &["exitCode"]) == 0 {
            continue;
        }
        if sidecar && at(c, &["started"]).as_bool() == Some(true) {
            continue;
        }
        s.reason = if term.is_object() {
            terminated_reason(term, "Init:")
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{init_count}")
        };
        return true;
    }
    false
}

fn pod_summary(pod: &Value) -> PodSummary {
    let status = at(pod, &["status"]);
    let mut reason = text(status, &["phase"]).to_string();
    if !text(status, &["reason"]).is_empty() {
        reason = text(status, &["reason"]).to_string();
    }
    let gated = list(status, &["conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".into();
    }
    let mut s = PodSummary {
        reason,
        ready: 0,
        total: list(pod, &["spec", "containers"]).len(),
        restarts: 0,
        last_restart: None,
    };
    let initializing = pod_init_status(pod, &mut s);
    if !initializing || condition_true(pod, &["status", "conditions"], "Initialized") {
        let mut has_running = false;
        for c in list(status, &["containerStatuses"]).iter().rev() {
            s.note_restarts(c);
            let state = at(c, &["state"]);
            let waiting = text(state, &["waiting", "reason"]);
            let term = at(state, &["terminated"]);
            if !waiting.is_empty() {
                s.reason = waiting.to_string();
            } else if term.is_object() {
                s.reason = terminated_reason(term, "");
            } else if at(c, &["ready"]).as_bool() == Some(true) && state.get("running").is_some() {
                has_running = true;
                s.ready += 1;
            }
        }
        if s.reason == "Completed" && has_running {
            let ready = condition_true(pod, &["status", "conditions"], "Ready");
            s.reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }
    let deleting = !text(pod, &["metadata", "deletionTimestamp"]).is_empty();
    let phase = text(status, &["phase"]);
    if deleting && text(status, &["reason"]) == "NodeLost" {
        s.reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        s.reason = "Terminating".into();
    }
    s
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let s = pod_summary(pod);
    let restarts = match s.last_restart {
        Some(t) if s.restarts != 0 => format!("{} ({} ago)", s.restarts, human_duration(now - t)),
        _ => s.restarts.to_string(),
    };
    let mut ip = list(pod, &["status", "podIPs"])
        .first()
        .map_or("", |p| text(p, &["ip"]));
    if ip.is_empty() {
        ip = text(pod, &["status", "podIP"]);
    }
    let gates = list(pod, &["spec", "readinessGates"]);
    let readiness = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let ok = gates
            .iter()
            .filter(|g| condition_true(pod, &["status", "conditions"], text(g, &["conditionType"])))
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        name(pod),
        format!("{}/{}", s.ready, s.total).into(),
        s.reason.into(),
        restarts.into(),
        age(pod, now),
        or_none(ip).into(),
        or_none(text(pod, &["spec", "nodeName"])).into(),
        or_none(text(pod, &["status", "nominatedNodeName"])).into(),
        readiness.into(),
    ]
}

// ---------------------------------------------------------------------------------------
// Other built-in printers

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = list(node, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if at(node, &["spec", "unschedulable"]).as_bool() == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).as_object() {
        for (k, v) in labels {
            match k.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => roles.push(role),
                _ if k == "kubernetes.io/role" => roles.extend(v.as_str()),
                _ => {}
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let address = |kind: &str| {
        list(node, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == kind)
            .map_or("<none>".to_string(), |a| text(a, &["address"]).to_string())
    };
    let info = |key: &str| {
        let v = text(node, &["status", "nodeInfo", key]);
        if v.is_empty() {
            "<unknown>".into()
        } else {
            v.to_string()
        }
    };
    vec![
        name(node),
        status.into(),
        or_none(&roles.join(",")).into(),
        age(node, now),
        text(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = list(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = match text(p, &["protocol"]) {
                "" => "TCP",
                other => other,
            };
            match int(p, &["nodePort"]) {
                0 => format!("{}/{protocol}", int(p, &["port"])),
                node_port => format!("{}:{node_port}/{protocol}", int(p, &["port"])),
            }
        })
        .collect();
    or_none(&ports.join(","))
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = list(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match text(svc, &["spec", "type"]) {
        "" | "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let lb: Vec<&str> = list(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| match text(i, &["ip"]) {
                    "" => text(i, &["hostname"]),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            let all: Vec<&str> = external.iter().chain(lb.iter()).copied().collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".into(),
    }
}

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let svc_type = match text(svc, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    };
    vec![
        name(svc),
        svc_type.into(),
        or_none(text(svc, &["spec", "clusterIP"])).into(),
        service_external_ip(svc).into(),
        service_ports(svc).into(),
        age(svc, now),
        format_labels(at(svc, &["spec", "selector"])).into(),
    ]
}

fn desired_replicas(obj: &Value) -> i64 {
    at(obj, &["spec", "replicas"]).as_i64().unwrap_or(1)
}

fn deployment_cells(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut cells = vec![
        name(d),
        format!(
            "{}/{}",
            int(d, &["status", "readyReplicas"]),
            desired_replicas(d)
        )
        .into(),
        int(d, &["status", "updatedReplicas"]).into(),
        int(d, &["status", "availableReplicas"]).into(),
        age(d, now),
    ];
    cells.extend(workload_wide(d, true));
    cells
}

fn replicaset_cells(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut cells = vec![
        name(rs),
        desired_replicas(rs).into(),
        int(rs, &["status", "replicas"]).into(),
        int(rs, &["status", "readyReplicas"]).into(),
        age(rs, now),
    ];
    cells.extend(workload_wide(rs, true));
    cells
}

fn daemonset_cells(ds: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let st = |k: &str| Value::from(int(ds, &["status", k]));
    let mut cells = vec![
        name(ds),
        st("desiredNumberScheduled"),
        st("currentNumberScheduled"),
        st("numberReady"),
        st("updatedNumberScheduled"),
        st("numberAvailable"),
        format_labels(at(ds, &["spec", "template", "spec", "nodeSelector"])).into(),
        age(ds, now),
    ];
    cells.extend(workload_wide(ds, true));
    cells
}

fn statefulset_cells(sts: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut cells = vec![
        name(sts),
        format!(
            "{}/{}",
            int(sts, &["status", "readyReplicas"]),
            desired_replicas(sts)
        )
        .into(),
        age(sts, now),
    ];
    cells.extend(workload_wide(sts, false));
    cells
}

fn job_status(job: &Value) -> &'static str {
    let cond = |t: &str| condition_true(job, &["status", "conditions"], t);
    if cond("Complete") {
        "Complete"
    } else if cond("Failed") {
        "Failed"
    } else if !text(job, &["metadata", "deletionTimestamp"]).is_empty() {
        "Terminating"
    } else if cond("Suspended") {
        "Suspended"
    } else if cond("FailureTarget") {
        "FailureTarget"
    } else if cond("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = match at(job, &["spec", "completions"]).as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(job, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = timestamp(text(job, &["status", "startTime"]));
    let end = timestamp(text(job, &["status", "completionTime"]));
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now - s),
        (Some(s), Some(e)) => human_duration(e - s),
    };
    let mut cells = vec![
        name(job),
        job_status(job).into(),
        completions.into(),
        duration.into(),
        age(job, now),
    ];
    cells.extend(workload_wide(job, true));
    cells
}

fn cronjob_cells(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let suspend = match at(cj, &["spec", "suspend"]).as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = text(cj, &["status", "lastScheduleTime"]);
    let last = if last.is_empty() {
        "<none>".into()
    } else {
        since(last, now)
    };
    let template = at(cj, &["spec", "jobTemplate", "spec", "template", "spec"]);
    let (containers, images) = containers_and_images(template);
    vec![
        name(cj),
        text(cj, &["spec", "schedule"]).into(),
        or_none(text(cj, &["spec", "timeZone"])).into(),
        suspend.into(),
        (list(cj, &["status", "active"]).len() as i64).into(),
        last.into(),
        age(cj, now),
        containers,
        images,
        format_selector(at(cj, &["spec", "jobTemplate", "spec", "selector"])).into(),
    ]
}

/// "ip:port" entries, at most three, then " + N more...": endpoints and endpoint slices.
fn first_three(items: Vec<String>) -> String {
    if items.is_empty() {
        return "<none>".into();
    }
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3)
    } else {
        shown
    }
}

fn endpoints_cells(ep: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut items = Vec::new();
    for subset in list(ep, &["subsets"]) {
        let ips: Vec<&str> = list(subset, &["addresses"])
            .iter()
            .map(|a| text(a, &["ip"]))
            .collect();
        let ports = list(subset, &["ports"]);
        if ports.is_empty() {
            items.extend(ips.iter().map(|ip| ip.to_string()));
        }
        for p in ports {
            items.extend(ips.iter().map(|ip| format!("{ip}:{}", int(p, &["port"]))));
        }
    }
    vec![name(ep), first_three(items).into(), age(ep, now)]
}

fn endpointslice_cells(es: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = list(es, &["ports"])
        .iter()
        .map(|p| match at(p, &["port"]).as_i64() {
            Some(n) => n.to_string(),
            None => "<unset>".into(),
        })
        .collect();
    let addresses: Vec<String> = list(es, &["endpoints"])
        .iter()
        .flat_map(|e| list(e, &["addresses"]).iter().filter_map(Value::as_str))
        .map(str::to_string)
        .collect();
    let unset = |items: Vec<String>| {
        if items.is_empty() {
            "<unset>".into()
        } else {
            first_three(items)
        }
    };
    vec![
        name(es),
        text(es, &["addressType"]).into(),
        unset(ports).into(),
        unset(addresses).into(),
        age(es, now),
    ]
}

/// Reads core/v1 and events.k8s.io/v1 events alike (the latter renamed several fields).
fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first_of = |paths: &[&[&str]]| {
        paths
            .iter()
            .map(|p| text(ev, p))
            .find(|s| !s.is_empty())
            .unwrap_or("")
            .to_string()
    };
    let first = first_of(&[
        &["firstTimestamp"],
        &["deprecatedFirstTimestamp"],
        &["eventTime"],
    ]);
    let mut last = first_of(&[&["lastTimestamp"], &["deprecatedLastTimestamp"]]);
    let mut count = at(ev, &["count"])
        .as_i64()
        .or_else(|| at(ev, &["deprecatedCount"]).as_i64())
        .unwrap_or(0);
    let series = at(ev, &["series"]);
    if series.is_object() {
        last = first_of(&[&["series", "lastObservedTime"]]);
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    if last.is_empty() {
        last.clone_from(&first);
    }
    let involved = match at(ev, &["involvedObject"]) {
        Value::Null => at(ev, &["regarding"]),
        v => v,
    };
    let target = match text(involved, &["name"]) {
        "" => text(involved, &["kind"]).to_lowercase(),
        n => format!("{}/{n}", text(involved, &["kind"]).to_lowercase()),
    };
    let component = first_of(&[&["source", "component"], &["reportingController"]]);
    let host = first_of(&[&["source", "host"], &["reportingInstance"]]);
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    let message = first_of(&[&["message"], &["note"]]);
    vec![
        since(&last, now).into(),
        text(ev, &["type"]).into(),
        text(ev, &["reason"]).into(),
        target.into(),
        text(involved, &["fieldPath"]).into(),
        source.into(),
        message.trim().into(),
        since(&first, now).into(),
        count.into(),
        name(ev),
    ]
}

fn csr_condition(csr: &Value) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for kind in ["Approved", "Denied", "Failed"] {
        if condition_true(csr, &["status", "conditions"], kind) {
            parts.push(kind);
        }
    }
    if parts.is_empty() {
        parts.push("Pending");
    }
    if !text(csr, &["status", "certificate"]).is_empty() {
        parts.push("Issued");
    }
    parts.join(",")
}

fn csr_cells(csr: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let requested = match at(csr, &["spec", "expirationSeconds"]).as_i64() {
        Some(s) => human_duration(chrono::Duration::seconds(s)),
        None => "<none>".into(),
    };
    vec![
        name(csr),
        age(csr, now),
        text(csr, &["spec", "signerName"]).into(),
        text(csr, &["spec", "username"]).into(),
        requested.into(),
        csr_condition(csr).into(),
    ]
}

fn binding_cells(b: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let subjects = list(b, &["subjects"]);
    let of_kind = |kind: &str| {
        let names: Vec<String> = subjects
            .iter()
            .filter(|s| text(s, &["kind"]) == kind)
            .map(|s| match (kind, text(s, &["namespace"])) {
                ("ServiceAccount", ns) => format!("{ns}/{}", text(s, &["name"])),
                _ => text(s, &["name"]).to_string(),
            })
            .collect();
        Value::from(names.join(", "))
    };
    vec![
        name(b),
        format!(
            "{}/{}",
            text(b, &["roleRef", "kind"]),
            text(b, &["roleRef", "name"])
        )
        .into(),
        age(b, now),
        of_kind("User"),
        of_kind("Group"),
        of_kind("ServiceAccount"),
    ]
}

fn created_at_cells(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let created = timestamp(text(obj, &["metadata", "creationTimestamp"]))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    vec![name(obj), created.into()]
}

fn name_age_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), age(obj, now)]
}

fn simple(fields: fn(&Value) -> Vec<Value>) -> impl Fn(&Value, DateTime<Utc>) -> Vec<Value> {
    move |obj, now| {
        let mut cells = vec![name(obj)];
        cells.extend(fields(obj));
        cells.push(age(obj, now));
        cells
    }
}

// ---------------------------------------------------------------------------------------
// The printer table

/// (name, type, priority); the first column named "Name" gets format "name".
type Columns = &'static [(&'static str, &'static str, i64)];
type CellFn = fn(&Value, DateTime<Utc>) -> Vec<Value>;

const NAME_AGE: Columns = &[("Name", "string", 0), ("Age", "string", 0)];
const CREATED_AT: Columns = &[("Name", "string", 0), ("Created At", "date", 0)];

fn namespace_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    simple(|o| vec![text(o, &["status", "phase"]).into()])(o, now)
}

fn configmap_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    simple(|o| vec![(map_len(o, &["data"]) + map_len(o, &["binaryData"])).into()])(o, now)
}

fn secret_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    simple(|o| vec![text(o, &["type"]).into(), map_len(o, &["data"]).into()])(o, now)
}

fn serviceaccount_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    simple(|o| vec![(list(o, &["secrets"]).len() as i64).into()])(o, now)
}

fn lease_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    simple(|o| vec![text(o, &["spec", "holderIdentity"]).into()])(o, now)
}

/// kube's PVC columns; access modes abbreviated (RWO, ROX, RWX, RWOP).
fn pvc_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let modes: Vec<&str> = at(o, &["status", "accessModes"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    let capacity = text(o, &["status", "capacity", "storage"]);
    let class = text(o, &["spec", "storageClassName"]);
    let attributes = match text(o, &["spec", "volumeAttributesClassName"]) {
        "" => "<unset>",
        c => c,
    };
    vec![
        name(o),
        text(o, &["status", "phase"]).into(),
        text(o, &["spec", "volumeName"]).into(),
        capacity.into(),
        modes.join(",").into(),
        class.into(),
        attributes.into(),
        age(o, now),
        text(o, &["spec", "volumeMode"]).into(),
    ]
}

fn runtimeclass_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    simple(|o| vec![text(o, &["handler"]).into()])(o, now)
}

fn priorityclass_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let global = at(o, &["globalDefault"]).as_bool().unwrap_or(false);
    let policy = match text(o, &["preemptionPolicy"]) {
        "" => "PreemptLowerPriority",
        p => p,
    };
    vec![
        name(o),
        int(o, &["value"]).into(),
        global.into(),
        age(o, now),
        policy.into(),
    ]
}

fn pdb_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let bound = |k: &str| match at(o, &["spec", k]) {
        Value::Null => Value::from("N/A"),
        Value::Number(n) => Value::from(n.to_string()),
        other => other.clone(),
    };
    vec![
        name(o),
        bound("minAvailable"),
        bound("maxUnavailable"),
        int(o, &["status", "disruptionsAllowed"]).into(),
        age(o, now),
    ]
}

fn controllerrevision_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let controller = list(o, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| at(r, &["controller"]).as_bool() == Some(true))
        .map_or("<none>".to_string(), |r| {
            let group = text(r, &["apiVersion"]).split('/').next().unwrap_or("");
            let kind = text(r, &["kind"]).to_lowercase();
            let resource = if group.contains('.') || group == "apps" {
                format!("{kind}.{group}")
            } else {
                kind
            };
            format!("{resource}/{}", text(r, &["name"]))
        });
    vec![
        name(o),
        controller.into(),
        int(o, &["revision"]).into(),
        age(o, now),
    ]
}

struct Printer {
    group: &'static str,
    plural: &'static str,
    columns: Columns,
    cells: CellFn,
}

const fn p(group: &'static str, plural: &'static str, columns: Columns, cells: CellFn) -> Printer {
    Printer {
        group,
        plural,
        columns,
        cells,
    }
}

const WORKLOAD_WIDE: [(&str, &str, i64); 3] = [
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
];

#[rustfmt::skip]
const PRINTERS: &[Printer] = &[
    p("", "pods", &[("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
        ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1),
        ("Nominated Node", "string", 1), ("Readiness Gates", "string", 1)], pod_cells),
    p("", "nodes", &[("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0),
        ("Age", "string", 0), ("Version", "string", 0), ("Internal-IP", "string", 1),
        ("External-IP", "string", 1), ("OS-Image", "string", 1), ("Kernel-Version", "string", 1),
        ("Container-Runtime", "string", 1)], node_cells),
    p("", "services", &[("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
        ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
        ("Selector", "string", 1)], service_cells),
    p("", "namespaces", &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)], namespace_cells),
    p("", "configmaps", &[("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)], configmap_cells),
    p("", "secrets", &[("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)], secret_cells),
    p("", "serviceaccounts", &[("Name", "string", 0), ("Secrets", "integer", 0), ("Age", "string", 0)], serviceaccount_cells),
    p("", "endpoints", &[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)], endpoints_cells),
    p("", "events", EVENT_COLUMNS, event_cells),
    p("", "limitranges", CREATED_AT, created_at_cells),
    p("", "persistentvolumeclaims", &[("Name", "string", 0), ("Status", "string", 0), ("Volume", "string", 0),
        ("Capacity", "string", 0), ("Access Modes", "string", 0), ("StorageClass", "string", 0),
        ("VolumeAttributesClass", "string", 0), ("Age", "string", 0), ("VolumeMode", "string", 1)], pvc_cells),
    p("apps", "deployments", &[("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "integer", 0),
        ("Available", "integer", 0), ("Age", "string", 0), WORKLOAD_WIDE[0], WORKLOAD_WIDE[1], WORKLOAD_WIDE[2]], deployment_cells),
    p("apps", "replicasets", &[("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
        ("Ready", "integer", 0), ("Age", "string", 0), WORKLOAD_WIDE[0], WORKLOAD_WIDE[1], WORKLOAD_WIDE[2]], replicaset_cells),
    p("apps", "daemonsets", &[("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
        ("Ready", "integer", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0),
        ("Node Selector", "string", 0), ("Age", "string", 0), WORKLOAD_WIDE[0], WORKLOAD_WIDE[1], WORKLOAD_WIDE[2]], daemonset_cells),
    p("apps", "statefulsets", &[("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0),
        WORKLOAD_WIDE[0], WORKLOAD_WIDE[1]], statefulset_cells),
    p("apps", "controllerrevisions", &[("Name", "string", 0), ("Controller", "string", 0),
        ("Revision", "integer", 0), ("Age", "string", 0)], controllerrevision_cells),
    p("batch", "jobs", &[("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0),
        ("Duration", "string", 0), ("Age", "string", 0), WORKLOAD_WIDE[0], WORKLOAD_WIDE[1], WORKLOAD_WIDE[2]], job_cells),
    p("batch", "cronjobs", &[("Name", "string", 0), ("Schedule", "string", 0), ("Timezone", "string", 0),
        ("Suspend", "boolean", 0), ("Active", "integer", 0), ("Last Schedule", "string", 0), ("Age", "string", 0),
        WORKLOAD_WIDE[0], WORKLOAD_WIDE[1], WORKLOAD_WIDE[2]], cronjob_cells),
    p("discovery.k8s.io", "endpointslices", &[("Name", "string", 0), ("AddressType", "string", 0),
        ("Ports", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)], endpointslice_cells),
    p("events.k8s.io", "events", EVENT_COLUMNS, event_cells),
    p("coordination.k8s.io", "leases", &[("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)], lease_cells),
    p("certificates.k8s.io", "certificatesigningrequests", &[("Name", "string", 0), ("Age", "string", 0),
        ("SignerName", "string", 0), ("Requestor", "string", 0), ("RequestedDuration", "string", 0),
        ("Condition", "string", 0)], csr_cells),
    p("rbac.authorization.k8s.io", "roles", CREATED_AT, created_at_cells),
    p("rbac.authorization.k8s.io", "clusterroles", CREATED_AT, created_at_cells),
    p("rbac.authorization.k8s.io", "rolebindings", BINDING_COLUMNS, binding_cells),
    p("rbac.authorization.k8s.io", "clusterrolebindings", BINDING_COLUMNS, binding_cells),
    p("scheduling.k8s.io", "priorityclasses", &[("Name", "string", 0), ("Value", "integer", 0),
        ("Global-Default", "boolean", 0), ("Age", "string", 0), ("PreemptionPolicy", "string", 0)], priorityclass_cells),
    p("node.k8s.io", "runtimeclasses", &[("Name", "string", 0), ("Handler", "string", 0), ("Age", "string", 0)], runtimeclass_cells),
    p("policy", "poddisruptionbudgets", &[("Name", "string", 0), ("Min Available", "string", 0),
        ("Max Unavailable", "string", 0), ("Allowed Disruptions", "integer", 0), ("Age", "string", 0)], pdb_cells),
    p("apiextensions.k8s.io", "customresourcedefinitions", CREATED_AT, created_at_cells),
];

#[rustfmt::skip]
const EVENT_COLUMNS: Columns = &[("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
    ("Object", "string", 0), ("Subobject", "string", 1), ("Source", "string", 1), ("Message", "string", 0),
    ("First Seen", "string", 1), ("Count", "string", 1), ("Name", "string", 1)];

#[rustfmt::skip]
const BINDING_COLUMNS: Columns = &[("Name", "string", 0), ("Role", "string", 0), ("Age", "string", 0),
    ("Users", "string", 1), ("Groups", "string", 1), ("ServiceAccounts", "string", 1)];

/// Short descriptions by column name; anything else gets a generic one.
const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        "Name",
        "The object's name, unique within its namespace (or the cluster).",
    ),
    ("Age", "Time since the object was created."),
    ("Created At", "When the object was created."),
];

fn column_definition(
    name: &str,
    type_: &str,
    format: &str,
    priority: i64,
    description: &str,
) -> Value {
    let description = if description.is_empty() {
        DESCRIPTIONS.iter().find(|(n, _)| *n == name).map_or_else(
            || format!("{name} as printed by kubectl."),
            |(_, d)| d.to_string(),
        )
    } else {
        description.to_string()
    };
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn builtin_printer(resource: &ResourceInfo) -> Option<&'static Printer> {
    PRINTERS
        .iter()
        .find(|p| p.group == resource.group && p.plural == resource.plural)
}

fn row_object(obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": at(obj, &["metadata"]),
        })),
    }
}

fn assemble(
    columns: Vec<Value>,
    rows: Vec<(Vec<Value>, &Value)>,
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, obj)| {
            let mut row = Map::new();
            row.insert("cells".into(), cells.into());
            if let Some(o) = row_object(obj, include) {
                row.insert("object".into(), o);
            }
            Value::Object(row)
        })
        .collect();
    let metadata = match list_meta {
        Value::Object(m) => Value::Object(m),
        _ => json!({}),
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A Table of `objects` (full objects of `resource`) with kube's columns for built-ins and
/// NAME/AGE otherwise. `list_meta` is the list's metadata (resourceVersion, continue).
pub fn to_table(
    resource: &ResourceInfo,
    objects: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
    list_meta: Value,
) -> Value {
    let (columns, cells): (Columns, CellFn) = match builtin_printer(resource) {
        Some(p) => (p.columns, p.cells),
        None => (NAME_AGE, name_age_cells),
    };
    let defs = columns
        .iter()
        .enumerate()
        .map(|(i, (n, t, pr))| {
            let format = if i == 0 && *n == "Name" { "name" } else { "" };
            column_definition(n, t, format, *pr, "")
        })
        .collect();
    let rows = objects.iter().map(|o| (cells(o, now), o)).collect();
    assemble(defs, rows, include_object, list_meta)
}

/// A Table for a custom resource: NAME, then the given columns: a CRD's
/// `additionalPrinterColumns`, or [`default_crd_columns`] (AGE) when it declares none.
pub fn to_table_with_columns(
    columns: &[PrinterColumn],
    objects: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
    list_meta: Value,
) -> Value {
    let mut defs = vec![column_definition("Name", "string", "name", 0, "")];
    defs.extend(
        columns
            .iter()
            .map(|c| column_definition(&c.name, &c.type_, &c.format, c.priority, &c.description)),
    );
    let rows = objects
        .iter()
        .map(|o| {
            let mut cells = vec![name(o)];
            cells.extend(columns.iter().map(|c| custom_cell(o, c, now)));
            (cells, o)
        })
        .collect();
    assemble(defs, rows, include_object, list_meta)
}

/// The printer columns of one version of a CRD: its `additionalPrinterColumns`, or AGE alone
/// when it declares none (kube's default).
pub fn crd_printer_columns(crd: &Value, version: &str) -> Vec<PrinterColumn> {
    let declared: Vec<PrinterColumn> = list(crd, &["spec", "versions"])
        .iter()
        .find(|v| text(v, &["name"]) == version)
        .map(|v| {
            list(v, &["additionalPrinterColumns"])
                .iter()
                .filter_map(PrinterColumn::from_crd)
                .collect()
        })
        .unwrap_or_default();
    if declared.is_empty() {
        default_crd_columns()
    } else {
        declared
    }
}

/// The default columns of a CRD without `additionalPrinterColumns`: just AGE.
pub fn default_crd_columns() -> Vec<PrinterColumn> {
    vec![PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

fn custom_cell(obj: &Value, column: &PrinterColumn, now: DateTime<Utc>) -> Value {
    let Some(v) = json_path(obj, &column.json_path) else {
        return Value::Null;
    };
    match (column.type_.as_str(), v) {
        ("date", Value::String(s)) => since(s, now).into(),
        (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) => v.clone(),
        (_, Value::Null) => Value::Null,
        (_, other) => other.to_string().into(),
    }
}

/// Follows a simple JSONPath (`.a.b`, `.a[0].b`, `{.a.b}`); `None` when any step is missing.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = obj;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let n: usize = index.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::super::resources::{builtin_resources, find_by_plural};
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0)
            .single()
            .expect("valid time")
    }

    fn table_for(plural: &str, group: &str, objects: &[Value]) -> Value {
        let all = builtin_resources();
        let r = find_by_plural(&all, group, "v1", plural).expect("test fixture");
        to_table(
            r,
            objects,
            IncludeObject::Metadata,
            now(),
            json!({"resourceVersion": "7"}),
        )
    }

    #[test]
    fn human_durations_match_kube() {
        let d = chrono::Duration::seconds;
        let cases = [
            (d(-5), "<invalid>"),
            (d(5), "5s"),
            (d(119), "119s"),
            (d(182), "3m2s"),
            (d(300), "5m"),
            (d(45 * 60), "45m"),
            (d(4 * 3600), "4h"),
            (d(4 * 3600 + 300), "4h5m"),
            (d(20 * 3600), "20h"),
            (d(51 * 3600), "2d3h"),
            (d(45 * 86400), "45d"),
            (d(3 * 365 * 86400 + 10 * 86400), "3y10d"),
            (d(10 * 365 * 86400), "10y"),
        ];
        for (dur, want) in cases {
            assert_eq!(human_duration(dur), want);
        }
    }

    #[test]
    fn pod_statuses() {
        let pod = |status: Value, extra: Value| {
            let mut p = json!({"metadata": {"name": "p", "creationTimestamp": "2024-01-01T11:59:50Z"},
                "spec": {"containers": [{"name": "c"}]}, "status": status});
            if let (Some(o), Value::Object(e)) = (p.as_object_mut(), extra) {
                o.extend(e);
            }
            p
        };
        let crash = pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "restartCount": 3,
                "lastState": {"terminated": {"finishedAt": "2024-01-01T11:55:00Z"}},
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            json!({}),
        );
        let t = table_for("pods", "", &[crash]);
        assert_eq!(t["rows"][0]["cells"][1], "0/1");
        assert_eq!(t["rows"][0]["cells"][2], "CrashLoopBackOff");
        assert_eq!(t["rows"][0]["cells"][3], "3 (5m ago)");
        assert_eq!(t["rows"][0]["cells"][4], "10s");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");

        let init = pod(
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "restartCount": 0,
                "state": {"running": {}}}]}),
            json!({"spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "i"}]}}),
        );
        assert_eq!(
            table_for("pods", "", &[init])["rows"][0]["cells"][2],
            "Init:0/1"
        );

        let done = pod(
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "c",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            json!({}),
        );
        assert_eq!(
            table_for("pods", "", &[done])["rows"][0]["cells"][2],
            "Completed"
        );

        let deleting = pod(json!({"phase": "Running"}), json!({}));
        let mut deleting = deleting;
        deleting["metadata"]["deletionTimestamp"] = "2024-01-01T12:00:00Z".into();
        assert_eq!(
            table_for("pods", "", &[deleting])["rows"][0]["cells"][2],
            "Terminating"
        );
    }

    #[test]
    fn node_and_service_rows() {
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0"},
                "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}});
        let t = table_for("nodes", "", &[node]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[5], "10.1.1.1");
        assert_eq!(cells[6], "<none>");

        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}}});
        let t = table_for("services", "", &[svc]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[4], "80:30080/TCP");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[6], "app=web");
        assert_eq!(t["columnDefinitions"][6]["priority"], 1);
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn workloads_and_defaults() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = table_for("deployments", "apps", &[d]);
        assert_eq!(t["rows"][0]["cells"][1], "2/3");
        assert_eq!(t["rows"][0]["cells"][7], "app=web");
        let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": "2024-01-01T11:00:00Z",
                "completionTime": "2024-01-01T11:00:30Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        let t = table_for("jobs", "batch", &[job]);
        assert_eq!(t["rows"][0]["cells"][1], "Complete");
        assert_eq!(t["rows"][0]["cells"][3], "30s");
        let cr =
            json!({"metadata": {"name": "admin", "creationTimestamp": "2024-01-01T10:00:00Z"}});
        let t = table_for("clusterroles", "rbac.authorization.k8s.io", &[cr]);
        assert_eq!(t["rows"][0]["cells"][1], "2024-01-01T10:00:00Z");
        let lr = table_for("bindings", "", &[json!({"metadata": {"name": "b"}})]);
        assert_eq!(lr["columnDefinitions"][1]["name"], "Age");
    }

    #[test]
    fn custom_columns() {
        let cols: Vec<PrinterColumn> = [
            json!({"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}),
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1}),
            json!({"name": "First", "type": "string", "jsonPath": ".status.conditions[0].type"}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
            json!({"name": "bad"}),
        ]
        .iter()
        .filter_map(PrinterColumn::from_crd)
        .collect();
        assert_eq!(cols.len(), 4);
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T11:00:00Z"},
            "spec": {"cronSpec": "* * * * */5"}, "status": {"conditions": [{"type": "Ready"}]}});
        let t = to_table_with_columns(&cols, &[obj], IncludeObject::None, now(), json!({}));
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "x");
        assert_eq!(cells[1], "* * * * */5");
        assert_eq!(cells[2], Value::Null);
        assert_eq!(cells[3], "Ready");
        assert_eq!(cells[4], "60m");
        assert!(t["rows"][0].get("object").is_none());
        let crd = json!({"spec": {"versions": [{"name": "v1", "additionalPrinterColumns": [
            {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}]}, {"name": "v2"}]}});
        assert_eq!(crd_printer_columns(&crd, "v1")[0].name, "Spec");
        assert_eq!(crd_printer_columns(&crd, "v2"), default_crd_columns());
        assert_eq!(t["columnDefinitions"][2]["priority"], 1);
    }

    #[test]
    fn accept_and_include() {
        assert!(table_accepted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!table_accepted("application/json"));
        assert_eq!(
            IncludeObject::from_query(Some("Object")),
            IncludeObject::Object
        );
        assert_eq!(IncludeObject::from_query(None), IncludeObject::Metadata);
    }
}
