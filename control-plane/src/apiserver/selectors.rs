//! Label selectors (`labelSelector=app=web,tier in (a,b),!legacy` and `metav1.LabelSelector`
//! objects) and field selectors (`fieldSelector=spec.nodeName=n1`, with kube's per-resource
//! list of selectable fields).

use serde_json::{Map, Value};

use super::names::{validate_label_value, validate_qualified_name};

/// A selector that does not parse or names an unsupported field: the server answers 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// How one label requirement compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOperator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// `key <op> values`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: LabelOperator,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .map(|v| v.as_str().unwrap_or_default());
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match (self.operator, value) {
            (LabelOperator::Equals | LabelOperator::In, Some(v)) => listed(v),
            (LabelOperator::Equals | LabelOperator::In, None) => false,
            (LabelOperator::NotEquals | LabelOperator::NotIn, Some(v)) => !listed(v),
            (LabelOperator::NotEquals | LabelOperator::NotIn, None) => true,
            (LabelOperator::Exists, found) => found.is_some(),
            (LabelOperator::DoesNotExist, found) => found.is_none(),
            (LabelOperator::GreaterThan, Some(v)) => compare_numbers(v, &self.values, |a, b| a > b),
            (LabelOperator::LessThan, Some(v)) => compare_numbers(v, &self.values, |a, b| a < b),
            (LabelOperator::GreaterThan | LabelOperator::LessThan, None) => false,
        }
    }
}

fn compare_numbers(value: &str, bounds: &[String], cmp: fn(i64, i64) -> bool) -> bool {
    let parsed = value.parse::<i64>();
    let bound = bounds.first().and_then(|b| b.parse::<i64>().ok());
    matches!((parsed, bound), (Ok(v), Some(b)) if cmp(v, b))
}

/// Requirements ANDed together. The empty selector matches everything; `nothing()` matches
/// nothing (what a nil `metav1.LabelSelector` means).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    matches_nothing: bool,
}

impl LabelSelector {
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// Whether an object's `metadata.labels` (None when absent) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches against a whole object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }

    /// Parses the `labelSelector` query syntax.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = tokenize(text)?;
        let mut parser = LabelParser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.tokens.is_empty() {
            return Ok(LabelSelector::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some(Token::Comma) => continue,
                Some(other) => {
                    return Err(parse_error(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        other.text()
                    )));
                }
            }
        }
        for requirement in &requirements {
            check_requirement(requirement)?;
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`). A null
    /// selector matches nothing, an empty one everything.
    pub fn from_metav1(selector: &Value) -> Result<Self, SelectorError> {
        if selector.is_null() {
            return Ok(LabelSelector::nothing());
        }
        let mut requirements = Vec::new();
        if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in match_labels {
                requirements.push(Requirement {
                    key: key.clone(),
                    operator: LabelOperator::Equals,
                    values: vec![value.as_str().unwrap_or_default().to_string()],
                });
            }
        }
        let expressions = selector.get("matchExpressions").and_then(Value::as_array);
        for expression in expressions.into_iter().flatten() {
            requirements.push(expression_requirement(expression)?);
        }
        for requirement in &requirements {
            check_requirement(requirement)?;
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }
}

/// The operators of `matchExpressions`, and whether each takes values.
const EXPRESSION_OPERATORS: &[(&str, LabelOperator, bool)] = &[
    ("In", LabelOperator::In, true),
    ("NotIn", LabelOperator::NotIn, true),
    ("Exists", LabelOperator::Exists, false),
    ("DoesNotExist", LabelOperator::DoesNotExist, false),
];

fn expression_requirement(expression: &Value) -> Result<Requirement, SelectorError> {
    let key = expression
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let operator = expression
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values: Vec<String> = expression
        .get("values")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let &(_, op, takes_values) = EXPRESSION_OPERATORS
        .iter()
        .find(|(name, _, _)| *name == operator)
        .ok_or_else(|| {
            SelectorError(format!(
                "{operator:?} is not a valid label selector operator"
            ))
        })?;
    if takes_values && values.is_empty() {
        return Err(SelectorError(
            "for 'in', 'notin' operators, values set can't be empty".to_string(),
        ));
    }
    if !takes_values && !values.is_empty() {
        return Err(SelectorError(
            "values set must be empty for exists and does not exist".to_string(),
        ));
    }
    Ok(Requirement {
        key: key.to_string(),
        operator: op,
        values,
    })
}

fn check_requirement(requirement: &Requirement) -> Result<(), SelectorError> {
    if let Some(problem) = validate_qualified_name(&requirement.key).into_iter().next() {
        return Err(parse_error(format!(
            "key: Invalid value: {:?}: {problem}",
            requirement.key
        )));
    }
    let numeric = matches!(
        requirement.operator,
        LabelOperator::GreaterThan | LabelOperator::LessThan
    );
    for (i, value) in requirement.values.iter().enumerate() {
        let problem = if numeric {
            value
                .parse::<i64>()
                .err()
                .map(|_| "for 'Gt', 'Lt' operators, the value must be an integer".to_string())
        } else {
            validate_label_value(value).into_iter().next()
        };
        if let Some(problem) = problem {
            return Err(parse_error(format!(
                "values[{i}][{}]: Invalid value: {value:?}: {problem}",
                requirement.key
            )));
        }
    }
    Ok(())
}

fn parse_error(detail: String) -> SelectorError {
    SelectorError(format!("unable to parse requirement: {detail}"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Identifier(String),
    Equals,
    DoubleEquals,
    NotEquals,
    Not,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Identifier(s) => s,
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Not => "!",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn tokenize(text: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if !is_special(c) {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || is_special(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            tokens.push(Token::Identifier(word));
            continue;
        }
        chars.next();
        let followed_by_equals = chars.peek() == Some(&'=');
        let token = match (c, followed_by_equals) {
            ('=', true) => Token::DoubleEquals,
            ('!', true) => Token::NotEquals,
            ('=', false) => Token::Equals,
            ('!', false) => Token::Not,
            ('(', _) => Token::OpenParen,
            (')', _) => Token::CloseParen,
            (',', _) => Token::Comma,
            ('>', _) => Token::GreaterThan,
            (_, _) => Token::LessThan,
        };
        if matches!(token, Token::DoubleEquals | Token::NotEquals) {
            chars.next();
        }
        tokens.push(token);
    }
    Ok(tokens)
}

struct LabelParser {
    tokens: Vec<Token>,
    pos: usize,
}

impl LabelParser {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == Some(&Token::Not);
        if negated {
            self.pos += 1;
        }
        let key = match self.next() {
            Some(Token::Identifier(key)) => key,
            Some(other) => {
                return Err(parse_error(format!(
                    "found '{}', expected: !, identifier, or 'end of string'",
                    other.text()
                )));
            }
            None => return Err(parse_error("found '', expected: identifier".to_string())),
        };
        if negated {
            return Ok(requirement(key, LabelOperator::DoesNotExist, Vec::new()));
        }
        let operator = match self.peek() {
            None | Some(Token::Comma) => {
                return Ok(requirement(key, LabelOperator::Exists, Vec::new()));
            }
            Some(_) => self.operator()?,
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.value_set()?,
            _ => vec![self.single_value()?],
        };
        Ok(requirement(key, operator, values))
    }

    fn operator(&mut self) -> Result<LabelOperator, SelectorError> {
        let token = self.next();
        match token {
            Some(Token::Equals | Token::DoubleEquals) => Ok(LabelOperator::Equals),
            Some(Token::NotEquals) => Ok(LabelOperator::NotEquals),
            Some(Token::GreaterThan) => Ok(LabelOperator::GreaterThan),
            Some(Token::LessThan) => Ok(LabelOperator::LessThan),
            Some(Token::Identifier(word)) if word == "in" => Ok(LabelOperator::In),
            Some(Token::Identifier(word)) if word == "notin" => Ok(LabelOperator::NotIn),
            other => Err(parse_error(format!(
                "found '{}', expected: {}",
                other.as_ref().map(Token::text).unwrap_or_default(),
                "'=', '!=', '==', 'in', notin'"
            ))),
        }
    }

    /// A value after `=`: an identifier, or nothing (`a=` means the empty value).
    fn single_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Some(Token::Identifier(value)) => {
                let value = value.clone();
                self.pos += 1;
                Ok(value)
            }
            None | Some(Token::Comma) => Ok(String::new()),
            Some(other) => Err(parse_error(format!(
                "found '{}', expected: identifier",
                other.text()
            ))),
        }
    }

    /// `( v1, v2 )`, possibly with empty members.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        if self.next() != Some(Token::OpenParen) {
            return Err(parse_error("found '', expected: '('".to_string()));
        }
        let mut values = Vec::new();
        let mut expecting_value = true;
        loop {
            match self.next() {
                Some(Token::Identifier(v)) if expecting_value => {
                    values.push(v);
                    expecting_value = false;
                }
                Some(Token::Comma) => {
                    if expecting_value {
                        values.push(String::new());
                    }
                    expecting_value = true;
                }
                Some(Token::CloseParen) => {
                    if expecting_value && !values.is_empty() {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                other => {
                    return Err(parse_error(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        other.as_ref().map(Token::text).unwrap_or_default()
                    )));
                }
            }
        }
    }
}

fn requirement(key: String, operator: LabelOperator, values: Vec<String>) -> Requirement {
    Requirement {
        key,
        operator,
        values,
    }
}

/// `field = value` or `field != value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub equals: bool,
    pub value: String,
}

/// Field requirements ANDed together; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Where a selectable field lives in the object, and what a missing value reads as.
struct SelectableField {
    label: &'static str,
    pointer: &'static str,
    missing: &'static str,
}

const fn field(
    label: &'static str,
    pointer: &'static str,
    missing: &'static str,
) -> SelectableField {
    SelectableField {
        label,
        pointer,
        missing,
    }
}

const COMMON_FIELDS: &[SelectableField] = &[
    field("metadata.name", "/metadata/name", ""),
    field("metadata.namespace", "/metadata/namespace", ""),
];

const POD_FIELDS: &[SelectableField] = &[
    field("spec.nodeName", "/spec/nodeName", ""),
    field("spec.restartPolicy", "/spec/restartPolicy", ""),
    field("spec.schedulerName", "/spec/schedulerName", ""),
    field("spec.serviceAccountName", "/spec/serviceAccountName", ""),
    field("spec.hostNetwork", "/spec/hostNetwork", "false"),
    field("status.phase", "/status/phase", ""),
    field("status.podIP", "/status/podIP", ""),
    field("status.nominatedNodeName", "/status/nominatedNodeName", ""),
];

const EVENT_FIELDS: &[SelectableField] = &[
    field("involvedObject.kind", "/involvedObject/kind", ""),
    field("involvedObject.namespace", "/involvedObject/namespace", ""),
    field("involvedObject.name", "/involvedObject/name", ""),
    field("involvedObject.uid", "/involvedObject/uid", ""),
    field(
        "involvedObject.apiVersion",
        "/involvedObject/apiVersion",
        "",
    ),
    field(
        "involvedObject.resourceVersion",
        "/involvedObject/resourceVersion",
        "",
    ),
    field("involvedObject.fieldPath", "/involvedObject/fieldPath", ""),
    field("reason", "/reason", ""),
    field("reportingComponent", "/reportingComponent", ""),
    field("source", "/source/component", ""),
    field("type", "/type", ""),
];

const SECRET_FIELDS: &[SelectableField] = &[field("type", "/type", "")];
const NODE_FIELDS: &[SelectableField] =
    &[field("spec.unschedulable", "/spec/unschedulable", "false")];
const NAMESPACE_FIELDS: &[SelectableField] = &[field("status.phase", "/status/phase", "")];
const REPLICAS_FIELDS: &[SelectableField] = &[field("status.replicas", "/status/replicas", "0")];
const JOB_FIELDS: &[SelectableField] = &[field("status.successful", "/status/succeeded", "0")];
const CSR_FIELDS: &[SelectableField] = &[field("spec.signerName", "/spec/signerName", "")];
const SERVICE_FIELDS: &[SelectableField] = &[
    field("spec.clusterIP", "/spec/clusterIP", ""),
    field("spec.type", "/spec/type", ""),
];

/// The kind-specific selectable fields, by (group, kind), besides metadata.name/namespace.
const KIND_FIELDS: &[(&str, &str, &[SelectableField])] = &[
    ("", "Pod", POD_FIELDS),
    ("", "Event", EVENT_FIELDS),
    ("", "Secret", SECRET_FIELDS),
    ("", "Node", NODE_FIELDS),
    ("", "Namespace", NAMESPACE_FIELDS),
    ("", "Service", SERVICE_FIELDS),
    ("", "ReplicationController", REPLICAS_FIELDS),
    ("apps", "ReplicaSet", REPLICAS_FIELDS),
    ("batch", "Job", JOB_FIELDS),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        CSR_FIELDS,
    ),
];

fn kind_fields(group: &str, kind: &str) -> &'static [SelectableField] {
    KIND_FIELDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, fields)| *fields)
        .unwrap_or(&[])
}

fn selectable_field(group: &str, kind: &str, label: &str) -> Option<&'static SelectableField> {
    COMMON_FIELDS
        .iter()
        .chain(kind_fields(group, kind))
        .find(|f| f.label == label)
}

/// The field labels a resource can be selected by.
pub fn supported_field_labels(group: &str, kind: &str) -> Vec<&'static str> {
    COMMON_FIELDS
        .iter()
        .chain(kind_fields(group, kind))
        .map(|f| f.label)
        .collect()
}

impl FieldSelector {
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the `fieldSelector` query syntax (`\,`, `\=` and `\\` escape in values).
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(text, ',') {
            if term.trim().is_empty() {
                continue;
            }
            requirements.push(parse_field_term(&term, text)?);
        }
        Ok(FieldSelector { requirements })
    }

    /// Rejects fields the resource does not support: `field label not supported: spec.foo`.
    pub fn check_supported(&self, group: &str, kind: &str) -> Result<(), SelectorError> {
        match self
            .requirements
            .iter()
            .find(|r| selectable_field(group, kind, &r.field).is_none())
        {
            Some(r) => Err(SelectorError(format!(
                "field label not supported: {}",
                r.field
            ))),
            None => Ok(()),
        }
    }

    /// Whether the object satisfies every requirement; missing fields read as "" (or "false",
    /// "0" for booleans and counts, as kube's typed structs do). Unsupported fields never match.
    pub fn matches(&self, group: &str, kind: &str, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            selectable_field(group, kind, &r.field)
                .is_some_and(|f| (field_value(obj, f) == r.value) == r.equals)
        })
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value required by an `=` requirement on `field` (e.g. `spec.nodeName` for the
    /// kubelet's watch), so callers can index or short-cut.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equals && r.field == field)
            .map(|r| r.value.as_str())
    }
}

fn field_value(obj: &Value, field: &SelectableField) -> String {
    match obj.pointer(field.pointer) {
        None | Some(Value::Null) => field.missing.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn parse_field_term(term: &str, whole: &str) -> Result<FieldRequirement, SelectorError> {
    let operators: [(&str, bool); 3] = [("!=", false), ("==", true), ("=", true)];
    for (operator, equals) in operators {
        if let Some(index) = find_unescaped(term, operator) {
            let field = term[..index].trim().to_string();
            let value = unescape(&term[index + operator.len()..]);
            if field.is_empty() {
                break;
            }
            return Ok(FieldRequirement {
                field,
                equals,
                value,
            });
        }
    }
    Err(SelectorError(format!(
        "invalid selector: '{whole}'; can't understand '{term}'"
    )))
}

/// Splits on `separator` where it is not preceded by a backslash escape.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in text.chars() {
        let current = parts.len() - 1;
        if escaped {
            parts[current].push('\\');
            parts[current].push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(String::new());
        } else {
            parts[current].push(c);
        }
    }
    parts
}

fn find_unescaped(text: &str, needle: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if text[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn label_selector_matching() {
        let l = labels(json!({"app": "web", "tier": "front", "version": "3"}));
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app = web , tier=front", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web, db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("missing notin (db)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("missing", false),
            ("version>2", true),
            ("version<2", false),
            ("tier=", false),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).expect(text);
            assert_eq!(selector.matches(Some(&l)), *expected, "{text}");
        }
        assert!(!LabelSelector::parse("x=").expect("empty").matches(None));
        assert!(LabelSelector::parse("!x").expect("not").matches(None));
    }

    #[test]
    fn label_selector_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "app in web",
                "unable to parse requirement: found '', expected: '('",
            ),
            (
                "=x",
                "unable to parse requirement: found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: '=', '!=', '==', 'in', notin'",
            ),
            (
                "app=web)",
                "unable to parse requirement: found ')', expected: ',' or 'end of string'",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(
                LabelSelector::parse(text).expect_err(text).to_string(),
                *message,
                "{text}"
            );
        }
        let bad_value = LabelSelector::parse("app=a/b")
            .expect_err("bad value")
            .to_string();
        assert!(
            bad_value
                .starts_with("unable to parse requirement: values[0][app]: Invalid value: \"a/b\""),
            "{bad_value}"
        );
        assert!(LabelSelector::parse("-bad=x").is_err());
    }

    #[test]
    fn metav1_selector() {
        let selector = LabelSelector::from_metav1(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .expect("valid");
        assert!(selector.matches(Some(&labels(json!({"app": "web", "tier": "back"})))));
        assert!(!selector.matches(Some(&labels(
            json!({"app": "web", "tier": "back", "legacy": "y"})
        ))));
        assert!(
            !LabelSelector::from_metav1(&Value::Null)
                .expect("nil")
                .matches(None)
        );
        assert!(
            LabelSelector::from_metav1(&json!({}))
                .expect("empty")
                .matches(None)
        );
        let bad = LabelSelector::from_metav1(
            &json!({"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
        );
        assert_eq!(
            bad.expect_err("operator").to_string(),
            "\"Equals\" is not a valid label selector operator"
        );
        assert!(
            LabelSelector::from_metav1(
                &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"restartPolicy": "Always"}, "status": {"phase": "Running"}});
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("metadata.name=p", true),
            ("metadata.name==p,metadata.namespace=default", true),
            ("metadata.name!=p", false),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("status.phase=Running", true),
            ("spec.hostNetwork=false", true),
        ];
        for (text, expected) in cases {
            let selector = FieldSelector::parse(text).expect(text);
            selector.check_supported("", "Pod").expect(text);
            assert_eq!(selector.matches("", "Pod", &pod), *expected, "{text}");
        }
        let unsupported = FieldSelector::parse("spec.foo=bar").expect("parses");
        assert_eq!(
            unsupported
                .check_supported("", "Pod")
                .expect_err("unsupported")
                .to_string(),
            "field label not supported: spec.foo"
        );
        assert!(
            FieldSelector::parse("spec.nodeName=n")
                .expect("p")
                .check_supported("", "Service")
                .is_err()
        );
        assert_eq!(
            FieldSelector::parse("nonsense")
                .expect_err("syntax")
                .to_string(),
            "invalid selector: 'nonsense'; can't understand 'nonsense'"
        );
        let escaped = FieldSelector::parse(r"metadata.name=a\,b").expect("escaped");
        assert_eq!(escaped.exact_value("metadata.name"), Some("a,b"));
    }

    #[test]
    fn event_and_node_fields() {
        let event = json!({"involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "kubelet"}, "type": "Warning"});
        let selector = FieldSelector::parse(
            "involvedObject.kind=Pod,involvedObject.name=web,source=kubelet,type=Warning",
        )
        .expect("parses");
        selector.check_supported("", "Event").expect("supported");
        assert!(selector.matches("", "Event", &event));
        let node = json!({"spec": {"unschedulable": true}});
        assert!(
            FieldSelector::parse("spec.unschedulable=true")
                .expect("p")
                .matches("", "Node", &node)
        );
        assert!(
            FieldSelector::parse("spec.unschedulable=false")
                .expect("p")
                .matches("", "Node", &json!({}))
        );
    }
}
