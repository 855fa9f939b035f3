//! A Job's `successPolicy` (Indexed Jobs): whether the succeeded indexes satisfy a rule
//! (`succeededIndexes`, `succeededCount`, or both), and kube's message naming the rule.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::SuccessPolicy;

use super::parse_indexes;

/// "Matched rules at index N" for the first rule `succeeded` satisfies.
pub fn matched(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    if succeeded.is_empty() {
        return None;
    }
    let rule_met = |(index, rule): (usize, &k8s_openapi::api::batch::v1::SuccessPolicyRule)| {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(text), count) => {
                let required: BTreeSet<i32> = parse_indexes(text)
                    .into_iter()
                    .filter(|i| *i < completions)
                    .collect();
                let done = required.intersection(succeeded).count();
                !required.is_empty()
                    && (done == required.len()
                        || count.is_some_and(|c| done >= usize::try_from(c).unwrap_or(0)))
            }
            (None, Some(count)) => succeeded.len() >= usize::try_from(count).unwrap_or(0),
            (None, None) => false,
        };
        met.then(|| format!("Matched rules at index {index}"))
    };
    policy?.rules.iter().enumerate().find_map(rule_met)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_match_on_indexes_and_counts() {
        let policy: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0,2-3"},
            {"succeededIndexes": "4-7", "succeededCount": 2},
            {"succeededCount": 4},
        ]}))
        .expect("policy");
        let check = |set: &[i32]| matched(Some(&policy), 8, &set.iter().copied().collect());
        assert_eq!(check(&[0, 2]), None);
        assert_eq!(check(&[0, 2, 3]), Some("Matched rules at index 0".into()));
        assert_eq!(check(&[1, 5, 7]), Some("Matched rules at index 1".into()));
        assert_eq!(
            check(&[1, 2, 3, 5, 6]),
            Some("Matched rules at index 1".into())
        );
        assert_eq!(
            check(&[0, 1, 2, 4]),
            Some("Matched rules at index 2".into())
        );
        assert_eq!(check(&[]), None);
        assert_eq!(matched(None, 8, &BTreeSet::from([0])), None);
    }
}
