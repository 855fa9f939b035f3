//! TEMPORARY
pub fn apply_defaults(_g: &str, _v: &str, _k: &str, _o: &mut serde_json::Value) {}
