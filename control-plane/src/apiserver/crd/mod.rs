//! CustomResourceDefinitions as library code: from a CRD object to served resources
//! (`definition`), the structural schema model (`schema`, `structural`), and what the server does
//! to each custom resource: validation (`validate`), pruning (`prune`) and defaulting
//! (`defaulting`). `CustomResourceType` bundles it all for one served version, with the scale
//! subresource (`scale_from`, `apply_scale`). `naming` decides which CRDs get their names and the
//! status the server writes on them.
//!
//! CEL rules (`x-kubernetes-validations`) are accepted in schemas and not evaluated.

pub mod defaulting;
pub mod definition;
mod formats;
pub mod naming;
pub mod prune;
pub mod schema;
pub mod structural;
pub mod validate;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

pub use defaulting::apply_schema_defaults;
pub use definition::{
    PrinterColumn, crd_status, default_crd, printer_columns, served_resources, storage_version,
    validate_crd,
};
pub use prune::prune;
pub use schema::{Schema, parse_schema};
pub use validate::validate_custom_resource;

use crate::apiserver::field_errors::FieldError;
use crate::apiserver::resources::ResourceInfo;

/// Why a CRD cannot be turned into served types, or a scale cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("CustomResourceDefinition has no {0}")]
    Missing(&'static str),
    #[error("invalid CustomResourceDefinition: {0}")]
    Invalid(String),
    #[error("version {0:?} is not defined by the CustomResourceDefinition")]
    UnknownVersion(String),
    #[error("invalid schema: {}", join_errors(.0))]
    Schema(Vec<FieldError>),
    #[error("{0} is not a simple JSON path")]
    BadPath(String),
    #[error("cannot set {0}: a parent field is not an object")]
    NotAnObject(String),
}

fn join_errors(errs: &[FieldError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `subresources.scale` of one version: where replicas and the selector live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleConfig {
    /// `.spec.replicas`
    pub spec_replicas_path: String,
    /// `.status.replicas`
    pub status_replicas_path: String,
    /// `.status.selector`, optional.
    pub label_selector_path: Option<String>,
}

/// Everything the server needs to serve one version of a CRD.
#[derive(Clone, Debug)]
pub struct CustomResourceType {
    pub resource: ResourceInfo,
    pub schema: Schema,
    pub printer_columns: Vec<PrinterColumn>,
    /// The status subresource is enabled (status is then ignored on main-resource writes).
    pub status_subresource: bool,
    pub scale: Option<ScaleConfig>,
    /// This version is the storage version.
    pub storage: bool,
}

impl CustomResourceType {
    /// The type of `version` of `crd`; the CRD should have passed `validate_crd`.
    pub fn from_crd(crd: &Value, version: &str) -> Result<Self, CrdError> {
        let v = definition::find_version(crd, version)
            .ok_or_else(|| CrdError::UnknownVersion(version.to_string()))?;
        let raw = v
            .pointer("/schema/openAPIV3Schema")
            .ok_or(CrdError::Missing("schema.openAPIV3Schema"))?;
        let path = "openAPIV3Schema";
        let schema = parse_schema(raw, path).map_err(CrdError::Schema)?;
        Ok(CustomResourceType {
            resource: definition::resource_info(crd, v)?,
            schema,
            printer_columns: printer_columns(crd, version),
            status_subresource: v.pointer("/subresources/status").is_some(),
            scale: v.pointer("/subresources/scale").map(scale_config),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// One type per served version.
    pub fn all_served(crd: &Value) -> Result<Vec<Self>, CrdError> {
        served_resources(crd)?
            .iter()
            .map(|r| Self::from_crd(crd, &r.version))
            .collect()
    }

    /// Prunes unknown fields, then applies defaults; returns the pruned paths.
    pub fn prune_and_default(&self, obj: &mut Value) -> Vec<String> {
        let pruned = prune(&self.schema, obj);
        apply_schema_defaults(&self.schema, obj);
        pruned
    }

    /// Schema violations of `obj`.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_custom_resource(&self.schema, obj)
    }
}

fn scale_config(scale: &Value) -> ScaleConfig {
    let get = |k: &str| scale.get(k).and_then(Value::as_str).map(String::from);
    ScaleConfig {
        spec_replicas_path: get("specReplicasPath").unwrap_or_default(),
        status_replicas_path: get("statusReplicasPath").unwrap_or_default(),
        label_selector_path: get("labelSelectorPath").filter(|p| !p.is_empty()),
    }
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let segments = definition::simple_json_path(path)?;
    segments.iter().try_fold(obj, |v, s| v.get(s))
}

/// The autoscaling/v1 Scale of a custom resource (replicas 0 where the paths hold nothing).
pub fn scale_from(cr: &Value, cfg: &ScaleConfig) -> Value {
    let meta = cr.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut scale_meta = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(key) {
            scale_meta.insert(key.to_string(), v.clone());
        }
    }
    let replicas = |p: &str| lookup(cr, p).and_then(Value::as_i64).unwrap_or(0);
    let mut status = json!({ "replicas": replicas(&cfg.status_replicas_path) });
    let selector = cfg
        .label_selector_path
        .as_deref()
        .and_then(|p| lookup(cr, p))
        .and_then(Value::as_str);
    if let (Some(sel), Some(map)) = (selector, status.as_object_mut()) {
        map.insert("selector".into(), sel.into());
    }
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": scale_meta,
        "spec": { "replicas": replicas(&cfg.spec_replicas_path) },
        "status": status,
    })
}

/// Writes `replicas` at `specReplicasPath`, creating missing parent objects.
pub fn apply_scale(cr: &mut Value, replicas: i64, cfg: &ScaleConfig) -> Result<(), CrdError> {
    let path = &cfg.spec_replicas_path;
    let segments =
        definition::simple_json_path(path).ok_or_else(|| CrdError::BadPath(path.clone()))?;
    let Some((last, parents)) = segments.split_last() else {
        return Err(CrdError::BadPath(path.clone()));
    };
    let mut node = cr;
    for s in parents {
        let map = node
            .as_object_mut()
            .ok_or_else(|| CrdError::NotAnObject(path.clone()))?;
        node = map.entry(s.clone()).or_insert_with(|| json!({}));
    }
    let map = node
        .as_object_mut()
        .ok_or_else(|| CrdError::NotAnObject(path.clone()))?;
    map.insert(last.clone(), replicas.into());
    Ok(())
}
