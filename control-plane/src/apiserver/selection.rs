//! Which objects a list, watch or deletecollection selects: the `labelSelector` and
//! `fieldSelector` of the query, parsed once per request into one predicate. Parse errors are
//! 400s naming the selector.

use serde_json::{Map, Value};

use super::request::Query;
use super::resources::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;

/// The selectors of one request.
#[derive(Debug, Default)]
pub struct Selection {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    /// A watch of one object (`GET .../pods/NAME?watch=1`).
    name: Option<String>,
}

impl Selection {
    pub fn from_query(resource: &ResourceInfo, query: &Query) -> Result<Selection, ApiError> {
        let labels =
            match query.get("labelSelector") {
                Some(text) => Some(LabelSelector::parse(text).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match query.get("fieldSelector") {
            Some(text) => Some(
                FieldSelector::parse(&resource.kind, text)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Selection {
            labels,
            fields,
            name: None,
        })
    }

    /// Narrows the selection to the object called `name`.
    pub fn with_name(mut self, name: &str) -> Selection {
        self.name = Some(name.to_string());
        self
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels_ok = self.labels.as_ref().is_none_or(|selector| {
            selector.matches(
                object
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object),
            )
        });
        let name_ok = self
            .name
            .as_deref()
            .is_none_or(|name| super::objects::name(object) == name);
        name_ok
            && labels_ok
            && self
                .fields
                .as_ref()
                .is_none_or(|selector| selector.matches(object))
    }
}

/// A metav1.LabelSelector object rendered in the query-string syntax (`app=web,tier in (a,b)`).
pub fn selector_string(selector: &Value) -> String {
    LabelSelector::from_object(selector)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Whether a metav1.LabelSelector object selects these labels (an invalid selector is a 400).
pub fn label_selector_matches(
    selector: &Value,
    labels: Option<&Map<String, Value>>,
) -> Result<bool, ApiError> {
    let selector =
        LabelSelector::from_object(selector).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(selector.matches(labels))
}
