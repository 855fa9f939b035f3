//! Resource amounts as the scheduler adds and compares them: what a pod requests (regular
//! containers, init containers and restartable "sidecar" init containers, overhead — the rule
//! kube's scheduler applies) and what a node can allocate. CPU in millicores, memory and
//! ephemeral storage in bytes, extended resources (and hugepages) as whole units.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::apiserver::quantity::parse_quantity;

/// CPU assumed for a container without a CPU request, when scoring (kube's 100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request, when scoring (kube's 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources and hugepages, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// A `ResourceList` (`requests`, `limits`, `allocatable`, `overhead`). Quantities that do
    /// not parse count as zero (the apiserver validated them).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            let Ok(parsed) = parse_quantity(&quantity.0) else {
                continue;
            };
            match name.as_str() {
                "cpu" => out.milli_cpu = parsed.millis(),
                "memory" => out.memory = parsed.value(),
                "ephemeral-storage" => out.ephemeral_storage = parsed.value(),
                "pods" => {}
                other if is_scalar_resource(other) => {
                    out.scalar.insert(other.to_string(), parsed.value());
                }
                _ => {}
            }
        }
        out
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += value;
        }
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= value;
        }
    }

    /// Each amount the larger of the two.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, value) in &other.scalar {
            let mine = self.scalar.entry(name.clone()).or_default();
            *mine = (*mine).max(*value);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// Resources outside cpu, memory, ephemeral-storage and pods that the scheduler accounts:
/// extended resources (`vendor.example/gpu`), hugepages and `attachable-volumes-*`.
fn is_scalar_resource(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

fn container_requests(container: &Container) -> Resources {
    let resources = container.resources.as_ref();
    let requests = resources.and_then(|r| r.requests.as_ref());
    let mut out = Resources::from_list(requests);
    // A limit without a request is also the request (the apiserver defaults it so; pods
    // created elsewhere may not have been defaulted).
    let limits = Resources::from_list(resources.and_then(|r| r.limits.as_ref()));
    let has = |name: &str| requests.is_some_and(|r| r.contains_key(name));
    if !has("cpu") {
        out.milli_cpu = limits.milli_cpu;
    }
    if !has("memory") {
        out.memory = limits.memory;
    }
    if !has("ephemeral-storage") {
        out.ephemeral_storage = limits.ephemeral_storage;
    }
    for (name, value) in limits.scalar {
        out.scalar.entry(name).or_insert(value);
    }
    out
}

fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// What a pod requests: the regular containers and the sidecars that run beside them, or the
/// largest moment of the init sequence (each init container plus the sidecars started before
/// it) when that is larger; plus the pod overhead.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&container_requests(container));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let requests = container_requests(container);
        let moment = if is_sidecar(container) {
            total.add(&requests);
            sidecars.add(&requests);
            sidecars.clone()
        } else {
            let mut moment = requests;
            moment.add(&sidecars);
            moment
        };
        init_peak.max_with(&moment);
    }
    total.max_with(&init_peak);
    total.add(&Resources::from_list(spec.overhead.as_ref()));
    total
}

/// CPU and memory for scoring: as `pod_requests`, but a container that requests no CPU or no
/// memory counts kube's defaults, so that empty pods still spread.
pub fn pod_requests_for_scoring(spec: &PodSpec) -> (i64, i64) {
    let non_zero = |container: &Container| {
        let requests = container_requests(container);
        let cpu = if requests.milli_cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            requests.milli_cpu
        };
        let memory = if requests.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            requests.memory
        };
        (cpu, memory)
    };
    let (mut cpu, mut memory) = (0, 0);
    for (c, m) in spec.containers.iter().map(non_zero) {
        cpu += c;
        memory += m;
    }
    let (mut sidecar_cpu, mut sidecar_memory) = (0, 0);
    let (mut peak_cpu, mut peak_memory) = (0, 0);
    for container in spec.init_containers.iter().flatten() {
        let (c, m) = non_zero(container);
        if is_sidecar(container) {
            cpu += c;
            memory += m;
            sidecar_cpu += c;
            sidecar_memory += m;
            peak_cpu = peak_cpu.max(sidecar_cpu);
            peak_memory = peak_memory.max(sidecar_memory);
        } else {
            peak_cpu = peak_cpu.max(c + sidecar_cpu);
            peak_memory = peak_memory.max(m + sidecar_memory);
        }
    }
    let overhead = Resources::from_list(spec.overhead.as_ref());
    (
        cpu.max(peak_cpu) + overhead.milli_cpu,
        memory.max(peak_memory) + overhead.memory,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(cpu: &str, memory: &str, sidecar: bool) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), Quantity(memory.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            restart_policy: sidecar.then(|| "Always".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn regular_containers_add_up() {
        let spec = PodSpec {
            containers: vec![
                container("250m", "64Mi", false),
                container("1", "1Gi", false),
            ],
            ..Default::default()
        };
        let requests = pod_requests(&spec);
        assert_eq!(requests.milli_cpu, 1250);
        assert_eq!(requests.memory, 64 * 1024 * 1024 + 1024 * 1024 * 1024);
    }

    #[test]
    fn init_containers_count_at_their_peak_and_sidecars_throughout() {
        // A big init container dominates CPU; a sidecar adds to everything after it.
        let spec = PodSpec {
            init_containers: Some(vec![
                container("2", "100Mi", false),
                container("100m", "50Mi", true),
                container("500m", "500Mi", false),
            ]),
            containers: vec![container("200m", "100Mi", false)],
            ..Default::default()
        };
        let requests = pod_requests(&spec);
        // Running: 200m + sidecar 100m = 300m; init peaks: 2000m, 500m+100m = 600m.
        assert_eq!(requests.milli_cpu, 2000);
        // Memory: running 150Mi; init peaks 100Mi, 500Mi+50Mi = 550Mi.
        assert_eq!(requests.memory, 550 * 1024 * 1024);
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_overhead_adds() {
        let mut c = container("", "", false);
        c.resources = Some(ResourceRequirements {
            limits: Some(
                [
                    ("cpu".to_string(), Quantity("1".into())),
                    ("example.com/gpu".to_string(), Quantity("2".into())),
                ]
                .into(),
            ),
            ..Default::default()
        });
        let spec = PodSpec {
            containers: vec![c],
            overhead: Some([("cpu".to_string(), Quantity("50m".into()))].into()),
            ..Default::default()
        };
        let requests = pod_requests(&spec);
        assert_eq!(requests.milli_cpu, 1050);
        assert_eq!(requests.scalar("example.com/gpu"), 2);
        assert_eq!(
            pod_requests_for_scoring(&spec),
            (1050, DEFAULT_MEMORY_REQUEST)
        );
    }
}
