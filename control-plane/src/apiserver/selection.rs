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
    /// Group and kind the field selector reads (its supported fields depend on them).
    group: String,
    kind: String,
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
            Some(text) => {
                let selector =
                    FieldSelector::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
                selector
                    .check_supported(&resource.group, &resource.kind)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(selector)
            }
            None => None,
        };
        Ok(Selection {
            labels,
            fields,
            group: resource.group.clone(),
            kind: resource.kind.clone(),
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
                .is_none_or(|selector| selector.matches(&self.group, &self.kind, object))
    }
}

/// A metav1.LabelSelector object rendered in the query-string syntax (`app=web,tier in (a,b)`),
/// as Scale's `status.selector` carries it.
pub fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        parts.extend(
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
        );
    }
    for expression in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match expression
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or("")
        {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// Whether a metav1.LabelSelector object selects these labels (an invalid selector is a 400).
pub fn label_selector_matches(
    selector: &Value,
    labels: Option<&Map<String, Value>>,
) -> Result<bool, ApiError> {
    let selector =
        LabelSelector::from_metav1(selector).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(selector.matches(labels))
}
