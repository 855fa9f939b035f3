//! The OpenAPI documents kubectl reads: `/openapi/v3` (an index of group-versions),
//! `/openapi/v3/apis/G/V` (OpenAPI 3.0, one per group-version) and `/openapi/v2` (Swagger 2.0).
//!
//! Built-in schemas come from k8s-openapi's schemars impls, whose definition names are already
//! kube's (`io.k8s.api.core.v1.Pod`). On top we add what kube's documents carry and kubectl
//! relies on: `x-kubernetes-group-version-kind` on top-level kinds (explain finds a kind by it),
//! the strategic-merge extensions on the lists where they are known (client-side apply), and
//! PATCH operations listing their query parameters (kubectl checks `fieldValidation` and
//! `dryRun` support there). CRD kinds are added from their `openAPIV3Schema`.
//!
//! The built-in definitions are generated once per process (`OnceLock`); `OpenApiDocs` holds a
//! complete, serialized set for one resource list, to be rebuilt when CRDs change.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::Resource;
use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use super::discovery::KUBE_MINOR;
use super::openapi_proto::{OPENAPI_V2_PROTOBUF, openapi_v2_protobuf};
use super::resources::{ResourceInfo, builtin_resources, subresource_info};

/// CRD schemas supplied by the caller: (group, version, kind) → the version's
/// `schema.openAPIV3Schema`.
pub type CrdSchemas = BTreeMap<(String, String, String), Value>;

/// Adds a CRD's served versions' `schema.openAPIV3Schema` to `schemas`.
pub fn add_crd_schemas(schemas: &mut CrdSchemas, crd: &Value) {
    let spec = &crd["spec"];
    let (Some(group), Some(kind)) = (spec["group"].as_str(), spec["names"]["kind"].as_str()) else {
        return;
    };
    for v in spec["versions"].as_array().into_iter().flatten() {
        let schema = &v["schema"]["openAPIV3Schema"];
        if let (Some(version), true) = (v["name"].as_str(), schema.is_object()) {
            let key = (group.to_string(), version.to_string(), kind.to_string());
            schemas.insert(key, schema.clone());
        }
    }
}

/// A kind with a generated schema: its GVK and how to register it in a generator.
struct KindSchema {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    definition: String,
    register: fn(&mut SchemaGenerator),
}

fn kind<T: Resource + JsonSchema>() -> KindSchema {
    KindSchema {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        definition: T::schema_name().into_owned(),
        register: |g| {
            g.subschema_for::<T>();
        },
    }
}

/// Every kind the built-in resources (and their subresources) answer with.
fn builtin_kinds() -> Vec<KindSchema> {
    use api::{
        apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        autoscaling::v1 as autoscaling, batch::v1 as batch, certificates::v1 as certs,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
        scheduling::v1 as scheduling,
    };
    vec![
        kind::<core::Binding>(),
        kind::<core::ConfigMap>(),
        kind::<core::Endpoints>(),
        kind::<core::Event>(),
        kind::<core::LimitRange>(),
        kind::<core::Namespace>(),
        kind::<core::Node>(),
        kind::<core::PersistentVolumeClaim>(),
        kind::<core::Pod>(),
        kind::<core::ResourceQuota>(),
        kind::<core::Secret>(),
        kind::<core::ServiceAccount>(),
        kind::<core::Service>(),
        kind::<apps::ControllerRevision>(),
        kind::<apps::DaemonSet>(),
        kind::<apps::Deployment>(),
        kind::<apps::ReplicaSet>(),
        kind::<apps::StatefulSet>(),
        kind::<events::Event>(),
        kind::<authn::SelfSubjectReview>(),
        kind::<authn::TokenReview>(),
        kind::<authn::TokenRequest>(),
        kind::<authz::LocalSubjectAccessReview>(),
        kind::<authz::SelfSubjectAccessReview>(),
        kind::<authz::SelfSubjectRulesReview>(),
        kind::<authz::SubjectAccessReview>(),
        kind::<autoscaling::Scale>(),
        kind::<batch::CronJob>(),
        kind::<batch::Job>(),
        kind::<certs::CertificateSigningRequest>(),
        kind::<policy::PodDisruptionBudget>(),
        kind::<policy::Eviction>(),
        kind::<rbac::ClusterRoleBinding>(),
        kind::<rbac::ClusterRole>(),
        kind::<rbac::RoleBinding>(),
        kind::<rbac::Role>(),
        kind::<apiextensions::CustomResourceDefinition>(),
        kind::<scheduling::PriorityClass>(),
        kind::<coordination::Lease>(),
        kind::<node::RuntimeClass>(),
        kind::<discovery::EndpointSlice>(),
    ]
}

/// Which document flavour: the `$ref` prefix and how parameters are spelled differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    V2,
    V3,
}

impl Flavour {
    fn ref_prefix(self) -> &'static str {
        match self {
            Flavour::V2 => "#/definitions/",
            Flavour::V3 => "#/components/schemas/",
        }
    }

    fn generator(self) -> SchemaGenerator {
        let settings = match self {
            // kube's v2 keeps `description` beside `$ref`: no transforms.
            Flavour::V2 => SchemaSettings::draft07().with(|s| {
                s.definitions_path = "/definitions".into();
                s.transforms.clear();
            }),
            // OpenAPI 3.0: `$ref` siblings become `allOf: [{$ref}]`, as kube emits them.
            Flavour::V3 => SchemaSettings::openapi3(),
        };
        SchemaGenerator::new(settings)
    }
}

/// Generated definitions for a set of kinds, with kube's extensions added.
fn definitions_for(kinds: &[&KindSchema], flavour: Flavour) -> Map<String, Value> {
    let mut generator = flavour.generator();
    for k in kinds {
        (k.register)(&mut generator);
    }
    generator.subschema_for::<meta::ObjectMeta>();
    generator.subschema_for::<meta::Status>();
    let mut defs = generator.take_definitions(true);
    for k in kinds {
        if let Some(Value::Object(def)) = defs.get_mut(&k.definition) {
            def.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": k.group, "kind": k.kind, "version": k.version}]),
            );
        }
    }
    add_patch_extensions(&mut defs);
    defs
}

/// Built-in definitions, per flavour, generated once: v3 per group-version, v2 all together.
struct BuiltinCache {
    v3: BTreeMap<(String, String), Map<String, Value>>,
    v2: Map<String, Value>,
}

fn builtin_cache() -> &'static BuiltinCache {
    static CACHE: OnceLock<BuiltinCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let kinds = builtin_kinds();
        let mut by_gv: BTreeMap<(String, String), Vec<&KindSchema>> = BTreeMap::new();
        for k in &kinds {
            let key = (k.group.to_string(), k.version.to_string());
            by_gv.entry(key).or_default().push(k);
        }
        let v3 = by_gv
            .iter()
            .map(|(gv, ks)| (gv.clone(), definitions_for(ks, Flavour::V3)))
            .collect();
        let all: Vec<&KindSchema> = kinds.iter().collect();
        BuiltinCache {
            v3,
            v2: definitions_for(&all, Flavour::V2),
        }
    })
}

/// A strategic-merge / list-type annotation on one property of one definition.
struct ListPatch {
    definition: &'static str,
    property: &'static str,
    merge_key: Option<&'static str>,
    strategy: Option<&'static str>,
    list_type: Option<&'static str>,
    map_keys: &'static [&'static str],
}

const fn lp(
    definition: &'static str,
    property: &'static str,
    merge_key: Option<&'static str>,
    strategy: Option<&'static str>,
    list_type: Option<&'static str>,
    map_keys: &'static [&'static str],
) -> ListPatch {
    ListPatch {
        definition,
        property,
        merge_key,
        strategy,
        list_type,
        map_keys,
    }
}

const CORE: &str = "io.k8s.api.core.v1.";
const MERGE: Option<&str> = Some("merge");
const NAME: Option<&str> = Some("name");
const TYPE: Option<&str> = Some("type");
const MAP: Option<&str> = Some("map");

/// Where kube's types carry patch metadata (definition names without the core prefix are
/// under `io.k8s.api.core.v1.`).
#[rustfmt::skip]
const LIST_PATCHES: &[ListPatch] = &[
    lp("PodSpec", "containers", NAME, MERGE, None, &[]),
    lp("PodSpec", "initContainers", NAME, MERGE, None, &[]),
    lp("PodSpec", "ephemeralContainers", NAME, MERGE, None, &[]),
    lp("PodSpec", "volumes", NAME, Some("merge,retainKeys"), None, &[]),
    lp("PodSpec", "imagePullSecrets", NAME, MERGE, None, &[]),
    lp("PodSpec", "hostAliases", Some("ip"), MERGE, MAP, &["ip"]),
    lp("PodSpec", "topologySpreadConstraints", Some("topologyKey"), MERGE, MAP, &["topologyKey", "whenUnsatisfiable"]),
    lp("PodSpec", "schedulingGates", NAME, MERGE, MAP, &["name"]),
    lp("PodSpec", "resourceClaims", NAME, Some("merge,retainKeys"), MAP, &["name"]),
    lp("Container", "env", NAME, MERGE, None, &[]),
    lp("Container", "ports", Some("containerPort"), MERGE, MAP, &["containerPort", "protocol"]),
    lp("Container", "volumeMounts", Some("mountPath"), MERGE, None, &[]),
    lp("Container", "volumeDevices", Some("devicePath"), MERGE, None, &[]),
    lp("EphemeralContainer", "env", NAME, MERGE, None, &[]),
    lp("EphemeralContainer", "ports", Some("containerPort"), MERGE, MAP, &["containerPort", "protocol"]),
    lp("EphemeralContainer", "volumeMounts", Some("mountPath"), MERGE, None, &[]),
    lp("EphemeralContainer", "volumeDevices", Some("devicePath"), MERGE, None, &[]),
    lp("PodStatus", "conditions", TYPE, MERGE, None, &[]),
    lp("PodStatus", "podIPs", Some("ip"), MERGE, None, &[]),
    lp("ServiceSpec", "ports", Some("port"), MERGE, MAP, &["port", "protocol"]),
    lp("NodeStatus", "conditions", TYPE, MERGE, None, &[]),
    lp("NodeStatus", "addresses", TYPE, MERGE, None, &[]),
    lp("NodeSpec", "podCIDRs", None, MERGE, Some("set"), &[]),
    lp("NamespaceStatus", "conditions", TYPE, MERGE, None, &[]),
    lp("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", Some("uid"), MERGE, None, &[]),
    lp("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", None, MERGE, Some("set"), &[]),
    lp("io.k8s.api.apps.v1.DeploymentSpec", "strategy", None, Some("retainKeys"), None, &[]),
    lp("io.k8s.api.apps.v1.DeploymentStatus", "conditions", TYPE, MERGE, None, &[]),
    lp("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", TYPE, MERGE, None, &[]),
    lp("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", TYPE, MERGE, None, &[]),
    lp("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", TYPE, MERGE, None, &[]),
    lp("io.k8s.api.batch.v1.JobStatus", "conditions", TYPE, MERGE, Some("atomic"), &[]),
    lp("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", TYPE, MERGE, MAP, &["type"]),
    lp("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", None, None, MAP, &["type"]),
];

fn definition_name(short: &str) -> String {
    if short.contains('.') {
        short.to_string()
    } else {
        format!("{CORE}{short}")
    }
}

fn add_patch_extensions(defs: &mut Map<String, Value>) {
    for p in LIST_PATCHES {
        let Some(Value::Object(prop)) = defs
            .get_mut(&definition_name(p.definition))
            .and_then(|d| d.get_mut("properties"))
            .and_then(|props| props.get_mut(p.property))
        else {
            continue;
        };
        let mut put = |key: &str, value: Option<&str>| {
            if let Some(v) = value {
                prop.insert(key.into(), v.into());
            }
        };
        put("x-kubernetes-patch-merge-key", p.merge_key);
        put("x-kubernetes-patch-strategy", p.strategy);
        put("x-kubernetes-list-type", p.list_type);
        if !p.map_keys.is_empty() {
            prop.insert("x-kubernetes-list-map-keys".into(), json!(p.map_keys));
        }
    }
}

/// kube's definition name for a custom kind: the group reversed, then version and kind
/// (`stable.example.com` v1 CronTab → `com.example.stable.v1.CronTab`).
pub fn crd_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// A CRD's schema as a definition: `metadata` points at ObjectMeta, apiVersion/kind are
/// described, and the GVK extension is set.
fn crd_definition(
    group: &str,
    version: &str,
    kind: &str,
    schema: &Value,
    flavour: Flavour,
) -> Value {
    let mut def = match schema {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    def.entry("type").or_insert_with(|| "object".into());
    let props = def
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        let meta_ref = format!(
            "{}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            flavour.ref_prefix()
        );
        let description = "Standard object's metadata.";
        let metadata = match flavour {
            Flavour::V2 => json!({"$ref": meta_ref, "description": description}),
            Flavour::V3 => json!({"allOf": [{"$ref": meta_ref}], "description": description}),
        };
        props.insert("metadata".into(), metadata);
        props.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        props.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
    }
    def.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": group, "kind": kind, "version": version}]),
    );
    Value::Object(def)
}

/// The query parameters kube lists on PATCH, which kubectl probes for server-side support.
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];

fn query_params(names: &[&str], flavour: Flavour) -> Value {
    let params: Vec<Value> = names
        .iter()
        .map(|n| match flavour {
            Flavour::V2 => json!({"name": n, "in": "query", "type": "string", "uniqueItems": true}),
            Flavour::V3 => {
                json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
            }
        })
        .collect();
    Value::Array(params)
}

fn operation(r: &ResourceInfo, action: &str, params: &[&str], flavour: Flavour) -> Value {
    json!({
        "operationId": format!("{action}{}", r.kind),
        "parameters": query_params(params, flavour),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "kind": r.kind, "version": r.version},
    })
}

/// Patch types a PATCH accepts; strategic merge only for built-in kinds (kube refuses it for
/// custom resources). kubectl's client-side apply builds a strategic merge patch from the v3
/// schema only when the operation lists that type.
fn patch_types(r: &ResourceInfo) -> Vec<&'static str> {
    let mut types = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if is_builtin_gv(&r.group, &r.version) {
        types.push("application/strategic-merge-patch+json");
    }
    types
}

fn with_patch_body(mut op: Value, r: &ResourceInfo, flavour: Flavour) -> Value {
    let types = patch_types(r);
    let Some(obj) = op.as_object_mut() else {
        return op;
    };
    match flavour {
        Flavour::V2 => {
            obj.insert("consumes".into(), json!(types));
        }
        Flavour::V3 => {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| (t.to_string(), json!({"schema": {"type": "object"}})))
                .collect();
            obj.insert(
                "requestBody".into(),
                json!({"content": content, "required": true}),
            );
        }
    }
    op
}

fn collection_path(r: &ResourceInfo) -> String {
    let root = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    if r.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{root}/{}", r.plural)
    }
}

/// The collection and item paths of a resource, with the verbs it serves.
fn resource_paths(r: &ResourceInfo, flavour: Flavour) -> Vec<(String, Value)> {
    let has = |v: &str| r.verbs.iter().any(|x| x == v);
    let mut collection = Map::new();
    if has("list") {
        collection.insert("get".into(), operation(r, "list", &[], flavour));
    }
    if has("create") {
        collection.insert("post".into(), operation(r, "post", WRITE_PARAMS, flavour));
    }
    let mut item = Map::new();
    for (verb, method, action, params) in [
        ("get", "get", "get", &[][..]),
        ("update", "put", "put", WRITE_PARAMS),
        ("patch", "patch", "patch", PATCH_PARAMS),
        ("delete", "delete", "delete", &["dryRun"][..]),
    ] {
        if has(verb) {
            let mut op = operation(r, action, params, flavour);
            if verb == "patch" {
                op = with_patch_body(op, r, flavour);
            }
            item.insert(method.into(), op);
        }
    }
    let base = collection_path(r);
    let mut out = Vec::new();
    if !collection.is_empty() {
        out.push((base.clone(), Value::Object(collection)));
    }
    if !item.is_empty() {
        out.push((format!("{base}/{{name}}"), Value::Object(item)));
    }
    out
}

fn paths_for<'a>(resources: impl Iterator<Item = &'a ResourceInfo>, flavour: Flavour) -> Value {
    let mut paths = Map::new();
    for r in resources {
        for (p, ops) in resource_paths(r, flavour) {
            paths.insert(p, ops);
        }
    }
    Value::Object(paths)
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": format!("v1.{KUBE_MINOR}.0-keel")})
}

/// The built-in v3 definitions a group-version needs: its own kinds plus the kinds its
/// subresources answer with (`autoscaling/v1` Scale in `apps/v1`).
fn builtin_v3_definitions(
    resources: &[ResourceInfo],
    group: &str,
    version: &str,
) -> Map<String, Value> {
    let cache = builtin_cache();
    let mut defs = Map::new();
    let mut add_gv = |g: &str, v: &str| {
        if let Some(d) = cache.v3.get(&(g.to_string(), v.to_string())) {
            defs.extend(d.clone());
        }
    };
    let own: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if own.iter().any(|r| is_builtin_gv(&r.group, &r.version)) {
        add_gv(group, version);
    }
    let mut extra: Vec<(String, String)> = Vec::new();
    for r in &own {
        for s in &r.subresources {
            let sub = subresource_info(r, s);
            if (sub.group.as_str(), sub.version.as_str()) != (group, version) {
                extra.push((sub.group, sub.version));
            }
        }
    }
    extra.sort();
    extra.dedup();
    for (g, v) in extra {
        add_gv(&g, &v);
    }
    defs
}

fn is_builtin_gv(group: &str, version: &str) -> bool {
    builtin_cache()
        .v3
        .contains_key(&(group.to_string(), version.to_string()))
}

fn crd_defs_in<'a>(
    crd_schemas: &'a CrdSchemas,
    filter: impl Fn(&str, &str) -> bool + 'a,
) -> impl Iterator<Item = (&'a str, &'a str, &'a str, &'a Value)> + 'a {
    crd_schemas
        .iter()
        .filter(move |((g, v, _), _)| filter(g, v))
        .map(|((g, v, k), s)| (g.as_str(), v.as_str(), k.as_str(), s))
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/G/V`: an OpenAPI 3.0 document, or `None` when
/// nothing is served at that group-version.
pub fn openapi_v3_group_version(
    resources: &[ResourceInfo],
    crd_schemas: &CrdSchemas,
    group: &str,
    version: &str,
) -> Option<Value> {
    let own: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if own.is_empty() {
        return None;
    }
    let mut schemas = builtin_v3_definitions(resources, group, version);
    let crds: Vec<_> = crd_defs_in(crd_schemas, |g, v| g == group && v == version).collect();
    if !crds.is_empty()
        && let Some(meta_defs) = builtin_cache().v3.get(&("".to_string(), "v1".to_string()))
    {
        copy_closure(
            meta_defs,
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            &mut schemas,
        );
    }
    for (g, v, k, s) in crds {
        schemas.insert(
            crd_definition_name(g, v, k),
            crd_definition(g, v, k, s, Flavour::V3),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths_for(own.into_iter(), Flavour::V3),
        "components": {"schemas": schemas},
    }))
}

/// Copies `name` and every definition it references (transitively) from `from` into `to`.
fn copy_closure(from: &Map<String, Value>, name: &str, to: &mut Map<String, Value>) {
    let mut pending = vec![name.to_string()];
    while let Some(n) = pending.pop() {
        if to.contains_key(&n) {
            continue;
        }
        let Some(def) = from.get(&n) else { continue };
        collect_refs(def, &mut pending);
        to.insert(n, def.clone());
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref")
                && let Some(name) = r.rsplit('/').next()
            {
                out.push(name.to_string());
            }
            o.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// `/openapi/v2`: one Swagger 2.0 document with every definition.
pub fn openapi_v2(resources: &[ResourceInfo], crd_schemas: &CrdSchemas) -> Value {
    let mut defs = builtin_cache().v2.clone();
    for (g, v, k, s) in crd_defs_in(crd_schemas, |_, _| true) {
        defs.insert(
            crd_definition_name(g, v, k),
            crd_definition(g, v, k, s, Flavour::V2),
        );
    }
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths_for(resources.iter(), Flavour::V2),
        "definitions": defs,
    })
}

/// The `/openapi/v3` path key of a group-version: "api/v1" or "apis/apps/v1".
pub fn v3_path_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// FNV-1a 64 of a byte string, as 16 upper-case hex digits: the `hash` in index URLs, so
/// clients can cache a group-version document until it changes.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// Every group-version served, in resource order, without duplicates.
fn group_versions(resources: &[ResourceInfo]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in resources {
        let gv = (r.group.clone(), r.version.clone());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// All documents for one resource list, serialized once: what the HTTP layer should keep
/// (and rebuild when the CRD set changes).
#[derive(Clone, Debug)]
pub struct OpenApiDocs {
    /// "api/v1" / "apis/apps/v1" → (hash, JSON bytes).
    pub v3: BTreeMap<String, (String, Vec<u8>)>,
    /// The `/openapi/v3` index, serialized.
    pub v3_index: Vec<u8>,
    /// `/openapi/v2`, serialized as JSON.
    pub v2: Vec<u8>,
    /// `/openapi/v2` as gnostic protobuf: what client-go asks for (see [`OPENAPI_V2_PROTOBUF`]).
    pub v2_protobuf: Vec<u8>,
}

impl OpenApiDocs {
    /// Builds every document. Serialization of a `Value` cannot fail, hence no `Result`.
    pub fn build(resources: &[ResourceInfo], crd_schemas: &CrdSchemas) -> OpenApiDocs {
        let mut v3 = BTreeMap::new();
        for (g, v) in group_versions(resources) {
            if let Some(doc) = openapi_v3_group_version(resources, crd_schemas, &g, &v) {
                let bytes = doc.to_string().into_bytes();
                v3.insert(v3_path_key(&g, &v), (content_hash(&bytes), bytes));
            }
        }
        let index = index_from_hashes(v3.iter().map(|(k, (h, _))| (k.as_str(), h.as_str())));
        let v2 = openapi_v2(resources, crd_schemas);
        OpenApiDocs {
            v3,
            v3_index: index.to_string().into_bytes(),
            v2_protobuf: openapi_v2_protobuf(&v2),
            v2: v2.to_string().into_bytes(),
        }
    }

    /// `/openapi/v2` for an `Accept` header: (content type, body). Protobuf when asked for
    /// (client-go always does), JSON otherwise. The protobuf answer is typed
    /// `application/octet-stream`: Go's media-type parser rejects the `@` of the requested
    /// type, so a response carrying it fails in the client.
    pub fn v2_for(&self, accept: &str) -> (&'static str, &[u8]) {
        if accept.contains(OPENAPI_V2_PROTOBUF) {
            ("application/octet-stream", &self.v2_protobuf)
        } else {
            ("application/json", &self.v2)
        }
    }

    /// The v3 document for a request path below `/openapi/v3/` ("apis/apps/v1"); the `hash`
    /// query does not matter (the current document is returned).
    pub fn v3_document(&self, path_key: &str) -> Option<&[u8]> {
        self.v3
            .get(path_key.trim_matches('/'))
            .map(|(_, b)| b.as_slice())
    }
}

/// The documents for the built-in resources alone, built on first use and kept for the
/// process (a server without CRDs can answer from these directly).
pub fn builtin_openapi() -> &'static OpenApiDocs {
    static DOCS: OnceLock<OpenApiDocs> = OnceLock::new();
    DOCS.get_or_init(|| OpenApiDocs::build(&builtin_resources(), &CrdSchemas::new()))
}

fn index_from_hashes<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut paths = Map::new();
    for (key, hash) in entries {
        paths.insert(
            key.to_string(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3`: the index of group-version documents with their content hashes.
pub fn openapi_v3_index(resources: &[ResourceInfo], crd_schemas: &CrdSchemas) -> Value {
    let mut entries = Vec::new();
    for (g, v) in group_versions(resources) {
        if let Some(doc) = openapi_v3_group_version(resources, crd_schemas, &g, &v) {
            entries.push((
                v3_path_key(&g, &v),
                content_hash(doc.to_string().as_bytes()),
            ));
        }
    }
    index_from_hashes(entries.iter().map(|(k, h)| (k.as_str(), h.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_apps_document_has_kinds_and_scale() {
        let all = builtin_resources();
        let doc =
            openapi_v3_group_version(&all, &CrdSchemas::new(), "apps", "v1").expect("test fixture");
        let schemas = &doc["components"]["schemas"];
        let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert_eq!(
            deploy["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
        assert!(schemas["io.k8s.api.core.v1.PodSpec"].is_object());
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(patch["parameters"].to_string().contains("fieldValidation"));
    }

    #[test]
    fn v2_has_patch_extensions() {
        let doc = openapi_v2(&builtin_resources(), &CrdSchemas::new());
        let containers =
            &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            containers["items"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Container"
        );
        let meta = &doc["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["metadata"];
        assert_eq!(
            meta["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
    }

    #[test]
    fn crd_documents_and_index() {
        let mut all = builtin_resources();
        all.push(ResourceInfo {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            singular: "crontab".into(),
            namespaced: true,
            short_names: vec!["ct".into()],
            categories: vec![],
            verbs: vec!["get".into(), "list".into()],
            subresources: vec![],
        });
        let mut crds = CrdSchemas::new();
        let key = (
            "stable.example.com".to_string(),
            "v1".to_string(),
            "CronTab".to_string(),
        );
        crds.insert(
            key,
            json!({"type": "object", "properties": {"spec": {"type": "object"}}}),
        );
        let doc = openapi_v3_group_version(&all, &crds, "stable.example.com", "v1")
            .expect("test fixture");
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["com.example.stable.v1.CronTab"]["properties"]["spec"].is_object());
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        let mut from_crd = CrdSchemas::new();
        add_crd_schemas(
            &mut from_crd,
            &json!({"spec": {"group": "stable.example.com", "names": {"kind": "CronTab"},
                "versions": [{"name": "v1", "schema": {"openAPIV3Schema": crds.values().next()}}]}}),
        );
        assert_eq!(from_crd, crds);
        let docs = OpenApiDocs::build(&all, &crds);
        let index: Value = serde_json::from_slice(&docs.v3_index).expect("test fixture");
        let url = index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
            .as_str()
            .expect("test fixture");
        assert!(url.starts_with("/openapi/v3/apis/stable.example.com/v1?hash="));
        assert!(docs.v3_document("/apis/apps/v1").is_some());
        assert_eq!(content_hash(b""), "CBF29CE484222325");
        let builtin = builtin_openapi();
        assert!(builtin.v3_document("apis/stable.example.com/v1").is_none());
        assert!(builtin.v3_document("api/v1").is_some());
    }
}
