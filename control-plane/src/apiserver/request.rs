//! `RequestInfo`: what an HTTP request asks for, parsed from its method, path and query the way
//! kube-apiserver reads them (API prefix, group, version, namespace, resource, name,
//! subresource, verb), plus the list/watch/write options of the query string. Pure parsing.

use std::collections::HashMap;

use super::status::ApiError;

/// A parsed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// False for non-resource paths such as /version, /healthz, /api, /apis/apps (discovery).
    pub is_resource_request: bool,
    pub path: String,
    /// get, list, watch, create, update, patch, delete, deletecollection (lowercase HTTP method
    /// for non-resource requests).
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
}

/// Subresources of a namespace object itself (so `/namespaces/ns1/status` is not a resource
/// named "status" inside namespace ns1).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

impl RequestInfo {
    /// Parses `method` + `path` (without the query) + the parsed query.
    pub fn parse(method: &str, path: &str, query: &Query) -> RequestInfo {
        let mut info = RequestInfo {
            path: path.to_string(),
            verb: method.to_ascii_lowercase(),
            ..RequestInfo::default()
        };
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let rest: &[&str] = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => {
                info.version = version.to_string();
                rest
            }
            ["apis", group, version, rest @ ..] if !rest.is_empty() => {
                info.group = group.to_string();
                info.version = version.to_string();
                rest
            }
            _ => return info,
        };
        info.is_resource_request = true;
        let rest: &[&str] = match rest {
            ["namespaces", namespace, resource, tail @ ..]
                if !NAMESPACE_SUBRESOURCES.contains(resource) =>
            {
                info.namespace = namespace.to_string();
                info.resource = resource.to_string();
                tail
            }
            [resource, tail @ ..] => {
                info.resource = resource.to_string();
                if *resource == "namespaces"
                    && let Some(name) = tail.first()
                {
                    info.namespace = name.to_string();
                }
                tail
            }
            [] => return info,
        };
        if let Some(name) = rest.first() {
            info.name = name.to_string();
        }
        if let Some(subresource) = rest.get(1) {
            info.subresource = subresource.to_string();
        }
        info.verb = match (method, info.name.is_empty()) {
            ("GET" | "HEAD", false) => "get",
            ("GET" | "HEAD", true) if query.is_watch() => "watch",
            ("GET" | "HEAD", true) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", false) => "delete",
            ("DELETE", true) => "deletecollection",
            _ => {
                return RequestInfo {
                    verb: method.to_ascii_lowercase(),
                    ..info
                };
            }
        }
        .to_string();
        // A watch of one object: GET .../pods?watch=1&fieldSelector=metadata.name=x is a watch.
        if info.verb == "get" && query.is_watch() && info.subresource.is_empty() {
            info.verb = "watch".to_string();
        }
        info
    }

    /// True when the request addresses a namespaced collection across all namespaces.
    pub fn all_namespaces(&self) -> bool {
        self.namespace.is_empty()
    }
}

/// The query string, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut params = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(percent_decode(key), percent_decode(value));
        }
        Query { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(
            self.params.get(key).map(String::as_str),
            Some("true" | "1" | "")
        ) && self.params.contains_key(key)
    }

    pub fn is_watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn allow_bookmarks(&self) -> bool {
        self.flag("allowWatchBookmarks")
    }

    pub fn send_initial_events(&self) -> bool {
        self.flag("sendInitialEvents")
    }

    /// `dryRun=All`: validate and answer, store nothing.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dryRun value {other:?}: supported values are \"All\""
            ))),
        }
    }

    pub fn force(&self) -> bool {
        self.flag("force")
    }

    /// `fieldManager`, or the default kube derives from the user agent.
    pub fn field_manager(&self) -> Option<&str> {
        self.get("fieldManager")
    }

    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(0),
            Some(text) => text
                .parse::<i64>()
                .map(|n| n.max(0) as usize)
                .map_err(|_| ApiError::bad_request(format!("invalid limit {text:?}"))),
        }
    }

    pub fn timeout_seconds(&self) -> Option<u64> {
        self.get("timeoutSeconds").and_then(|t| t.parse().ok())
    }
}

/// Decodes `%XX` escapes and `+` (as a space) in a query component.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, target: &str) -> RequestInfo {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        RequestInfo::parse(method, path, &Query::parse(query))
    }

    #[test]
    fn paths_parse_like_kube() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                ("list", "", "default", "pods", "", ""),
            ),
            (
                "GET",
                "/api/v1/pods?watch=true",
                ("watch", "", "", "pods", "", ""),
            ),
            (
                "GET",
                "/apis/apps/v1/namespaces/ns1/deployments/web/scale",
                ("get", "apps", "ns1", "deployments", "web", "scale"),
            ),
            (
                "POST",
                "/api/v1/namespaces/ns1/pods/web/binding",
                ("create", "", "ns1", "pods", "web", "binding"),
            ),
            (
                "GET",
                "/api/v1/namespaces/ns1",
                ("get", "", "ns1", "namespaces", "ns1", ""),
            ),
            (
                "PUT",
                "/api/v1/namespaces/ns1/finalize",
                ("update", "", "ns1", "namespaces", "ns1", "finalize"),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/ns1/configmaps",
                ("deletecollection", "", "ns1", "configmaps", "", ""),
            ),
            (
                "PATCH",
                "/api/v1/nodes/n1/status",
                ("patch", "", "", "nodes", "n1", "status"),
            ),
        ];
        for (method, path, (verb, group, namespace, resource, name, subresource)) in cases {
            let info = parse(method, path);
            assert!(info.is_resource_request, "{path}");
            assert_eq!(
                (
                    info.verb.as_str(),
                    info.group.as_str(),
                    info.namespace.as_str(),
                    info.resource.as_str(),
                    info.name.as_str(),
                    info.subresource.as_str()
                ),
                (verb, group, namespace, resource, name, subresource),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn discovery_paths_are_not_resource_requests() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3/apis/apps/v1",
        ] {
            assert!(!parse("GET", path).is_resource_request, "{path}");
        }
    }

    #[test]
    fn query_decodes_selectors() {
        let query = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=500&watch=1",
        ));
        assert_eq!(query.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(query.limit().ok(), Some(500));
        assert!(query.is_watch());
        assert!(Query::parse(Some("dryRun=Bogus")).dry_run().is_err());
    }
}
