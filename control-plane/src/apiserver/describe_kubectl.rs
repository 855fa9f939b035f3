//! Proof against the real client: a throwaway HTTP/1.1 server on 127.0.0.1 answers GETs with
//! the discovery, OpenAPI and Table documents, and `/usr/bin/kubectl` is run against it.
//!
//! Skipped (with a note) when kubectl is missing, unless `CI` is set: then it fails loudly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::discovery::{
    aggregated_apis, aggregated_content_type, aggregated_core, aggregated_version_accepted,
    api_group, api_group_list, api_resource_list, api_versions, version_info,
};
use super::openapi::{CrdSchemas, OpenApiDocs, add_crd_schemas};
use super::resources::{ResourceInfo, builtin_resources, find_by_plural, resources_from_crd};
use super::table::{
    IncludeObject, crd_printer_columns, table_accepted, to_table, to_table_with_columns,
};

const KUBECTL: &str = "/usr/bin/kubectl";

struct State {
    resources: Vec<ResourceInfo>,
    openapi: OpenApiDocs,
    /// Answer discovery with the legacy documents even when aggregated ones are asked for.
    legacy_only: bool,
    /// "METHOD path [accept] content-type -> status body", one per request.
    log: Mutex<Vec<String>>,
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn json_reply(v: &Value) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json".into(),
        body: v.to_string().into_bytes(),
    }
}

fn not_found() -> Reply {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "not found"});
    Reply {
        status: 404,
        ..json_reply(&status)
    }
}

fn route(state: &State, path: &str, accept: &str) -> Reply {
    let (path, _query) = path.split_once('?').unwrap_or((path, ""));
    let res = &state.resources;
    let aggregated = aggregated_version_accepted(accept).filter(|_| !state.legacy_only);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let doc = match segments.as_slice() {
        ["version"] => Some(version_info()),
        ["api"] => Some(match aggregated {
            Some(v) => return aggregated_reply(aggregated_core(res, v), v),
            None => api_versions("127.0.0.1"),
        }),
        ["apis"] => Some(match aggregated {
            Some(v) => return aggregated_reply(aggregated_apis(res, v), v),
            None => api_group_list(res),
        }),
        ["api", v] => api_resource_list(res, "", v),
        ["apis", g] => api_group(res, g),
        ["apis", g, v] => api_resource_list(res, g, v),
        ["openapi", "v2"] => {
            let (content_type, body) = state.openapi.v2_for(accept);
            return Reply {
                content_type: content_type.into(),
                ..raw(body.to_vec())
            };
        }
        ["openapi", "v3"] => return raw(state.openapi.v3_index.clone()),
        ["openapi", "v3", rest @ ..] => {
            return match state.openapi.v3_document(&rest.join("/")) {
                Some(b) => raw(b.to_vec()),
                None => not_found(),
            };
        }
        ["api", v, "namespaces", _, plural] | ["api", v, plural] => {
            list(state, "", v, plural, accept)
        }
        ["apis", g, v, "namespaces", _, plural] | ["apis", g, v, plural] => {
            list(state, g, v, plural, accept)
        }
        ["api", "v1", "namespaces", "default", "pods", "web-1"] => Some(applied_pod()),
        _ => None,
    };
    doc.map_or_else(not_found, |d| json_reply(&d))
}

fn raw(body: Vec<u8>) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json".into(),
        body,
    }
}

fn aggregated_reply(doc: Value, version: &str) -> Reply {
    Reply {
        content_type: aggregated_content_type(version),
        ..json_reply(&doc)
    }
}

/// The clock the served tables are computed at.
fn table_now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// The objects each list answers with.
fn fixtures(plural: &str) -> Vec<Value> {
    match plural {
        "pods" => sample_pods(),
        "crontabs" => vec![json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "nightly", "namespace": "default", "creationTimestamp": "2024-01-01T11:00:00Z"},
            "spec": {"cronSpec": "0 3 * * *", "replicas": 2},
        })],
        "nodes" => vec![json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-a", "creationTimestamp": "2023-12-01T12:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12",
                    "kernelVersion": "6.1.0", "containerRuntimeVersion": "keel://0.1.0"}},
        })],
        "deployments" => vec![json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-01-01T08:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        })],
        _ => vec![],
    }
}

/// A list of `plural`, as a Table when asked for one (CronTabs with their CRD's columns).
fn list(state: &State, group: &str, version: &str, plural: &str, accept: &str) -> Option<Value> {
    let info = find_by_plural(&state.resources, group, version, plural)?;
    let items = fixtures(plural);
    let list_meta = json!({"resourceVersion": "42"});
    if !table_accepted(accept) {
        let kind = info.list_kind();
        return Some(
            json!({"kind": kind, "apiVersion": info.api_version(), "metadata": list_meta, "items": items}),
        );
    }
    let table = if group == "stable.example.com" {
        let columns = crd_printer_columns(&crontab_crd(), version);
        to_table_with_columns(
            &columns,
            &items,
            IncludeObject::Metadata,
            table_now(),
            list_meta,
        )
    } else {
        to_table(
            info,
            &items,
            IncludeObject::Metadata,
            table_now(),
            list_meta,
        )
    };
    Some(table)
}

/// One parsed request: enough of HTTP/1.1 for kubectl.
struct Request {
    method: String,
    path: String,
    accept: String,
    content_type: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_string();
    let path = words.next().unwrap_or("/").to_string();
    let (mut accept, mut content_type, mut length) = (String::new(), String::new(), 0usize);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match name.to_ascii_lowercase().as_str() {
            "accept" => accept = value,
            "content-type" => content_type = value,
            "content-length" => length = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request {
        method,
        path,
        accept,
        content_type,
        body,
    }))
}

fn serve_connection(state: &State, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some(req) = read_request(&mut reader)? {
        let reply = if req.method == "GET" {
            route(state, &req.path, &req.accept)
        } else {
            write_request(&req)
        };
        let line = format!(
            "{} {} [{}] {} -> {}",
            req.method, req.path, req.accept, req.content_type, reply.status
        );
        eprintln!("{line}");
        state
            .log
            .lock()
            .expect("test fixture")
            .push(format!("{line} {}", String::from_utf8_lossy(&req.body)));
        write!(
            out,
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            reply.status,
            reply.content_type,
            reply.body.len()
        )?;
        out.write_all(&reply.body)?;
        out.flush()?;
    }
    Ok(())
}

/// PATCH of the one existing pod answers with the pod; anything else is 404.
fn write_request(req: &Request) -> Reply {
    match (
        req.method.as_str(),
        req.path.split('?').next().unwrap_or(""),
    ) {
        ("PATCH", "/api/v1/namespaces/default/pods/web-1") => json_reply(&applied_pod()),
        _ => not_found(),
    }
}

/// web-1 as `kubectl apply` left it: with its last-applied configuration.
fn applied_pod() -> Value {
    let mut pod = sample_pods().swap_remove(0);
    let last = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    pod["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last.to_string()});
    pod
}

/// Starts the server; returns its base URL and state. Threads live until the test process
/// exits.
fn start(state: State) -> (String, Arc<State>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("test fixture");
    let addr = listener.local_addr().expect("test fixture");
    let state = Arc::new(state);
    let shared = Arc::clone(&state);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                let _ = serve_connection(&state, stream);
            });
        }
    });
    (format!("http://{addr}"), shared)
}

fn sample_pods() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u1",
                "creationTimestamp": "2024-01-01T11:55:00Z"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0,
                    "image": "nginx", "imageID": "", "state": {"running": {}}}]},
        }),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "crashy", "namespace": "default", "uid": "u2",
                "creationTimestamp": "2023-12-30T09:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running",
                "containerStatuses": [{"name": "c", "ready": false, "restartCount": 5,
                    "image": "busybox", "imageID": "",
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:55:00Z"}},
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
        }),
    ]
}

/// `None` when kubectl is absent and we are not in CI (the test then passes vacuously).
fn kubectl_available() -> bool {
    if Path::new(KUBECTL).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{KUBECTL} is missing and CI is set: the kubectl checks cannot run"
    );
    eprintln!("skipping: {KUBECTL} not found");
    false
}

fn kubectl(server: &str, args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("test fixture");
    let out = Command::new(KUBECTL)
        .arg(format!("--server={server}"))
        .args(args)
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("none"))
        .output()
        .expect("test fixture");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stderr}\nstdout: {stdout}"
    );
    eprintln!("$ kubectl {}\n{stdout}{stderr}", args.join(" "));
    stdout
}

/// The CronTab CRD of the Kubernetes docs, trimmed: served at stable.example.com/v1.
fn crontab_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
            "shortNames": ["ct"], "categories": ["all"]},
        "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object",
                "description": "A job run on a schedule.",
                "properties": {"spec": {"type": "object", "description": "What to run and when.",
                    "properties": {
                        "cronSpec": {"type": "string", "description": "The schedule in cron format."},
                        "replicas": {"type": "integer", "description": "How many copies run."},
                    }}}}},
            "additionalPrinterColumns": [
                {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ]}]}})
}

fn server_with(legacy_only: bool) -> (String, Arc<State>) {
    let mut resources = builtin_resources();
    resources.extend(resources_from_crd(&crontab_crd()));
    let mut crds = CrdSchemas::new();
    add_crd_schemas(&mut crds, &crontab_crd());
    let openapi = OpenApiDocs::build(&resources, &crds);
    start(State {
        resources,
        openapi,
        legacy_only,
        log: Mutex::new(Vec::new()),
    })
}

fn server() -> String {
    server_with(false).0
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn kubectl_api_resources_and_explain() {
    if !kubectl_available() {
        return;
    }
    let server = server();
    let resources = squash(&kubectl(&server, &["api-resources"]));
    assert!(
        resources.contains("deployments deploy apps/v1 true Deployment"),
        "{resources}"
    );
    assert!(resources.contains("pods po v1 true Pod"), "{resources}");
    assert!(
        resources.contains("customresourcedefinitions crd,crds apiextensions.k8s.io/v1 false CustomResourceDefinition"),
        "{resources}"
    );

    let explain = kubectl(&server, &["explain", "pod.spec.containers"]);
    assert!(
        explain.contains("FIELD: containers <[]Container>"),
        "{explain}"
    );
    assert!(explain.contains("DESCRIPTION:"), "{explain}");
    assert!(
        explain.contains("image\t<string>") || explain.contains("image"),
        "{explain}"
    );

    let strategy = kubectl(&server, &["explain", "deployment.spec.strategy"]);
    assert!(
        strategy.contains("FIELD: strategy <DeploymentStrategy>"),
        "{strategy}"
    );
    assert!(strategy.contains("rollingUpdate"), "{strategy}");

    let wide = squash(&kubectl(&server, &["api-resources", "-o", "wide"]));
    assert!(
        wide.contains("deployments deploy apps/v1 true Deployment create,delete,deletecollection,get,list,patch,update,watch all"),
        "{wide}"
    );
    let version = kubectl(&server, &["version"]);
    assert!(
        version.contains("Server Version: v1.32.0-keel"),
        "{version}"
    );

    let versions = kubectl(&server, &["api-versions"]);
    assert!(versions.contains("apps/v1"), "{versions}");
}

#[test]
fn kubectl_get_pods_as_table() {
    if !kubectl_available() {
        return;
    }
    let server = server();
    let out = kubectl(&server, &["get", "pods", "-n", "default"]);
    let header = out.lines().next().unwrap_or_default();
    assert_eq!(squash(header), "NAME READY STATUS RESTARTS AGE", "{out}");
    assert!(squash(&out).contains("web-1 1/1 Running 0"), "{out}");
    assert!(
        squash(&out).contains("crashy 0/1 CrashLoopBackOff 5"),
        "{out}"
    );
    let wide = kubectl(&server, &["get", "pods", "-n", "default", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap_or_default().contains("IP"),
        "{wide}"
    );
    assert!(squash(&wide).contains("10.0.0.5 node-a"), "{wide}");
}

#[test]
fn kubectl_with_legacy_discovery_and_openapi_v2() {
    if !kubectl_available() {
        return;
    }
    let (server, _) = server_with(true);
    let resources = squash(&kubectl(&server, &["api-resources", "--api-group=apps"]));
    assert!(
        resources.contains("deployments deploy apps/v1 true Deployment"),
        "{resources}"
    );
    let explain = kubectl(&server, &["explain", "pods.spec.containers.ports"]);
    assert!(
        explain.contains("FIELD: ports <[]ContainerPort>"),
        "{explain}"
    );
    assert!(
        explain.contains("containerPort\t<integer> -required-"),
        "{explain}"
    );
    let v2 = kubectl(
        &server,
        &[
            "explain",
            "deployment.spec.template.spec.containers.env",
            "--output=plaintext-openapiv2",
        ],
    );
    assert!(v2.contains("RESOURCE: env <[]Object>"), "{v2}");
    assert!(v2.contains("valueFrom"), "{v2}");
}

#[test]
fn kubectl_custom_resource() {
    if !kubectl_available() {
        return;
    }
    let server = server();
    let resources = squash(&kubectl(
        &server,
        &["api-resources", "--api-group=stable.example.com"],
    ));
    assert!(
        resources.contains("crontabs ct stable.example.com/v1 true CronTab"),
        "{resources}"
    );
    let explain = kubectl(&server, &["explain", "crontab.spec"]);
    assert!(explain.contains("cronSpec\t<string>"), "{explain}");
    let table = kubectl(&server, &["get", "ct", "-n", "default"]);
    assert_eq!(
        squash(table.lines().next().unwrap_or_default()),
        "NAME SPEC AGE",
        "{table}"
    );
    assert!(squash(&table).contains("nightly 0 3 * * * 60m"), "{table}");
    let wide = kubectl(&server, &["get", "ct", "-n", "default", "-o", "wide"]);
    assert!(squash(&wide).contains("NAME SPEC REPLICAS AGE"), "{wide}");
}

#[test]
fn kubectl_client_side_apply_patches_with_merge_keys() {
    if !kubectl_available() {
        return;
    }
    let (server, state) = server_with(false);
    let dir = tempfile::tempdir().expect("test fixture");
    let manifest = dir.path().join("pod.yaml");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  namespace: default\n\
               spec:\n  containers:\n  - name: c\n    image: nginx:1.27\n";
    std::fs::write(&manifest, pod).expect("test fixture");
    let out = kubectl(
        &server,
        &["apply", "-f", manifest.to_str().expect("test fixture")],
    );
    assert!(out.contains("pod/web-1 configured"), "{out}");
    let log = state.log.lock().expect("test fixture").join("\n");
    let patch = log
        .lines()
        .find(|l| l.starts_with("PATCH "))
        .unwrap_or_else(|| panic!("no PATCH sent:\n{log}"));
    assert!(
        patch.contains("application/strategic-merge-patch+json"),
        "{patch}"
    );
    assert!(patch.contains("$setElementOrder/containers"), "{patch}");
    assert!(patch.contains("fieldValidation=Strict"), "{patch}");
    // The patch came from the v3 schema's merge keys: kubectl did not fall back to v2.
    assert!(log.contains("GET /openapi/v3/api/v1?hash="), "{log}");
    assert!(!log.contains("GET /openapi/v2"), "{log}");
}

#[test]
fn kubectl_get_nodes_and_deployments_wide() {
    if !kubectl_available() {
        return;
    }
    let server = server();
    let nodes = kubectl(&server, &["get", "nodes", "-o", "wide"]);
    let header = squash(nodes.lines().next().unwrap_or_default());
    assert_eq!(
        header,
        "NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME",
        "{nodes}"
    );
    assert!(
        squash(&nodes).contains("node-a Ready,SchedulingDisabled control-plane 31d v1.32.0 192.168.1.10 <none> Debian GNU/Linux 12 6.1.0 keel://0.1.0"),
        "{nodes}"
    );
    let deploys = kubectl(&server, &["get", "deploy", "-n", "default", "-o", "wide"]);
    let header = squash(deploys.lines().next().unwrap_or_default());
    assert_eq!(
        header, "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR",
        "{deploys}"
    );
    assert!(
        squash(&deploys).contains("web 2/3 3 2 4h nginx nginx:1.27 app=web"),
        "{deploys}"
    );
}
