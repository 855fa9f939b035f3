//! What a Service write allocates and releases, as kube-apiserver's Service registry does:
//! the IP family fields (`ipFamilyPolicy`, `ipFamilies`, `clusterIPs`) on a single-stack
//! cluster, ClusterIPs, NodePorts and the health-check NodePort on create; on update the values
//! a client left out are kept, fields the new type does not use are dropped, and type changes
//! claim or release; a deleted Service releases everything. `rest` calls in here for every
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
use super::field_errors::{FieldError, FieldErrorKind};
use super::resources::ResourceInfo;
use super::rest;
use super::service_allocation::{Allocated, ClaimError, LEAK_GRACE, Owner, RepairReport};
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

fn field_invalid(field: &str, value: String, detail: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorKind::Invalid, field, Some(value), detail)
}

/// Go's `%#v` of a `[]string`, as kube renders the clusterIPs in messages.
fn go_strings(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
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

// ---- spec helpers ----------------------------------------------------------------------------

fn str_field<'a>(spec: &'a Map<String, Value>, key: &str) -> &'a str {
    spec.get(key).and_then(Value::as_str).unwrap_or("")
}

fn service_type(spec: &Map<String, Value>) -> &str {
    match str_field(spec, "type") {
        "" => "ClusterIP",
        other => other,
    }
}

fn needs_cluster_ip(spec: &Map<String, Value>) -> bool {
    service_type(spec) != "ExternalName"
}

fn needs_node_port(spec: &Map<String, Value>) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

/// LoadBalancer Services may opt out of NodePorts (`allocateLoadBalancerNodePorts: false`).
fn should_allocate_node_ports(spec: &Map<String, Value>) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)),
        _ => false,
    }
}

fn needs_health_check(spec: &Map<String, Value>) -> bool {
    service_type(spec) == "LoadBalancer" && str_field(spec, "externalTrafficPolicy") == "Local"
}

fn is_headless(spec: &Map<String, Value>) -> bool {
    str_field(spec, "clusterIP") == "None"
}

fn has_selector(spec: &Map<String, Value>) -> bool {
    spec.get("selector")
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty())
}

fn strings(spec: &Map<String, Value>, key: &str) -> Vec<String> {
    spec.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_ips(spec: &Map<String, Value>) -> Vec<String> {
    let ips = strings(spec, "clusterIPs");
    if ips.is_empty() {
        let ip = str_field(spec, "clusterIP");
        if !ip.is_empty() {
            return vec![ip.to_string()];
        }
    }
    ips
}

fn set_strings(spec: &mut Map<String, Value>, key: &str, values: &[String]) {
    if values.is_empty() {
        spec.remove(key);
    } else {
        spec.insert(key.into(), json!(values));
    }
}

fn ports(spec: &Map<String, Value>) -> &[Value] {
    spec.get("ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn node_port(port: &Value) -> Option<u16> {
    port.get("nodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

fn health_check_port(spec: &Map<String, Value>) -> Option<u16> {
    spec.get("healthCheckNodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

fn family_of(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

fn other_family(family: &str) -> &'static str {
    if family == "IPv4" { "IPv6" } else { "IPv4" }
}

// ---- IP families -----------------------------------------------------------------------------

/// Fills `ipFamilyPolicy`, `ipFamilies` and keeps `clusterIP`/`clusterIPs` in step, refusing
/// what a single-stack cluster of `family` cannot serve (kube's initIPFamilyFields).
fn init_ip_family_fields(
    spec: &mut Map<String, Value>,
    old: Option<&Map<String, Value>>,
    family: &'static str,
) -> Result<(), Vec<FieldError>> {
    if !needs_cluster_ip(spec) {
        return Ok(());
    }
    let mut errors = Vec::new();
    // clusterIP and clusterIPs[0] are one value.
    let ip = str_field(spec, "clusterIP").to_string();
    let mut ips = strings(spec, "clusterIPs");
    match (ip.is_empty(), ips.is_empty()) {
        (false, true) => ips = vec![ip.clone()],
        (true, false) => {
            if let Some(first) = ips.first().filter(|f| !f.is_empty()) {
                spec.insert("clusterIP".into(), json!(first));
            }
        }
        (false, false) if ips[0] != ip => errors.push(field_invalid(
            "spec.clusterIPs",
            go_strings(&ips),
            "first value must match `clusterIP`",
        )),
        _ => {}
    }
    set_strings(spec, "clusterIPs", &ips);
    if !errors.is_empty() {
        return Err(errors);
    }
    // A malformed address is validation's to report; allocation leaves it alone.
    if ips
        .iter()
        .enumerate()
        .any(|(i, ip)| !(i == 0 && ip == "None") && family_of(ip).is_none())
    {
        return Ok(());
    }
    let policy = match str_field(spec, "ipFamilyPolicy") {
        "" => match old.map(|o| str_field(o, "ipFamilyPolicy")) {
            Some(previous) if !previous.is_empty() => previous.to_string(),
            _ if is_headless(spec) && !has_selector(spec) => "RequireDualStack".to_string(),
            _ => "SingleStack".to_string(),
        },
        given => given.to_string(),
    };
    spec.insert("ipFamilyPolicy".into(), json!(policy));
    let mut families = strings(spec, "ipFamilies");
    if let Some(old) = old {
        if policy == "SingleStack" {
            if strings(old, "clusterIPs") == ips && ips.len() > 1 {
                ips.truncate(1);
            }
            if strings(old, "ipFamilies") == families && families.len() > 1 {
                families.truncate(1);
            }
        } else {
            let policy_error =
                |detail: &str| field_invalid("spec.ipFamilyPolicy", format!("{policy:?}"), detail);
            if ips.len() < strings(old, "clusterIPs").len() {
                errors.push(policy_error(
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if families.len() < strings(old, "ipFamilies").len() {
                errors.push(policy_error(
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == "SingleStack" {
        let policy_error =
            |detail: &str| field_invalid("spec.ipFamilyPolicy", format!("{policy:?}"), detail);
        if ips.len() == 2 {
            errors.push(policy_error(
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families.len() == 2 {
            errors.push(policy_error(
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        if ip == "None" {
            break;
        }
        let Some(ip_family) = family_of(ip) else {
            continue;
        };
        match families.get(i) {
            None if ip_family != family => errors.push(field_invalid(
                &format!("spec.clusterIPs[{i}]"),
                go_strings(&ips),
                format!("{ip_family} is not configured on this cluster"),
            )),
            None => families.push(ip_family.to_string()),
            Some(given) if given != ip_family => errors.push(field_invalid(
                &format!("spec.clusterIPs[{i}]"),
                format!("{ip:?}"),
                format!("expected an {given} value as indicated by `ipFamilies[{i}]`"),
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    set_strings(spec, "clusterIPs", &ips);
    if is_headless(spec) && !has_selector(spec) {
        if families.is_empty() {
            families.push(family.to_string());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let alt = other_family(&families[0]);
            families.push(alt.to_string());
        }
        set_strings(spec, "ipFamilies", &families);
        return Ok(());
    }
    if policy == "RequireDualStack" {
        errors.push(field_invalid(
            "spec.ipFamilyPolicy",
            format!("{policy:?}"),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, given) in families.iter().enumerate() {
        if given != family {
            errors.push(field_invalid(
                &format!("spec.ipFamilies[{i}]"),
                format!("{given:?}"),
                "not configured on this cluster",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if families.is_empty() {
        families.push(family.to_string());
    }
    set_strings(spec, "ipFamilies", &families);
    Ok(())
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

// ---- update shaping --------------------------------------------------------------------------

/// Keeps what the client left out of an update but the Service still needs: the ClusterIPs,
/// each port's NodePort (matched by port name) and the health-check NodePort.
fn patch_allocated_values(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    if needs_cluster_ip(old) && needs_cluster_ip(spec) {
        if str_field(spec, "clusterIP").is_empty()
            && let Some(ip) = old.get("clusterIP")
        {
            spec.insert("clusterIP".into(), ip.clone());
        }
        if strings(spec, "clusterIPs").is_empty()
            && let Some(ips) = old.get("clusterIPs")
        {
            spec.insert("clusterIPs".into(), ips.clone());
        }
    }
    if needs_node_port(old) && needs_node_port(spec) {
        let new_used: BTreeSet<u16> = ports(spec).iter().filter_map(node_port).collect();
        let old_used: BTreeSet<u16> = ports(old).iter().filter_map(node_port).collect();
        let used: BTreeSet<u16> = new_used.intersection(&old_used).copied().collect();
        let by_name: Vec<(String, Option<u16>)> = ports(old)
            .iter()
            .map(|p| {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                (name.to_string(), node_port(p))
            })
            .collect();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut() {
                if node_port(port).is_some() {
                    continue;
                }
                let name = port.get("name").and_then(Value::as_str).unwrap_or("");
                let previous = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, p)| *p);
                if let (Some(previous), Some(port)) = (previous, port.as_object_mut())
                    && !used.contains(&previous)
                {
                    port.insert("nodePort".into(), json!(previous));
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(spec)
        && health_check_port(spec).is_none()
        && let Some(port) = old.get("healthCheckNodePort")
    {
        spec.insert("healthCheckNodePort".into(), port.clone());
    }
}

/// Clears fields the new type does not use when the client left them as they were (a patch
/// that only changes `type` keeps the old NodePorts in the merged object): kube's
/// dropTypeDependentFields.
fn drop_type_dependent_fields(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    if needs_cluster_ip(old) && !needs_cluster_ip(spec) {
        if cluster_ips(spec) == cluster_ips(old) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if strings(spec, "ipFamilies") == strings(old, "ipFamilies") {
            spec.remove("ipFamilies");
        }
        if spec.get("ipFamilyPolicy") == old.get("ipFamilyPolicy") {
            spec.remove("ipFamilyPolicy");
        }
    }
    if needs_node_port(old) && !needs_node_port(spec) {
        let old_ports: BTreeSet<u16> = ports(old).iter().filter_map(node_port).collect();
        let new_ports: BTreeSet<u16> = ports(spec).iter().filter_map(node_port).collect();
        if new_ports.is_subset(&old_ports)
            && let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut)
        {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
    }
    if needs_health_check(old)
        && !needs_health_check(spec)
        && spec.get("healthCheckNodePort") == old.get("healthCheckNodePort")
    {
        spec.remove("healthCheckNodePort");
    }
    if service_type(spec) != "LoadBalancer" {
        spec.remove("allocateLoadBalancerNodePorts");
        if spec.get("loadBalancerClass") == old.get("loadBalancerClass") {
            spec.remove("loadBalancerClass");
        }
    }
    if !needs_node_port(spec) {
        spec.remove("externalTrafficPolicy");
    }
    if service_type(spec) == "ExternalName" {
        spec.remove("internalTrafficPolicy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn families_default_to_the_cluster_family() {
        let mut s = spec(json!({"ports": [{"port": 80}]}));
        init_ip_family_fields(&mut s, None, "IPv6").expect("ok");
        assert_eq!(s["ipFamilies"], json!(["IPv6"]));
        assert_eq!(s["ipFamilyPolicy"], json!("SingleStack"));
        let mut s = spec(json!({"clusterIP": "10.96.0.5"}));
        init_ip_family_fields(&mut s, None, "IPv4").expect("ok");
        assert_eq!(s["clusterIPs"], json!(["10.96.0.5"]));
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
        let mut s = spec(json!({"clusterIPs": ["10.96.0.5"]}));
        init_ip_family_fields(&mut s, None, "IPv4").expect("ok");
        assert_eq!(s["clusterIP"], json!("10.96.0.5"));
        // headless without selector: both families asked for, as kube answers
        let mut s = spec(json!({"clusterIP": "None"}));
        init_ip_family_fields(&mut s, None, "IPv4").expect("ok");
        assert_eq!(s["ipFamilyPolicy"], json!("RequireDualStack"));
        assert_eq!(s["ipFamilies"], json!(["IPv4", "IPv6"]));
    }

    #[test]
    fn families_the_cluster_lacks_are_refused() {
        let mut s = spec(json!({"clusterIP": "fd00::5"}));
        let errors = init_ip_family_fields(&mut s, None, "IPv4").expect_err("v6");
        assert_eq!(
            errors[0].to_string(),
            "spec.clusterIPs[0]: Invalid value: []string{\"fd00::5\"}: IPv6 is not configured on this cluster"
        );
        let mut s = spec(json!({"ipFamilyPolicy": "RequireDualStack", "selector": {"a": "b"}}));
        let errors = init_ip_family_fields(&mut s, None, "IPv4").expect_err("dual");
        assert!(
            errors[0]
                .to_string()
                .contains("not configured for dual-stack")
        );
        let mut s = spec(json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"]}));
        let errors = init_ip_family_fields(&mut s, None, "IPv4").expect_err("mismatch");
        assert!(
            errors[0]
                .to_string()
                .contains("first value must match `clusterIP`")
        );
    }

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

    #[test]
    fn updates_keep_and_drop_allocated_fields() {
        let old = spec(json!({"type": "NodePort", "clusterIP": "10.96.0.9",
            "clusterIPs": ["10.96.0.9"], "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
        // a replace without the allocated values keeps them
        let mut replaced = spec(json!({"type": "NodePort",
            "ports": [{"name": "http", "port": 80}]}));
        patch_allocated_values(&mut replaced, &old);
        assert_eq!(replaced["clusterIP"], json!("10.96.0.9"));
        assert_eq!(replaced["ports"][0]["nodePort"], json!(30080));
        // a patch to ClusterIP carries the old nodePort: it is dropped
        let mut patched = old.clone();
        patched.insert("type".into(), json!("ClusterIP"));
        drop_type_dependent_fields(&mut patched, &old);
        assert!(patched["ports"][0].get("nodePort").is_none());
        assert!(patched.get("externalTrafficPolicy").is_none());
        assert_eq!(patched["clusterIP"], json!("10.96.0.9"));
        // to ExternalName: the cluster IP goes too
        let mut external = old.clone();
        external.insert("type".into(), json!("ExternalName"));
        drop_type_dependent_fields(&mut external, &old);
        assert!(external.get("clusterIP").is_none() && external.get("clusterIPs").is_none());
    }
}
