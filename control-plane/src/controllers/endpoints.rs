//! The Endpoints controller ("endpoint"): the legacy core/v1 Endpoints object of every Service
//! with a selector — its matching pods with IPs as subsets grouped by resolved port set, ready
//! pods under `addresses`, the others under `notReadyAddresses` (all under `addresses` with
//! `publishNotReadyAddresses`; terminating pods left out unless that is set), at most 1000
//! addresses with kube's over-capacity annotation, and the last-change-trigger-time
//! annotation. Deleted with its Service; Services without a selector are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::endpointslice::{
    TRIGGER_TIME_ANNOTATION, derived_labels, family_of, has_selector, pod_belongs, pod_hostname,
    pod_ips, pod_ready, pod_reference, resolve_port, selects, trigger_time,
};
use super::informer::{self, WorkQueue, key_of, split_key};

/// kube's cap on the addresses of one Endpoints object.
pub const MAX_CAPACITY: usize = 1000;
/// Set (to "truncated") when addresses were left out for the cap.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

const ALL: &str = "*";
const NAMESPACE_PREFIX: &str = "ns:";

struct EndpointsController {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    queue: Arc<WorkQueue>,
}

/// Runs until `shutdown`.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let client = context.client.clone();
    let queue = WorkQueue::new();
    let q = queue.clone();
    let (services, services_task) =
        informer::watch(Api::<Service>::all(client.clone()), move |s| match s {
            Some(s) => q.add(key_of(&s.metadata)),
            None => q.add(ALL),
        });
    let q = queue.clone();
    let (pods, pods_task) = informer::watch(Api::<Pod>::all(client.clone()), move |p| match p {
        Some(p) => q.add(format!(
            "{NAMESPACE_PREFIX}{}",
            p.metadata.namespace.as_deref().unwrap_or_default()
        )),
        None => q.add(ALL),
    });
    let q = queue.clone();
    let (endpoints, endpoints_task) =
        informer::watch(Api::<Endpoints>::all(client.clone()), move |e| {
            if let Some(e) = e {
                q.add(key_of(&e.metadata));
            }
        });
    let controller = Arc::new(EndpointsController {
        client,
        services,
        pods,
        endpoints,
        queue,
    });
    let worker = tokio::spawn(work(controller));
    shutdown.cancelled().await;
    for task in [services_task, pods_task, endpoints_task, worker] {
        task.abort();
    }
}

async fn work(controller: Arc<EndpointsController>) {
    let _ = controller.services.wait_until_ready().await;
    let _ = controller.pods.wait_until_ready().await;
    let _ = controller.endpoints.wait_until_ready().await;
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
        if let Err(error) = controller.sync(&key).await {
            tracing::warn!(service = %key, %error, "syncing endpoints failed; retrying");
            controller.queue.add_after(key, Duration::from_secs(1));
        }
    }
}

impl EndpointsController {
    async fn sync(&self, key: &str) -> Result<(), kube::Error> {
        let (ns, name) = split_key(key);
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let Some(service) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            if current.is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(error) => return Err(error),
                }
            }
            return Ok(());
        };
        if !has_selector(&service) {
            return Ok(());
        }
        let publish_not_ready = service
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false);
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && selects(&service, p)
                    && pod_belongs(p, publish_not_ready)
            })
            .collect();
        let (subsets, truncated) = desired_subsets(&service, &pods, publish_not_ready);
        let labels = derived_labels(&service);
        let mut annotations = current
            .as_ref()
            .and_then(|c| c.metadata.annotations.clone())
            .unwrap_or_default();
        let was_truncated = annotations.contains_key(OVER_CAPACITY_ANNOTATION);
        if truncated {
            annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY_ANNOTATION);
        }
        if let Some(current) = &current {
            let same_subsets = current.subsets.clone().unwrap_or_default() == subsets;
            let current_labels = current.metadata.labels.clone().unwrap_or_default();
            if same_subsets && current_labels == labels && was_truncated == truncated {
                return Ok(());
            }
        }
        if let Some(time) = trigger_time(&service, &pods) {
            annotations.insert(TRIGGER_TIME_ANNOTATION.into(), time);
        }
        let object = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: (!labels.is_empty()).then_some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                resource_version: current
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone()),
                ..current
                    .as_ref()
                    .map(|c| c.metadata.clone())
                    .unwrap_or_default()
            },
            subsets: (!subsets.is_empty()).then_some(subsets),
        };
        if current.is_some() {
            api.replace(name, &PostParams::default(), &object).await?;
        } else {
            api.create(&PostParams::default(), &object).await?;
        }
        Ok(())
    }
}

/// The subsets of the Service's Endpoints, grouped by identical port sets (kube's repacking)
/// and sorted; true when addresses beyond [`MAX_CAPACITY`] were left out.
fn desired_subsets(
    service: &Service,
    pods: &[Arc<Pod>],
    publish_not_ready: bool,
) -> (Vec<EndpointSubset>, bool) {
    let primary_family = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first().cloned());
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // port set (as JSON) -> (ports, ready, not ready)
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        let ips = pod_ips(pod);
        let ip = match &primary_family {
            Some(family) => ips
                .iter()
                .find(|ip| family_of(ip) == Some(family.as_str()))
                .cloned(),
            None => ips.first().cloned(),
        };
        let Some(ip) = ip else { continue };
        let mut ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: resolve_port(sp, pod)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !service_ports.is_empty() {
            continue;
        }
        ports.sort_by(|a, b| a.name.cmp(&b.name).then(a.port.cmp(&b.port)));
        let address = EndpointAddress {
            ip,
            hostname: pod_hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(pod)),
        };
        let group = groups
            .entry(serde_json::to_string(&ports).unwrap_or_default())
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish_not_ready || pod_ready(pod) {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    let sort = |list: &mut Vec<EndpointAddress>| {
        list.sort_by(|a, b| {
            a.ip.cmp(&b.ip).then_with(|| {
                let uid = |x: &EndpointAddress| x.target_ref.as_ref().and_then(|r| r.uid.clone());
                uid(a).cmp(&uid(b))
            })
        })
    };
    let mut budget = MAX_CAPACITY;
    let mut truncated = false;
    let mut subsets = Vec::new();
    for (_, (ports, mut ready, mut not_ready)) in groups {
        sort(&mut ready);
        sort(&mut not_ready);
        if ready.len() > budget {
            ready.truncate(budget);
            truncated = true;
        }
        budget -= ready.len();
        if not_ready.len() > budget {
            not_ready.truncate(budget);
            truncated = true;
        }
        budget -= not_ready.len();
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        subsets.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    (subsets, truncated)
}
