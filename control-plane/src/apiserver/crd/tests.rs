//! Data-driven tests of the CRD library around `crontabs.stable.example.com`.

use chrono::TimeZone;
use serde_json::{Value, json};

use super::*;

fn crontab_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string", "minLength": 1, "maxLength": 20},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                    "color": {"type": "string", "enum": ["red", "blue"]},
                    "port": {"x-kubernetes-int-or-string": true},
                    "note": {"type": "string", "nullable": true},
                    "ratio": {"type": "number", "exclusiveMaximum": true, "maximum": 1, "multipleOf": 0.25},
                    "since": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 3},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "port": {"type": "integer", "format": "int32", "default": 80}
                            }
                        }
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-map-type": "granular"},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                              "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
                    "settings": {"type": "object", "default": {}, "properties": {"mode": {"type": "string", "default": "fast"}}},
                    "choice": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                               "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}
                },
                "x-kubernetes-validations": [{"rule": "self.replicas <= 10"}]
            },
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}}
        }
    })
}

fn crontab_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"], "categories": ["all"]},
            "versions": [
                {
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": crontab_schema()},
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                    "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1, "description": "wanted"}
                    ]
                },
                {"name": "v1beta1", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    })
}

fn schema() -> Schema {
    parse_schema(&crontab_schema(), "openAPIV3Schema").expect("valid schema")
}

fn cr(spec: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "c", "namespace": "default"}, "spec": spec})
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

fn crd_errors(crd: &Value) -> Vec<String> {
    messages(&validate_crd(crd, None))
}

/// Replaces the v1 schema of the crontab CRD.
fn with_schema(schema: Value) -> Value {
    let mut crd = crontab_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = schema;
    crd
}

#[test]
fn served_resources_of_crontab() {
    let served = served_resources(&crontab_crd()).expect("served");
    assert_eq!(served.len(), 1);
    let r = &served[0];
    assert_eq!(r.api_version(), "stable.example.com/v1");
    assert_eq!(
        (r.kind.as_str(), r.plural.as_str(), r.singular.as_str()),
        ("CronTab", "crontabs", "crontab")
    );
    assert!(r.namespaced);
    assert_eq!(r.short_names, vec!["ct"]);
    assert_eq!(r.categories, vec!["all"]);
    assert_eq!(r.subresources, vec!["status", "scale"]);
    assert!(r.verbs.iter().any(|v| v == "deletecollection"));
    assert_eq!(r.verbs.len(), 8);
}

#[test]
fn storage_version_and_columns() {
    let crd = crontab_crd();
    assert_eq!(storage_version(&crd).as_deref(), Some("v1"));
    let cols = printer_columns(&crd, "v1");
    assert_eq!(cols.len(), 2);
    assert_eq!(cols[1].name, "Replicas");
    assert_eq!(cols[1].priority, 1);
    assert_eq!(cols[1].json_path, ".spec.replicas");
    let default_cols = printer_columns(&crd, "v1beta1");
    assert_eq!(default_cols[0].name, "Age");
    assert_eq!(default_cols[0].json_path, ".metadata.creationTimestamp");
}

#[test]
fn good_crd_is_valid() {
    assert_eq!(crd_errors(&crontab_crd()), Vec::<String>::new());
}

/// A change that breaks the crontab CRD.
type Mutation = Box<dyn Fn(&mut Value)>;

#[test]
fn bad_crds_give_kube_messages() {
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "name",
            Box::new(|c| c["metadata"]["name"] = json!("crontabs")),
            "metadata.name: Invalid value: \"crontabs\": must be spec.names.plural+\".\"+spec.group",
        ),
        (
            "group dot",
            Box::new(|c| {
                c["spec"]["group"] = json!("example");
                c["metadata"]["name"] = json!("crontabs.example");
            }),
            "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
        ),
        (
            "plural case",
            Box::new(|c| {
                c["spec"]["names"]["plural"] = json!("CronTabs");
                c["metadata"]["name"] = json!("CronTabs.stable.example.com");
            }),
            "spec.names.plural: Invalid value: \"CronTabs\": a DNS-1035 label",
        ),
        (
            "no kind",
            Box::new(|c| c["spec"]["names"]["kind"] = json!("")),
            "spec.names.kind: Required value",
        ),
        (
            "scope",
            Box::new(|c| c["spec"]["scope"] = json!("Global")),
            "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\"",
        ),
        (
            "two storage",
            Box::new(|c| c["spec"]["versions"][1]["storage"] = json!(true)),
            "spec.versions: Invalid value: [\"v1\",\"v1beta1\"]: must have exactly one version marked as storage version",
        ),
        (
            "dup version",
            Box::new(|c| c["spec"]["versions"][1]["name"] = json!("v1")),
            "spec.versions: Invalid value: [\"v1\",\"v1\"]: must contain unique version names",
        ),
        (
            "no schema",
            Box::new(|c| {
                if let Some(v) = c["spec"]["versions"][1].as_object_mut() {
                    v.remove("schema");
                }
            }),
            "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required",
        ),
        (
            "scale path",
            Box::new(|c| {
                c["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
                    json!(".status.replicas")
            }),
            "spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec",
        ),
        (
            "column type",
            Box::new(|c| {
                c["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("text")
            }),
            "spec.versions[0].additionalPrinterColumns[0].type: Unsupported value: \"text\"",
        ),
    ];
    for (name, mutate, expected) in cases {
        let mut crd = crontab_crd();
        mutate(&mut crd);
        let errs = crd_errors(&crd);
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "{name}: {errs:#?}"
        );
    }
}

#[test]
fn non_structural_schemas_are_rejected() {
    let root = "spec.versions[0].schema.openAPIV3Schema";
    let cases = [
        (
            json!({"properties": {}}),
            format!("{root}.type: Required value: must not be empty at the root"),
        ),
        (
            json!({"type": "string"}),
            format!("{root}.type: Invalid value: \"string\": must be object at the root"),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
            format!(
                "{root}.properties[spec].type: Required value: must not be empty for specified object fields"
            ),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "array", "items": {}}}}),
            format!(
                "{root}.properties[spec].items.type: Required value: must not be empty for specified array items"
            ),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
            format!(
                "{root}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            ),
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            format!(
                "{root}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            ),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object", "anyOf": [{"properties": {"b": {"type": "string"}}}]}}}),
            format!("{root}.properties[spec].anyOf[0].properties[b]: Forbidden"),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}}}),
            format!(
                "{root}.properties[spec].properties[a].default: Invalid value: \"x\": default in body must be of type integer: \"string\""
            ),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "object", "default": {"a": 1}, "properties": {"b": {"type": "integer"}}}}}),
            format!(
                "{root}.properties[spec].default: Invalid value: {{\"a\":1}}: must not have unknown fields"
            ),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}}}}),
            format!(
                "{root}.properties[spec].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            ),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"$ref": "#/definitions/x"}}}),
            format!("{root}.properties[spec].$ref: Forbidden: $ref is not supported"),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "string", "pattern": "("}}}),
            format!(
                "{root}.properties[spec].pattern: Invalid value: \"(\": must be a valid regular expression"
            ),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "string", "minLength": "x"}}}),
            format!("{root}.properties[spec].minLength: Invalid value: \"x\""),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}}),
            format!("{root}.properties[spec].uniqueItems: Forbidden"),
        ),
        (
            json!({"type": "object", "properties": {"spec": {"type": "thing"}}}),
            format!("{root}.properties[spec].type: Unsupported value: \"thing\""),
        ),
        (
            json!(["not", "a", "schema"]),
            format!("{root}: Invalid value"),
        ),
    ];
    for (schema, expected) in cases {
        let errs = crd_errors(&with_schema(schema.clone()));
        assert!(
            errs.iter().any(|e| e.starts_with(&expected)),
            "{schema}: want {expected}, got {errs:#?}"
        );
    }
}

#[test]
fn int_or_string_junctors_are_structural() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}}}});
    assert_eq!(crd_errors(&with_schema(schema)), Vec::<String>::new());
}

#[test]
fn crd_update_rules() {
    let old = crontab_crd();
    let mut new = crontab_crd();
    new["spec"]["scope"] = json!("Cluster");
    let errs = messages(&validate_crd(&new, Some(&old)));
    assert!(
        errs.contains(&"spec.scope: Invalid value: \"Cluster\": field is immutable".to_string()),
        "{errs:?}"
    );

    let mut stored = crontab_crd();
    stored["status"] = json!({"storedVersions": ["v1alpha1", "v1"]});
    let errs = messages(&validate_crd(&crontab_crd(), Some(&stored)));
    assert!(
        errs.iter().any(|e| e.starts_with(
            "status.storedVersions[0]: Invalid value: \"v1alpha1\": must appear in spec.versions"
        )),
        "{errs:?}"
    );
}

#[test]
fn status_written_by_server() {
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
        .single()
        .expect("time");
    let mut crd = crontab_crd();
    let status = crd_status(&crd, now);
    assert_eq!(
        status["acceptedNames"],
        json!({"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList", "shortNames": ["ct"], "categories": ["all"]})
    );
    assert_eq!(status["storedVersions"], json!(["v1"]));
    assert_eq!(status["conditions"][0]["type"], "NamesAccepted");
    assert_eq!(status["conditions"][1]["type"], "Established");
    assert_eq!(status["conditions"][1]["status"], "True");
    assert_eq!(
        status["conditions"][1]["lastTransitionTime"],
        "2026-01-02T03:04:05Z"
    );

    crd["status"] = status;
    crd["spec"]["versions"][0]["storage"] = json!(false);
    crd["spec"]["versions"][1]["storage"] = json!(true);
    let later = now + chrono::Duration::hours(1);
    let status = crd_status(&crd, later);
    assert_eq!(status["storedVersions"], json!(["v1", "v1beta1"]));
    assert_eq!(
        status["conditions"][1]["lastTransitionTime"],
        "2026-01-02T03:04:05Z"
    );
}

#[test]
fn valid_custom_resources_pass() {
    let s = schema();
    let good = [
        json!({"image": "nginx", "cronSpec": "*/5 * * * *", "replicas": 3}),
        json!({"image": "nginx", "port": 8080}),
        json!({"image": "nginx", "port": "http"}),
        json!({"image": "nginx", "note": null}),
        json!({"image": "nginx", "ratio": 0.75, "since": "2026-01-02T03:04:05Z"}),
        json!({"image": "nginx", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
        json!({"image": "nginx", "labels": {"a": "b"}, "choice": {"a": "x"}}),
        json!({"image": "nginx", "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "y"}}}),
    ];
    for spec in good {
        let errs = validate_custom_resource(&s, &cr(spec.clone()));
        assert!(errs.is_empty(), "{spec}: {:?}", messages(&errs));
    }
}

#[test]
fn invalid_custom_resources_give_kube_messages() {
    let s = schema();
    let cases = [
        (
            json!({"image": "nginx", "replicas": "three"}),
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        ),
        (json!({"replicas": 2}), "spec.image: Required value"),
        (
            json!({"image": "nginx", "color": "pink"}),
            "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
        ),
        (
            json!({"image": "nginx", "replicas": 11}),
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        ),
        (
            json!({"image": "nginx", "replicas": 0}),
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        ),
        (
            json!({"image": "nginx", "replicas": 1.5}),
            "spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"",
        ),
        (
            json!({"image": "nginx", "cronSpec": "often"}),
            "spec.cronSpec: Invalid value: \"often\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
        ),
        (
            json!({"image": ""}),
            "spec.image: Invalid value: \"\": spec.image in body should be at least 1 chars long",
        ),
        (
            json!({"image": "a-very-long-image-name-indeed"}),
            "spec.image: Too long: may not be more than 20 bytes",
        ),
        (
            json!({"image": "nginx", "port": true}),
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
        ),
        (
            json!({"image": null}),
            "spec.image: Invalid value: \"null\": spec.image in body must be of type string: \"null\"",
        ),
        (
            json!({"image": "nginx", "ratio": 1}),
            "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1",
        ),
        (
            json!({"image": "nginx", "ratio": 0.3}),
            "spec.ratio: Invalid value: 0.3: spec.ratio in body should be a multiple of 0.25",
        ),
        (
            json!({"image": "nginx", "since": "yesterday"}),
            "spec.since: Invalid value: \"yesterday\": spec.since in body must be of type date-time: \"yesterday\"",
        ),
        (
            json!({"image": "nginx", "tags": ["a", "b", "a"]}),
            "spec.tags[2]: Duplicate value: \"a\"",
        ),
        (
            json!({"image": "nginx", "tags": ["a", "b", "c", "d"]}),
            "spec.tags: Invalid value: [\"a\",\"b\",\"c\",\"d\"]: spec.tags in body should have at most 3 items",
        ),
        (
            json!({"image": "nginx", "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 8080}]}),
            "spec.ports[1]: Duplicate value: {\"name\":\"http\"}",
        ),
        (
            json!({"image": "nginx", "ports": [{"port": 80}]}),
            "spec.ports[0].name: Required value",
        ),
        (
            json!({"image": "nginx", "labels": {"a": 1}}),
            "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
        ),
        (
            json!({"image": "nginx", "choice": {"a": "x", "b": "y"}}),
            "spec.choice: Invalid value: {\"a\":\"x\",\"b\":\"y\"}: spec.choice in body must validate one and only one schema (oneOf)",
        ),
        (
            json!({"image": "nginx", "template": {"spec": {}}}),
            "spec.template.apiVersion: Required value: must not be empty",
        ),
        (
            json!("not an object"),
            "spec: Invalid value: \"string\": spec in body must be of type object: \"string\"",
        ),
    ];
    for (spec, expected) in cases {
        let errs = messages(&validate_custom_resource(&s, &cr(spec.clone())));
        assert!(
            errs.iter().any(|e| e == expected),
            "{spec}: want {expected}, got {errs:#?}"
        );
    }
}

#[test]
fn metadata_name_rules_apply_but_other_metadata_is_ignored() {
    let raw = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}},
        "spec": {"type": "object"}}});
    let s = parse_schema(&raw, "s").expect("schema");
    let mut obj = cr(json!({}));
    assert!(validate_custom_resource(&s, &obj).is_empty());
    obj["metadata"]["name"] = json!("too-long-name");
    let errs = messages(&validate_custom_resource(&s, &obj));
    assert_eq!(
        errs,
        vec!["metadata.name: Too long: may not be more than 5 bytes"]
    );
}

#[test]
fn pruning_drops_unknown_fields() {
    let s = schema();
    let mut obj = cr(json!({
        "image": "nginx",
        "foo": 1,
        "ports": [{"name": "http", "bogus": true}],
        "labels": {"a": "b"},
        "extra": {"anything": {"goes": 1}, "known": {"a": "x", "b": "pruned"}},
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"x": "y"}}, "spec": {"x": "y", "z": 1}, "other": 2}
    }));
    obj["status"] = json!({"replicas": 1, "phase": "Running"});
    obj["topLevel"] = json!(true);
    let mut pruned = prune(&s, &mut obj);
    pruned.sort();
    assert_eq!(
        pruned,
        vec![
            "spec.extra.known.b",
            "spec.foo",
            "spec.ports[0].bogus",
            "spec.template.other",
            "spec.template.spec.z",
            "status.phase",
            "topLevel",
        ]
    );
    assert_eq!(obj["apiVersion"], "stable.example.com/v1");
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert_eq!(obj["spec"]["extra"]["anything"], json!({"goes": 1}));
    assert_eq!(obj["spec"]["labels"], json!({"a": "b"}));
    assert_eq!(
        obj["spec"]["template"]["metadata"],
        json!({"name": "p", "labels": {"x": "y"}})
    );
    assert_eq!(obj["spec"]["template"]["kind"], "Pod");
    assert_eq!(obj["spec"]["ports"], json!([{"name": "http"}]));
}

#[test]
fn preserve_unknown_fields_at_root_keeps_everything() {
    let s = parse_schema(
        &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        "s",
    )
    .expect("schema");
    let mut obj = cr(json!({"anything": [1, 2]}));
    let before = obj.clone();
    assert!(prune(&s, &mut obj).is_empty());
    assert_eq!(obj, before);
}

#[test]
fn defaults_are_applied() {
    let s = schema();
    let mut obj = cr(
        json!({"image": "nginx", "ports": [{"name": "http"}, {"name": "x", "port": 8080}], "note": null, "color": null}),
    );
    apply_schema_defaults(&s, &mut obj);
    assert_eq!(obj["spec"]["replicas"], 1);
    assert_eq!(
        obj["spec"]["ports"],
        json!([{"name": "http", "port": 80}, {"name": "x", "port": 8080}])
    );
    assert_eq!(obj["spec"]["settings"], json!({"mode": "fast"}));
    assert_eq!(obj["spec"]["note"], Value::Null, "nullable null kept");
    assert!(
        obj["spec"].get("color").is_none(),
        "non-nullable null without default dropped"
    );
    assert!(obj.get("status").is_none(), "no default creates status");

    let mut replicas_null = cr(json!({"image": "nginx", "replicas": null}));
    apply_schema_defaults(&s, &mut replicas_null);
    assert_eq!(replicas_null["spec"]["replicas"], 1);
}

#[test]
fn custom_resource_type_and_scale() {
    let crd = crontab_crd();
    let t = CustomResourceType::from_crd(&crd, "v1").expect("type");
    assert!(t.status_subresource && t.storage);
    let cfg = t.scale.clone().expect("scale");
    assert_eq!(cfg.spec_replicas_path, ".spec.replicas");
    assert_eq!(cfg.label_selector_path.as_deref(), Some(".status.selector"));
    assert_eq!(t.printer_columns.len(), 2);
    assert!(matches!(
        CustomResourceType::from_crd(&crd, "v9"),
        Err(CrdError::UnknownVersion(_))
    ));
    assert_eq!(
        CustomResourceType::all_served(&crd).expect("served").len(),
        1
    );

    let mut obj = cr(json!({"image": "nginx", "junk": 1}));
    obj["status"] = json!({"replicas": 2, "selector": "app=cron"});
    assert_eq!(t.prune_and_default(&mut obj), vec!["spec.junk"]);
    assert!(t.validate(&obj).is_empty());

    let scale = scale_from(&obj, &cfg);
    assert_eq!(
        scale,
        json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {"replicas": 1},
            "status": {"replicas": 2, "selector": "app=cron"}
        })
    );
    apply_scale(&mut obj, 5, &cfg).expect("scale applied");
    assert_eq!(obj["spec"]["replicas"], 5);

    let mut empty = json!({"metadata": {"name": "e"}});
    apply_scale(&mut empty, 3, &cfg).expect("parents created");
    assert_eq!(empty["spec"]["replicas"], 3);
    let mut bad = json!({"spec": "oops"});
    assert!(matches!(
        apply_scale(&mut bad, 3, &cfg),
        Err(CrdError::NotAnObject(_))
    ));
}

#[test]
fn malformed_schemas_never_panic() {
    let weird = [
        json!(null),
        json!(1),
        json!({"type": 5}),
        json!({"type": "object", "properties": []}),
        json!({"type": "object", "properties": {"a": 3}}),
        json!({"type": "array", "items": [{}]}),
        json!({"type": "object", "required": "a"}),
        json!({"type": "object", "allOf": {}}),
        json!({"type": "object", "additionalProperties": 7}),
        json!({"type": "integer", "multipleOf": 0}),
        json!({"type": "object", "x-kubernetes-list-type": "bag"}),
        json!({"enum": "x"}),
    ];
    for w in weird {
        let crd = with_schema(w.clone());
        assert!(!validate_crd(&crd, None).is_empty(), "{w}");
        assert!(CustomResourceType::from_crd(&crd, "v1").is_err(), "{w}");
    }
}

#[test]
fn value_validations_of_a_parsed_schema() {
    let raw = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "low": {"type": "integer", "minimum": 0, "exclusiveMinimum": true},
        "bag": {"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "integer"}},
        "either": {"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}]},
        "notx": {"type": "string", "not": {"enum": ["x"]}},
        "uniq": {"type": "array", "uniqueItems": true, "minItems": 1, "items": {"type": "integer"}},
        "both": {"type": "object", "properties": {"a": {"type": "integer"}}, "allOf": [{"properties": {"a": {"maximum": 3}}}]}
    }}}});
    let s = parse_schema(&raw, "s").expect("schema");
    let cases = [
        (
            json!({"low": 0}),
            "spec.low: Invalid value: 0: spec.low in body should be greater than 0",
        ),
        (
            json!({"bag": {}}),
            "spec.bag: Invalid value: {}: spec.bag in body should have at least 1 properties",
        ),
        (
            json!({"bag": {"a": 1, "b": 2, "c": 3}}),
            "spec.bag: Invalid value: {\"a\":1,\"b\":2,\"c\":3}: spec.bag in body should have at most 2 properties",
        ),
        (
            json!({"either": "c"}),
            "spec.either: Invalid value: \"c\": spec.either in body must validate at least one schema (anyOf)",
        ),
        (
            json!({"notx": "x"}),
            "spec.notx: Invalid value: \"x\": spec.notx in body must not validate the schema (not)",
        ),
        (
            json!({"uniq": [1, 2, 1.0]}),
            "spec.uniq[2]: Duplicate value: 1.0",
        ),
        (
            json!({"uniq": []}),
            "spec.uniq: Invalid value: []: spec.uniq in body should have at least 1 items",
        ),
        (
            json!({"both": {"a": 4}}),
            "spec.both.a: Invalid value: 4: spec.both.a in body should be less than or equal to 3",
        ),
    ];
    for (spec, expected) in cases {
        let errs = messages(&validate_custom_resource(&s, &cr(spec.clone())));
        assert_eq!(errs, vec![expected.to_string()], "{spec}");
    }
    let fine = json!({"low": 1, "bag": {"a": 1}, "either": "bee", "notx": "y", "uniq": [1, 2], "both": {"a": 3}});
    assert!(validate_custom_resource(&s, &cr(fine)).is_empty());
}

#[test]
fn pruning_walks_nested_arrays_and_maps() {
    let raw = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "grid": {"type": "array", "items": {"type": "array", "items": {"type": "object", "properties": {"v": {"type": "integer"}}}}},
        "byName": {"type": "object", "additionalProperties": {"type": "object", "properties": {"keep": {"type": "string"}}}},
        "open": {"type": "object", "additionalProperties": true}
    }}}});
    let s = parse_schema(&raw, "s").expect("schema");
    let mut obj = cr(json!({
        "grid": [[{"v": 1, "w": 2}], [{"v": 3}]],
        "byName": {"x": {"keep": "k", "drop": 1}},
        "open": {"any": {"thing": true}}
    }));
    let mut pruned = prune(&s, &mut obj);
    pruned.sort();
    assert_eq!(pruned, vec!["spec.byName.x.drop", "spec.grid[0][0].w"]);
    assert_eq!(obj["spec"]["grid"], json!([[{"v": 1}], [{"v": 3}]]));
    assert_eq!(obj["spec"]["open"], json!({"any": {"thing": true}}));
}

#[test]
fn array_without_items_is_not_structural() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "array"}}});
    let errs = crd_errors(&with_schema(schema));
    assert_eq!(
        errs,
        vec![
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].items: Required value: must be specified"
        ]
    );
}

#[test]
fn garbage_crds_give_errors_not_panics() {
    for crd in [
        json!(null),
        json!([]),
        json!({"spec": 1}),
        json!({"spec": {"versions": [1, "x", null]}}),
    ] {
        assert!(!validate_crd(&crd, None).is_empty(), "{crd}");
        assert!(storage_version(&crd).is_none());
        let _ = served_resources(&crd);
        let _ = crd_status(&crd, chrono::Utc::now());
    }
    assert!(matches!(
        served_resources(&json!({"spec": {"versions": [{"name": "v1", "served": true}]}})),
        Err(CrdError::Missing(_))
    ));
}

#[test]
fn crd_defaults_names_and_conversion() {
    let mut crd = serde_json::json!({"spec": {"group": "example.com",
        "names": {"plural": "widgets", "kind": "Widget"}, "versions": []}});
    super::default_crd(&mut crd);
    assert_eq!(crd["spec"]["names"]["singular"], "widget");
    assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
    let mut explicit = serde_json::json!({"spec": {"names": {"kind": "Widget", "singular": "wdg"},
        "conversion": {"strategy": "Webhook"}}});
    super::default_crd(&mut explicit);
    assert_eq!(explicit["spec"]["names"]["singular"], "wdg");
    assert_eq!(explicit["spec"]["conversion"]["strategy"], "Webhook");
}

#[test]
fn protected_groups_need_the_approval_annotation() {
    let crd = |group: &str, annotation: Option<&str>| {
        let mut crd = serde_json::json!({
            "metadata": {"name": format!("things.{group}")},
            "spec": {"group": group, "scope": "Cluster",
                "names": {"plural": "things", "kind": "Thing"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        if let Some(a) = annotation {
            crd["metadata"]["annotations"] = serde_json::json!({"api-approved.kubernetes.io": a});
        }
        crd
    };
    let fields = |errs: Vec<crate::apiserver::field_errors::FieldError>| {
        errs.into_iter().map(|e| e.to_string()).collect::<Vec<_>>()
    };
    let missing = fields(super::validate_crd(&crd("x.k8s.io", None), None));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("metadata.annotations[api-approved.kubernetes.io]: Required value")
    );
    let bad = fields(super::validate_crd(
        &crd("kubernetes.io", Some("yes")),
        None,
    ));
    assert!(bad[0].contains("Invalid value: \"yes\""), "{bad:?}");
    for ok in [
        "unapproved, testing",
        "https://github.com/kubernetes/kubernetes/pull/1",
    ] {
        assert!(super::validate_crd(&crd("x.k8s.io", Some(ok)), None).is_empty());
    }
    assert!(super::validate_crd(&crd("example.com", None), None).is_empty());
    assert!(super::validate_crd(&crd("notk8s.io", None), None).is_empty());
}
