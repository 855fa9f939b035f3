//! Serving CustomResourceDefinitions, as kube's apiextensions-apiserver does: a controller fed
//! by the watch cache that, whenever CRDs change, decides which names are accepted, swaps in a
//! catalog and OpenAPI documents with every served version of every accepted CRD, writes the
//! CRDs' status (acceptedNames, NamesAccepted, Established, Terminating, storedVersions), and
//! finalizes deleted CRDs (deletes their custom resources, then drops the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer).
//!
//! It also owns the hooks the generic REST path calls for custom resources: pruning,
//! defaulting and schema validation of writes, storage at the storage version and answers at
//! the requested version (conversion strategy None: only apiVersion changes), Tables with the
//! CRD's printer columns, and the scale subresource at the CRD's replica paths.
//!
//! `controller` is the controller, `hooks` the REST hooks; this module holds what both share:
//! the served types (`ServedCrds`, kept in `ApiState`) and the current OpenAPI documents.

mod controller;
mod hooks;
#[cfg(test)]
mod tests;

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use super::crd::CustomResourceType;
use super::openapi::{self, OpenApiDocs};
use super::resources::{ResourceInfo, builtin_resources};
use super::state::ApiState;
use super::status::ApiError;
use super::table::PrinterColumn;

pub use controller::start;
pub use hooks::{
    add_deletion_finalizer, encode_for_storage, prepare_custom_resource, read_form, scale,
    served_items, to_served_version, to_table,
};

/// The finalizer a deleted CRD carries until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";

/// One served version of one CRD.
#[derive(Debug)]
pub struct ServedType {
    pub custom: CustomResourceType,
    /// The Table columns after NAME (additionalPrinterColumns, or AGE).
    pub columns: Vec<PrinterColumn>,
    /// The version objects are stored at.
    pub storage_version: String,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// Cancelled when this version stops being served: its watches end.
    pub withdrawn: CancellationToken,
}

/// The custom resource types served now, and the OpenAPI documents including their schemas
/// (None while no CRD is served: the built-in documents are used).
#[derive(Debug, Default)]
pub struct ServedCrds {
    types: Vec<Arc<ServedType>>,
    openapi: Option<Arc<OpenApiDocs>>,
}

impl ServedCrds {
    /// The served type behind `resource`, if it is a custom resource.
    pub fn get(&self, resource: &ResourceInfo) -> Option<Arc<ServedType>> {
        self.types
            .iter()
            .find(|t| {
                let r = &t.custom.resource;
                r.plural == resource.plural
                    && r.version == resource.version
                    && r.group == resource.group
            })
            .cloned()
    }

    /// Cancelled once `resource` stops being served; never for built-ins.
    pub fn withdrawn(&self, resource: &ResourceInfo) -> CancellationToken {
        self.get(resource)
            .map(|t| t.withdrawn.clone())
            .unwrap_or_default()
    }

    /// The OpenAPI documents of everything served.
    pub fn openapi(&self) -> OpenApiRef {
        match &self.openapi {
            Some(docs) => OpenApiRef::Built(docs.clone()),
            None => OpenApiRef::Builtin(openapi::builtin_openapi()),
        }
    }
}

/// The current OpenAPI documents: the process-wide built-in set, or one built with CRDs.
pub enum OpenApiRef {
    Builtin(&'static OpenApiDocs),
    Built(Arc<OpenApiDocs>),
}

impl Deref for OpenApiRef {
    type Target = OpenApiDocs;

    fn deref(&self) -> &OpenApiDocs {
        match self {
            OpenApiRef::Builtin(docs) => docs,
            OpenApiRef::Built(docs) => docs,
        }
    }
}

fn is_crd_resource(resource: &ResourceInfo) -> bool {
    resource.group == CRD_GROUP && resource.plural == CRD_PLURAL
}

fn is_builtin(resource: &ResourceInfo) -> bool {
    static BUILTINS: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    BUILTINS
        .get_or_init(builtin_resources)
        .iter()
        .any(|b| b.group == resource.group && b.plural == resource.plural)
}

/// The served type of `resource`; None for built-ins. A resource that is neither (its CRD
/// went away between routing and now) is not found.
fn custom_type(
    state: &ApiState,
    resource: &ResourceInfo,
) -> Result<Option<Arc<ServedType>>, ApiError> {
    match state.crds().get(resource) {
        Some(found) => Ok(Some(found)),
        None if is_builtin(resource) => Ok(None),
        None => Err(ApiError::path_not_found(&format!(
            "/apis/{}/{}/{}",
            resource.group, resource.version, resource.plural
        ))),
    }
}
