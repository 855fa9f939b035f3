//! The plugin skeleton: what every Keel CNI plugin binary does around its own logic. Reads the
//! `CNI_*` environment and the config on stdin into an [`Invocation`], dispatches ADD, DEL,
//! CHECK, STATUS, GC and VERSION to a [`Plugin`], and prints the result (in the format of the
//! config's `cniVersion`) or the spec's error object. Also delegates to IPAM plugins.
//!
//! Owns the plugin side of the protocol only; what a plugin does to the host is its own. Error
//! codes follow the reference skeleton, so that runtimes see the same codes from ours and from
//! the reference plugins: a missing or unknown variable is 4, undecodable stdin 6, an
//! unsupported `cniVersion` 1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use serde_json::{Map, Value};

use crate::spec::{CniResult, ErrorObject, SUPPORTED_VERSIONS, Version, code};

/// The code the reference skeleton gives errors that carry none of their own.
pub const INTERNAL: u32 = 999;

/// The operation a runtime asked for (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// A failure as the spec's error object carries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl PluginError {
    pub fn new(code: u32, msg: impl Into<String>) -> PluginError {
        PluginError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> PluginError {
        self.details = details.into();
        self
    }

    fn to_object(&self, version: &str) -> ErrorObject {
        ErrorObject {
            cni_version: version.to_string(),
            code: self.code,
            msg: self.msg.clone(),
            details: self.details.clone(),
        }
    }
}

/// One call of a plugin: the environment and the config.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, STATUS and GC).
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, parsed from `K=V;K=V`.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
    /// The config from stdin (with `name`, `cniVersion`, `prevResult`, `runtimeConfig`, ...).
    pub config: Map<String, Value>,
    /// The config's `cniVersion`.
    pub version: Version,
    /// Stdin as it came, for delegation.
    raw: Vec<u8>,
}

impl Invocation {
    /// A `CNI_ARGS` value.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The config's `prevResult`, if any.
    pub fn prev_result(&self) -> Result<Option<CniResult>, PluginError> {
        match self.config.get("prevResult") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let mut v = v.clone();
                // A prevResult may omit its version: it is the config's.
                if let Some(obj) = v.as_object_mut() {
                    obj.entry("cniVersion")
                        .or_insert_with(|| Value::String(self.version.to_string()));
                }
                CniResult::from_value(&v)
                    .map(Some)
                    .map_err(|e| PluginError::new(code::DECODE_FAILURE, format!("prevResult: {e}")))
            }
        }
    }

    /// The config's `name`.
    pub fn network_name(&self) -> &str {
        self.config
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Builds an invocation from an environment and stdin (what [`run`] does with the real ones).
    pub fn from_parts(
        env: &HashMap<String, String>,
        stdin: Vec<u8>,
    ) -> Result<Invocation, PluginError> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let command = var("CNI_COMMAND").ok_or_else(|| {
            PluginError::new(
                code::INVALID_ENVIRONMENT,
                "required env variables [CNI_COMMAND] missing",
            )
        })?;
        let command = Command::parse(&command).ok_or_else(|| {
            PluginError::new(
                code::INVALID_ENVIRONMENT,
                format!("unknown CNI_COMMAND: {command}"),
            )
        })?;
        let required: &[&str] = match command {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Status | Command::Gc => &["CNI_PATH"],
            Command::Version => &[],
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| var(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(PluginError::new(
                code::INVALID_ENVIRONMENT,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let args = match var("CNI_ARGS") {
            None => Vec::new(),
            Some(a) => parse_args(&a)?,
        };
        let path = var("CNI_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let (config, version) =
            if command == Command::Version && stdin.iter().all(u8::is_ascii_whitespace) {
                (Map::new(), Version::V1_1_0)
            } else {
                parse_config(&stdin)?
            };
        Ok(Invocation {
            command,
            container_id: var("CNI_CONTAINERID").unwrap_or_default(),
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname: var("CNI_IFNAME").unwrap_or_default(),
            args,
            path,
            config,
            version,
            raw: stdin,
        })
    }
}

/// What a plugin implements; [`run`] does the rest.
pub trait Plugin {
    fn add(&self, inv: &Invocation) -> Result<CniResult, PluginError>;
    fn del(&self, inv: &Invocation) -> Result<(), PluginError>;
    fn check(&self, inv: &Invocation) -> Result<(), PluginError>;
    fn status(&self, _inv: &Invocation) -> Result<(), PluginError> {
        Ok(())
    }
    fn gc(&self, _inv: &Invocation) -> Result<(), PluginError> {
        Ok(())
    }
}

fn parse_args(s: &str) -> Result<Vec<(String, String)>, PluginError> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    PluginError::new(
                        code::INVALID_ENVIRONMENT,
                        format!("CNI_ARGS: invalid pair {kv:?} (want KEY=VALUE)"),
                    )
                })
        })
        .collect()
}

fn parse_config(stdin: &[u8]) -> Result<(Map<String, Value>, Version), PluginError> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        PluginError::new(
            code::DECODE_FAILURE,
            format!("decoding the network config: {e}"),
        )
    })?;
    let Value::Object(config) = value else {
        return Err(PluginError::new(
            code::DECODE_FAILURE,
            "decoding the network config: not a JSON object",
        ));
    };
    let declared = config
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.1.0")
        .to_string();
    let version = Version::parse(&declared)
        .filter(|_| SUPPORTED_VERSIONS.contains(&declared.as_str()))
        .ok_or_else(|| {
            PluginError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(
                format!(
                    "config is {declared:?}, plugin supports [{}]",
                    SUPPORTED_VERSIONS.join(" ")
                ),
            )
        })?;
    Ok((config, version))
}

/// The result as a version's format: before 1.0.0 each IP also says `"version": "4"|"6"`.
pub fn result_json(result: &CniResult, version: Version) -> Value {
    let mut r = result.clone();
    r.cni_version = version.to_string();
    let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
    if version < Version(1, 0, 0)
        && let Some(ips) = v.get_mut("ips").and_then(Value::as_array_mut)
    {
        for (ip, cfg) in ips.iter_mut().zip(&r.ips) {
            if let Some(obj) = ip.as_object_mut() {
                let family = if cfg.address.addr().is_ipv4() {
                    "4"
                } else {
                    "6"
                };
                obj.insert("version".into(), Value::String(family.into()));
            }
        }
    }
    v
}

/// Dispatches one invocation; the `Value` is what to print on success (`None`: print nothing).
pub fn dispatch(plugin: &dyn Plugin, inv: &Invocation) -> Result<Option<Value>, PluginError> {
    match inv.command {
        Command::Add => plugin.add(inv).map(|r| Some(result_json(&r, inv.version))),
        Command::Del => plugin.del(inv).map(|()| None),
        Command::Check => {
            if inv.version < Version::V0_4_0 {
                return Err(PluginError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!("config version {} does not allow CHECK", inv.version),
                ));
            }
            plugin.check(inv).map(|()| None)
        }
        Command::Status => plugin.status(inv).map(|()| None),
        Command::Gc => plugin.gc(inv).map(|()| None),
        Command::Version => Ok(Some(serde_json::json!({
            "cniVersion": inv.version.to_string(),
            "supportedVersions": SUPPORTED_VERSIONS,
        }))),
    }
}

/// A plugin binary's whole `main`: reads the environment and stdin, dispatches, prints the
/// result or the error object, and returns the exit code. `about` is printed when the binary
/// runs without `CNI_COMMAND` on a terminal.
pub fn run(plugin: &dyn Plugin, about: &str) -> i32 {
    let env: HashMap<String, String> = std::env::vars().collect();
    if !env.contains_key("CNI_COMMAND") && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("{about}");
    }
    let mut stdin = Vec::new();
    let read = if env.get("CNI_COMMAND").map(String::as_str) == Some("VERSION")
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        Ok(0)
    } else {
        std::io::stdin().read_to_end(&mut stdin)
    };
    // The error object's cniVersion when the config's is not known (yet).
    let mut version = Version::V1_1_0;
    let outcome = match read {
        Err(e) => Err(PluginError::new(
            code::IO_FAILURE,
            format!("reading stdin: {e}"),
        )),
        Ok(_) => Invocation::from_parts(&env, stdin).and_then(|inv| {
            version = inv.version;
            dispatch(plugin, &inv)
        }),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let obj = e.to_object(&version.to_string());
            let _ = writeln!(out, "{}", serde_json::to_string(&obj).unwrap_or_default());
            1
        }
    }
}

/// Runs the IPAM plugin `ipam_type`, found in `CNI_PATH`, for this invocation's command with the
/// same environment and stdin (the delegation the spec describes). ADD returns its result; DEL
/// and CHECK return `None`. The IPAM plugin's own error comes back with its code.
pub fn delegate(ipam_type: &str, inv: &Invocation) -> Result<Option<CniResult>, PluginError> {
    let binary = inv
        .path
        .iter()
        .map(|dir| dir.join(ipam_type))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            PluginError::new(
                INTERNAL,
                format!("failed to find plugin {ipam_type:?} in path {:?}", inv.path),
            )
        })?;
    let path = std::env::join_paths(&inv.path).unwrap_or_default();
    let args: Vec<String> = inv.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut child = Process::new(&binary)
        .env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", &inv.container_id)
        .env(
            "CNI_NETNS",
            inv.netns.as_deref().unwrap_or(std::path::Path::new("")),
        )
        .env("CNI_IFNAME", &inv.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PluginError::new(INTERNAL, format!("running {}: {e}", binary.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading its stdin is judged by its output below.
        let _ = stdin.write_all(&inv.raw);
    }
    let out = child.wait_with_output().map_err(|e| {
        PluginError::new(INTERNAL, format!("waiting for {}: {e}", binary.display()))
    })?;
    if !out.status.success() {
        return Err(match ErrorObject::from_bytes(&out.stdout) {
            Some(e) => PluginError {
                code: e.code,
                msg: e.msg,
                details: e.details,
            },
            None => PluginError::new(
                INTERNAL,
                format!(
                    "{ipam_type} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ),
        });
    }
    if inv.command != Command::Add {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        PluginError::new(
            code::DECODE_FAILURE,
            format!("decoding {ipam_type}'s result: {e}"),
        )
    })?;
    CniResult::from_value(&value)
        .map(Some)
        .map_err(|e| PluginError::new(code::DECODE_FAILURE, format!("{ipam_type}'s result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ADD_ENV: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
    ];

    struct Fixed;
    impl Plugin for Fixed {
        fn add(&self, _inv: &Invocation) -> Result<CniResult, PluginError> {
            let v = serde_json::json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                "ips": [
                    {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
                    {"address": "fd00::5/64", "interface": 0}
                ]
            });
            CniResult::from_value(&v).map_err(|e| PluginError::new(INTERNAL, e.to_string()))
        }
        fn del(&self, _inv: &Invocation) -> Result<(), PluginError> {
            Ok(())
        }
        fn check(&self, _inv: &Invocation) -> Result<(), PluginError> {
            Err(PluginError::new(INTERNAL, "checked"))
        }
    }

    fn invoke(env_pairs: &[(&str, &str)], stdin: &str) -> Result<Option<Value>, PluginError> {
        let inv = Invocation::from_parts(&env(env_pairs), stdin.as_bytes().to_vec())?;
        dispatch(&Fixed, &inv)
    }

    #[test]
    fn environment_and_args() {
        let inv = Invocation::from_parts(
            &env(ADD_ENV),
            br#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#.to_vec(),
        )
        .expect("invocation");
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.arg("K8S_POD_NAME"), Some("web"));
        assert_eq!(inv.path.len(), 2);
        assert_eq!(inv.network_name(), "n");
        assert_eq!(inv.version, Version(1, 0, 0));
    }

    #[test]
    fn errors_carry_the_reference_codes() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Env, &str, u32)] = &[
            (&[], "{}", code::INVALID_ENVIRONMENT),
            (&[("CNI_COMMAND", "FROB")], "{}", code::INVALID_ENVIRONMENT),
            (&[("CNI_COMMAND", "ADD")], "{}", code::INVALID_ENVIRONMENT),
            (ADD_ENV, "{not json", code::DECODE_FAILURE),
            (ADD_ENV, "[1]", code::DECODE_FAILURE),
            (
                ADD_ENV,
                r#"{"cniVersion":"9.9.9"}"#,
                code::INCOMPATIBLE_VERSION,
            ),
            (
                ADD_ENV,
                r#"{"name":"no version"}"#,
                code::INCOMPATIBLE_VERSION,
            ),
        ];
        for (env_pairs, stdin, want) in cases {
            let got = invoke(env_pairs, stdin).expect_err(stdin);
            assert_eq!(got.code, *want, "{env_pairs:?} {stdin}: {got:?}");
        }
        let missing = invoke(&[("CNI_COMMAND", "ADD")], "{}").expect_err("missing env");
        assert!(missing.msg.contains("CNI_CONTAINERID"), "{missing:?}");
    }

    #[test]
    fn results_follow_the_config_version() {
        let old = invoke(ADD_ENV, r#"{"cniVersion":"0.3.1","name":"n"}"#)
            .expect("add")
            .expect("result");
        assert_eq!(old["cniVersion"], "0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        let new = invoke(ADD_ENV, r#"{"cniVersion":"1.1.0","name":"n"}"#)
            .expect("add")
            .expect("result");
        assert_eq!(new["cniVersion"], "1.1.0");
        assert!(new["ips"][0].get("version").is_none());
    }

    #[test]
    fn check_needs_0_4_0_and_version_needs_no_config() {
        let mut check_env = ADD_ENV.to_vec();
        check_env[0] = ("CNI_COMMAND", "CHECK");
        let e = invoke(&check_env, r#"{"cniVersion":"0.3.1","name":"n"}"#).expect_err("check");
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        let e = invoke(&check_env, r#"{"cniVersion":"1.0.0","name":"n"}"#).expect_err("check");
        assert_eq!(e.msg, "checked");
        let v = invoke(&[("CNI_COMMAND", "VERSION")], "")
            .expect("version")
            .expect("answer");
        assert_eq!(
            v["supportedVersions"].as_array().map(Vec::len),
            Some(SUPPORTED_VERSIONS.len())
        );
    }

    #[test]
    fn prev_result_takes_the_config_version() {
        let inv = Invocation::from_parts(
            &env(ADD_ENV),
            br#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"10.0.0.2/24"}]}}"#
                .to_vec(),
        )
        .expect("invocation");
        let prev = inv.prev_result().expect("prev").expect("some");
        assert_eq!(prev.cni_version, "1.0.0");
        assert_eq!(prev.ips.len(), 1);
    }
}
