//! TEMPORARY
pub fn validate(
    _g: &str,
    _v: &str,
    _k: &str,
    _o: &serde_json::Value,
    _old: Option<&serde_json::Value>,
) -> Vec<super::field_errors::FieldError> {
    vec![]
}
