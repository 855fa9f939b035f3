//! The `kubernetes` Service in `default` and its Endpoints and EndpointSlice, as
//! kube-apiserver's bootstrap controller and lease endpoint reconciler keep them: ClusterIP =
//! the first address of the service range, port 443 named `https` targeting the secure port,
//! and one endpoint per live apiserver. Each apiserver renews a lease record
//! (`/registry/_masterleases/<address>`, outside every API group) every 10 s; the endpoints list
//! the addresses whose lease is younger than 15 s. Reconciled at start and at every renewal:
//! created when missing, corrected when the port or the addresses changed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::resources::ResourceInfo;
use super::rest::{self, ObjectRef, WriteOptions};
use super::state::ApiState;
use super::status::ApiError;

pub const NAMESPACE: &str = "default";
pub const NAME: &str = "kubernetes";
const LEASE_PREFIX: &str = "/registry/_masterleases/";
/// How often an apiserver renews its lease and reconciles the endpoints.
const LEASE_RENEWAL: Duration = Duration::from_secs(10);
/// A lease not renewed for this long no longer counts.
const LEASE_TTL: Duration = Duration::from_secs(15);

/// Makes the Service, its Endpoints and EndpointSlice match this apiserver.
pub async fn reconcile(state: &ApiState) -> Result<(), ApiError> {
    let catalog = state.catalog();
    let cluster_ip = state
        .service_allocations
        .kubernetes_ip()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let port = state.config.secure_port;
    if let Some(services) = catalog.lookup("", "v1", "services") {
        let service = service_object(&cluster_ip.to_string(), port);
        ensure(state, services, service, &["/spec/ports", "/spec/type"]).await?;
    }
    let addresses = reconcile_endpoints(state).await?;
    tracing::info!(%cluster_ip, ?addresses, port, "kubernetes service reconciled");
    Ok(())
}

/// Renews this apiserver's lease, then makes the Endpoints and EndpointSlice list every
/// apiserver with a live lease. Returns the addresses listed.
pub async fn reconcile_endpoints(state: &ApiState) -> Result<Vec<IpAddr>, ApiError> {
    let catalog = state.catalog();
    let address = state.config.advertise_address();
    let port = state.config.secure_port;
    let addresses = renew_lease_and_list(state, address).await?;
    if let Some(endpoints) = catalog.lookup("", "v1", "endpoints") {
        let object = endpoints_object(&addresses, port);
        ensure(state, endpoints, object, &["/subsets", "/metadata/labels"]).await?;
    }
    if let Some(slices) = catalog.lookup("discovery.k8s.io", "v1", "endpointslices") {
        let object = endpoint_slice_object(&addresses, port);
        let fields = ["/addressType", "/endpoints", "/ports", "/metadata/labels"];
        ensure(state, slices, object, &fields).await?;
    }
    Ok(addresses)
}

/// Renews the lease and reconciles the endpoints every few seconds until `cancel`.
pub async fn run_endpoint_reconciler(state: Arc<ApiState>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(LEASE_RENEWAL) => {}
        }
        if let Err(error) = reconcile_endpoints(&state).await {
            tracing::warn!(%error, "reconciling the kubernetes endpoints failed");
        }
    }
}

/// Writes this apiserver's lease and returns the addresses (of its family) with a live lease,
/// sorted, its own included.
async fn renew_lease_and_list(state: &ApiState, own: IpAddr) -> Result<Vec<IpAddr>, ApiError> {
    let storage_error =
        |e: crate::storage::Error| ApiError::internal(format!("apiserver lease: {e}"));
    let key = format!("{LEASE_PREFIX}{own}");
    let lease = json!({
        "apiVersion": "internal.keel.dev/v1",
        "kind": "ApiserverLease",
        "metadata": {"name": own.to_string()},
        "renewTime": chrono::Utc::now().to_rfc3339(),
    })
    .to_string()
    .into_bytes();
    let written = match state.store.get(&key).await.map_err(storage_error)? {
        Some(kv) => state.store.update(&key, lease, kv.mod_revision).await,
        None => state.store.create(&key, lease).await,
    };
    match written {
        Ok(_)
        | Err(crate::storage::Error::Conflict { .. })
        | Err(crate::storage::Error::AlreadyExists { .. }) => {}
        Err(error) => return Err(storage_error(error)),
    }
    let page = state
        .store
        .list(LEASE_PREFIX, None, 0, None)
        .await
        .map_err(storage_error)?;
    let ttl = chrono::Duration::from_std(LEASE_TTL).unwrap_or(chrono::Duration::MAX);
    let now = chrono::Utc::now();
    let mut addresses: Vec<IpAddr> = page
        .items
        .iter()
        .filter_map(|kv| {
            let address: IpAddr = kv.key.strip_prefix(LEASE_PREFIX)?.parse().ok()?;
            let value: Value = serde_json::from_slice(&kv.value).ok()?;
            let renewed = value.get("renewTime").and_then(Value::as_str)?;
            let renewed = chrono::DateTime::parse_from_rfc3339(renewed).ok()?;
            let live = now - renewed.with_timezone(&chrono::Utc) < ttl;
            (live && address.is_ipv4() == own.is_ipv4()).then_some(address)
        })
        .collect();
    if !addresses.contains(&own) {
        addresses.push(own);
    }
    addresses.sort();
    Ok(addresses)
}

fn https_port(port: u16) -> Value {
    json!({"name": "https", "port": port, "protocol": "TCP"})
}

fn service_object(cluster_ip: &str, secure_port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}],
        },
    })
}

fn endpoints_object(addresses: &[IpAddr], secure_port: u16) -> Value {
    let addresses: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"ip": a.to_string()}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{"addresses": addresses, "ports": [https_port(secure_port)]}],
    })
}

fn endpoint_slice_object(addresses: &[IpAddr], secure_port: u16) -> Value {
    let v4 = addresses.first().is_none_or(IpAddr::is_ipv4);
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a.to_string()], "conditions": {"ready": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME},
        },
        "addressType": if v4 { "IPv4" } else { "IPv6" },
        "endpoints": endpoints,
        "ports": [https_port(secure_port)],
    })
}

/// Creates `desired` when missing; otherwise copies the `fields` (JSON pointers) that differ
/// into the stored object.
async fn ensure(
    state: &ApiState,
    resource: &ResourceInfo,
    desired: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let at = ObjectRef {
        resource,
        namespace: NAMESPACE,
        name: NAME,
    };
    match rest::get(state, at).await {
        Err(error) if error.code == 404 => {
            match rest::create(
                state,
                resource,
                NAMESPACE,
                desired,
                &WriteOptions::default(),
            )
            .await
            {
                Ok(_) => {
                    tracing::info!(resource = %resource.plural, "created default/kubernetes");
                    Ok(())
                }
                // Another apiserver was first.
                Err(error) if error.code == 409 => Ok(()),
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
        Ok(_) => {
            let mutate = |current: &Value| {
                let mut wanted = current.clone();
                let mut changed = false;
                for field in fields {
                    let want = desired.pointer(field);
                    if current.pointer(field) != want {
                        set_pointer(&mut wanted, field, want.cloned().unwrap_or(Value::Null));
                        changed = true;
                    }
                }
                Ok(changed.then_some(wanted))
            };
            rest::guaranteed_update(state, at, &WriteOptions::default(), mutate, "").await?;
            Ok(())
        }
    }
}

/// Sets `/a/b` in `object`, creating the objects on the way.
fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let mut node = object;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if !node.is_object() {
            *node = json!({});
        }
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            map.insert((*part).to_string(), value);
            return;
        }
        node = map.entry((*part).to_string()).or_insert_with(|| json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_name_the_service_and_port() {
        let service = service_object("10.96.0.1", 6443);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], json!(6443));
        assert_eq!(service["spec"]["ports"][0]["port"], json!(443));
        let slice = endpoint_slice_object(&["fd00::1".parse().expect("ip")], 6443);
        assert_eq!(slice["addressType"], json!("IPv6"));
        let two: Vec<IpAddr> = vec![
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        ];
        let endpoints = endpoints_object(&two, 6443);
        assert_eq!(
            endpoints["subsets"][0]["addresses"][1]["ip"],
            json!("10.0.0.2")
        );
        assert_eq!(
            endpoint_slice_object(&two, 6443)["endpoints"][1]["addresses"][0],
            json!("10.0.0.2")
        );
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            json!("kubernetes")
        );
        let mut object = json!({"metadata": {}});
        set_pointer(&mut object, "/spec/ports", json!([1]));
        assert_eq!(object, json!({"metadata": {}, "spec": {"ports": [1]}}));
    }
}
