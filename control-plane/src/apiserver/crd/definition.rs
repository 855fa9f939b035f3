//! A CustomResourceDefinition (apiextensions.k8s.io/v1) read as plain JSON: the resources it
//! serves, its storage version and printer columns, its validation, and the status the server
//! writes once its names are accepted.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::CrdError;
use super::schema::parse_schema;
use super::structural::check_structural;
use crate::apiserver::field_errors::{FieldError, FieldErrorKind};
use crate::apiserver::resources::ResourceInfo;

/// The verbs every custom resource serves.
pub const CUSTOM_RESOURCE_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// One `additionalPrinterColumns` entry (what `kubectl get` shows besides NAME).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// integer, number, string, boolean or date.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn strings_at(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The version entry named `version`.
pub fn find_version<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    versions(crd).iter().find(|v| str_at(v, "/name") == version)
}

/// `spec.names.singular`, defaulted to the lowercased kind.
pub fn singular(crd: &Value) -> String {
    match str_at(crd, "/spec/names/singular") {
        "" => str_at(crd, "/spec/names/kind").to_lowercase(),
        s => s.to_string(),
    }
}

/// `spec.names.listKind`, defaulted to `<kind>List`.
pub fn list_kind(crd: &Value) -> String {
    match str_at(crd, "/spec/names/listKind") {
        "" => format!("{}List", str_at(crd, "/spec/names/kind")),
        s => s.to_string(),
    }
}

fn namespaced(crd: &Value) -> Result<bool, CrdError> {
    match str_at(crd, "/spec/scope") {
        "Namespaced" => Ok(true),
        "Cluster" => Ok(false),
        other => Err(CrdError::Invalid(format!("unknown scope {other:?}"))),
    }
}

fn required_str<'a>(crd: &'a Value, pointer: &'static str) -> Result<&'a str, CrdError> {
    match str_at(crd, pointer) {
        "" => Err(CrdError::Missing(pointer)),
        s => Ok(s),
    }
}

/// The resource one version of the CRD serves (served or not).
pub fn resource_info(crd: &Value, version: &Value) -> Result<ResourceInfo, CrdError> {
    let mut subresources = Vec::new();
    for sub in ["status", "scale"] {
        if version.pointer(&format!("/subresources/{sub}")).is_some() {
            subresources.push(sub.to_string());
        }
    }
    Ok(ResourceInfo {
        group: required_str(crd, "/spec/group")?.to_string(),
        version: required_str(version, "/name")?.to_string(),
        kind: required_str(crd, "/spec/names/kind")?.to_string(),
        plural: required_str(crd, "/spec/names/plural")?.to_string(),
        singular: singular(crd),
        namespaced: namespaced(crd)?,
        short_names: strings_at(crd, "/spec/names/shortNames"),
        categories: strings_at(crd, "/spec/names/categories"),
        verbs: CUSTOM_RESOURCE_VERBS
            .iter()
            .map(|v| v.to_string())
            .collect(),
        subresources,
    })
}

/// One `ResourceInfo` per served version, in `spec.versions` order.
pub fn served_resources(crd: &Value) -> Result<Vec<ResourceInfo>, CrdError> {
    versions(crd)
        .iter()
        .filter(|v| flag(v, "served"))
        .map(|v| resource_info(crd, v))
        .collect()
}

/// The name of the version with `storage: true`.
pub fn storage_version(crd: &Value) -> Option<String> {
    versions(crd)
        .iter()
        .find(|v| flag(v, "storage"))
        .map(|v| str_at(v, "/name").to_string())
}

/// The printer columns of `version`; an `Age` column when the CRD declares none, as kube
/// does (the NAME column is always first and not listed here).
pub fn printer_columns(crd: &Value, version: &str) -> Vec<PrinterColumn> {
    let declared = find_version(crd, version)
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array);
    match declared {
        Some(cols) if !cols.is_empty() => cols.iter().map(printer_column).collect(),
        _ => vec![PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }],
    }
}

fn printer_column(col: &Value) -> PrinterColumn {
    PrinterColumn {
        name: str_at(col, "/name").to_string(),
        type_: str_at(col, "/type").to_string(),
        format: str_at(col, "/format").to_string(),
        description: str_at(col, "/description").to_string(),
        priority: col.get("priority").and_then(Value::as_i64).unwrap_or(0),
        json_path: str_at(col, "/jsonPath").to_string(),
    }
}

// ---- defaulting ----

/// kube's defaults of a CRD: `names.singular` (lowercased kind), `names.listKind`
/// (`<kind>List`) and `conversion.strategy` (None).
pub fn default_crd(crd: &mut Value) {
    let (singular, list_kind) = (singular(crd), list_kind(crd));
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
        if empty(names.get("singular")) && !singular.is_empty() {
            names.insert("singular".into(), singular.into());
        }
        if empty(names.get("listKind")) && list_kind != "List" {
            names.insert("listKind".into(), list_kind.into());
        }
    }
    let conversion = spec
        .entry("conversion")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(conversion) = conversion.as_object_mut() {
        conversion
            .entry("strategy")
            .or_insert_with(|| "None".into());
    }
}

// ---- validation ----

fn required(field: &str) -> FieldError {
    FieldError::new(FieldErrorKind::Required, field, None, "")
}

fn invalid(field: impl Into<String>, value: &str, detail: &str) -> FieldError {
    FieldError::new(
        FieldErrorKind::Invalid,
        field,
        Some(format!("{value:?}")),
        detail,
    )
}

pub(crate) fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn label(errs: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.is_empty() {
        errs.push(required(field));
    } else if !is_dns1035_label(value) {
        errs.push(invalid(field, value, DNS1035_MSG));
    }
}

/// Every reason to reject `crd` (on create; on update `old` is the stored object).
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_name(crd, &mut errs);
    validate_group(crd, &mut errs);
    validate_names(crd, &mut errs);
    validate_scope(crd, &mut errs);
    validate_versions(crd, &mut errs);
    validate_conversion(crd, &mut errs);
    if let Some(old) = old {
        validate_update(crd, old, &mut errs);
    }
    validate_stored_versions(crd, old, &mut errs);
    errs
}

fn validate_name(crd: &Value, errs: &mut Vec<FieldError>) {
    let name = str_at(crd, "/metadata/name");
    let expected = format!(
        "{}.{}",
        str_at(crd, "/spec/names/plural"),
        str_at(crd, "/spec/group")
    );
    if name != expected {
        let d = "must be spec.names.plural+\".\"+spec.group";
        errs.push(invalid("metadata.name", name, d));
    }
}

fn validate_group(crd: &Value, errs: &mut Vec<FieldError>) {
    let group = str_at(crd, "/spec/group");
    if group.is_empty() {
        errs.push(required("spec.group"));
    } else if !group.contains('.') {
        errs.push(invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    } else if !is_dns1123_subdomain(group) {
        errs.push(invalid("spec.group", group, DNS1123_SUBDOMAIN_MSG));
    }
    validate_api_approval(crd, group, errs);
}

const APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

/// Groups of the Kubernetes project (`k8s.io`, `kubernetes.io` and their subdomains) need the
/// approval annotation: a URL, or a reason starting with "unapproved".
fn validate_api_approval(crd: &Value, group: &str, errs: &mut Vec<FieldError>) {
    let protected = ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|d| group == *d || group.ends_with(&format!(".{d}")));
    if !protected {
        return;
    }
    let field = format!("metadata.annotations[{APPROVAL_ANNOTATION}]");
    let annotation = crd
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(APPROVAL_ANNOTATION))
        .and_then(Value::as_str);
    match annotation {
        None => errs.push(FieldError::new(
            FieldErrorKind::Required,
            field,
            None,
            "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
        )),
        Some(v)
            if v.starts_with("unapproved")
                || v.starts_with("https://")
                || v.starts_with("http://") => {}
        Some(v) => errs.push(invalid(
            field,
            v,
            "protected groups must have approval annotation \"api-approved.kubernetes.io\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111",
        )),
    }
}

fn validate_names(crd: &Value, errs: &mut Vec<FieldError>) {
    label(errs, "spec.names.plural", str_at(crd, "/spec/names/plural"));
    let singular = str_at(crd, "/spec/names/singular");
    if !singular.is_empty() {
        label(errs, "spec.names.singular", singular);
    }
    let kind = str_at(crd, "/spec/names/kind");
    if kind.is_empty() {
        errs.push(required("spec.names.kind"));
    } else if !is_dns1035_label(&kind.to_lowercase()) {
        errs.push(invalid("spec.names.kind", kind, DNS1035_MSG));
    }
    let list_kind = str_at(crd, "/spec/names/listKind");
    if !list_kind.is_empty() && !is_dns1035_label(&list_kind.to_lowercase()) {
        errs.push(invalid("spec.names.listKind", list_kind, DNS1035_MSG));
    } else if !list_kind.is_empty() && list_kind == kind {
        let d = "kind and listKind may not be the same or openapi will get confused";
        errs.push(invalid("spec.names.listKind", list_kind, d));
    }
    for key in ["shortNames", "categories"] {
        for (i, s) in strings_at(crd, &format!("/spec/names/{key}"))
            .iter()
            .enumerate()
        {
            label(errs, &format!("spec.names.{key}[{i}]"), s);
        }
    }
}

fn validate_scope(crd: &Value, errs: &mut Vec<FieldError>) {
    match str_at(crd, "/spec/scope") {
        "" => errs.push(required("spec.scope")),
        "Namespaced" | "Cluster" => {}
        other => errs.push(FieldError::new(
            FieldErrorKind::NotSupported,
            "spec.scope",
            Some(format!("{other:?}")),
            "supported values: \"Cluster\", \"Namespaced\"",
        )),
    }
}

fn version_names(crd: &Value) -> Vec<String> {
    versions(crd)
        .iter()
        .map(|v| str_at(v, "/name").to_string())
        .collect()
}

fn validate_versions(crd: &Value, errs: &mut Vec<FieldError>) {
    let all = versions(crd);
    if all.is_empty() {
        errs.push(FieldError::new(
            FieldErrorKind::Required,
            "spec.versions",
            None,
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let names = version_names(crd);
    let listed = Value::from(names.clone()).to_string();
    if all.iter().filter(|v| flag(v, "storage")).count() != 1 {
        let d = "must have exactly one version marked as storage version";
        errs.push(FieldError::new(
            FieldErrorKind::Invalid,
            "spec.versions",
            Some(listed.clone()),
            d,
        ));
    }
    if names
        .iter()
        .enumerate()
        .any(|(i, n)| names[..i].contains(n))
    {
        let d = "must contain unique version names";
        errs.push(FieldError::new(
            FieldErrorKind::Invalid,
            "spec.versions",
            Some(listed),
            d,
        ));
    }
    for (i, v) in all.iter().enumerate() {
        validate_version(v, &format!("spec.versions[{i}]"), errs);
    }
}

fn validate_version(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    label(errs, &format!("{path}.name"), str_at(v, "/name"));
    let schema_path = format!("{path}.schema.openAPIV3Schema");
    match v.pointer("/schema/openAPIV3Schema") {
        None => errs.push(FieldError::new(
            FieldErrorKind::Required,
            schema_path,
            None,
            "schemas are required",
        )),
        Some(raw) => match parse_schema(raw, &schema_path) {
            Ok(schema) => errs.extend(check_structural(&schema, &schema_path)),
            Err(parse_errs) => errs.extend(parse_errs),
        },
    }
    if let Some(scale) = v.pointer("/subresources/scale") {
        validate_scale(scale, &format!("{path}.subresources.scale"), errs);
    }
    let columns = v.get("additionalPrinterColumns").and_then(Value::as_array);
    for (i, col) in columns.into_iter().flatten().enumerate() {
        validate_column(col, &format!("{path}.additionalPrinterColumns[{i}]"), errs);
    }
}

/// Splits `.spec.replicas` into ["spec", "replicas"]; None unless a simple dotted path.
pub fn simple_json_path(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('.')?;
    let segments: Vec<String> = rest.split('.').map(String::from).collect();
    let simple = segments.iter().all(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    simple.then_some(segments)
}

fn under(path: &str, roots: &[&str]) -> bool {
    simple_json_path(path).is_some_and(|s| s.len() >= 2 && roots.contains(&s[0].as_str()))
}

fn validate_scale(scale: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let checks: [(&str, &[&str], &str, bool); 3] = [
        (
            "specReplicasPath",
            &["spec"],
            "should be a json path under .spec",
            true,
        ),
        (
            "statusReplicasPath",
            &["status"],
            "should be a json path under .status",
            true,
        ),
        (
            "labelSelectorPath",
            &["spec", "status"],
            "should be a json path under either .spec or .status",
            false,
        ),
    ];
    for (key, roots, detail, mandatory) in checks {
        let field = format!("{path}.{key}");
        match str_at(scale, &format!("/{key}")) {
            "" if mandatory => errs.push(required(&field)),
            "" => {}
            p if !under(p, roots) => errs.push(invalid(field, p, detail)),
            _ => {}
        }
    }
}

fn validate_column(col: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if str_at(col, "/name").is_empty() {
        errs.push(required(&format!("{path}.name")));
    }
    if str_at(col, "/jsonPath").is_empty() {
        errs.push(required(&format!("{path}.jsonPath")));
    }
    let type_ = str_at(col, "/type");
    if type_.is_empty() {
        errs.push(required(&format!("{path}.type")));
    } else if !["integer", "number", "string", "boolean", "date"].contains(&type_) {
        errs.push(FieldError::new(
            FieldErrorKind::NotSupported,
            format!("{path}.type"),
            Some(format!("{type_:?}")),
            "supported values: \"integer\", \"number\", \"string\", \"boolean\", \"date\"",
        ));
    }
    if col
        .get("priority")
        .and_then(Value::as_i64)
        .is_some_and(|p| p < 0)
    {
        let v = col.get("priority").map(Value::to_string);
        let d = "must be greater than or equal to 0";
        errs.push(FieldError::new(
            FieldErrorKind::Invalid,
            format!("{path}.priority"),
            v,
            d,
        ));
    }
}

fn validate_conversion(crd: &Value, errs: &mut Vec<FieldError>) {
    match str_at(crd, "/spec/conversion/strategy") {
        "" | "None" | "Webhook" => {}
        other => errs.push(FieldError::new(
            FieldErrorKind::NotSupported,
            "spec.conversion.strategy",
            Some(format!("{other:?}")),
            "supported values: \"None\", \"Webhook\"",
        )),
    }
}

fn validate_update(crd: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    for (pointer, field) in [
        ("/metadata/name", "metadata.name"),
        ("/spec/scope", "spec.scope"),
    ] {
        let now = str_at(crd, pointer);
        if now != str_at(old, pointer) {
            errs.push(invalid(field, now, "field is immutable"));
        }
    }
}

/// Versions once used for storage must stay in spec.versions until migrated away.
fn validate_stored_versions(crd: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let source = old.unwrap_or(crd);
    let names = version_names(crd);
    for (i, stored) in strings_at(source, "/status/storedVersions")
        .iter()
        .enumerate()
    {
        if !names.contains(stored) {
            let d = format!(
                "must appear in spec.versions: {stored} was previously a storage version and data may still be persisted in it"
            );
            errs.push(invalid(format!("status.storedVersions[{i}]"), stored, &d));
        }
    }
}

// ---- status ----

/// `spec.names` with singular and listKind defaulted: what `status.acceptedNames` holds.
pub fn accepted_names(crd: &Value) -> Value {
    let mut names = Map::new();
    names.insert("plural".into(), str_at(crd, "/spec/names/plural").into());
    names.insert("singular".into(), singular(crd).into());
    names.insert("kind".into(), str_at(crd, "/spec/names/kind").into());
    names.insert("listKind".into(), list_kind(crd).into());
    for key in ["shortNames", "categories"] {
        let list = strings_at(crd, &format!("/spec/names/{key}"));
        if !list.is_empty() {
            names.insert(key.into(), list.into());
        }
    }
    Value::Object(names)
}

fn condition(old: &Value, type_: &str, reason: &str, message: &str, now: &str) -> Value {
    let previous = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == type_))
        .filter(|c| str_at(c, "/status") == "True")
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str);
    json!({
        "type": type_,
        "status": "True",
        "lastTransitionTime": previous.unwrap_or(now),
        "reason": reason,
        "message": message,
    })
}

/// The status the server writes for an accepted CRD: NamesAccepted and Established conditions
/// (transition times kept when already True), acceptedNames, and storedVersions with the
/// current storage version added.
pub fn crd_status(crd: &Value, now: DateTime<Utc>) -> Value {
    let now = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut stored = strings_at(crd, "/status/storedVersions");
    if let Some(v) = storage_version(crd).filter(|v| !stored.contains(v)) {
        stored.push(v);
    }
    json!({
        "conditions": [
            condition(crd, "NamesAccepted", "NoConflicts", "no conflicts found", &now),
            condition(crd, "Established", "InitialNamesAccepted", "the initial names have been accepted", &now),
        ],
        "acceptedNames": accepted_names(crd),
        "storedVersions": stored,
    })
}
