//! JSON Merge Patch (RFC 7386, `application/merge-patch+json`): objects merge recursively,
//! `null` deletes a member, anything else (lists included) replaces. As kube-apiserver
//! requires, the patch itself must be a JSON object.

use serde_json::{Map, Value};

use super::PatchError;

/// Applies an RFC 7386 merge patch to `doc`.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::InvalidDocument(
            "a merge patch must be a json object".to_string(),
        ));
    }
    Ok(merge_value(doc, patch))
}

fn merge_value(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch_members) = patch else {
        return patch.clone();
    };
    let mut result = target.as_object().cloned().unwrap_or_else(Map::new);
    for (key, value) in patch_members {
        if value.is_null() {
            result.remove(key);
        } else {
            let merged = merge_value(result.get(key).unwrap_or(&Value::Null), value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patches_apply() {
        let cases = vec![
            (
                "kubectl label adds a label",
                json!({"metadata": {"name": "p", "labels": {"app": "web"}}}),
                json!({"metadata": {"labels": {"tier": "front"}}}),
                json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}}}),
            ),
            (
                "kubectl label app- removes a label",
                json!({"metadata": {"labels": {"app": "web", "tier": "front"}}}),
                json!({"metadata": {"labels": {"app": null}}}),
                json!({"metadata": {"labels": {"tier": "front"}}}),
            ),
            (
                "kubectl annotate creates the annotations map",
                json!({"metadata": {"name": "p"}}),
                json!({"metadata": {"annotations": {"note": "hi"}}}),
                json!({"metadata": {"name": "p", "annotations": {"note": "hi"}}}),
            ),
            (
                "kubectl scale",
                json!({"spec": {"replicas": 1, "template": {}}}),
                json!({"spec": {"replicas": 3}}),
                json!({"spec": {"replicas": 3, "template": {}}}),
            ),
            (
                "lists replace",
                json!({"l": [1, 2, 3]}),
                json!({"l": [4]}),
                json!({"l": [4]}),
            ),
            (
                "object replaces scalar, nulls inside new objects vanish",
                json!({"a": "s"}),
                json!({"a": {"b": 1, "c": null}}),
                json!({"a": {"b": 1}}),
            ),
            (
                "deleting a missing member is a no-op",
                json!({"a": 1}),
                json!({"zz": null}),
                json!({"a": 1}),
            ),
            ("empty patch", json!({"a": 1}), json!({}), json!({"a": 1})),
        ];
        for (name, doc, patch, expected) in cases {
            assert_eq!(merge_patch(&doc, &patch), Ok(expected), "{name}");
        }
    }

    #[test]
    fn non_object_patches_are_rejected() {
        for patch in [json!([]), json!("x"), json!(null), json!(3)] {
            assert!(merge_patch(&json!({}), &patch).is_err(), "{patch}");
        }
    }
}
