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
    let started = std::time::Instant::now();
    let created = api.ok(&["apply", "-f", "-"], Some(CRD));
    assert!(
        created.contains("crontabs.stable.example.com created"),
        "{created}"
    );
    wait_established(&api, "crontabs.stable.example.com");
    eprintln!(
        "CRD applied and established (two kubectl runs) in {:?}",
        started.elapsed()
    );
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

    // kubectl validates strictly by default: the server refuses the unknown field.
    let strict = api.fails(&["apply", "-f", "-"], Some(CRONTAB));
    assert!(
        strict.contains("CronTab in version \"v1\" cannot be handled as a CronTab: strict decoding error: unknown field \"spec.unknownField\""),
        "{strict}"
    );
    api.fails(&["get", "crontab", "nightly"], None);
    let applied = api.ok(&["apply", "--validate=false", "-f", "-"], Some(CRONTAB));
    assert!(
        applied.contains("crontab.stable.example.com/nightly created"),
        "{applied}"
    );

    // Client-side apply of a changed manifest: a merge patch.
    let changed = CRONTAB
        .replace("  unknownField: dropped\n", "")
        .replace("0 3 * * *", "0 4 * * *");
    let configured = api.ok(&["apply", "-f", "-"], Some(&changed));
    assert!(
        configured.contains("crontab.stable.example.com/nightly configured"),
        "{configured}"
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
        table.contains("nightly") && table.contains("0 4 * * *"),
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

    // A watch open on the custom resources ends once the CRD is gone.
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&api.kubeconfig)
        .args([
            "get",
            "--raw",
            "/apis/stable.example.com/v1/crontabs?watch=true",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn kubectl watch");
    let deleted = api.ok(
        &[
            "delete",
            "crd",
            "crontabs.stable.example.com",
            "--timeout=30s",
        ],
        None,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while watch.try_wait().expect("watch status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = watch.kill();
            panic!("the watch of crontabs outlived its CRD");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut events = String::new();
    std::io::Read::read_to_string(&mut watch.stdout.take().expect("stdout"), &mut events)
        .expect("watch output");
    assert!(events.contains("\"DELETED\""), "{events}");
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

const GADGETS_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.toys.example.com
spec:
  group: toys.example.com
  scope: Cluster
  names:
    plural: gadgets
    kind: Gadget
  versions:
  - name: v1beta1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema: &schema
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
              extra:
                type: object
                x-kubernetes-preserve-unknown-fields: true
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name:
                      type: string
                    port:
                      type: integer
          status:
            type: object
            properties:
              phase:
                type: string
  - name: v1
    served: true
    storage: false
    subresources:
      status: {}
    schema:
      openAPIV3Schema: *schema
"#;

const GADGET: &str = r#"
apiVersion: toys.example.com/v1
kind: Gadget
metadata:
  name: g1
spec:
  size: 2
  extra:
    anything: kept
    nested: {deep: true}
  ports:
  - name: http
    port: 80
"#;

/// Same kind as the gadgets CRD, in the same group: its names are not accepted.
const CONFLICTING_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.toys.example.com
spec:
  group: toys.example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Gadget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
"#;

#[test]
fn versions_scopes_subresources_and_name_conflicts() {
    if !require_kubectl("versions_scopes_subresources_and_name_conflicts") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(&["apply", "-f", "-"], Some(GADGETS_CRD));
    wait_established(&api, "gadgets.toys.example.com");

    let applied = api.ok(
        &["apply", "--server-side", "--field-manager=test", "-f", "-"],
        Some(GADGET),
    );
    assert!(
        applied.contains("gadget.toys.example.com/g1 serverside-applied"),
        "{applied}"
    );
    // Cluster-scoped, and readable at both served versions.
    let beta = api.ok(
        &[
            "get",
            "gadgets.v1beta1.toys.example.com",
            "g1",
            "-o",
            "jsonpath={.apiVersion} {.metadata.namespace}",
        ],
        None,
    );
    assert_eq!(beta.trim(), "toys.example.com/v1beta1");
    let v1 = api.ok(
        &[
            "get",
            "gadgets.v1.toys.example.com",
            "g1",
            "-o",
            "jsonpath={.apiVersion} {.spec.extra.nested.deep}",
        ],
        None,
    );
    assert_eq!(v1, "toys.example.com/v1 true");
    let listed = api.ok(
        &[
            "get",
            "gadgets.v1.toys.example.com",
            "-o",
            "jsonpath={.items[*].apiVersion}",
        ],
        None,
    );
    assert_eq!(listed, "toys.example.com/v1");

    // Server-side apply again: the list-map entry is merged by name.
    let second = GADGET.replace("port: 80", "port: 8080");
    api.ok(
        &["apply", "--server-side", "--field-manager=test", "-f", "-"],
        Some(&second),
    );
    let ports = api.ok(
        &[
            "get",
            "gadget",
            "g1",
            "-o",
            "jsonpath={.spec.ports[*].port}",
        ],
        None,
    );
    assert_eq!(ports, "8080");

    // Status only through the status subresource.
    api.ok(
        &[
            "patch",
            "gadget",
            "g1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Ready"}}"#,
        ],
        None,
    );
    api.ok(
        &[
            "patch",
            "gadget",
            "g1",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Ignored"},"spec":{"size":3}}"#,
        ],
        None,
    );
    let state = api.ok(
        &[
            "get",
            "gadget",
            "g1",
            "-o",
            "jsonpath={.status.phase} {.spec.size} {.metadata.generation}",
        ],
        None,
    );
    assert_eq!(state, "Ready 3 3");
    api.ok(
        &[
            "patch",
            "gadget",
            "g1",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/size","value":5}]"#,
        ],
        None,
    );
    let typed = api.fails(
        &[
            "patch",
            "gadget",
            "g1",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":"big"}}"#,
        ],
        None,
    );
    assert!(
        typed.contains("spec.size: Invalid value: \"string\""),
        "{typed}"
    );
    assert_eq!(
        api.ok(
            &["get", "gadget", "g1", "-o", "jsonpath={.spec.size}"],
            None
        ),
        "5"
    );

    // A CRD whose kind is taken in its group is not served.
    api.ok(&["apply", "-f", "-"], Some(CONFLICTING_CRD));
    api.ok(
        &[
            "wait",
            "--for=condition=NamesAccepted=false",
            "--timeout=30s",
            "crd/widgets.toys.example.com",
        ],
        None,
    );
    let reason = api.ok(
        &["get", "crd", "widgets.toys.example.com", "-o", r#"jsonpath={.status.conditions[?(@.type=="NamesAccepted")].reason}: {.status.conditions[?(@.type=="NamesAccepted")].message}"#],
        None,
    );
    assert_eq!(reason, "KindConflict: \"Gadget\" is already in use");
    let fresh_cache = tempfile::tempdir().expect("temp dir");
    let cache_dir = format!("--cache-dir={}", fresh_cache.path().display());
    let unserved = api.fails(&[&cache_dir, "get", "widgets"], None);
    assert!(
        unserved.contains("doesn't have a resource type"),
        "{unserved}"
    );

    // deletecollection, then the CRDs go.
    api.ok(
        &["create", "-f", "-"],
        Some(&GADGET.replace("name: g1", "name: g2")),
    );
    api.ok(&["delete", "gadgets", "--all"], None);
    let none = api.ok(&["get", "gadgets", "-o", "name"], None);
    assert!(none.trim().is_empty(), "{none}");
    api.ok(
        &[
            "delete",
            "crd",
            "widgets.toys.example.com",
            "gadgets.toys.example.com",
        ],
        None,
    );
}

#[test]
fn crds_survive_a_restart_and_custom_resources_are_watched() {
    if !require_kubectl("crds_survive_a_restart_and_custom_resources_are_watched") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(&["apply", "-f", "-"], Some(GADGETS_CRD));
    wait_established(&api, "gadgets.toys.example.com");
    api.ok(&["create", "-f", "-"], Some(GADGET));

    // A watch at the non-storage version sees objects at that version.
    let events = api.ok(
        &[
            "get",
            "--raw",
            "/apis/toys.example.com/v1/gadgets?watch=true&timeoutSeconds=1",
        ],
        None,
    );
    let first: serde_json::Value =
        serde_json::from_str(events.lines().next().unwrap_or("")).expect("a watch event");
    assert_eq!(first["type"], "ADDED", "{events}");
    assert_eq!(
        first["object"]["apiVersion"], "toys.example.com/v1",
        "{events}"
    );
    assert_eq!(first["object"]["metadata"]["name"], "g1", "{events}");

    // Updating the CRD: a printer column and a new defaulted field (shown on the existing
    // object, as kube defaults on read).
    let with_column = GADGETS_CRD
        .replace(
            "  - name: v1\n    served: true\n    storage: false\n",
            "  - name: v1\n    served: true\n    storage: false\n    additionalPrinterColumns:\n    - name: Size\n      type: integer\n      jsonPath: .spec.size\n",
        )
        .replace(
            "              size:\n                type: integer\n",
            "              size:\n                type: integer\n              color:\n                type: string\n                default: red\n",
        );
    assert_ne!(with_column, GADGETS_CRD);
    api.ok(&["apply", "-f", "-"], Some(&with_column));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let table = api.ok(&["get", "gadgets.v1.toys.example.com"], None);
        if table.lines().next().is_some_and(|h| h.contains("SIZE")) {
            assert!(table.contains("g1") && table.contains('2'), "{table}");
            let color = api.ok(
                &["get", "gadget", "g1", "-o", "jsonpath={.spec.color}"],
                None,
            );
            assert_eq!(color, "red");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "column never served: {table}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let dir = api.stop();
    let api = TestApiserver::start_in(dir);
    let size = api.ok(
        &["get", "gadget", "g1", "-o", "jsonpath={.spec.size}"],
        None,
    );
    assert_eq!(size, "2");
    api.ok(&["delete", "crd", "gadgets.toys.example.com"], None);
}
