//! CustomResourceDefinitions through kubectl: a CRD applied and established, custom resources
//! applied, listed with their printer columns, defaulted and pruned, refused when invalid,
//! scaled through the scale subresource, explained from the schema, listed by api-resources,
//! and removed with their CRD; invalid CRDs refused with 422.

use super::harness::{TestApiserver, require_kubectl};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the cron job runs.
            required: [cronSpec]
            properties:
              cronSpec:
                type: string
                description: The schedule, in cron format.
              image:
                type: string
                default: busybox
              replicas:
                type: integer
                minimum: 0
                default: 1
              policy:
                type: string
                enum: [Allow, Forbid]
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

const CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: nightly
  namespace: default
spec:
  cronSpec: "0 3 * * *"
  policy: Allow
  unknownField: dropped
"#;

const BAD_CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: broken
  namespace: default
spec:
  policy: Sometimes
"#;

const BAD_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: wrong.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: widgets
    kind: Widget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
"#;

fn wait_established(api: &TestApiserver, crd: &str) {
    api.ok(
        &[
            "wait",
            "--for",
            "condition=established",
            "--timeout=30s",
            &format!("crd/{crd}"),
        ],
        None,
    );
}

#[test]
fn custom_resources_served_from_a_crd() {
    if !require_kubectl("custom_resources_served_from_a_crd") {
        return;
    }
    let api = TestApiserver::start();
    let created = api.ok(&["apply", "-f", "-"], Some(CRD));
    assert!(
        created.contains("crontabs.stable.example.com created"),
        "{created}"
    );
    wait_established(&api, "crontabs.stable.example.com");
    let status = api.ok(
        &[
            "get",
            "crd",
            "crontabs.stable.example.com",
            "-o",
            "jsonpath={.status.acceptedNames.kind} {.status.storedVersions}",
        ],
        None,
    );
    assert_eq!(status, "CronTab [\"v1\"]");

    let applied = api.ok(&["apply", "-f", "-"], Some(CRONTAB));
    assert!(
        applied.contains("crontab.stable.example.com/nightly created"),
        "{applied}"
    );

    let table = api.ok(&["get", "crontabs"], None);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, vec!["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    assert!(
        table.contains("nightly") && table.contains("0 3 * * *"),
        "{table}"
    );
    let short = api.ok(&["get", "ct", "-o", "name"], None);
    assert_eq!(short.trim(), "crontab.stable.example.com/nightly");

    let yaml = api.ok(&["get", "crontab", "nightly", "-o", "yaml"], None);
    assert!(yaml.contains("image: busybox"), "default applied: {yaml}");
    assert!(yaml.contains("replicas: 1"), "default applied: {yaml}");
    let spec = api.ok(
        &["get", "crontab", "nightly", "-o", "jsonpath={.spec}"],
        None,
    );
    assert!(
        !spec.contains("unknownField"),
        "unknown field pruned: {spec}"
    );

    let refused = api.fails(&["apply", "-f", "-"], Some(BAD_CRONTAB));
    assert!(refused.contains("is invalid"), "{refused}");
    assert!(
        refused.contains("spec.cronSpec: Required value"),
        "{refused}"
    );
    assert!(
        refused.contains("spec.policy: Unsupported value: \"Sometimes\""),
        "{refused}"
    );
    api.fails(&["get", "crontab", "broken"], None);

    let scaled = api.ok(&["scale", "crontab", "nightly", "--replicas=3"], None);
    assert!(scaled.contains("scaled"), "{scaled}");
    let replicas = api.ok(
        &[
            "get",
            "crontab",
            "nightly",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(replicas, "3");
    let negative = api.fails(&["scale", "crontab", "nightly", "--replicas=-2"], None);
    assert!(!negative.is_empty());

    let merge = api.ok(
        &[
            "patch",
            "crontab",
            "nightly",
            "--type=merge",
            "-p",
            r#"{"spec":{"policy":"Forbid"}}"#,
        ],
        None,
    );
    assert!(merge.contains("patched"), "{merge}");
    let strategic = api.fails(
        &[
            "patch",
            "crontab",
            "nightly",
            "-p",
            r#"{"spec":{"policy":"Allow"}}"#,
        ],
        None,
    );
    assert!(
        strategic.contains("application/strategic-merge-patch+json is not supported"),
        "{strategic}"
    );

    let explained = api.ok(&["explain", "crontab.spec"], None);
    assert!(explained.contains("cronSpec"), "{explained}");
    assert!(
        explained.contains("The schedule, in cron format."),
        "{explained}"
    );

    let resources = api.ok(&["api-resources", "--api-group=stable.example.com"], None);
    assert!(
        resources.contains("crontabs") && resources.contains("ct") && resources.contains("CronTab"),
        "{resources}"
    );
    let all = api.ok(&["get", "all", "-o", "name"], None);
    assert!(all.contains("crontab.stable.example.com/nightly"), "{all}");

    let deleted = api.ok(
        &[
            "delete",
            "crd",
            "crontabs.stable.example.com",
            "--timeout=30s",
        ],
        None,
    );
    assert!(deleted.contains("deleted"), "{deleted}");
    api.fails(&["get", "crd", "crontabs.stable.example.com"], None);
    // kubectl keeps discovery on disk for hours (as against kube-apiserver): a fresh cache
    // sees what the server serves now.
    let fresh_cache = tempfile::tempdir().expect("temp dir");
    let cache_dir = format!("--cache-dir={}", fresh_cache.path().display());
    let gone = api.fails(&[&cache_dir, "get", "crontabs"], None);
    assert!(
        gone.contains("the server doesn't have a resource type \"crontabs\""),
        "{gone}"
    );

    // Recreated: no custom resource survived the deletion.
    api.ok(&["apply", "-f", "-"], Some(CRD));
    wait_established(&api, "crontabs.stable.example.com");
    let empty = api.ok(&["get", "crontabs", "-A", "-o", "name"], None);
    assert!(empty.trim().is_empty(), "{empty}");
    api.ok(&["delete", "crd", "crontabs.stable.example.com"], None);
}

#[test]
fn invalid_crds_are_refused() {
    if !require_kubectl("invalid_crds_are_refused") {
        return;
    }
    let api = TestApiserver::start();
    let refused = api.fails(&["apply", "-f", "-"], Some(BAD_CRD));
    assert!(refused.contains("is invalid"), "{refused}");
    assert!(
        refused.contains("metadata.name: Invalid value: \"wrong.stable.example.com\": must be spec.names.plural+\".\"+spec.group"),
        "{refused}"
    );
    let none = api.ok(&["get", "crds", "-o", "name"], None);
    assert!(none.trim().is_empty(), "{none}");
}
