//! Kubeconfig files for the admin and for the cluster's own components (scheduler,
//! controller-manager, kubelets): one cluster, one user, one context, written as JSON (which
//! kubectl and kube-rs read like YAML).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Value, json};

use super::error::{Error, Result};
use super::pki::{Pki, write_file};

/// How the user of a kubeconfig authenticates.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A client certificate and key, PEM.
    ClientCert { cert_pem: String, key_pem: String },
    /// A bearer token.
    Token(String),
}

/// Renders a kubeconfig for `user` against `server` (`https://HOST:PORT`) trusting `ca_pem`.
pub fn render(server: &str, ca_pem: &str, user: &str, credential: &Credential) -> Value {
    let context = format!("{user}@keel");
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{
            "name": "keel",
            "cluster": { "server": server, "certificate-authority-data": b64(ca_pem) },
        }],
        "users": [{ "name": user, "user": user_fields(credential) }],
        "contexts": [{ "name": context, "context": { "cluster": "keel", "user": user } }],
        "current-context": context,
    })
}

fn user_fields(credential: &Credential) -> Value {
    match credential {
        Credential::ClientCert { cert_pem, key_pem } => json!({
            "client-certificate-data": b64(cert_pem),
            "client-key-data": b64(key_pem),
        }),
        Credential::Token(token) => json!({ "token": token }),
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The `https://HOST:PORT` URL of a server, bracketing IPv6 addresses.
pub fn server_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// Writes a kubeconfig to `path` with mode 0600 (it holds credentials).
pub fn write(path: &Path, kubeconfig: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(kubeconfig).map_err(|source| Error::Json {
        context: "serializing a kubeconfig",
        source,
    })?;
    write_file(path, &text, true)
}

/// Writes `dir/admin.kubeconfig` for the admin certificate and returns its path.
pub fn write_admin(dir: &Path, pki: &Pki, server: &str) -> Result<PathBuf> {
    let admin = pki.admin();
    let credential = Credential::ClientCert {
        cert_pem: admin.cert_pem.clone(),
        key_pem: admin.key_pem.clone(),
    };
    let config = render(server, pki.ca_pem(), super::pki::ADMIN_USER, &credential);
    let path = dir.join("admin.kubeconfig");
    write(&path, &config)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_kubeconfig_has_the_fields_kubectl_reads() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["127.0.0.1".to_string()]).unwrap();
        let path = write_admin(dir.path(), &pki, &server_url("127.0.0.1", 6443)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(config["current-context"], config["contexts"][0]["name"]);
        assert_eq!(
            config["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:6443")
        );
        let ca = config["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .unwrap();
        assert_eq!(String::from_utf8(ca).unwrap(), pki.ca_pem());
        let user = &config["users"][0]["user"];
        assert!(user["client-certificate-data"].as_str().is_some());
        assert!(user["client-key-data"].as_str().is_some());
        if std::path::Path::new("/usr/bin/kubectl").exists() {
            let out = std::process::Command::new("/usr/bin/kubectl")
                .args([
                    "config",
                    "view",
                    "--raw",
                    "-o",
                    "jsonpath={.users[0].name}",
                    "--kubeconfig",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), ADMIN_USER_NAME);
        }
    }

    const ADMIN_USER_NAME: &str = super::super::pki::ADMIN_USER;

    #[test]
    fn token_kubeconfig_and_ipv6_server() {
        assert_eq!(server_url("::1", 6443), "https://[::1]:6443");
        let config = render(
            "https://[::1]:6443",
            "CA",
            "system:kube-scheduler",
            &Credential::Token("t".into()),
        );
        assert_eq!(config["users"][0]["user"]["token"], "t");
        assert_eq!(
            config["contexts"][0]["context"]["user"],
            "system:kube-scheduler"
        );
    }
}
