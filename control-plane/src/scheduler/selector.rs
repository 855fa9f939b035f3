//! Selectors as the scheduler evaluates them against label maps: `metav1.LabelSelector` (pod
//! affinity terms, topology spread constraints) and `v1.NodeSelector` terms (node affinity, with
//! the `Gt`/`Lt` operators and `matchFields` on `metadata.name`). Compiled once per pod, then
//! matched many times.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector that cannot be evaluated, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Expression {
    key: String,
    operator: Operator,
    values: Vec<String>,
    /// The single integer of `Gt`/`Lt`.
    bound: i64,
}

impl Expression {
    fn new(key: &str, operator: &str, values: &[String]) -> Result<Expression, SelectorError> {
        let operator = match operator {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::GreaterThan,
            "Lt" => Operator::LessThan,
            other => {
                return Err(SelectorError(format!(
                    "{other:?} is not a valid selector operator"
                )));
            }
        };
        let mut bound = 0;
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError(format!(
                    "{key}: values must be non-empty for In and NotIn"
                )));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError(format!(
                    "{key}: values must be empty for Exists and DoesNotExist"
                )));
            }
            Operator::GreaterThan | Operator::LessThan => {
                let [value] = values else {
                    return Err(SelectorError(format!(
                        "{key}: Gt and Lt take exactly one value"
                    )));
                };
                bound = value
                    .parse()
                    .map_err(|_| SelectorError(format!("{key}: {value:?} is not an integer")))?;
            }
            _ => {}
        }
        Ok(Expression {
            key: key.to_string(),
            operator,
            values: values.to_vec(),
            bound,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (self.operator, value) {
            (Operator::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Operator::In, None) => false,
            (Operator::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Operator::NotIn, None) => true,
            (Operator::Exists, found) => found.is_some(),
            (Operator::DoesNotExist, found) => found.is_none(),
            (Operator::GreaterThan, Some(v)) => v.parse::<i64>().is_ok_and(|n| n > self.bound),
            (Operator::LessThan, Some(v)) => v.parse::<i64>().is_ok_and(|n| n < self.bound),
            (Operator::GreaterThan | Operator::LessThan, None) => false,
        }
    }
}

/// A compiled `metav1.LabelSelector`. A missing selector matches nothing; an empty one
/// matches everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMatcher {
    expressions: Vec<Expression>,
    matches_nothing: bool,
}

impl LabelMatcher {
    pub fn nothing() -> LabelMatcher {
        LabelMatcher {
            expressions: Vec::new(),
            matches_nothing: true,
        }
    }

    pub fn compile(selector: Option<&LabelSelector>) -> Result<LabelMatcher, SelectorError> {
        let Some(selector) = selector else {
            return Ok(LabelMatcher::nothing());
        };
        let mut expressions = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            expressions.push(Expression::new(key, "In", std::slice::from_ref(value))?);
        }
        for requirement in selector.match_expressions.iter().flatten() {
            if matches!(requirement.operator.as_str(), "Gt" | "Lt") {
                return Err(SelectorError(format!(
                    "{:?} is not a valid label selector operator",
                    requirement.operator
                )));
            }
            let values = requirement.values.clone().unwrap_or_default();
            expressions.push(Expression::new(
                &requirement.key,
                &requirement.operator,
                &values,
            )?);
        }
        Ok(LabelMatcher {
            expressions,
            matches_nothing: false,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing
            && self
                .expressions
                .iter()
                .all(|e| e.matches(labels.get(&e.key).map(String::as_str)))
    }
}

/// One compiled `NodeSelectorTerm`: its label expressions and its `metadata.name` field
/// expressions, ANDed. An empty term matches no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTerm {
    labels: Vec<Expression>,
    fields: Vec<Expression>,
}

impl NodeTerm {
    pub fn compile(term: &NodeSelectorTerm) -> Result<NodeTerm, SelectorError> {
        let compile_all = |requirements: Option<&Vec<NodeSelectorRequirement>>| {
            requirements
                .into_iter()
                .flatten()
                .map(|r| {
                    Expression::new(&r.key, &r.operator, r.values.as_deref().unwrap_or_default())
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let labels = compile_all(term.match_expressions.as_ref())?;
        let fields = compile_all(term.match_fields.as_ref())?;
        if let Some(field) = fields.iter().find(|f| f.key != "metadata.name") {
            return Err(SelectorError(format!(
                "{:?} is not a supported node field selector key",
                field.key
            )));
        }
        Ok(NodeTerm { labels, fields })
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.labels
            .iter()
            .all(|e| e.matches(labels.get(&e.key).map(String::as_str)))
            && self.fields.iter().all(|e| e.matches(Some(node_name)))
    }
}

/// Compiled `nodeSelectorTerms`, ORed. Terms that do not compile never match, as in kube.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTerms {
    terms: Vec<NodeTerm>,
}

impl NodeTerms {
    pub fn compile(terms: &[NodeSelectorTerm]) -> NodeTerms {
        NodeTerms {
            terms: terms
                .iter()
                .filter_map(|t| NodeTerm::compile(t).ok())
                .collect(),
        }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn label_selector_semantics() {
        assert!(
            !LabelMatcher::compile(None)
                .expect("valid in the test")
                .matches(&labels(&[]))
        );
        let empty = LabelSelector::default();
        assert!(
            LabelMatcher::compile(Some(&empty))
                .expect("valid in the test")
                .matches(&labels(&[("a", "b")]))
        );
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let matcher = LabelMatcher::compile(Some(&selector)).expect("valid in the test");
        assert!(matcher.matches(&labels(&[("app", "web")])));
        assert!(matcher.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!matcher.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!matcher.matches(&labels(&[("app", "api")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "n".into(),
                operator: "Gt".into(),
                values: Some(vec!["1".into()]),
            }]),
            ..Default::default()
        };
        assert!(LabelMatcher::compile(Some(&bad)).is_err());
    }

    #[test]
    fn node_terms_or_terms_and_expressions() {
        let terms = NodeTerms::compile(&[
            NodeSelectorTerm {
                match_expressions: Some(vec![
                    requirement("zone", "In", &["a", "b"]),
                    requirement("cores", "Gt", &["4"]),
                ]),
                match_fields: None,
            },
            NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![requirement("metadata.name", "In", &["special"])]),
            },
            // An empty term and a broken one match nothing.
            NodeSelectorTerm::default(),
            NodeSelectorTerm {
                match_expressions: Some(vec![requirement("x", "Bogus", &[])]),
                match_fields: None,
            },
        ]);
        assert!(terms.matches("n1", &labels(&[("zone", "a"), ("cores", "8")])));
        assert!(!terms.matches("n1", &labels(&[("zone", "a"), ("cores", "4")])));
        assert!(!terms.matches("n1", &labels(&[("zone", "a"), ("cores", "many")])));
        assert!(!terms.matches("n1", &labels(&[("zone", "c"), ("cores", "8")])));
        assert!(terms.matches("special", &labels(&[])));
        assert!(!NodeTerms::compile(&[]).matches("n1", &labels(&[])));
        assert!(
            NodeTerm::compile(&NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![requirement("metadata.uid", "In", &["x"])]),
            })
            .is_err()
        );
    }
}
