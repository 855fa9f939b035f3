//! Objects as stored: the storage key of every object, the JSON encoding (resourceVersion is
//! never stored; it is the key's mod_revision, set on every read), and small accessors for the
//! metadata fields the server reads and writes. Pure functions over `serde_json::Value`.

use serde_json::{Map, Value, json};

use super::resources::ResourceInfo;
use super::status::ApiError;
use crate::storage::{KeyValue, Revision};

/// The root under which every object is stored.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// `/registry/<group or core>/<plural>/` — the prefix of one resource's objects.
pub fn resource_prefix(resource: &ResourceInfo) -> String {
    let group = if resource.group.is_empty() {
        "core"
    } else {
        resource.group.as_str()
    };
    format!("{REGISTRY_PREFIX}{group}/{}/", resource.plural)
}

/// The prefix of one resource's objects in one namespace, or of all of them.
pub fn collection_prefix(resource: &ResourceInfo, namespace: &str) -> String {
    let mut prefix = resource_prefix(resource);
    if resource.namespaced && !namespace.is_empty() {
        prefix.push_str(namespace);
        prefix.push('/');
    }
    prefix
}

/// The key of one object: `/registry/apps/deployments/default/web`, `/registry/core/nodes/n1`.
pub fn object_key(resource: &ResourceInfo, namespace: &str, name: &str) -> String {
    let mut key = resource_prefix(resource);
    if resource.namespaced {
        key.push_str(namespace);
        key.push('/');
    }
    key.push_str(name);
    key
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

/// Encodes an object for storage, without its resourceVersion.
pub fn encode(object: &Value) -> Result<Vec<u8>, ApiError> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object).map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

pub fn set_resource_version(object: &mut Value, revision: Revision) {
    if let Some(meta) = metadata_mut(object) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

/// `metadata` as a mutable map, created when missing (None only if `object` is not an object).
pub fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = object.as_object_mut()?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn name(object: &Value) -> &str {
    meta_str(object, "name")
}

pub fn namespace(object: &Value) -> &str {
    meta_str(object, "namespace")
}

pub fn uid(object: &Value) -> &str {
    meta_str(object, "uid")
}

/// The resourceVersion as a revision; None when absent or empty.
pub fn resource_version(object: &Value) -> Result<Option<Revision>, ApiError> {
    match meta_str(object, "resourceVersion") {
        "" => Ok(None),
        text => text
            .parse::<Revision>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {text:?}"))),
    }
}

pub fn labels(object: &Value) -> Option<&Map<String, Value>> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Everything but metadata and status: what a change to bumps `metadata.generation`.
pub fn spec_part(object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(key, _)| {
                    !matches!(key.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 in seconds, as Kubernetes timestamps are written.
pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now() -> String {
    timestamp(chrono::Utc::now())
}

/// The 5-character suffix kube appends to a generateName (consonants and digits that never
/// spell words).
pub fn generated_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    // Names are at most 63 characters for labels-like names; kube trims the base to 58.
    let base: String = base.chars().take(58).collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> ResourceInfo {
        ResourceInfo {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
            singular: "pod".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            verbs: vec![],
            subresources: vec![],
        }
    }

    #[test]
    fn keys_nest_namespace_under_resource() {
        assert_eq!(
            object_key(&pods(), "default", "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(collection_prefix(&pods(), ""), "/registry/core/pods/");
        assert_eq!(
            collection_prefix(&pods(), "ns1"),
            "/registry/core/pods/ns1/"
        );
    }

    #[test]
    fn resource_version_is_not_stored() {
        let object = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let kv = KeyValue {
            key: "k".into(),
            value: encode(&object).unwrap_or_default(),
            create_revision: 3,
            mod_revision: 9,
        };
        assert!(!String::from_utf8_lossy(&kv.value).contains("resourceVersion"));
        let decoded = decode(&kv).unwrap_or_default();
        assert_eq!(decoded["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn generated_names_keep_the_base() {
        let name = generated_name("web-");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }
}
