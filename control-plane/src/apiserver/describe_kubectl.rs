//! Proof against the real client: a throwaway HTTP/1.1 server on 127.0.0.1 answers GETs with
//! the discovery, OpenAPI and Table documents, and `/usr/bin/kubectl` is run against it.
//!
//! Skipped (with a note) when kubectl is missing, unless `CI` is set: then it fails loudly.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::discovery::{
    aggregated_apis, aggregated_core, aggregated_version_accepted, api_group, api_group_list,
    api_resource_list, api_versions, version_info,
};
use super::openapi::{CrdSchemas, OpenApiDocs};
use super::resources::{ResourceInfo, builtin_resources, find_by_plural};
use super::table::{IncludeObject, table_accepted, to_table};

const KUBECTL: &str = "/usr/bin/kubectl";

struct State {
    resources: Vec<ResourceInfo>,
    openapi: OpenApiDocs,
    pods: Vec<Value>,
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
    let aggregated = aggregated_version_accepted(accept);
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
        ["openapi", "v2"] => return raw(state.openapi.v2.clone()),
        ["openapi", "v3"] => return raw(state.openapi.v3_index.clone()),
        ["openapi", "v3", rest @ ..] => {
            return match state.openapi.v3_document(&rest.join("/")) {
                Some(b) => raw(b.to_vec()),
                None => not_found(),
            };
        }
        ["api", "v1", "namespaces", _, "pods"] | ["api", "v1", "pods"] => Some(pods(state, accept)),
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
        content_type: format!(
            "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
        ),
        ..json_reply(&doc)
    }
}

fn pods(state: &State, accept: &str) -> Value {
    let list_meta = json!({"resourceVersion": "42"});
    let Some(pod_info) = find_by_plural(&state.resources, "", "v1", "pods") else {
        return json!({});
    };
    if table_accepted(accept) {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
        return to_table(
            pod_info,
            &state.pods,
            IncludeObject::Metadata,
            now,
            list_meta,
        );
    }
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": list_meta, "items": state.pods})
}

fn serve_connection(state: &State, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let mut accept = String::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("accept") {
                    accept = value.trim().to_string();
                }
            }
        }
        let reply = route(state, &path, &accept);
        eprintln!("GET {path} [{accept}] -> {}", reply.status);
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
}

/// Starts the server; returns its base URL. Threads live until the test process exits.
fn start(state: State) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(state);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                let _ = serve_connection(&state, stream);
            });
        }
    });
    format!("http://{addr}")
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
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(KUBECTL)
        .arg(format!("--server={server}"))
        .args(args)
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("none"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stderr}\nstdout: {stdout}"
    );
    eprintln!("$ kubectl {}\n{stdout}{stderr}", args.join(" "));
    stdout
}

fn server() -> String {
    let resources = builtin_resources();
    let openapi = OpenApiDocs::build(&resources, &CrdSchemas::new());
    start(State {
        resources,
        openapi,
        pods: sample_pods(),
    })
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
