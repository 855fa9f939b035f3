//! What a Service write allocates and releases, as kube-apiserver's Service registry does:
//! ClusterIPs, NodePorts and the health-check NodePort on create (after `service_spec` filled
//! the IP family fields); on update (after `service_spec` kept what the client left out and
//! dropped what the new type does not use) type changes claim or release; a deleted Service
//! releases everything. `rest` calls in here for every
//! resource; anything that is not a core/v1 Service passes through untouched.
//!
//! A claim is a small transaction: what it claimed is released by `revert` (failed validation,
//! conflict, storage error, dry run); what the write gives up is released by `commit`, only
//! once the write is stored.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::allocator::AllocError;
use super::field_errors::FieldError;
use super::resources::ResourceInfo;
use super::rest;
use super::service_allocation::{Allocated, ClaimError, LEAK_GRACE, Owner, RepairReport};
use super::service_spec::{
    cluster_ips, drop_type_dependent_fields, field_invalid, go_strings, health_check_port,
    init_ip_family_fields, is_headless, needs_cluster_ip, needs_health_check, needs_node_port,
    node_port, patch_allocated_values, ports, should_allocate_node_ports, strings,
};
use super::state::ApiState;
use super::status::{ApiError, Target};

/// How often the allocation records are checked against the stored Services.
const REPAIR_INTERVAL: Duration = Duration::from_secs(180);

pub fn is_service(resource: &ResourceInfo) -> bool {
    resource.group.is_empty() && resource.kind == "Service"
}

/// What one write claimed, to be committed (the write is stored) or reverted.
#[must_use = "a claim must be committed or reverted"]
pub struct Claim {
    owner: Owner,
    claimed: Vec<Allocated>,
    release_on_commit: Vec<Allocated>,
    dry_run: bool,
}

impl Claim {
    /// The claim of a write that allocates nothing.
    pub fn none() -> Claim {
        Claim {
            owner: Owner {
                namespace: String::new(),
                name: String::new(),
                uid: String::new(),
            },
            claimed: Vec::new(),
            release_on_commit: Vec::new(),
            dry_run: true,
        }
    }

    fn new(object: &Value, dry_run: bool) -> Claim {
        Claim {
            owner: Owner::of(object),
            claimed: Vec::new(),
            release_on_commit: Vec::new(),
            dry_run,
        }
    }

    /// The write was stored: releases what it gave up.
    pub async fn commit(self, state: &ApiState) {
        if self.dry_run {
            return;
        }
        for what in &self.release_on_commit {
            state.service_allocations.release(*what, &self.owner).await;
        }
    }

    /// The write failed (or was a dry run): releases what it claimed.
    pub async fn revert(self, state: &ApiState) {
        if self.dry_run {
            return;
        }
        for what in &self.claimed {
            state.service_allocations.release(*what, &self.owner).await;
        }
    }

    async fn claim(&mut self, state: &ApiState, what: Allocated) -> Result<(), ClaimError> {
        state
            .service_allocations
            .claim(what, &self.owner, self.dry_run)
            .await?;
        if !self.dry_run {
            self.claimed.push(what);
        }
        Ok(())
    }

    async fn claim_next_ip(&mut self, state: &ApiState) -> Result<IpAddr, ClaimError> {
        let ip = state
            .service_allocations
            .claim_next_ip(&self.owner, self.dry_run)
            .await?;
        if !self.dry_run {
            self.claimed.push(Allocated::ClusterIp(ip));
        }
        Ok(ip)
    }

    async fn claim_next_port(&mut self, state: &ApiState) -> Result<u16, ClaimError> {
        let port = state
            .service_allocations
            .claim_next_port(&self.owner, self.dry_run)
            .await?;
        if !self.dry_run {
            self.claimed.push(Allocated::NodePort(port));
        }
        Ok(port)
    }
}

/// Claims the ClusterIPs and NodePorts of a new Service (filling the fields left empty).
pub async fn claim_for_create(
    state: &ApiState,
    resource: &ResourceInfo,
    object: &mut Value,
    dry_run: bool,
) -> Result<Claim, ApiError> {
    if !is_service(resource) {
        return Ok(Claim::none());
    }
    let mut claim = Claim::new(object, dry_run);
    let target = target_of(resource, object);
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(claim);
    };
    let family = state.service_allocations.family();
    init_ip_family_fields(spec, None, family).map_err(|e| invalid(&target, &e))?;
    let result = async {
        claim_cluster_ips(state, &mut claim, spec).await?;
        if needs_node_port(spec) {
            claim_new_node_ports(state, &mut claim, spec).await?;
        }
        if needs_health_check(spec) {
            claim_health_check_port(state, &mut claim, spec).await?;
        }
        Ok::<(), Failure>(())
    }
    .await;
    match result {
        Ok(()) => Ok(claim),
        Err(failure) => {
            claim.revert(state).await;
            Err(failure.into_api_error(&target))
        }
    }
}

/// Claims what an update of a Service adds and plans the release of what it gives up.
pub async fn claim_for_update(
    state: &ApiState,
    resource: &ResourceInfo,
    new: &mut Value,
    old: &Value,
    dry_run: bool,
) -> Result<Claim, ApiError> {
    if !is_service(resource) {
        return Ok(Claim::none());
    }
    let mut claim = Claim::new(old, dry_run);
    let target = target_of(resource, old);
    let empty = Map::new();
    let old_spec = old.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(claim);
    };
    drop_type_dependent_fields(spec, old_spec);
    patch_allocated_values(spec, old_spec);
    let family = state.service_allocations.family();
    init_ip_family_fields(spec, Some(old_spec), family).map_err(|e| invalid(&target, &e))?;
    let result = async {
        update_cluster_ips(state, &mut claim, spec, old_spec).await?;
        update_node_ports(state, &mut claim, spec, old_spec).await?;
        update_health_check_port(state, &mut claim, spec, old_spec).await?;
        Ok::<(), Failure>(())
    }
    .await;
    match result {
        Ok(()) => Ok(claim),
        Err(failure) => {
            claim.revert(state).await;
            Err(failure.into_api_error(&target))
        }
    }
}

/// Releases what a Service that is gone from storage held.
pub async fn release_deleted(state: &ApiState, resource: &ResourceInfo, last: &Value) {
    if !is_service(resource) {
        return;
    }
    let owner = Owner::of(last);
    for what in allocations_of(last) {
        state.service_allocations.release(what, &owner).await;
    }
}

/// Every value a stored Service holds: its ClusterIPs, NodePorts and health-check NodePort.
pub fn allocations_of(service: &Value) -> Vec<Allocated> {
    let empty = Map::new();
    let spec = service
        .get("spec")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = BTreeSet::new();
    if needs_cluster_ip(spec) {
        for ip in cluster_ips(spec) {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                out.insert(Allocated::ClusterIp(ip));
            }
        }
    }
    for port in ports(spec) {
        if let Some(node_port) = node_port(port) {
            out.insert(Allocated::NodePort(node_port));
        }
    }
    if needs_health_check(spec)
        && let Some(port) = health_check_port(spec)
    {
        out.insert(Allocated::NodePort(port));
    }
    out.into_iter().collect()
}

/// Checks the allocation records against the stored Services (see `ServiceAllocations::repair`).
pub async fn repair(state: &ApiState, grace: Duration) -> Result<RepairReport, ApiError> {
    let catalog = state.catalog();
    let Some(services) = catalog.lookup("", "v1", "services") else {
        return Ok(RepairReport::default());
    };
    let page = rest::list(state, services, "", &|_| true, 0, None).await?;
    let in_use: Vec<(Allocated, Owner)> = page
        .items
        .iter()
        .flat_map(|service| {
            let owner = Owner::of(service);
            allocations_of(service)
                .into_iter()
                .map(move |what| (what, owner.clone()))
        })
        .collect();
    let report = state
        .service_allocations
        .repair(&in_use, grace)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if report != RepairReport::default() {
        tracing::info!(
            recorded = report.recorded.len(),
            released = report.released.len(),
            reassigned = report.reassigned.len(),
            conflicts = report.conflicts.len(),
            "service allocations repaired"
        );
    }
    Ok(report)
}

/// Repairs every few minutes until `cancel`.
pub async fn run_repair_loop(state: Arc<ApiState>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(REPAIR_INTERVAL) => {}
        }
        if let Err(error) = repair(&state, LEAK_GRACE).await {
            tracing::warn!(%error, "service allocation repair failed");
        }
    }
}

// ---- failures --------------------------------------------------------------------------------

/// A claim failure, before it becomes the Status kube answers with.
enum Failure {
    Fields(Vec<FieldError>),
    Internal(String),
}

impl Failure {
    fn into_api_error(self, target: &Target) -> ApiError {
        match self {
            Failure::Fields(errors) => invalid(target, &errors),
            Failure::Internal(message) => ApiError::internal(message),
        }
    }
}

fn invalid(target: &Target, errors: &[FieldError]) -> ApiError {
    ApiError::invalid("Service", target, errors)
}

fn target_of(resource: &ResourceInfo, object: &Value) -> Target {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Target::new(&resource.group, &resource.plural, name)
}

fn ip_failure(spec: &Map<String, Value>, ip: &str, error: ClaimError) -> Failure {
    match error {
        ClaimError::Alloc(AllocError::Full) => {
            Failure::Internal("failed to allocate a serviceIP: range is full".into())
        }
        ClaimError::Alloc(error) => Failure::Fields(vec![field_invalid(
            "spec.clusterIPs",
            go_strings(&cluster_ips(spec)),
            format!("failed to allocate IP {ip}: {error}"),
        )]),
        other => Failure::Internal(format!("failed to allocate a serviceIP: {other}")),
    }
}

fn port_failure(index: usize, port: u16, error: ClaimError) -> Failure {
    match error {
        ClaimError::Alloc(AllocError::Full) => {
            Failure::Internal("failed to allocate a nodePort: range is full".into())
        }
        ClaimError::Alloc(error) => Failure::Fields(vec![field_invalid(
            &format!("spec.ports[{index}].nodePort"),
            port.to_string(),
            error.to_string(),
        )]),
        other => Failure::Internal(format!("failed to allocate a nodePort: {other}")),
    }
}

// ---- ClusterIPs ------------------------------------------------------------------------------

/// Claims the ClusterIP of a Service that needs one: the given address or a free one.
async fn claim_cluster_ips(
    state: &ApiState,
    claim: &mut Claim,
    spec: &mut Map<String, Value>,
) -> Result<(), Failure> {
    if !needs_cluster_ip(spec) || is_headless(spec) {
        return Ok(());
    }
    let ips = strings(spec, "clusterIPs");
    match ips.first().map(String::as_str) {
        None | Some("") => {
            let ip = claim
                .claim_next_ip(state)
                .await
                .map_err(|e| ip_failure(spec, "", e))?;
            spec.insert("clusterIP".into(), json!(ip.to_string()));
            spec.insert("clusterIPs".into(), json!([ip.to_string()]));
            Ok(())
        }
        Some(given) => {
            // Malformed: validation reports it.
            let Ok(ip) = given.parse::<IpAddr>() else {
                return Ok(());
            };
            claim
                .claim(state, Allocated::ClusterIp(ip))
                .await
                .map_err(|e| ip_failure(spec, given, e))
        }
    }
}

/// ExternalName → another type claims a ClusterIP; the reverse gives it up.
async fn update_cluster_ips(
    state: &ApiState,
    claim: &mut Claim,
    spec: &mut Map<String, Value>,
    old: &Map<String, Value>,
) -> Result<(), Failure> {
    if !needs_cluster_ip(old) && needs_cluster_ip(spec) {
        return claim_cluster_ips(state, claim, spec).await;
    }
    if is_headless(old) {
        return Ok(());
    }
    if needs_cluster_ip(old) && !needs_cluster_ip(spec) {
        for ip in cluster_ips(old) {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                claim.release_on_commit.push(Allocated::ClusterIp(ip));
            }
        }
    }
    Ok(())
}

// ---- NodePorts -------------------------------------------------------------------------------

/// Claims each port's NodePort on create; ports that share a number (TCP and UDP) share one.
async fn claim_new_node_ports(
    state: &ApiState,
    claim: &mut Claim,
    spec: &mut Map<String, Value>,
) -> Result<(), Failure> {
    let allocate = should_allocate_node_ports(spec);
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let mut by_service_port: Vec<(Value, u16)> = Vec::new();
    for i in 0..ports.len() {
        let requested = node_port(&ports[i]);
        if requested.is_none() && !allocate {
            continue;
        }
        let service_port = ports[i].get("port").cloned().unwrap_or(Value::Null);
        let shared = by_service_port
            .iter()
            .find(|(p, _)| *p == service_port)
            .map(|(_, n)| *n);
        let chosen = match (shared, requested) {
            (Some(shared), None) => shared,
            (Some(shared), Some(requested)) if shared == requested => shared,
            (Some(_), Some(requested)) => {
                claim_port(state, claim, i, requested).await?;
                requested
            }
            (None, _) => {
                // A later port with the same number may carry the user's choice.
                let wanted = requested.or_else(|| {
                    ports[i + 1..]
                        .iter()
                        .filter(|p| p.get("port") == Some(&service_port))
                        .find_map(node_port)
                });
                let chosen = match wanted {
                    Some(wanted) => {
                        claim_port(state, claim, i, wanted).await?;
                        wanted
                    }
                    None => claim
                        .claim_next_port(state)
                        .await
                        .map_err(|e| port_failure(i, 0, e))?,
                };
                by_service_port.push((service_port, chosen));
                chosen
            }
        };
        if let Some(port) = ports[i].as_object_mut() {
            port.insert("nodePort".into(), json!(chosen));
        }
    }
    Ok(())
}

async fn claim_port(
    state: &ApiState,
    claim: &mut Claim,
    index: usize,
    port: u16,
) -> Result<(), Failure> {
    claim
        .claim(state, Allocated::NodePort(port))
        .await
        .map_err(|e| port_failure(index, port, e))
}

/// Claims the NodePorts an update adds and plans the release of those it drops.
async fn update_node_ports(
    state: &ApiState,
    claim: &mut Claim,
    spec: &mut Map<String, Value>,
    old: &Map<String, Value>,
) -> Result<(), Failure> {
    let old_ports: BTreeSet<u16> = ports(old).iter().filter_map(node_port).collect();
    if needs_node_port(old) && !needs_node_port(spec) {
        claim
            .release_on_commit
            .extend(old_ports.iter().map(|p| Allocated::NodePort(*p)));
        return Ok(());
    }
    if !needs_node_port(spec) {
        return Ok(());
    }
    let allocate = should_allocate_node_ports(spec);
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let mut claimed_now = BTreeSet::new();
    for (i, port) in ports.iter_mut().enumerate() {
        match node_port(port) {
            // Kept from before, or already claimed for an earlier port of this write.
            Some(wanted) if old_ports.contains(&wanted) || !claimed_now.insert(wanted) => {}
            Some(wanted) => claim_port(state, claim, i, wanted).await?,
            None if allocate => {
                let chosen = claim
                    .claim_next_port(state)
                    .await
                    .map_err(|e| port_failure(i, 0, e))?;
                claimed_now.insert(chosen);
                if let Some(port) = port.as_object_mut() {
                    port.insert("nodePort".into(), json!(chosen));
                }
            }
            None => {}
        }
    }
    let kept: BTreeSet<u16> = ports.iter().filter_map(node_port).collect();
    claim
        .release_on_commit
        .extend(old_ports.difference(&kept).map(|p| Allocated::NodePort(*p)));
    Ok(())
}

/// Claims the health-check NodePort of a LoadBalancer with `externalTrafficPolicy: Local`.
async fn claim_health_check_port(
    state: &ApiState,
    claim: &mut Claim,
    spec: &mut Map<String, Value>,
) -> Result<(), Failure> {
    match health_check_port(spec) {
        Some(port) => claim
            .claim(state, Allocated::NodePort(port))
            .await
            .map_err(|e| {
                Failure::Internal(format!(
                    "failed to allocate requested HealthCheck NodePort {port}: {e}"
                ))
            }),
        None => {
            let port = claim.claim_next_port(state).await.map_err(|e| {
                Failure::Internal(format!("failed to allocate a HealthCheck NodePort 0: {e}"))
            })?;
            spec.insert("healthCheckNodePort".into(), json!(port));
            Ok(())
        }
    }
}

async fn update_health_check_port(
    state: &ApiState,
    claim: &mut Claim,
    spec: &mut Map<String, Value>,
    old: &Map<String, Value>,
) -> Result<(), Failure> {
    match (needs_health_check(old), needs_health_check(spec)) {
        (false, true) => claim_health_check_port(state, claim, spec).await,
        (true, false) => {
            if let Some(port) = health_check_port(old) {
                claim.release_on_commit.push(Allocated::NodePort(port));
            }
            Ok(())
        }
        (true, true) if health_check_port(old) != health_check_port(spec) => {
            Err(Failure::Fields(vec![field_invalid(
                "spec.healthCheckNodePort",
                health_check_port(spec).unwrap_or(0).to_string(),
                "cannot change healthCheckNodePort on loadBalancer service with externalTraffic=Local during update",
            )]))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_of_a_service() {
        let service = json!({"spec": {
            "type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "healthCheckNodePort": 31000,
            "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053},
                      {"port": 53, "protocol": "TCP", "nodePort": 30053}]}});
        let ip: IpAddr = "10.96.0.9".parse().expect("ip");
        assert_eq!(
            allocations_of(&service),
            vec![
                Allocated::ClusterIp(ip),
                Allocated::NodePort(30053),
                Allocated::NodePort(31000)
            ]
        );
        let headless = json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert!(allocations_of(&headless).is_empty());
        let external = json!({"spec": {"type": "ExternalName", "externalName": "a.b"}});
        assert!(allocations_of(&external).is_empty());
    }
}
