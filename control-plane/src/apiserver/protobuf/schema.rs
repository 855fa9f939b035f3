//! The message schemas the decoder walks: `kube_messages.txt` (generated, see the module doc of
//! `protobuf`) and `go_pointer_fields.txt` (hand-kept), parsed once into lookup tables.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const KUBE_MESSAGES: &str = include_str!("kube_messages.txt");
const GO_POINTER_FIELDS: &str = include_str!("go_pointer_fields.txt");

/// The proto package of the meta.v1 messages (DeleteOptions, Status, ...).
pub const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// A field's value type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    Scalar(Scalar),
    /// A message, by full proto name.
    Message(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Double,
    Float,
}

impl Scalar {
    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            "bool" => Scalar::Bool,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cardinality {
    Optional,
    Repeated,
    /// A map with keys of this scalar type (entries: key = 1, value = 2).
    Map(Scalar),
}

#[derive(Clone, Debug)]
pub struct Field {
    pub json: String,
    pub cardinality: Cardinality,
    pub value: FieldType,
    /// Required in the Go type (no `omitempty`): a zero value is still sent as JSON.
    pub required: bool,
    /// A Go pointer field: a zero value set explicitly means something.
    pub pointer: bool,
    /// A Go struct embedded inline: its JSON fields belong to the parent object.
    pub inline: bool,
}

#[derive(Debug, Default)]
pub struct Message {
    pub fields: HashMap<u32, Field>,
}

#[derive(Debug, Default)]
pub struct Schemas {
    pub messages: HashMap<String, Message>,
    /// (apiVersion, kind) → message.
    pub kinds: HashMap<(String, String), String>,
}

impl Schemas {
    pub fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    /// The message a `typeMeta` names: a registered kind, or a meta.v1 kind (DeleteOptions,
    /// ...) whatever group-version it is sent with.
    pub fn message_for_kind(&self, api_version: &str, kind: &str) -> Option<&str> {
        if let Some(name) = self.kinds.get(&(api_version.to_string(), kind.to_string())) {
            return Some(name);
        }
        let meta = format!("{META_V1}.{kind}");
        self.messages
            .get_key_value(meta.as_str())
            .map(|(name, _)| name.as_str())
    }
}

/// The schemas of every Kubernetes message in the table, parsed on first use.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| parse(KUBE_MESSAGES, GO_POINTER_FIELDS))
}

/// Parses the table; lines that do not parse are skipped (the table is generated and checked
/// by `generate::committed_table_is_current` and the tests below).
pub fn parse(table: &str, pointers: &str) -> Schemas {
    let pointer_fields: HashSet<(&str, &str)> = pointers
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let message = words.next()?;
            Some(words.map(move |field| (message, field)))
        })
        .flatten()
        .collect();
    let mut schemas = Schemas::default();
    let mut current: Option<(String, Message)> = None;
    for line in table.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("message ") {
            if let Some((done, message)) = current.take() {
                schemas.messages.insert(done, message);
            }
            current = Some((name.to_string(), Message::default()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("kind ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [api_version, kind, message] = words[..] {
                schemas.kinds.insert(
                    (api_version.to_string(), kind.to_string()),
                    message.to_string(),
                );
            }
            continue;
        }
        let Some((message_name, message)) = current.as_mut() else {
            continue;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let [tag, json, card, ty, ref rest @ ..] = words[..] else {
            continue;
        };
        let Ok(tag) = tag.parse::<u32>() else {
            continue;
        };
        let cardinality = match card {
            "opt" => Cardinality::Optional,
            "rep" => Cardinality::Repeated,
            other => match other.strip_prefix("map:").and_then(Scalar::parse) {
                Some(key) => Cardinality::Map(key),
                None => continue,
            },
        };
        let value = match Scalar::parse(ty) {
            Some(scalar) => FieldType::Scalar(scalar),
            None if ty.contains('.') => FieldType::Message(ty.to_string()),
            None => {
                let package = message_name.rsplit_once('.').map_or("", |(p, _)| p);
                FieldType::Message(format!("{package}.{ty}"))
            }
        };
        let pointer = pointer_fields.contains(&(message_name.as_str(), json));
        message.fields.insert(
            tag,
            Field {
                json: json.to_string(),
                cardinality,
                value,
                required: rest.contains(&"req"),
                pointer,
                inline: rest.contains(&"inline"),
            },
        );
    }
    if let Some((done, message)) = current.take() {
        schemas.messages.insert(done, message);
    }
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_served_kinds_and_resolves_every_reference() {
        let s = schemas();
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("v1", "Secret"),
            ("v1", "Pod"),
            ("policy/v1", "Eviction"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("autoscaling/v1", "Scale"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("v1", "ConfigMapList"),
            ("v1", "DeleteOptions"),
            ("policy/v1", "DeleteOptions"),
        ] {
            assert!(
                s.message_for_kind(api_version, kind).is_some(),
                "{api_version} {kind} missing"
            );
        }
        for (name, message) in &s.messages {
            for field in message.fields.values() {
                if let FieldType::Message(target) = &field.value {
                    assert!(s.messages.contains_key(target), "{name} → {target}");
                }
            }
        }
        let pod_spec = &s.messages["k8s.io.api.core.v1.PodSpec"];
        assert!(
            pod_spec
                .fields
                .values()
                .any(|f| f.json == "terminationGracePeriodSeconds" && f.pointer)
        );
        let service_spec = &s.messages["k8s.io.api.core.v1.ServiceSpec"];
        assert!(service_spec.fields.values().any(|f| f.json == "clusterIPs"));
        let port = &s.messages["k8s.io.api.core.v1.ContainerPort"];
        assert!(
            port.fields
                .values()
                .any(|f| f.json == "containerPort" && f.required)
        );
    }

    #[test]
    fn every_pointer_field_names_a_field_of_the_table() {
        let s = schemas();
        for line in GO_POINTER_FIELDS.lines().filter(|l| !l.starts_with('#')) {
            let mut words = line.split_whitespace();
            let Some(message) = words.next() else {
                continue;
            };
            let fields = &s
                .messages
                .get(message)
                .unwrap_or_else(|| panic!("unknown message {message}"))
                .fields;
            for json in words {
                assert!(
                    fields.values().any(|f| f.json == json),
                    "{message} has no field {json}"
                );
            }
        }
    }
}
