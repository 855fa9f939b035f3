//! TEMPORARY stand-in for wt-semantics' selectors (equality only).
use serde_json::{Map, Value};
#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<(String, String)>);
impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(LabelSelector(
            s.split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    p.split_once('=').map(|(a, b)| {
                        (
                            a.trim().to_string(),
                            b.trim_start_matches('=').trim().to_string(),
                        )
                    })
                })
                .collect(),
        ))
    }
    pub fn from_object(v: &Value) -> Result<Self, String> {
        Ok(LabelSelector(
            v.get("matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        ))
    }
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.0
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v))
    }
}
impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}",
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, String)>);
impl FieldSelector {
    pub fn parse(_kind: &str, s: &str) -> Result<Self, String> {
        Ok(FieldSelector(
            s.split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    p.split_once('=').map(|(a, b)| {
                        (
                            a.trim().to_string(),
                            b.trim_start_matches('=').trim().to_string(),
                        )
                    })
                })
                .collect(),
        ))
    }
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, v)| {
            obj.pointer(&format!("/{}", k.replace('.', "/")))
                .and_then(Value::as_str)
                .unwrap_or("")
                == v
        })
    }
}
