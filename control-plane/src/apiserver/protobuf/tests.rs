//! Round-trip tests: k8s-pb structs encoded with prost, wrapped in the envelope, decoded, and
//! compared with the JSON kube writes for the same object; plus malformed and random input.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{MAGIC, decode_body};

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut bytes = MAGIC.to_vec();
    bytes.extend(unknown.encode_to_vec());
    bytes
}

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn decode(api_version: &str, kind: &str, message: &impl prost::Message) -> Value {
    let body = envelope(api_version, kind, message.encode_to_vec());
    decode_body(&body).unwrap_or_else(|e| panic!("decoding {kind}: {e}"))
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// ObjectMeta as Go's encoder sends it: every non-pointer field written, zero or not.
fn object_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time {
            seconds: Some(0),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn deployment_with_quantities_int_or_strings_and_times() {
    let container = core::Container {
        name: s("web"),
        image: s("busybox"),
        termination_message_path: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(0),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        resources: Some(core::ResourceRequirements {
            limits: [("cpu".to_string(), Quantity { string: s("500m") })].into(),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: s(""),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            labels: labels(&[("app", "web")]),
            ..object_meta("web", "default")
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    ..object_meta("", "")
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s(""),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: s(""),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("25%"),
                    }),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            conditions: vec![apps::DeploymentCondition {
                r#type: s("Available"),
                status: s("True"),
                last_update_time: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "busybox",
                        "ports": [{"containerPort": 0, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    }],
                    "terminationGracePeriodSeconds": 0,
                },
            },
            "strategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
        },
        "status": {
            "conditions": [{
                "type": "Available",
                "status": "True",
                "lastUpdateTime": "2023-11-14T22:13:20Z",
            }],
        },
    });
    assert_eq!(decode("apps/v1", "Deployment", &deployment), expected);
}

#[test]
fn secret_bytes_become_base64_and_pointer_false_stays() {
    let secret = core::Secret {
        metadata: Some(object_meta("creds", "ns")),
        data: [("key".to_string(), b"\x00\xffhi".to_vec())].into(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
        immutable: Some(false),
    };
    assert_eq!(
        decode("v1", "Secret", &secret),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "ns"},
            "data": {"key": "AP9oaQ=="},
            "type": "Opaque",
            "immutable": false,
        })
    );
}

#[test]
fn delete_options_keep_an_explicit_zero_grace_period() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("abc"),
            resource_version: None,
        }),
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    assert_eq!(
        decode("v1", "DeleteOptions", &options),
        json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "abc"},
            "propagationPolicy": "Foreground",
            "dryRun": ["All"],
        })
    );
    // kubectl sends meta kinds under the group-version of the resource.
    let decoded = decode("policy/v1", "DeleteOptions", &options);
    assert_eq!(decoded["gracePeriodSeconds"], 0);
}

#[test]
fn self_subject_access_review_and_eviction() {
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(object_meta("", "")),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: s(""),
                verb: s("get"),
                group: s(""),
                version: s(""),
                resource: s("pods"),
                subresource: s(""),
                name: s(""),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authz::SubjectAccessReviewStatus {
            allowed: Some(false),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &review
        ),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}},
            "status": {"allowed": false},
        })
    );

    let eviction = policy::Eviction {
        metadata: Some(object_meta("web-1", "ns")),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(30),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("policy/v1", "Eviction", &eviction),
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "ns"},
            "deleteOptions": {"gracePeriodSeconds": 30},
        })
    );
}

#[test]
fn raw_json_fields_extra_values_and_micro_time() {
    let revision = apps::ControllerRevision {
        metadata: Some(meta::ObjectMeta {
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:data":{}}"#.to_vec()),
                }),
                ..Default::default()
            }],
            ..object_meta("rev", "ns")
        }),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"a":[1,2]}}"#.to_vec()),
        }),
        revision: Some(3),
    };
    assert_eq!(
        decode("apps/v1", "ControllerRevision", &revision),
        json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": "rev",
                "namespace": "ns",
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {}},
                }],
            },
            "data": {"spec": {"a": [1, 2]}},
            "revision": 3,
        })
    );

    let review = authz::SubjectAccessReview {
        metadata: Some(object_meta("", "")),
        spec: Some(authz::SubjectAccessReviewSpec {
            user: s("alice"),
            extra: [(
                "scopes".to_string(),
                authz::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode("authorization.k8s.io/v1", "SubjectAccessReview", &review);
    assert_eq!(decoded["spec"]["extra"], json!({"scopes": ["a", "b"]}));

    let event = k8s_pb::api::events::v1::Event {
        metadata: Some(object_meta("e", "ns")),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_000),
        }),
        reason: s("Started"),
        ..Default::default()
    };
    let decoded = decode("events.k8s.io/v1", "Event", &event);
    assert_eq!(decoded["eventTime"], "2023-11-14T22:13:20.123456Z");
}

#[test]
fn custom_resource_definition_schema_names() {
    let props = apiext::JsonSchemaProps {
        r#type: s("object"),
        x_kubernetes_preserve_unknown_fields: Some(true),
        properties: [(
            "size".to_string(),
            apiext::JsonSchemaProps {
                r#type: s("integer"),
                default: Some(apiext::Json {
                    raw: Some(b"3".to_vec()),
                }),
                ..Default::default()
            },
        )]
        .into(),
        additional_properties: Some(Box::new(apiext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        ..Default::default()
    };
    let crd = apiext::CustomResourceDefinition {
        metadata: Some(object_meta("widgets.example.com", "")),
        spec: Some(apiext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            versions: vec![apiext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(apiext::CustomResourceValidation {
                    open_apiv3_schema: Some(props),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd);
    assert_eq!(
        decoded["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"size": {"type": "integer", "default": 3}},
            "additionalProperties": false,
        })
    );
}

#[test]
fn packed_and_unpacked_repeated_scalars() {
    // PodSecurityContext.supplementalGroups (field 4, int64): once unpacked, once packed.
    let mut context = vec![0x20, 1, 0x20, 2];
    context.extend([0x22, 2, 3, 4]);
    let mut spec = vec![0x72, context.len() as u8]; // PodSpec.securityContext = 14
    spec.extend(&context);
    let mut pod = vec![0x12, spec.len() as u8]; // Pod.spec = 2
    pod.extend(&spec);
    let decoded = decode_body(&envelope("v1", "Pod", pod)).map_err(|e| e.message);
    assert_eq!(
        decoded.map(|v| v["spec"]["securityContext"]["supplementalGroups"].clone()),
        Ok(json!([1, 2, 3, 4]))
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = core::ConfigMap {
        metadata: Some(object_meta("c", "ns")),
        data: labels(&[("k", "v")]),
        ..Default::default()
    }
    .encode_to_vec();
    // field 99 (varint), field 100 (fixed32)
    raw.extend([0x98, 0x06, 7, 0xa5, 0x06, 1, 2, 3, 4]);
    let decoded = decode_body(&envelope("v1", "ConfigMap", raw)).map_err(|e| e.message);
    assert_eq!(decoded.map(|v| v["data"].clone()), Ok(json!({"k": "v"})));
}

#[test]
fn unknown_kinds_are_unsupported_and_garbage_is_a_bad_request() {
    let error = decode_body(&envelope("example.com/v1", "Widget", vec![])).err();
    assert_eq!(error.as_ref().map(|e| e.code), Some(415));
    assert!(error.is_some_and(|e| e.message.contains("\"Widget\"")));

    let no_magic = decode_body(b"{\"kind\":\"Pod\"}").err();
    assert_eq!(no_magic.map(|e| e.code), Some(400));

    let mut truncated = envelope(
        "v1",
        "ConfigMap",
        core::ConfigMap {
            metadata: Some(object_meta("c", "ns")),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    truncated.truncate(truncated.len() - 3);
    let error = decode_body(&truncated).err();
    assert_eq!(error.as_ref().map(|e| e.code), Some(400));
    assert!(error.is_some_and(|e| e.message.contains("truncated")));

    // A string where a message belongs: metadata (1) as a varint.
    let error = decode_body(&envelope("v1", "ConfigMap", vec![0x08, 1])).err();
    assert_eq!(error.as_ref().map(|e| e.code), Some(400));
    assert!(error.is_some_and(|e| e.message.contains("metadata")));
}

#[test]
fn random_and_mangled_input_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b387300);
    let valid = envelope(
        "apps/v1",
        "Deployment",
        apps::Deployment {
            metadata: Some(object_meta("web", "ns")),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                ..Default::default()
            }),
            status: None,
        }
        .encode_to_vec(),
    );
    for _ in 0..5_000 {
        let len = rng.random_range(0..200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) {
            bytes.splice(0..0, MAGIC);
        }
        if let Err(e) = decode_body(&bytes) {
            assert!(matches!(e.code, 400 | 415), "{}", e.message);
        }
        let mut mangled = valid.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(4..mangled.len());
            mangled[at] = rng.random();
        }
        mangled.truncate(rng.random_range(4..=mangled.len()));
        if let Err(e) = decode_body(&mangled) {
            assert!(matches!(e.code, 400 | 415), "{}", e.message);
        }
    }
}

#[test]
fn deeply_nested_messages_are_refused() {
    // JSONSchemaProps.not (28) nested 200 deep.
    let mut props: Vec<u8> = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0xe2, 0x01];
        outer.extend(varint(props.len()));
        outer.extend(&props);
        props = outer;
    }
    let mut validation = vec![0x0a];
    validation.extend(varint(props.len()));
    validation.extend(&props);
    let error = super::to_json::message_to_json(
        super::schema::schemas(),
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceValidation",
        &validation,
        0,
    )
    .err();
    assert!(error.is_some_and(|e| e.to_string().contains("nested deeper")));
}
