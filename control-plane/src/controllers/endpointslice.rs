//! The EndpointSlice controller ("endpointslice"): for every Service with a selector, the
//! discovery.k8s.io/v1 EndpointSlices listing the matching pods that have IPs — one set of
//! slices per address family and per resolved port set, at most 100 endpoints a slice, each
//! endpoint with kube's ready/serving/terminating conditions, node, zone and pod reference.
//! Slices are changed minimally (endpoints that stay keep their slice), deleted when the
//! Service goes; Services without a selector are left to whoever manages their slices.
//!
//! Also the pod rules the Endpoints controller shares (which pods count, readiness, port
//! resolution), as kube's endpoint utilities do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::informer::{self, WorkQueue, key_of, split_key};

/// `kubernetes.io/service-name`: the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: who owns a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of the managed-by label.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// `service.kubernetes.io/headless`, set on the slices and Endpoints of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// When the last change that the object reflects happened.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// True when every pair of the Service's selector is among the pod's labels; a Service
/// without a selector (or an empty one) selects nothing here.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty() {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

pub fn has_selector(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty())
}

/// kube's `ShouldPodBeInEndpoints`: the pod has an IP, is not in a terminal phase, and is not
/// terminating unless `include_terminating`.
pub fn pod_belongs(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    if !has_ip {
        return false;
    }
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The pod's IPs, primary first.
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if let Some(ip) = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())
        && !ips.contains(ip)
    {
        ips.insert(0, ip.clone());
    }
    ips
}

/// "IPv4" or "IPv6" for an address, None when it is no IP.
pub fn family_of(ip: &str) -> Option<&'static str> {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => Some("IPv4"),
        Ok(std::net::IpAddr::V6(_)) => Some("IPv6"),
        Err(_) => None,
    }
}

/// The container port a Service port sends to on this pod (kube's `FindPort`): a number as
/// is, a name looked up among the containers' ports of the same protocol; None when the pod
/// has no port of that name.
pub fn resolve_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// A reference to the pod, as endpoints carry it.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pod's hostname when the Service is its subdomain (stable DNS names of headless
/// Services).
pub fn pod_hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.clone())
}

/// The time of the latest change the Service's endpoints reflect: the Service's creation and
/// each pod's last Ready transition (or creation), RFC 3339.
pub fn trigger_time(service: &Service, pods: &[Arc<Pod>]) -> Option<String> {
    let mut latest = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
    for pod in pods {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0);
        latest = latest.max(ready);
    }
    latest.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The labels of the Service's generated objects: its own labels plus the headless marker.
pub fn derived_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The Service's address families: `spec.ipFamilies`, else those of the pods' primary IPs,
/// else IPv4.
fn address_types(service: &Service, pods: &[Arc<Pod>]) -> Vec<String> {
    let declared: Vec<String> = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .unwrap_or_default();
    if !declared.is_empty() {
        return declared;
    }
    let mut found: Vec<String> = Vec::new();
    for pod in pods {
        if let Some(family) = pod_ips(pod).first().and_then(|ip| family_of(ip))
            && !found.iter().any(|f| f == family)
        {
            found.push(family.to_string());
        }
    }
    if found.is_empty() {
        found.push("IPv4".into());
    }
    found
}

/// One desired group of endpoints: an address type and a port set.
type GroupKey = (String, String);

struct Desired {
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
}

fn endpoint_id(endpoint: &Endpoint) -> String {
    endpoint
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_else(|| endpoint.addresses.join(","))
}

fn ports_key(ports: &[EndpointPort]) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

/// The endpoint groups the Service should publish.
fn desired_groups(
    service: &Service,
    pods: &[Arc<Pod>],
    nodes: &Store<Node>,
) -> BTreeMap<GroupKey, Desired> {
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let service_ports: &[ServicePort] = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let families = address_types(service, pods);
    let mut groups: BTreeMap<GroupKey, Desired> = BTreeMap::new();
    for pod in pods {
        let mut ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|sp| {
                let number = resolve_port(sp, pod)?;
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(number),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        ports.sort_by(|a, b| a.name.cmp(&b.name).then(a.port.cmp(&b.port)));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = pod_ready(pod);
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let zone = node_name.as_ref().and_then(|n| {
            nodes
                .get(&ObjectRef::new(n))
                .and_then(|node| node.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
        });
        let ips = pod_ips(pod);
        for family in &families {
            let Some(ip) = ips.iter().find(|ip| family_of(ip) == Some(family.as_str())) else {
                continue;
            };
            let endpoint = Endpoint {
                addresses: vec![ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(publish_not_ready || (ready && !terminating)),
                    serving: Some(publish_not_ready || ready),
                    terminating: Some(terminating),
                }),
                hostname: pod_hostname(pod, service),
                node_name: node_name.clone(),
                zone: zone.clone(),
                target_ref: Some(pod_reference(pod)),
                ..Default::default()
            };
            groups
                .entry((family.clone(), ports_key(&ports)))
                .or_insert_with(|| Desired {
                    ports: ports.clone(),
                    endpoints: Vec::new(),
                })
                .endpoints
                .push(endpoint);
        }
    }
    for group in groups.values_mut() {
        group
            .endpoints
            .sort_by_key(|e| (e.addresses.clone(), endpoint_id(e)));
    }
    groups
}

fn slice_ports_key(slice: &EndpointSlice) -> String {
    let mut ports = slice.ports.clone().unwrap_or_default();
    ports.sort_by(|a, b| a.name.cmp(&b.name).then(a.port.cmp(&b.port)));
    ports_key(&ports)
}

/// What a write is expected to show in the cache before the Service is synced again (kube's
/// slice tracker: a stale cache must not make the controller create duplicates).
#[derive(Clone, Debug)]
enum Expectation {
    /// The slice exists with a resourceVersion other than `not_rv`.
    Present {
        name: String,
        not_rv: Option<String>,
    },
    Absent {
        name: String,
    },
}

struct SliceController {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    queue: Arc<WorkQueue>,
    expectations: Mutex<HashMap<String, Vec<Expectation>>>,
}

/// Runs until `shutdown`.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let queue = WorkQueue::new();
    let (services, services_task) = {
        let q = queue.clone();
        informer::watch(Api::<Service>::all(client.clone()), move |s| match s {
            Some(s) => q.add(key_of(&s.metadata)),
            None => q.add(ALL),
        })
    };
    let (pods, pods_task) = {
        let q = queue.clone();
        informer::watch(Api::<Pod>::all(client.clone()), move |p| match p {
            Some(p) => q.add(format!(
                "{NAMESPACE_PREFIX}{}",
                p.metadata.namespace.as_deref().unwrap_or_default()
            )),
            None => q.add(ALL),
        })
    };
    let (nodes, nodes_task) = informer::watch(Api::<Node>::all(client.clone()), |_| {});
    let (slices, slices_task) = {
        let q = queue.clone();
        let managed = format!("{MANAGED_BY_LABEL}={CONTROLLER_NAME}");
        let api = Api::<EndpointSlice>::all(client.clone());
        let (store, writer) = kube::runtime::reflector::store();
        let stream = kube::runtime::watcher::watcher(
            api,
            kube::runtime::watcher::Config::default().labels(&managed),
        );
        let task = tokio::spawn(follow_slices(stream, writer, q));
        (store, task)
    };
    let controller = Arc::new(SliceController {
        client,
        services,
        pods,
        nodes,
        slices,
        queue: queue.clone(),
        expectations: Mutex::new(HashMap::new()),
    });
    let worker = tokio::spawn(work(controller.clone()));
    shutdown.cancelled().await;
    for task in [services_task, pods_task, nodes_task, slices_task, worker] {
        task.abort();
    }
}

/// Queue key meaning "every Service".
const ALL: &str = "*";
/// Queue key prefix meaning "every Service of this namespace".
const NAMESPACE_PREFIX: &str = "ns:";

async fn follow_slices<S>(
    stream: S,
    writer: kube::runtime::reflector::store::Writer<EndpointSlice>,
    queue: Arc<WorkQueue>,
) where
    S: futures::Stream<
            Item = Result<
                kube::runtime::watcher::Event<EndpointSlice>,
                kube::runtime::watcher::Error,
            >,
        > + Send,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let mut stream = stream.default_backoff().reflect(writer).boxed();
    while let Some(event) = stream.next().await {
        use kube::runtime::watcher::Event as E;
        match event {
            Ok(E::Apply(slice) | E::Delete(slice) | E::InitApply(slice)) => {
                let service = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL).cloned())
                    .unwrap_or_default();
                let ns = slice.metadata.namespace.clone().unwrap_or_default();
                queue.add(format!("{ns}/{service}"));
            }
            Ok(E::InitDone) => queue.add(ALL),
            Ok(E::Init) => {}
            Err(error) => tracing::warn!(%error, "endpointslice watch failed; retrying"),
        }
    }
}

async fn work(controller: Arc<SliceController>) {
    let _ = controller.services.wait_until_ready().await;
    let _ = controller.pods.wait_until_ready().await;
    let _ = controller.nodes.wait_until_ready().await;
    let _ = controller.slices.wait_until_ready().await;
    loop {
        let key = controller.queue.next().await;
        if key == ALL || key.starts_with(NAMESPACE_PREFIX) {
            let namespace = key.strip_prefix(NAMESPACE_PREFIX);
            for service in controller.services.state() {
                if namespace.is_none_or(|ns| service.metadata.namespace.as_deref() == Some(ns)) {
                    controller.queue.add(key_of(&service.metadata));
                }
            }
            continue;
        }
        if !controller.expectations_met(&key) {
            controller.queue.add_after(key, Duration::from_millis(100));
            continue;
        }
        if let Err(error) = controller.sync(&key).await {
            tracing::warn!(service = %key, %error, "syncing endpoint slices failed; retrying");
            controller.queue.add_after(key, Duration::from_secs(1));
        }
    }
}

impl SliceController {
    fn expectations_met(&self, key: &str) -> bool {
        let mut all = self.expectations.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = all.get(key) else {
            return true;
        };
        let (ns, _) = split_key(key);
        let met = list.iter().all(|e| match e {
            Expectation::Present { name, not_rv } => self
                .slices
                .get(&ObjectRef::new(name).within(ns))
                .is_some_and(|s| s.metadata.resource_version != *not_rv),
            Expectation::Absent { name } => {
                self.slices.get(&ObjectRef::new(name).within(ns)).is_none()
            }
        });
        if met {
            all.remove(key);
        }
        met
    }

    fn expect(&self, key: &str, expectations: Vec<Expectation>) {
        if expectations.is_empty() {
            return;
        }
        let mut all = self.expectations.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(key.to_string()).or_default().extend(expectations);
    }

    async fn sync(&self, key: &str) -> Result<(), kube::Error> {
        let (ns, name) = split_key(key);
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .state()
            .into_iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .map(String::as_str)
                        == Some(name)
            })
            .collect();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let Some(service) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            let mut done = Vec::new();
            for slice in &existing {
                let slice_name = slice.metadata.name.clone().unwrap_or_default();
                delete_slice(&api, &slice_name).await?;
                done.push(Expectation::Absent { name: slice_name });
            }
            self.expect(key, done);
            return Ok(());
        };
        if !has_selector(&service) {
            return Ok(());
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && selects(&service, p)
                    && pod_belongs(p, true)
            })
            .collect();
        let groups = desired_groups(&service, &pods, &self.nodes);
        let template = SliceTemplate {
            service: &service,
            trigger_time: trigger_time(&service, &pods),
        };
        let plan = plan(&existing, groups, &template);
        let mut done = Vec::new();
        for slice_name in plan.delete {
            delete_slice(&api, &slice_name).await?;
            done.push(Expectation::Absent { name: slice_name });
        }
        for slice in plan.update {
            let before = slice.metadata.resource_version.clone();
            let name = slice.metadata.name.clone().unwrap_or_default();
            api.replace(&name, &PostParams::default(), &slice).await?;
            done.push(Expectation::Present {
                name,
                not_rv: before,
            });
        }
        for slice in plan.create {
            let created = api.create(&PostParams::default(), &slice).await?;
            done.push(Expectation::Present {
                name: created.metadata.name.unwrap_or_default(),
                not_rv: None,
            });
        }
        self.expect(key, done);
        Ok(())
    }
}

async fn delete_slice(api: &Api<EndpointSlice>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}

/// What the Service's slices must carry besides endpoints and ports.
struct SliceTemplate<'a> {
    service: &'a Service,
    trigger_time: Option<String>,
}

impl SliceTemplate<'_> {
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = derived_labels(self.service);
        labels.insert(
            SERVICE_NAME_LABEL.into(),
            self.service.metadata.name.clone().unwrap_or_default(),
        );
        labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
        labels
    }

    fn owner(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: self.service.metadata.name.clone().unwrap_or_default(),
            uid: self.service.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn new_slice(&self, address_type: &str, ports: Option<Vec<EndpointPort>>) -> EndpointSlice {
        let name = self.service.metadata.name.clone().unwrap_or_default();
        // generateName is capped so the generated name stays a valid 63-character label.
        let prefix: String = format!("{name}-").chars().take(58).collect();
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(prefix),
                namespace: self.service.metadata.namespace.clone(),
                labels: Some(self.labels()),
                annotations: self.annotations(&BTreeMap::new()),
                owner_references: Some(vec![self.owner()]),
                ..Default::default()
            },
            address_type: address_type.to_string(),
            endpoints: Vec::new(),
            ports,
        }
    }

    fn annotations(&self, current: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
        let mut annotations = current.clone();
        if let Some(time) = &self.trigger_time {
            annotations.insert(TRIGGER_TIME_ANNOTATION.into(), time.clone());
        }
        (!annotations.is_empty()).then_some(annotations)
    }

    /// Brings an existing slice's labels and owner up to date; true when it changed.
    fn refresh_meta(&self, slice: &mut EndpointSlice) -> bool {
        let labels = self.labels();
        let owners = vec![self.owner()];
        let changed = slice.metadata.labels.as_ref() != Some(&labels)
            || slice.metadata.owner_references.as_ref() != Some(&owners);
        slice.metadata.labels = Some(labels);
        slice.metadata.owner_references = Some(owners);
        changed
    }
}

#[derive(Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

/// The writes that turn `existing` into slices publishing `groups`: endpoints that stay keep
/// their slice, changed ones are rewritten in place, new ones fill free room before new slices
/// are made, emptied slices are deleted, and a Service without endpoints keeps one empty
/// placeholder slice.
fn plan(
    existing: &[Arc<EndpointSlice>],
    groups: BTreeMap<GroupKey, Desired>,
    template: &SliceTemplate<'_>,
) -> Plan {
    let mut plan = Plan::default();
    let mut used: Vec<String> = Vec::new();
    if groups.is_empty() {
        let address_type = address_types(template.service, &[])
            .into_iter()
            .next()
            .unwrap_or_else(|| "IPv4".into());
        let placeholder = existing
            .iter()
            .find(|s| s.endpoints.is_empty() && s.address_type == address_type);
        match placeholder {
            Some(slice) => {
                let mut slice = (**slice).clone();
                let ports_changed = slice.ports.take().is_some_and(|p| !p.is_empty());
                if template.refresh_meta(&mut slice) || ports_changed {
                    slice.metadata.annotations = template
                        .annotations(&slice.metadata.annotations.clone().unwrap_or_default());
                    plan.update.push(slice.clone());
                }
                used.push(slice.metadata.name.clone().unwrap_or_default());
            }
            None => plan.create.push(template.new_slice(&address_type, None)),
        }
    }
    for ((address_type, key), desired) in groups {
        let mut wanted: BTreeMap<String, Endpoint> = desired
            .endpoints
            .into_iter()
            .map(|e| (endpoint_id(&e), e))
            .collect();
        let mut kept: Vec<(EndpointSlice, bool)> = Vec::new();
        let mut candidates: Vec<&Arc<EndpointSlice>> = existing
            .iter()
            .filter(|s| s.address_type == address_type && slice_ports_key(s) == key)
            .collect();
        candidates.sort_by_key(|s| s.metadata.name.clone());
        for slice in candidates {
            let mut next = (**slice).clone();
            let mut changed = template.refresh_meta(&mut next);
            next.endpoints = slice
                .endpoints
                .iter()
                .filter_map(|old| {
                    let fresh = wanted.remove(&endpoint_id(old))?;
                    changed |= fresh != *old;
                    Some(fresh)
                })
                .collect();
            changed |= next.endpoints.len() != slice.endpoints.len();
            if next.endpoints.is_empty() {
                continue;
            }
            kept.push((next, changed));
        }
        let mut remaining: Vec<Endpoint> = wanted.into_values().collect();
        remaining.sort_by_key(|e| e.addresses.clone());
        for (slice, changed) in kept.iter_mut() {
            while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE && !remaining.is_empty() {
                slice.endpoints.push(remaining.remove(0));
                *changed = true;
            }
        }
        for (mut slice, changed) in kept {
            used.push(slice.metadata.name.clone().unwrap_or_default());
            if changed {
                slice.metadata.annotations =
                    template.annotations(&slice.metadata.annotations.clone().unwrap_or_default());
                plan.update.push(slice);
            }
        }
        for chunk in remaining.chunks(MAX_ENDPOINTS_PER_SLICE) {
            let mut slice = template.new_slice(&address_type, Some(desired.ports.clone()));
            slice.endpoints = chunk.to_vec();
            plan.create.push(slice);
        }
    }
    for slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        if !used.contains(&name) {
            plan.delete.push(name);
        }
    }
    plan
}
