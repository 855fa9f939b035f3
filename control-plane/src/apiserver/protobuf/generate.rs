//! The generator of `kube_messages.txt` (test-only): reads the prost-generated source of the
//! `k8s-pb` crate (field tags and wire types of every Kubernetes proto message, `Resource`
//! impls) and the source of `k8s-openapi` (JSON property names, which fields are required,
//! `Resource` impls of the kinds k8s-pb lacks, such as Eviction or Scale), and writes the
//! compact table the decoder loads. See the `protobuf` module doc for how to re-run it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use heck::{ToLowerCamelCase, ToSnakeCase};

/// Proto packages (below `k8s.io.`) whose messages seed the table; every message they refer
/// to is added too.
const SEED_PACKAGES: &[&str] = &[
    "api.core.",
    "api.apps.",
    "api.batch.",
    "api.autoscaling.",
    "api.policy.",
    "api.rbac.",
    "api.authentication.",
    "api.authorization.",
    "api.certificates.",
    "api.coordination.",
    "api.discovery.",
    "api.events.",
    "api.node.",
    "api.scheduling.",
    "api.networking.",
    "api.storage.",
    "api.admissionregistration.",
    "api.flowcontrol.",
    "apiextensions_apiserver.pkg.apis.apiextensions.",
    "kube_aggregator.pkg.apis.apiregistration.",
    "apimachinery.pkg.apis.meta.v1.",
    "apimachinery.pkg.runtime.",
    "apimachinery.pkg.util.intstr.",
    "apimachinery.pkg.api.resource.",
];

/// The Kubernetes minor versions of k8s-openapi whose definitions are merged (fields newer than
/// the served version still get their JSON names), served one first.
const OPENAPI_VERSIONS: &[&str] = &["v1_32", "v1_33", "v1_34", "v1_35", "v1_36"];

/// One property of a k8s-openapi definition.
struct OpenApiProperty {
    json: String,
    required: bool,
}

/// What the k8s-openapi source says about one definition.
#[derive(Default)]
struct OpenApiDefinition {
    properties: Vec<OpenApiProperty>,
    gvk: Option<(String, String)>,
}

/// A field as prost wrote it.
struct RawField {
    tag: u32,
    rust_name: String,
    /// `message`, `string`, `int32`, ..., or `map:<key>,<value>`.
    proto_type: String,
    repeated: bool,
    /// The Rust type with whitespace removed.
    rust_type: String,
}

struct RawMessage {
    module: Vec<String>,
    rust_name: String,
    fields: Vec<RawField>,
}

fn registry_crate(name: &str) -> Result<PathBuf, String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let src = cargo_home.join("registry").join("src");
    let entries = std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    for index in entries.flatten() {
        let candidate = index.path().join(name);
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    Err(format!("{name} not found under {}", src.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn quoted(line: &str) -> Option<&str> {
    let start = line.find('"')? + 1;
    let end = start + line[start..].find('"')?;
    Some(&line[start..end])
}

/// Reads every `// Generated from definition NAME` file of k8s-openapi.
fn openapi_definitions(root: &Path) -> BTreeMap<String, OpenApiDefinition> {
    let mut definitions = BTreeMap::new();
    for version in OPENAPI_VERSIONS {
        let mut files = Vec::new();
        rust_files(&root.join("src").join(version), &mut files);
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Some(name) = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("// Generated from definition "))
            else {
                continue;
            };
            let parsed = parse_openapi_file(&text);
            let definition: &mut OpenApiDefinition =
                definitions.entry(name.to_string()).or_default();
            for property in parsed.properties {
                if !definition
                    .properties
                    .iter()
                    .any(|p| p.json == property.json)
                {
                    definition.properties.push(property);
                }
            }
            if definition.gvk.is_none() {
                definition.gvk = parsed.gvk;
            }
        }
    }
    definitions
}

fn parse_openapi_file(text: &str) -> OpenApiDefinition {
    let mut optional_fields = BTreeSet::new();
    let mut in_struct = false;
    let mut definition = OpenApiDefinition::default();
    let mut api_version = None;
    let mut kind = None;
    for line in text.lines() {
        if line.starts_with("pub struct ") && line.ends_with('{') {
            in_struct = true;
            continue;
        }
        if in_struct {
            if line == "}" {
                in_struct = false;
            } else if let Some(rest) = line.trim().strip_prefix("pub ")
                && let Some((rust, ty)) = rest.split_once(": ")
                && ty.starts_with("Option<")
            {
                optional_fields.insert(rust.to_string());
            }
            continue;
        }
        let trimmed = line.trim();
        if let Some((json, key)) = trimmed.split_once(" => Field::Key_")
            && json.starts_with('"')
        {
            let json = json.trim_matches('"').to_string();
            let rust = key.trim_end_matches(',');
            definition.properties.push(OpenApiProperty {
                required: !optional_fields.contains(rust),
                json,
            });
        } else if trimmed.starts_with("const API_VERSION:") {
            api_version = quoted(trimmed).map(String::from);
        } else if trimmed.starts_with("const KIND:") {
            kind = quoted(trimmed).map(String::from);
        }
    }
    if let (Some(api_version), Some(kind)) = (api_version, kind) {
        definition.gvk = Some((api_version, kind));
    }
    definition
}

/// `k8s.io.apiextensions_apiserver.pkg...` → `io.k8s.apiextensions-apiserver.pkg...`
fn openapi_name(proto_package: &str, message: &str) -> String {
    let rest = proto_package
        .strip_prefix("k8s.io.")
        .unwrap_or(proto_package);
    let (first, tail) = rest.split_once('.').unwrap_or((rest, ""));
    format!("io.k8s.{}.{tail}.{message}", first.replace('_', "-"))
}

/// Lowercase letters and digits only: `clusterIPs` and prost's `cluster_ips` agree.
fn squashed(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn parse_prost_attr(attr: &str) -> Option<(String, bool, u32)> {
    let inner = attr.strip_prefix("#[prost(")?.strip_suffix(")]")?;
    let tag: u32 = inner
        .split("tag = \"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()?;
    if let Some(map) = inner.strip_prefix("btree_map = \"") {
        let kv = map.split('"').next()?.replace(' ', "");
        return Some((format!("map:{kv}"), false, tag));
    }
    let first = inner.split(',').next()?.trim();
    let proto_type = first.split(" = ").next()?.trim().to_string();
    let repeated = inner.contains(", repeated,");
    Some((proto_type, repeated, tag))
}

fn parse_pb_module(module: &[String], text: &str, messages: &mut Vec<RawMessage>) {
    let mut lines = text.lines().peekable();
    let mut is_message = false;
    let mut current: Option<RawMessage> = None;
    while let Some(line) = lines.next() {
        if line.starts_with("#[derive(") {
            is_message = line.contains("::prost::Message");
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            if is_message {
                let empty = rest.ends_with("{}");
                let message = RawMessage {
                    module: module.to_vec(),
                    rust_name: rest
                        .trim_end_matches(" {}")
                        .trim_end_matches(" {")
                        .to_string(),
                    fields: Vec::new(),
                };
                if empty {
                    messages.push(message);
                } else {
                    current = Some(message);
                }
            }
            is_message = false;
            continue;
        }
        if line == "}" {
            if let Some(message) = current.take() {
                messages.push(message);
            }
            continue;
        }
        let Some(message) = current.as_mut() else {
            continue;
        };
        let Some((proto_type, repeated, tag)) = parse_prost_attr(line.trim()) else {
            continue;
        };
        let mut declaration = String::new();
        for next in lines.by_ref() {
            declaration.push_str(next.trim());
            let opens = declaration.matches('<').count();
            let closes = declaration.matches('>').count();
            if declaration.ends_with(',') && opens == closes {
                break;
            }
        }
        let declaration: String = declaration.split_whitespace().collect();
        let Some((name, rust_type)) = declaration
            .strip_prefix("pub")
            .and_then(|d| d.split_once(':'))
        else {
            continue;
        };
        message.fields.push(RawField {
            tag,
            rust_name: name.trim_start_matches("r#").to_string(),
            proto_type,
            repeated,
            rust_type: rust_type.trim_end_matches(',').to_string(),
        });
    }
}

/// The `impl crate::Resource for X` blocks of one k8s-pb module: (rust name, apiVersion, kind).
fn pb_resources(text: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rust) = line
            .strip_prefix("impl crate::Resource for ")
            .map(|r| r.trim_end_matches(" {"))
        else {
            continue;
        };
        let (mut api_version, mut kind) = (None, None);
        for inner in lines.by_ref() {
            let trimmed = inner.trim();
            if trimmed.starts_with("const API_VERSION:") {
                api_version = quoted(trimmed).map(String::from);
            } else if trimmed.starts_with("const KIND:") {
                kind = quoted(trimmed).map(String::from);
            } else if inner == "}" {
                break;
            }
        }
        if let (Some(a), Some(k)) = (api_version, kind) {
            found.push((rust.to_string(), a, k));
        }
    }
    found
}

/// The message path inside a field's Rust type (`super::super::core::v1::PodSpec`).
fn message_path(rust_type: &str) -> String {
    let mut ty = rust_type;
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        if let Some(inner) = ty.strip_prefix(wrapper) {
            ty = inner;
        }
    }
    if let Some(inner) = ty.strip_prefix("::prost::alloc::collections::BTreeMap<") {
        ty = inner.split_once(',').map(|(_, v)| v).unwrap_or(inner);
    }
    ty.trim_end_matches(['>', ',']).to_string()
}

/// Resolves a path relative to `module` into (module, rust name).
fn resolve(module: &[String], path: &str) -> (Vec<String>, String) {
    let mut segments: Vec<&str> = path.split("::").collect();
    let name = segments.pop().unwrap_or_default().to_string();
    let mut at = module.to_vec();
    for segment in segments {
        if segment == "super" {
            at.pop();
        } else {
            at.push(segment.to_string());
        }
    }
    (at, name)
}

fn proto_package(module: &[String]) -> String {
    format!("k8s.io.{}", module.join("."))
}

/// Generates the table text.
pub fn generate() -> Result<String, String> {
    let pb_root = registry_crate("k8s-pb-0.9.0")?;
    let openapi_root = registry_crate("k8s-openapi-0.28.0")?;
    let definitions = openapi_definitions(&openapi_root);

    let mut files = Vec::new();
    rust_files(&pb_root.join("src"), &mut files);
    let mut messages = Vec::new();
    let mut resources = Vec::new();
    for file in files {
        let Ok(relative) = file.strip_prefix(pb_root.join("src")) else {
            continue;
        };
        let module: Vec<String> = relative
            .parent()
            .map(|p| {
                p.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        parse_pb_module(&module, &text, &mut messages);
        for (rust, api_version, kind) in pb_resources(&text) {
            resources.push((module.clone(), rust, api_version, kind));
        }
    }

    // Proto names: prost upper-camel-cased them (JSONSchemaProps → JsonSchemaProps); the
    // k8s-openapi definition of the same package gives the original spelling back.
    let mut definitions_by_lower: HashMap<String, &str> = HashMap::new();
    for name in definitions.keys() {
        definitions_by_lower.insert(name.to_ascii_lowercase(), name);
    }
    let proto_name = |module: &[String], rust: &str| -> (String, Option<&str>) {
        let package = proto_package(module);
        let guess = openapi_name(&package, rust).to_ascii_lowercase();
        match definitions_by_lower.get(&guess) {
            Some(definition) => {
                let message = definition.rsplit('.').next().unwrap_or(rust);
                (format!("{package}.{message}"), Some(*definition))
            }
            None => (format!("{package}.{rust}"), None),
        }
    };

    let mut table: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut refs: HashMap<String, Vec<String>> = HashMap::new();
    for message in &messages {
        let (full, definition) = proto_name(&message.module, &message.rust_name);
        let package = proto_package(&message.module);
        let properties = definition
            .and_then(|d| definitions.get(d))
            .map(|d| d.properties.as_slice())
            .unwrap_or(&[]);
        let mut lines = Vec::new();
        let mut referenced = Vec::new();
        for field in &message.fields {
            let property = properties
                .iter()
                .find(|p| p.json.to_snake_case() == field.rust_name)
                .or_else(|| {
                    properties
                        .iter()
                        .find(|p| squashed(&p.json) == squashed(&field.rust_name))
                });
            // Go embeds some structs inline (Probe's ProbeHandler, Volume's VolumeSource):
            // the proto has a field for them, the JSON has their fields in the parent.
            let inline = property.is_none()
                && !properties.is_empty()
                && field.proto_type == "message"
                && !field.repeated;
            let json = property
                .map(|p| p.json.clone())
                .unwrap_or_else(|| field.rust_name.to_lower_camel_case());
            let mut value_type = |ty: &str| -> String {
                if ty != "message" {
                    return ty.to_string();
                }
                let (module, rust) = resolve(&message.module, &message_path(&field.rust_type));
                let (target, _) = proto_name(&module, &rust);
                referenced.push(target.clone());
                match target.strip_prefix(&format!("{package}.")) {
                    Some(local) => local.to_string(),
                    None => target,
                }
            };
            let (card, ty) = match field.proto_type.strip_prefix("map:") {
                Some(kv) => {
                    let (key, value) = kv.split_once(',').unwrap_or((kv, "string"));
                    (format!("map:{key}"), value_type(value))
                }
                None if field.repeated => ("rep".to_string(), value_type(&field.proto_type)),
                None => ("opt".to_string(), value_type(&field.proto_type)),
            };
            let required = if property.is_some_and(|p| p.required) {
                " req"
            } else if inline {
                " inline"
            } else {
                ""
            };
            lines.push(format!("{} {json} {card} {ty}{required}", field.tag));
        }
        refs.insert(full.clone(), referenced);
        table.insert(full, (package, lines));
    }

    // The closure of the seed packages.
    let mut wanted: BTreeSet<String> = table
        .keys()
        .filter(|name| {
            let below = name.strip_prefix("k8s.io.").unwrap_or(name);
            SEED_PACKAGES.iter().any(|seed| below.starts_with(seed))
        })
        .cloned()
        .collect();
    let mut queue: Vec<String> = wanted.iter().cloned().collect();
    while let Some(name) = queue.pop() {
        for target in refs.get(&name).into_iter().flatten() {
            if !table.contains_key(target) {
                return Err(format!("{name} refers to unknown message {target}"));
            }
            if wanted.insert(target.clone()) {
                queue.push(target.clone());
            }
        }
    }

    // Kinds: k8s-pb's Resource impls, then k8s-openapi's for messages k8s-pb has no impl for.
    let mut kinds: BTreeMap<(String, String), String> = BTreeMap::new();
    for (module, rust, api_version, kind) in &resources {
        let (full, _) = proto_name(module, rust);
        kinds.insert((api_version.clone(), kind.clone()), full);
    }
    for full in &wanted {
        let (package, message) = full.rsplit_once('.').unwrap_or(("", full));
        if let Some((api_version, kind)) = definitions
            .get(&openapi_name(package, message))
            .and_then(|d| d.gvk.clone())
        {
            kinds.entry((api_version, kind)).or_insert(full.clone());
        }
    }
    // Lists of every kind, where the package has one.
    let list_kinds: Vec<((String, String), String)> = kinds
        .iter()
        .filter_map(|((api_version, kind), full)| {
            let list = format!("{full}List");
            table
                .contains_key(&list)
                .then(|| ((api_version.clone(), format!("{kind}List")), list))
        })
        .collect();
    kinds.extend(list_kinds);

    let mut out = String::from(
        "# Generated by `cargo test -p keel-control-plane --lib \
         apiserver::protobuf::generate -- --ignored`; do not edit.\n\
         # message FULL.NAME / TAG JSON CARD TYPE [req|inline] (CARD: opt, rep, map:KEYTYPE; a TYPE \
         without dots is in the message's package) / kind APIVERSION KIND FULL.NAME\n",
    );
    for name in &wanted {
        let Some((_, lines)) = table.get(name) else {
            continue;
        };
        let _ = writeln!(out, "message {name}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    for ((api_version, kind), full) in &kinds {
        if wanted.contains(full) {
            let _ = writeln!(out, "kind {api_version} {kind} {full}");
        }
    }
    Ok(out)
}

fn table_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/apiserver/protobuf/kube_messages.txt")
}

#[test]
#[ignore = "regenerates kube_messages.txt from the k8s-pb and k8s-openapi sources"]
fn generate_kube_messages() {
    match generate() {
        Ok(text) => {
            if let Err(e) = std::fs::write(table_path(), text) {
                panic!("writing {}: {e}", table_path().display());
            }
        }
        Err(e) => panic!("generating the table: {e}"),
    }
}

/// The committed table is what the generator makes from the sources in Cargo.lock.
#[test]
fn committed_table_is_current() {
    let generated = generate().unwrap_or_else(|e| panic!("generating the table: {e}"));
    let committed = std::fs::read_to_string(table_path()).unwrap_or_default();
    assert!(
        generated == committed,
        "kube_messages.txt is stale: re-run the ignored generate_kube_messages test"
    );
}
