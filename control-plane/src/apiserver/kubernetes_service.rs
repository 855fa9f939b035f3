//! The `kubernetes` Service in `default` and its Endpoints and EndpointSlice, as
//! kube-apiserver's bootstrap controller keeps them: ClusterIP = the first address of the
//! service range, port 443 named `https` targeting the secure port, and one endpoint, the
//! advertise address. Reconciled at every start: created when missing, corrected when the
//! port or the address changed, left alone when they match.

use serde_json::{Value, json};

use super::resources::ResourceInfo;
use super::rest::{self, ObjectRef, WriteOptions};
use super::state::ApiState;
use super::status::ApiError;

pub const NAMESPACE: &str = "default";
pub const NAME: &str = "kubernetes";

/// Makes the Service, its Endpoints and EndpointSlice match this apiserver.
pub async fn reconcile(state: &ApiState) -> Result<(), ApiError> {
    let catalog = state.catalog();
    let cluster_ip = state
        .service_allocations
        .kubernetes_ip()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let address = state.config.advertise_address();
    let port = state.config.secure_port;
    if let Some(services) = catalog.lookup("", "v1", "services") {
        let service = service_object(&cluster_ip.to_string(), port);
        ensure(state, services, service, &["/spec/ports", "/spec/type"]).await?;
    }
    if let Some(endpoints) = catalog.lookup("", "v1", "endpoints") {
        let object = endpoints_object(&address.to_string(), port);
        ensure(state, endpoints, object, &["/subsets", "/metadata/labels"]).await?;
    }
    if let Some(slices) = catalog.lookup("discovery.k8s.io", "v1", "endpointslices") {
        let object = endpoint_slice_object(address, port);
        let fields = ["/addressType", "/endpoints", "/ports", "/metadata/labels"];
        ensure(state, slices, object, &fields).await?;
    }
    tracing::info!(%cluster_ip, %address, port, "kubernetes service reconciled");
    Ok(())
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

fn endpoints_object(address: &str, secure_port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{"addresses": [{"ip": address}], "ports": [https_port(secure_port)]}],
    })
}

fn endpoint_slice_object(address: std::net::IpAddr, secure_port: u16) -> Value {
    let address_type = if address.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME},
        },
        "addressType": address_type,
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
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
        let slice = endpoint_slice_object("fd00::1".parse().expect("ip"), 6443);
        assert_eq!(slice["addressType"], json!("IPv6"));
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            json!("kubernetes")
        );
        let mut object = json!({"metadata": {}});
        set_pointer(&mut object, "/spec/ports", json!([1]));
        assert_eq!(object, json!({"metadata": {}, "spec": {"ports": [1]}}));
    }
}
