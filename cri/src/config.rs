//! The keel-cri configuration file (TOML): its keys, their defaults, and validation.
//!
//! Owns parsing and checking only; every other module receives the parsed [`Config`].
//! A missing file means all defaults; an unknown key or a bad value is an error naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default location of the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/keel/cri.toml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The whole keel-cri configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the CRI gRPC server listens: `unix:///path/to.sock`.
    pub listen: String,
    /// Persistent data: images, layers, sandbox and container checkpoints.
    pub root: PathBuf,
    /// Volatile state (tmpfs): pinned namespaces, monitor files.
    pub state: PathBuf,
    /// `cgroupfs` or `systemd`; reported to the kubelet through RuntimeConfig.
    pub cgroup_driver: CgroupDriver,
    /// The runtime handler used when a RunPodSandbox request names none.
    pub default_runtime: String,
    /// Runtime handlers by name (`RunPodSandboxRequest.runtime_handler`).
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// The `keel-cri-monitor` binary; empty = next to the keel-cri executable, then `$PATH`.
    pub monitor_path: PathBuf,
    /// Image used for nothing but reporting (`Status` / verbose info); there is no infra container.
    pub sandbox_image: String,
    pub cni: CniConfig,
    /// Registry hosts (`registry.k8s.io`, `docker.io`, `127.0.0.1:5000`) and their mirrors.
    pub registry: BTreeMap<String, RegistryConfig>,
    /// A pull that transfers nothing for this long is cancelled.
    pub image_pull_progress_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl CgroupDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }
}

/// A runtime handler: a runc-compatible binary and where it keeps its state.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeHandler {
    /// Path or name of a runc-compatible binary (`keel-runc`, `runc`, `youki`).
    pub path: PathBuf,
    /// The binary's `--root`; empty = `<state>/runtime/<handler name>`.
    pub root: PathBuf,
}

impl Default for RuntimeHandler {
    fn default() -> Self {
        RuntimeHandler {
            path: PathBuf::from("keel-runc"),
            root: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CniConfig {
    /// Directory of `.conflist`/`.conf`/`.json` network configs; the first in lexical order is used.
    pub conf_dir: PathBuf,
    /// Directories searched for plugin binaries, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// Where CNI results are cached for DEL and CHECK; empty = `<root>/cni-cache`.
    pub cache_dir: PathBuf,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin")],
            cache_dir: PathBuf::new(),
        }
    }
}

/// How to reach one registry host.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Endpoints tried in order before the registry itself: `https://host[:port]` or
    /// `http://host[:port]` (plain HTTP).
    pub mirrors: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert("keel-runc".to_string(), RuntimeHandler::default());
        runtimes.insert(
            "runc".to_string(),
            RuntimeHandler {
                path: PathBuf::from("runc"),
                root: PathBuf::new(),
            },
        );
        Config {
            listen: "unix:///run/keel/cri.sock".to_string(),
            root: PathBuf::from("/var/lib/keel/cri"),
            state: PathBuf::from("/run/keel/cri"),
            cgroup_driver: CgroupDriver::Cgroupfs,
            default_runtime: "keel-runc".to_string(),
            runtimes,
            monitor_path: PathBuf::new(),
            sandbox_image: "registry.k8s.io/pause:3.10".to_string(),
            cni: CniConfig::default(),
            registry: BTreeMap::new(),
            image_pull_progress_timeout_secs: 60,
        }
    }
}

impl Config {
    /// Loads `path`; a file that does not exist yields the defaults.
    pub fn load(path: &Path) -> Result<Config, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(Error::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), Error> {
        let invalid = |key: &str, message: String| Error::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if self.listen_path().is_none() {
            return Err(invalid(
                "listen",
                format!("{:?} is not of the form unix:///absolute/path", self.listen),
            ));
        }
        for (key, dir) in [("root", &self.root), ("state", &self.state)] {
            if !dir.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{} is not an absolute path", dir.display()),
                ));
            }
        }
        if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(invalid(
                "default_runtime",
                format!(
                    "no [runtimes.{}] handler is configured",
                    self.default_runtime
                ),
            ));
        }
        for (name, handler) in &self.runtimes {
            if handler.path.as_os_str().is_empty() {
                return Err(invalid(
                    &format!("runtimes.{name}.path"),
                    "is empty".to_string(),
                ));
            }
        }
        for (host, reg) in &self.registry {
            for m in &reg.mirrors {
                if !(m.starts_with("http://") || m.starts_with("https://")) {
                    return Err(invalid(
                        &format!("registry.\"{host}\".mirrors"),
                        format!("{m:?} must start with http:// or https://"),
                    ));
                }
            }
        }
        if self.image_pull_progress_timeout_secs == 0 {
            return Err(invalid(
                "image_pull_progress_timeout_secs",
                "must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    /// The socket path from `listen`, if it is a `unix://` address with an absolute path.
    pub fn listen_path(&self) -> Option<PathBuf> {
        let p = self.listen.strip_prefix("unix://")?;
        p.starts_with('/').then(|| PathBuf::from(p))
    }

    /// The config as TOML, every key written out (what `keel-cri --print-config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render the config: {e}\n"))
    }

    /// The CNI result cache directory (`cni.cache_dir`, or `<root>/cni-cache`).
    pub fn cni_cache_dir(&self) -> PathBuf {
        if self.cni.cache_dir.as_os_str().is_empty() {
            self.root.join("cni-cache")
        } else {
            self.cni.cache_dir.clone()
        }
    }

    /// The `--root` of a runtime handler's binary.
    pub fn runtime_root(&self, handler: &str) -> PathBuf {
        match self.runtimes.get(handler) {
            Some(h) if !h.root.as_os_str().is_empty() => h.root.clone(),
            _ => self.state.join("runtime").join(handler),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("cri.toml"), text)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").ok(), Some(Config::default()));
    }

    #[test]
    fn missing_file_is_all_defaults() {
        let c = Config::load(Path::new("/nonexistent/keel/cri.toml")).ok();
        assert_eq!(c, Some(Config::default()));
    }

    #[test]
    fn issue_example_parses() {
        let c = parse(
            r#"
listen = "unix:///run/keel/cri.sock"
root = "/var/lib/keel/cri"
state = "/run/keel/cri"
[cni]
conf_dir = "/etc/cni/net.d"
bin_dirs = ["/opt/cni/bin"]
[registry."registry.k8s.io"]
mirrors = ["http://127.0.0.1:5000"]
"#,
        )
        .expect("parses");
        assert_eq!(
            c.registry["registry.k8s.io"].mirrors,
            vec!["http://127.0.0.1:5000".to_string()]
        );
        assert_eq!(c.listen_path(), Some(PathBuf::from("/run/keel/cri.sock")));
    }

    #[test]
    fn printed_config_parses_back() {
        let mut c = Config::default();
        c.registry.insert(
            "registry.k8s.io".into(),
            RegistryConfig {
                mirrors: vec!["http://127.0.0.1:5000".into()],
            },
        );
        assert_eq!(parse(&c.to_toml()).ok(), Some(c));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("listen = \"tcp://x\"", "listen"),
            ("root = \"relative\"", "root"),
            ("default_runtime = \"nope\"", "default_runtime"),
            (
                "[registry.\"a\"]\nmirrors = [\"ftp://x\"]",
                "registry.\"a\".mirrors",
            ),
            ("bogus = 1", "bogus"),
            ("cgroup_driver = \"weird\"", "weird"),
            ("root = [", "cri.toml"),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(
                err.contains(needle),
                "{text:?} gave {err:?}, want it to name {needle:?}"
            );
        }
    }
}
