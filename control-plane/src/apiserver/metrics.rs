//! `/metrics`: the apiserver's Prometheus text exposition. Owns the request metrics
//! (`apiserver_request_total`, `apiserver_request_duration_seconds`), the open watches
//! (`apiserver_longrunning_requests`), and renders at scrape time the objects per resource
//! from the watch cache (`apiserver_storage_objects`), storage latency (from
//! `storage::latency`) and process figures (`process_resident_memory_bytes`,
//! `process_start_time_seconds`).
//!
//! Recording is off the allocation path: each label set is registered once (the first time
//! it is seen) in a map keyed by the hash of its labels; afterwards a request costs a read
//! lock, a hash and a few atomic adds.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::request::RequestInfo;
use super::watch_cache::WatchCache;
use crate::storage::latency::{self, Histogram, HistogramSnapshot, Operation};

/// Bucket bounds (seconds) of apiserver_request_duration_seconds, as kube-apiserver 1.32 has them.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

const REQUEST_LABELS: &[&str] = &[
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
    "code",
];
const DURATION_LABELS: &[&str] = &[
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];

/// The label values of one series, in the order of the metric's label names.
type Labels = Box<[Box<str>]>;
/// One series: its labels and its value.
type Series<V> = (Labels, Arc<V>);

/// Series of one metric, one per label set, registered on first sight.
struct Family<V> {
    series: RwLock<HashMap<u64, Vec<Series<V>>>>,
}

impl<V> Family<V> {
    fn new() -> Family<V> {
        Family {
            series: RwLock::new(HashMap::new()),
        }
    }

    /// The series of `labels`, created by `make` the first time.
    fn with(&self, labels: &[&str], make: impl FnOnce() -> V) -> Arc<V> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        labels.hash(&mut hasher);
        let hash = hasher.finish();
        let same = |stored: &[Box<str>]| {
            stored.len() == labels.len() && stored.iter().zip(labels).all(|(a, b)| **a == **b)
        };
        {
            let series = self.series.read().unwrap_or_else(|p| p.into_inner());
            if let Some((_, value)) = series
                .get(&hash)
                .and_then(|bucket| bucket.iter().find(|(stored, _)| same(stored)))
            {
                return value.clone();
            }
        }
        let mut series = self.series.write().unwrap_or_else(|p| p.into_inner());
        let bucket = series.entry(hash).or_default();
        if let Some((_, value)) = bucket.iter().find(|(stored, _)| same(stored)) {
            return value.clone();
        }
        let value = Arc::new(make());
        bucket.push((
            labels.iter().map(|l| Box::from(*l)).collect(),
            value.clone(),
        ));
        value
    }

    /// Every series, sorted by labels.
    fn all(&self) -> Vec<Series<V>> {
        let series = self.series.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = series.values().flatten().cloned().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

struct Registry {
    requests: Family<AtomicU64>,
    durations: Family<Histogram>,
    longrunning: Family<AtomicI64>,
    started: SystemTime,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    requests: Family::new(),
    durations: Family::new(),
    longrunning: Family::new(),
    started: SystemTime::now(),
});

/// Starts the clock of `process_start_time_seconds` (call once at start-up).
pub fn init() {
    LazyLock::force(&REGISTRY);
}

/// The verb as kube's metrics name it: the HTTP method, LIST and WATCH for collection reads.
fn metric_verb(info: &RequestInfo) -> &'static str {
    match info.verb.as_str() {
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" | "put" => "PUT",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        "head" => "HEAD",
        "post" => "POST",
        "options" => "OPTIONS",
        _ => "other",
    }
}

fn scope(info: &RequestInfo) -> &'static str {
    if !info.is_resource_request {
        ""
    } else if !info.name.is_empty() {
        "resource"
    } else if !info.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    }
}

/// The status code as text without allocating.
fn code_text(code: u16, buffer: &mut [u8; 3]) -> &str {
    let code = code.clamp(100, 999);
    buffer[0] = b'0' + (code / 100) as u8;
    buffer[1] = b'0' + (code / 10 % 10) as u8;
    buffer[2] = b'0' + (code % 10) as u8;
    std::str::from_utf8(buffer).unwrap_or("000")
}

/// Records one answered request.
pub fn observe_request(info: &RequestInfo, code: u16, elapsed: Duration) {
    let mut buffer = [0u8; 3];
    let base = [
        metric_verb(info),
        info.group.as_str(),
        info.version.as_str(),
        info.resource.as_str(),
        info.subresource.as_str(),
        scope(info),
        "apiserver",
    ];
    let mut labels = [""; 8];
    labels[..7].copy_from_slice(&base);
    labels[7] = code_text(code, &mut buffer);
    REGISTRY
        .requests
        .with(&labels, || AtomicU64::new(0))
        .fetch_add(1, Ordering::Relaxed);
    REGISTRY
        .durations
        .with(&base, || Histogram::new(REQUEST_BUCKETS))
        .observe(elapsed);
}

/// An open long-running request (a watch); counted until dropped.
pub struct LongRunning(Arc<AtomicI64>);

impl LongRunning {
    pub fn start(info: &RequestInfo) -> LongRunning {
        let labels = [
            metric_verb(info),
            info.group.as_str(),
            info.version.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
            scope(info),
            "apiserver",
        ];
        let gauge = REGISTRY.longrunning.with(&labels, || AtomicI64::new(0));
        gauge.fetch_add(1, Ordering::Relaxed);
        LongRunning(gauge)
    }
}

impl Drop for LongRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(names: &[&str], values: &[Box<str>]) -> String {
    let mut out = String::new();
    for (index, (name, value)) in names.iter().zip(values).enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn write_histogram(out: &mut String, name: &str, labels: &str, snapshot: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, count) in &snapshot.buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        snapshot.count
    );
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", snapshot.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", snapshot.count);
}

/// Objects per resource in the cache, labelled as kube labels them (`pods`, `deployments.apps`).
/// Keys are visited in order, so one resource's keys are consecutive.
fn storage_objects(cache: &WatchCache) -> Vec<(String, u64)> {
    let mut counts = Vec::new();
    // (the resource's key prefix, its label, objects so far)
    let mut current: Option<(String, String, u64)> = None;
    cache.for_each_key(|key| {
        if let Some((prefix, _, count)) = &mut current
            && key.starts_with(prefix.as_str())
        {
            *count += 1;
            return;
        }
        let mut parts = key
            .strip_prefix(super::objects::REGISTRY_PREFIX)
            .unwrap_or(key)
            .splitn(3, '/');
        let (Some(group), Some(plural)) = (parts.next(), parts.next()) else {
            return;
        };
        let label = if group == "core" {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        let prefix = format!("{}{group}/{plural}/", super::objects::REGISTRY_PREFIX);
        if let Some((_, label, count)) = current.replace((prefix, label, 1)) {
            counts.push((label, count));
        }
    });
    if let Some((_, label, count)) = current {
        counts.push((label, count));
    }
    counts.sort();
    counts
}

/// The resident set size of this process, from /proc/self/status.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The whole exposition, in Prometheus text format 0.0.4.
pub fn render(cache: &WatchCache) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(
        &mut out,
        "apiserver_request_total",
        "counter",
        "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
    );
    for (labels, count) in REGISTRY.requests.all() {
        let _ = writeln!(
            out,
            "apiserver_request_total{{{}}} {}",
            label_text(REQUEST_LABELS, &labels),
            count.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "apiserver_request_duration_seconds",
        "histogram",
        "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
    );
    for (labels, histogram) in REGISTRY.durations.all() {
        write_histogram(
            &mut out,
            "apiserver_request_duration_seconds",
            &label_text(DURATION_LABELS, &labels),
            &histogram.snapshot(),
        );
    }
    header(
        &mut out,
        "apiserver_longrunning_requests",
        "gauge",
        "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component.",
    );
    for (labels, gauge) in REGISTRY.longrunning.all() {
        let _ = writeln!(
            out,
            "apiserver_longrunning_requests{{{}}} {}",
            label_text(DURATION_LABELS, &labels),
            gauge.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "apiserver_storage_objects",
        "gauge",
        "Number of stored objects at the time of last check split by kind.",
    );
    for (resource, count) in storage_objects(cache) {
        let _ = writeln!(
            out,
            "apiserver_storage_objects{{resource=\"{}\"}} {count}",
            escape(&resource)
        );
    }
    header(
        &mut out,
        "apiserver_storage_request_duration_seconds",
        "histogram",
        "Storage request latency in seconds for each operation.",
    );
    for operation in Operation::ALL {
        let labels = format!("operation=\"{}\"", operation.as_str());
        let snapshot = latency::operation_latency(operation).snapshot();
        write_histogram(
            &mut out,
            "apiserver_storage_request_duration_seconds",
            &labels,
            &snapshot,
        );
    }
    header(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    let _ = writeln!(
        out,
        "process_resident_memory_bytes {}",
        resident_bytes().unwrap_or(0)
    );
    header(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    let started = REGISTRY
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let _ = writeln!(out, "process_start_time_seconds {started}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(verb: &str, resource: &str, namespace: &str, name: &str) -> RequestInfo {
        RequestInfo {
            is_resource_request: true,
            path: String::new(),
            verb: verb.into(),
            group: String::new(),
            version: "v1".into(),
            namespace: namespace.into(),
            resource: resource.into(),
            name: name.into(),
            subresource: String::new(),
        }
    }

    #[test]
    fn a_label_set_is_one_series() {
        let family: Family<AtomicU64> = Family::new();
        for _ in 0..3 {
            family
                .with(&["a", "b"], || AtomicU64::new(0))
                .fetch_add(1, Ordering::Relaxed);
        }
        family
            .with(&["a", "c"], || AtomicU64::new(0))
            .fetch_add(1, Ordering::Relaxed);
        let all = family.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.load(Ordering::Relaxed), 3);
        assert_eq!(all[1].1.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn verbs_and_scopes_are_named_as_kube_names_them() {
        assert_eq!(metric_verb(&info("create", "pods", "ns", "")), "POST");
        assert_eq!(
            metric_verb(&info("deletecollection", "pods", "ns", "")),
            "DELETE"
        );
        assert_eq!(scope(&info("get", "pods", "ns", "p")), "resource");
        assert_eq!(scope(&info("list", "pods", "ns", "")), "namespace");
        assert_eq!(scope(&info("list", "nodes", "", "")), "cluster");
        let mut buffer = [0u8; 3];
        assert_eq!(code_text(201, &mut buffer), "201");
    }

    #[test]
    fn requests_show_up_in_the_exposition() {
        let request = info("list", "metricstestresources", "ns", "");
        observe_request(&request, 200, Duration::from_millis(3));
        let watch = LongRunning::start(&info("watch", "metricstestresources", "ns", ""));
        let cache = WatchCache::empty_for_tests();
        let text = render(&cache);
        assert!(text.contains("apiserver_request_total{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"metricstestresources\",subresource=\"\",scope=\"namespace\",component=\"apiserver\",code=\"200\"} 1"), "{text}");
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"metricstestresources\",subresource=\"\",scope=\"namespace\",component=\"apiserver\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("apiserver_longrunning_requests{verb=\"WATCH\",group=\"\",version=\"v1\",resource=\"metricstestresources\",subresource=\"\",scope=\"namespace\",component=\"apiserver\"} 1"), "{text}");
        drop(watch);
        assert!(render(&cache).contains("resource=\"metricstestresources\",subresource=\"\",scope=\"namespace\",component=\"apiserver\"} 0"));
    }
}
