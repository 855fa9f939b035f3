//! JSON Patch (RFC 6902, `application/json-patch+json`): the six operations on JSON pointers
//! (RFC 6901, with `~0`/`~1` escapes and `-` for "after the last element"). The patch is
//! atomic: operations run on a copy, which is returned only if every operation succeeded.

use serde_json::Value;

use super::PatchError;

/// Applies an RFC 6902 patch (a JSON array of operations) to `doc`.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = patch
        .as_array()
        .ok_or_else(|| invalid("a json patch must be a json array of operations"))?;
    let mut result = doc.clone();
    for operation in operations {
        apply_operation(&mut result, operation)?;
    }
    Ok(result)
}

fn invalid(reason: &str) -> PatchError {
    PatchError::InvalidDocument(reason.to_string())
}

fn apply_operation(doc: &mut Value, operation: &Value) -> Result<(), PatchError> {
    let op = string_member(operation, "op")?;
    let path = string_member(operation, "path")?;
    let tokens = parse_pointer(path)?;
    match op {
        "add" => add(doc, &tokens, value_member(operation)?.clone(), path),
        "remove" => remove(doc, &tokens, "remove", path).map(|_| ()),
        "replace" => replace(doc, &tokens, value_member(operation)?.clone(), path),
        "move" => {
            let from = string_member(operation, "from")?;
            move_value(doc, &parse_pointer(from)?, &tokens, from, path)
        }
        "copy" => {
            let from = string_member(operation, "from")?;
            let value = lookup(doc, &parse_pointer(from)?)
                .ok_or_else(|| missing("copy", from))?
                .clone();
            add(doc, &tokens, value, path)
        }
        "test" => test(doc, &tokens, value_member(operation)?, path),
        other => Err(PatchError::InvalidDocument(format!(
            "unknown json patch operation {other:?}"
        ))),
    }
}

fn string_member<'a>(operation: &'a Value, name: &str) -> Result<&'a str, PatchError> {
    operation
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| PatchError::InvalidDocument(format!("operation lacks string {name:?}")))
}

fn value_member(operation: &Value) -> Result<&Value, PatchError> {
    operation
        .get("value")
        .ok_or_else(|| invalid("operation lacks \"value\""))
}

fn missing(op: &str, path: &str) -> PatchError {
    PatchError::PathNotFound {
        op: op.to_string(),
        path: path.to_string(),
    }
}

/// Splits a JSON pointer into unescaped reference tokens; "" is the whole document.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PatchError::InvalidPointer(pointer.to_string()));
    };
    rest.split('/')
        .map(|token| {
            unescape_token(token).ok_or_else(|| PatchError::InvalidPointer(pointer.to_string()))
        })
        .collect()
}

/// `~1` is `/` and `~0` is `~`; any other `~` sequence is malformed.
fn unescape_token(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return None,
        }
    }
    Some(out)
}

/// An array index token: decimal digits without leading zeros.
fn parse_index(token: &str) -> Option<usize> {
    let digits_only = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = token.len() > 1 && token.starts_with('0');
    if digits_only && !leading_zero {
        token.parse().ok()
    } else {
        None
    }
}

fn lookup<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |current, token| match current {
        Value::Object(map) => map.get(token),
        Value::Array(items) => parse_index(token).and_then(|i| items.get(i)),
        _ => None,
    })
}

fn lookup_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |current, token| match current {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => parse_index(token).and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

/// The container holding the last token, and that token.
fn parent_of<'a, 't>(
    doc: &'a mut Value,
    tokens: &'t [String],
) -> Option<(&'a mut Value, &'t String)> {
    let (last, parents) = tokens.split_last()?;
    lookup_mut(doc, parents).map(|parent| (parent, last))
}

fn add(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<(), PatchError> {
    if tokens.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_of(doc, tokens).ok_or_else(|| missing("add", path))?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                parse_index(last)
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| missing("add", path))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing("add", path)),
    }
}

fn remove(doc: &mut Value, tokens: &[String], op: &str, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = parent_of(doc, tokens).ok_or_else(|| missing(op, path))?;
    let removed = match parent {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => parse_index(last)
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| missing(op, path))
}

fn replace(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<(), PatchError> {
    let target = lookup_mut(doc, tokens).ok_or_else(|| missing("replace", path))?;
    *target = value;
    Ok(())
}

fn move_value(
    doc: &mut Value,
    from: &[String],
    to: &[String],
    from_path: &str,
    to_path: &str,
) -> Result<(), PatchError> {
    if from == to {
        return lookup(doc, from)
            .map(|_| ())
            .ok_or_else(|| missing("move", from_path));
    }
    if to.starts_with(from) {
        return Err(PatchError::InvalidDocument(format!(
            "cannot move {from_path:?} into its own child {to_path:?}"
        )));
    }
    let value = remove(doc, from, "move", from_path)?;
    add(doc, to, value, to_path)
}

fn test(doc: &Value, tokens: &[String], expected: &Value, path: &str) -> Result<(), PatchError> {
    match lookup(doc, tokens) {
        Some(actual) if actual == expected => Ok(()),
        Some(_) => Err(PatchError::TestFailed {
            path: path.to_string(),
        }),
        None => Err(missing("test", path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (name, doc, patch, expected document).
    fn successes() -> Vec<(&'static str, Value, Value, Value)> {
        vec![
            (
                "add a member",
                json!({"a": 1}),
                json!([{"op": "add", "path": "/b", "value": [2]}]),
                json!({"a": 1, "b": [2]}),
            ),
            (
                "add inserts into an array",
                json!({"l": ["x", "z"]}),
                json!([{"op": "add", "path": "/l/1", "value": "y"}]),
                json!({"l": ["x", "y", "z"]}),
            ),
            (
                "add appends with -",
                json!({"l": [1]}),
                json!([{"op": "add", "path": "/l/-", "value": {"n": 2}}]),
                json!({"l": [1, {"n": 2}]}),
            ),
            (
                "add replaces an existing member",
                json!({"a": "old"}),
                json!([{"op": "add", "path": "/a", "value": null}]),
                json!({"a": null}),
            ),
            (
                "add at the root replaces the document",
                json!({"a": 1}),
                json!([{"op": "add", "path": "", "value": [1]}]),
                json!([1]),
            ),
            (
                "remove a member and an element",
                json!({"a": 1, "b": 2, "l": [1, 2, 3]}),
                json!([{"op": "remove", "path": "/b"}, {"op": "remove", "path": "/l/0"}]),
                json!({"a": 1, "l": [2, 3]}),
            ),
            (
                "replace",
                json!({"spec": {"replicas": 1}}),
                json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]),
                json!({"spec": {"replicas": 5}}),
            ),
            (
                "move a member",
                json!({"from": {"k": "v"}, "to": {}}),
                json!([{"op": "move", "from": "/from/k", "path": "/to/k"}]),
                json!({"from": {}, "to": {"k": "v"}}),
            ),
            (
                "move an array element",
                json!({"l": ["a", "b", "c", "d"]}),
                json!([{"op": "move", "from": "/l/1", "path": "/l/3"}]),
                json!({"l": ["a", "c", "d", "b"]}),
            ),
            (
                "copy",
                json!({"a": {"x": 1}}),
                json!([{"op": "copy", "from": "/a", "path": "/b"}]),
                json!({"a": {"x": 1}, "b": {"x": 1}}),
            ),
            (
                "test then replace",
                json!({"s": "v", "n": 3}),
                json!([{"op": "test", "path": "/s", "value": "v"},
                       {"op": "replace", "path": "/n", "value": 4}]),
                json!({"s": "v", "n": 4}),
            ),
            (
                "escaped pointer tokens (annotation keys with / and ~)",
                json!({"metadata": {"annotations": {"example.com/a~b": "1"}}}),
                json!([{"op": "replace", "path": "/metadata/annotations/example.com~1a~0b", "value": "2"}]),
                json!({"metadata": {"annotations": {"example.com/a~b": "2"}}}),
            ),
            (
                "kubectl patch --type json replacing a container image",
                json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}),
                json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"}]),
                json!({"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}),
            ),
            ("empty patch", json!({"a": 1}), json!([]), json!({"a": 1})),
        ]
    }

    #[test]
    fn operations_apply() {
        for (name, doc, patch, expected) in successes() {
            let got = json_patch(&doc, &patch);
            assert_eq!(got, Ok(expected), "{name}");
        }
    }

    #[test]
    fn failures_are_errors_and_atomic() {
        let doc = json!({"a": 1, "l": [1], "s": "x"});
        let cases = vec![
            (json!({"op": "add"}), "not an array"),
            (
                json!([{"op": "remove", "path": "/missing"}]),
                "path not found",
            ),
            (
                json!([{"op": "replace", "path": "/nope", "value": 1}]),
                "path not found",
            ),
            (
                json!([{"op": "add", "path": "/x/y", "value": 1}]),
                "no parent",
            ),
            (
                json!([{"op": "add", "path": "/l/5", "value": 1}]),
                "index past end",
            ),
            (
                json!([{"op": "add", "path": "/l/01", "value": 1}]),
                "leading zero",
            ),
            (
                json!([{"op": "test", "path": "/a", "value": 2}]),
                "test failed",
            ),
            (
                json!([{"op": "add", "path": "/b", "value": 2},
                    {"op": "test", "path": "/s", "value": "y"}]),
                "atomic",
            ),
            (json!([{"op": "jump", "path": "/a"}]), "unknown op"),
            (json!([{"op": "add", "path": "/b"}]), "no value"),
            (json!([{"path": "/a"}]), "no op"),
            (
                json!([{"op": "add", "path": "a", "value": 1}]),
                "pointer without /",
            ),
            (
                json!([{"op": "add", "path": "/a~2", "value": 1}]),
                "bad escape",
            ),
            (
                json!([{"op": "move", "from": "/l", "path": "/l/0"}]),
                "move into child",
            ),
            (
                json!([{"op": "copy", "from": "/zz", "path": "/b"}]),
                "copy missing",
            ),
            (
                json!([{"op": "add", "path": "/s/x", "value": 1}]),
                "scalar parent",
            ),
            (json!(["add"]), "operation not an object"),
        ];
        for (patch, name) in cases {
            assert!(json_patch(&doc, &patch).is_err(), "{name}");
        }
    }

    #[test]
    fn error_messages() {
        let doc = json!({"a": 1});
        let test_failed = json_patch(&doc, &json!([{"op": "test", "path": "/a", "value": 2}]));
        assert_eq!(
            test_failed.map_err(|e| e.to_string()),
            Err("json patch \"test\" operation failed: value at /a differs".to_string())
        );
        let missing = json_patch(&doc, &json!([{"op": "remove", "path": "/b"}]));
        assert_eq!(
            missing.map_err(|e| e.to_string()),
            Err("json patch remove operation does not apply: doc is missing path: /b".to_string())
        );
    }
}
