//! The OCI `linux.seccomp` section of a container: `RuntimeDefault`, `Localhost` and
//! `Unconfined` CRI profiles.
//!
//! `RuntimeDefault` here is a deny list: everything is allowed except the system calls that the
//! container runtimes' default profiles keep from containers (kernel modules, keyrings, clocks,
//! reboot, swap, BPF, perf, ptrace and cross-process memory, mounts and new namespaces, NUMA
//! policy, raw I/O ports, ...), each of which comes back when the container holds the capability
//! that governs it, as those profiles do. New namespaces through `clone` are refused flag by flag
//! without CAP_SYS_ADMIN; `clone3` answers ENOSYS so that libc falls back to `clone`. A deny
//! list lets a system call added to the kernel later through: that is the price of not breaking
//! containers with an allow list written from memory. `Localhost` reads an OCI-format profile
//! file from the host. Pure except for reading that file.

use std::path::Path;

use k8s_cri::v1 as cri;
use serde_json::{Value, json};

use super::spec::Error;

/// A group of system calls the default profile refuses, and the capability that allows them.
struct Denied {
    /// `None`: refused whatever the capabilities.
    unless: Option<&'static str>,
    names: &'static [&'static str],
}

const DENIED: &[Denied] = &[
    Denied {
        unless: None,
        names: &[
            "add_key",
            "keyctl",
            "request_key",
            "kexec_file_load",
            "kexec_load",
            "lookup_dcookie",
            "nfsservctl",
            "userfaultfd",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
            "create_module",
            "get_kernel_syms",
            "query_module",
        ],
    },
    Denied {
        unless: Some("CAP_SYS_MODULE"),
        names: &["init_module", "finit_module", "delete_module"],
    },
    Denied {
        unless: Some("CAP_SYS_BOOT"),
        names: &["reboot"],
    },
    Denied {
        unless: Some("CAP_SYS_TIME"),
        names: &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
        ],
    },
    Denied {
        unless: Some("CAP_SYS_PACCT"),
        names: &["acct"],
    },
    Denied {
        unless: Some("CAP_SYS_RAWIO"),
        names: &["iopl", "ioperm"],
    },
    Denied {
        unless: Some("CAP_SYS_PTRACE"),
        names: &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"],
    },
    Denied {
        unless: Some("CAP_SYS_NICE"),
        names: &["get_mempolicy", "set_mempolicy", "mbind", "move_pages"],
    },
    Denied {
        unless: Some("CAP_SYSLOG"),
        names: &["syslog"],
    },
    Denied {
        unless: Some("CAP_SYS_ADMIN"),
        names: &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "swapon",
            "swapoff",
            "quotactl",
            "name_to_handle_at",
            "open_by_handle_at",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "lookup_dcookie",
            "fanotify_init",
        ],
    },
    Denied {
        unless: Some("CAP_BPF"),
        names: &["bpf"],
    },
    Denied {
        unless: Some("CAP_PERFMON"),
        names: &["perf_event_open"],
    },
];

/// `clone` flags that make new namespaces (refused without CAP_SYS_ADMIN).
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The `RuntimeDefault` profile for a container holding `caps` (full names, `CAP_...`).
pub fn runtime_default(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|held| held == c);
    // CAP_SYS_ADMIN also grants what BPF and PERFMON were split from.
    let allowed =
        |c: &str| has(c) || (matches!(c, "CAP_BPF" | "CAP_PERFMON") && has("CAP_SYS_ADMIN"));
    let mut denied: Vec<&str> = DENIED
        .iter()
        .filter(|d| !d.unless.is_some_and(allowed))
        .flat_map(|d| d.names.iter().copied())
        .collect();
    denied.sort_unstable();
    denied.dedup();
    let mut rules = vec![json!({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})];
    if !has("CAP_SYS_ADMIN") {
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
        for flag in NAMESPACE_FLAGS {
            rules.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    })
}

/// The `linux.seccomp` value for a container, or `None` for no filter (Unconfined, privileged).
pub fn for_container(
    profile: Option<&cri::SecurityProfile>,
    privileged: bool,
    caps: &[String],
) -> Result<Option<Value>, Error> {
    use cri::security_profile::ProfileType;
    let Some(p) = profile else {
        return Ok(None);
    };
    if privileged {
        return Ok(None);
    }
    match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::Unconfined) => Ok(None),
        Ok(ProfileType::RuntimeDefault) => Ok(Some(runtime_default(caps))),
        Ok(ProfileType::Localhost) => localhost(Path::new(&p.localhost_ref)).map(Some),
        Err(_) => Err(Error::Seccomp(format!(
            "profile type {} is unknown",
            p.profile_type
        ))),
    }
}

/// Reads an OCI-format seccomp profile (`defaultAction`, `syscalls`, ...) from the host.
fn localhost(path: &Path) -> Result<Value, Error> {
    let bad = |m: String| Error::Seccomp(format!("profile {}: {m}", path.display()));
    if !path.is_absolute() {
        return Err(bad("is not an absolute path".into()));
    }
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if v.get("defaultAction").and_then(Value::as_str).is_none() {
        return Err(bad("has no defaultAction".into()));
    }
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(v.clone())
        .map_err(|e| bad(format!("not an OCI seccomp profile: {e}")))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(profile: &Value) -> Vec<String> {
        profile["syscalls"][0]["names"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn default_profile_follows_capabilities() {
        let plain = runtime_default(&["CAP_CHOWN".into()]);
        let denied = names(&plain);
        for s in ["mount", "unshare", "ptrace", "bpf", "keyctl", "reboot"] {
            assert!(denied.contains(&s.to_string()), "{s} denied without caps");
        }
        // Seven clone rules (one per namespace flag) and clone3.
        assert_eq!(plain["syscalls"].as_array().map(Vec::len), Some(1 + 1 + 7));
        let admin = runtime_default(&["CAP_SYS_ADMIN".into(), "CAP_SYS_PTRACE".into()]);
        let denied = names(&admin);
        for s in ["mount", "unshare", "ptrace", "bpf", "perf_event_open"] {
            assert!(!denied.contains(&s.to_string()), "{s} allowed with caps");
        }
        assert!(
            denied.contains(&"keyctl".to_string()),
            "keyrings stay denied"
        );
        assert_eq!(admin["syscalls"].as_array().map(Vec::len), Some(1));
        // It is a valid OCI seccomp section.
        serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(plain).expect("valid");
    }

    #[test]
    fn profile_types() {
        let p = |t: cri::security_profile::ProfileType, r: &str| cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        };
        use cri::security_profile::ProfileType::*;
        assert_eq!(for_container(None, false, &[]), Ok(None));
        assert_eq!(
            for_container(Some(&p(Unconfined, "")), false, &[]),
            Ok(None)
        );
        assert_eq!(
            for_container(Some(&p(RuntimeDefault, "")), true, &[]),
            Ok(None)
        );
        assert!(matches!(
            for_container(Some(&p(RuntimeDefault, "")), false, &[]),
            Ok(Some(_))
        ));
        let e = for_container(Some(&p(Localhost, "/nonexistent/profile.json")), false, &[]);
        assert!(matches!(e, Err(Error::Seccomp(m)) if m.contains("/nonexistent/profile.json")));
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("p.json");
        std::fs::write(&file, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#)
            .expect("write");
        let got = for_container(Some(&p(Localhost, &file.to_string_lossy())), false, &[]);
        assert!(matches!(got, Ok(Some(v)) if v["defaultAction"] == "SCMP_ACT_ALLOW"));
        std::fs::write(&file, r#"{"syscalls":[]}"#).expect("write");
        let bad = for_container(Some(&p(Localhost, &file.to_string_lossy())), false, &[]);
        assert!(matches!(bad, Err(Error::Seccomp(m)) if m.contains("defaultAction")));
    }
}
