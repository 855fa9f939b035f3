//! Unit tests of the served-type plan, reads at other versions, the cleanup finalizer and
//! the custom scale.

use super::controller::ServingPlan;
use super::hooks::scaled;
use super::*;
use crate::apiserver::catalog::Catalog;
use crate::apiserver::crd::ScaleConfig;
use crate::apiserver::rest::ObjectRef;
use serde_json::{Value, json};

fn crd(plural: &str, versions: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com"), "uid": plural},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": plural, "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": versions},
    })
}

fn version(name: &str, served: bool, storage: bool) -> Value {
    json!({"name": name, "served": served, "storage": storage,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 1}}}}}},
        "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]})
}

#[test]
fn plan_serves_every_served_version_storage_first() {
    let widgets = crd(
        "widgets",
        json!([
            version("v1beta1", true, true),
            version("v1", true, false),
            version("v0", false, false)
        ]),
    );
    let plan = ServingPlan::of(&[&widgets], &ServedCrds::default());
    let builtins = builtin_resources().len();
    let added: Vec<&str> = plan.resources[builtins..]
        .iter()
        .map(|r| r.version.as_str())
        .collect();
    assert_eq!(added, vec!["v1beta1", "v1"]);
    assert_eq!(plan.types.len(), 2);
    assert!(plan.types.iter().all(|t| t.storage_version == "v1beta1"));
    assert_eq!(plan.types[0].columns[0].name, "Size");
    assert_eq!(plan.resources[builtins].short_names, vec!["wd"]);
    assert_eq!(plan.resources[builtins].categories, vec!["all"]);
    assert_eq!(plan.schemas.len(), 3);
    let catalog = Catalog::new(plan.resources);
    assert!(catalog.lookup("example.com", "v1", "widgets").is_some());
    assert!(catalog.lookup("example.com", "v0", "widgets").is_none());
}

#[test]
fn watch_tokens_carry_over_rebuilds() {
    let widgets = crd("widgets", json!([version("v1", true, true)]));
    let first = ServedCrds {
        types: ServingPlan::of(&[&widgets], &ServedCrds::default()).types,
        openapi: None,
    };
    let second = ServingPlan::of(&[&widgets], &first);
    let resource = &second.types[0].custom.resource;
    first.withdrawn(resource).cancel();
    assert!(second.types[0].withdrawn.is_cancelled());
    let pods = builtin_resources()
        .into_iter()
        .find(|r| r.plural == "pods")
        .expect("pods");
    assert!(!first.withdrawn(&pods).is_cancelled());
}

#[test]
fn built_in_resources_win_over_crds() {
    let mut hijack = crd("deployments", json!([version("v1", true, true)]));
    hijack["spec"]["group"] = json!("apps");
    hijack["spec"]["names"]["kind"] = json!("Deployment");
    let plan = ServingPlan::of(&[&hijack], &ServedCrds::default());
    assert!(plan.types.is_empty());
    let mut other_version = crd("roles", json!([version("v1beta1", true, true)]));
    other_version["spec"]["group"] = json!("rbac.authorization.k8s.io");
    let plan = ServingPlan::of(&[&other_version], &ServedCrds::default());
    assert!(
        plan.types.is_empty(),
        "would share the built-in roles' storage"
    );
    assert!(plan.schemas.is_empty());
    assert_eq!(plan.resources.len(), builtin_resources().len());
}

#[test]
fn objects_are_stored_at_the_storage_version_and_read_at_the_requested_one() {
    let widgets = crd(
        "widgets",
        json!([version("v1beta1", true, true), version("v1", true, false)]),
    );
    let plan = ServingPlan::of(&[&widgets], &ServedCrds::default());
    let v1 = plan
        .types
        .iter()
        .find(|t| t.custom.resource.version == "v1")
        .expect("v1 served");
    let stored = json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
        "metadata": {"name": "a"}, "spec": {"gone": true}});
    let read = read_form(Some(v1), &v1.custom.resource, &stored).expect("converted");
    assert_eq!(read["apiVersion"], "example.com/v1");
    assert_eq!(read["metadata"], stored["metadata"]);
    assert_eq!(
        read["spec"],
        json!({"size": 1}),
        "pruned and defaulted on read"
    );
    assert!(read_form(Some(v1), &v1.custom.resource, &read).is_none());
    let pods = builtin_resources()
        .into_iter()
        .find(|r| r.plural == "pods")
        .expect("pods");
    let pod = json!({"apiVersion": "v1", "kind": "Pod"});
    assert!(read_form(None, &pods, &pod).is_none());
}

#[test]
fn crds_get_the_cleanup_finalizer_on_first_delete_only() {
    let all = builtin_resources();
    let crds = all
        .iter()
        .find(|r| is_crd_resource(r))
        .expect("crd resource");
    let pods = all.iter().find(|r| r.plural == "pods").expect("pods");
    let mut finalizers = Vec::new();
    add_deletion_finalizer(crds, &json!({"metadata": {}}), &mut finalizers);
    assert_eq!(finalizers, vec![CLEANUP_FINALIZER]);
    add_deletion_finalizer(crds, &json!({"metadata": {}}), &mut finalizers);
    assert_eq!(finalizers.len(), 1);
    let mut none = Vec::new();
    add_deletion_finalizer(pods, &json!({"metadata": {}}), &mut none);
    let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
    add_deletion_finalizer(crds, &deleting, &mut none);
    assert!(none.is_empty());
}

#[test]
fn scale_writes_the_spec_replicas_path() {
    let config = ScaleConfig {
        spec_replicas_path: ".spec.size".into(),
        status_replicas_path: ".status.size".into(),
        label_selector_path: None,
    };
    let all = builtin_resources();
    let resource = &all[0];
    let at = ObjectRef {
        resource,
        namespace: "default",
        name: "a",
    };
    let current = json!({"metadata": {"name": "a"}, "spec": {"size": 1}});
    let patch = json!({"spec": {"replicas": 3}});
    let out = scaled(
        &current,
        &config,
        "patch",
        "application/merge-patch+json",
        &patch,
        at,
    )
    .expect("scaled");
    assert_eq!(out["spec"]["size"], 3);
    let negative = json!({"spec": {"replicas": -1}});
    let refused = scaled(&current, &config, "update", "", &negative, at).expect_err("negative");
    assert_eq!(refused.code, 422);
}
