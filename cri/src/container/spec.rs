//! The OCI runtime spec (`config.json`) of a container, built from the CRI request, the image's
//! config and the sandbox.
//!
//! Pure: no I/O except `stat` of requested devices (through [`DeviceLookup`]); data-driven tests
//! check the JSON. Owns the defaults a kubelet user expects from containerd: the default
//! capability set, masked and read-only paths, the sandbox's shared files (/etc/hostname,
//! /etc/resolv.conf, /dev/shm), cgroup paths for both drivers, and the oom_score_adj clamp.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use serde_json::{Value, json};

use super::user::ResolvedUser;
use crate::config::CgroupDriver;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no command: the request has no command and the image no entrypoint or cmd")]
    NoCommand,
    #[error("mount {index}: {message}")]
    Mount { index: usize, message: String },
    #[error("device {path}: {message}")]
    Device { path: String, message: String },
    #[error("capability {0:?} is not a Linux capability")]
    Capability(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("{0}")]
    Unsupported(String),
}

/// What the image says about how to run it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// The image's reference as the user asked for it (annotations only).
    pub name: String,
}

/// What the container takes from its sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxView {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub hostname: String,
    /// Pinned namespaces; `None` = the host's.
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pod's shared PID namespace (NamespaceMode POD), if any.
    pub pidns: Option<PathBuf>,
    /// The pod uses the host's PID namespace (NamespaceMode NODE): so do its containers in POD
    /// mode.
    pub host_pid: bool,
    pub cgroup_parent: String,
    pub hostname_file: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    /// The pod's /dev/shm tmpfs; `None` with host IPC (the host's /dev/shm is bound).
    pub shm: Option<PathBuf>,
}

/// A device node on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostDevice {
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Looks up host device nodes (real `stat` in production, a table in tests).
pub trait DeviceLookup {
    fn device(&self, path: &Path) -> Option<HostDevice>;
}

/// `stat(2)` on the host.
pub struct HostDevices;

impl DeviceLookup for HostDevices {
    fn device(&self, path: &Path) -> Option<HostDevice> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::metadata(path).ok()?;
        let ft = m.file_type();
        let kind = if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            return None;
        };
        let rdev = m.rdev();
        Some(HostDevice {
            kind,
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        })
    }
}

/// Everything a spec is built from.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a cri::ContainerConfig,
    pub sandbox: &'a SandboxView,
    pub image: &'a ImageDefaults,
    pub user: &'a ResolvedUser,
    pub cgroup_driver: CgroupDriver,
    /// keel-cri's own oom_score_adj: the floor a container's may be clamped to.
    pub daemon_oom_score_adj: i32,
    /// keel-cri's own capability bounding set (CapBnd bits): what "all capabilities" means.
    pub daemon_capabilities: u64,
    pub devices: &'a dyn DeviceLookup,
}

/// The spec, and notes worth a log line (e.g. a clamped oom_score_adj).
#[derive(Debug)]
pub struct Built {
    pub spec: Value,
    pub notes: Vec<String>,
}

/// Capabilities a container gets by default (containerd's and Docker's set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux knows, for privileged containers and `ALL`.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths masked in an unprivileged container when the request names none.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in an unprivileged container when the request names none.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command line: CRI `command` replaces the image's entrypoint, `args` its cmd.
pub fn process_args(
    config: &cri::ContainerConfig,
    image: &ImageDefaults,
) -> Result<Vec<String>, Error> {
    let mut argv = if config.command.is_empty() {
        let mut v = image.entrypoint.clone();
        v.extend(if config.args.is_empty() {
            image.cmd.clone()
        } else {
            config.args.clone()
        });
        v
    } else {
        let mut v = config.command.clone();
        v.extend(config.args.iter().cloned());
        v
    };
    argv.retain(|_| true);
    if argv.is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(argv)
}

/// Image env, overridden key by key by the request's env; PATH and HOSTNAME filled in.
pub fn process_env(
    config: &cri::ContainerConfig,
    image: &ImageDefaults,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", ""));
        set(k, v);
    }
    if !hostname.is_empty() {
        set("HOSTNAME", hostname);
    }
    for e in &image.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v);
    }
    for kv in &config.envs {
        set(&kv.key, &kv.value);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn normalize_cap(name: &str) -> Result<String, Error> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::Capability(name.to_string()))
    }
}

/// Every capability whose bit is set in `bounding` (ALL_CAPABILITIES is in bit order).
fn all_available(bounding: u64) -> Vec<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The capability set after the request's add/drop (with `ALL` on either side). "All" means
/// every capability keel-cri itself holds (`bounding`, its CapBnd), as containerd does: a
/// runtime cannot grant more, and would fail the container.
pub fn capabilities(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    bounding: u64,
) -> Result<Vec<String>, Error> {
    let privileged = sc.is_some_and(|s| s.privileged);
    let mut caps: Vec<String> = if privileged {
        all_available(bounding)
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    if let Some(c) = sc.and_then(|s| s.capabilities.as_ref()) {
        let is_all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
        if is_all(&c.add_capabilities) {
            caps = all_available(bounding);
        } else {
            for a in &c.add_capabilities {
                let a = normalize_cap(a)?;
                if !caps.contains(&a) {
                    caps.push(a);
                }
            }
        }
        if is_all(&c.drop_capabilities) {
            caps.clear();
        } else {
            for d in &c.drop_capabilities {
                let d = normalize_cap(d)?;
                caps.retain(|c| *c != d);
            }
        }
        // Explicitly added capabilities survive a drop of ALL, as in containerd.
        if is_all(&c.drop_capabilities) && !is_all(&c.add_capabilities) {
            for a in &c.add_capabilities {
                caps.push(normalize_cap(a)?);
            }
        }
    }
    Ok(caps)
}

/// The OCI `cgroupsPath` for a container under its pod's cgroup parent.
pub fn cgroups_path(driver: CgroupDriver, parent: &str, id: &str) -> String {
    match driver {
        CgroupDriver::Cgroupfs => {
            let parent = if parent.is_empty() {
                "/keel"
            } else {
                parent.trim_end_matches('/')
            };
            let parent = if parent.starts_with('/') {
                parent.to_string()
            } else {
                format!("/{parent}")
            };
            format!("{parent}/keel-{id}")
        }
        CgroupDriver::Systemd => {
            let slice = if parent.is_empty() {
                "system.slice"
            } else {
                parent.rsplit('/').next().unwrap_or(parent)
            };
            format!("{slice}:keel:{id}")
        }
    }
}

fn bind_options(readonly: bool, propagation: i32) -> Vec<&'static str> {
    let mut o = vec!["rbind"];
    o.push(match cri::MountPropagation::try_from(propagation) {
        Ok(cri::MountPropagation::PropagationHostToContainer) => "rslave",
        Ok(cri::MountPropagation::PropagationBidirectional) => "rshared",
        _ => "rprivate",
    });
    if readonly {
        o.push("ro");
    }
    o
}

fn ns_entry(kind: &str, path: Option<&Path>) -> Value {
    match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    }
}

/// Builds the container's OCI runtime spec.
pub fn build(input: &SpecInput<'_>) -> Result<Built, Error> {
    let cfg = input.config;
    let sb = input.sandbox;
    let linux = cfg.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let mut notes = Vec::new();

    if cfg.tty {
        return Err(Error::Unsupported(
            "tty containers need the streaming service (attach), which keel-cri does not serve yet"
                .to_string(),
        ));
    }
    // Process.
    let args = process_args(cfg, input.image)?;
    let env = process_env(cfg, input.image, &sb.hostname);
    let cwd = if !cfg.working_dir.is_empty() {
        cfg.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(Error::Unsupported(format!(
            "working_dir {cwd:?} is not absolute"
        )));
    }
    let caps = capabilities(sc, input.daemon_capabilities)?;
    let seccomp =
        super::seccomp::for_container(sc.and_then(|s| s.seccomp.as_ref()), privileged, &caps)?;
    let (effective, ambient): (Vec<String>, Vec<String>) = if input.user.uid == 0 {
        (caps.clone(), Vec::new())
    } else {
        let amb: Vec<String> = sc
            .and_then(|s| s.capabilities.as_ref())
            .map(|c| {
                c.add_ambient_capabilities
                    .iter()
                    .map(|a| normalize_cap(a))
                    .collect()
            })
            .transpose()?
            .unwrap_or_default();
        (amb.clone(), amb)
    };
    let resources = linux.and_then(|l| l.resources.as_ref());
    let mut process = json!({
        "terminal": false,
        "user": {
            "uid": input.user.uid,
            "gid": input.user.gid,
            "additionalGids": input.user.additional_gids,
        },
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps,
            "effective": effective,
            "permitted": if input.user.uid == 0 { caps.clone() } else { effective.clone() },
            "inheritable": ambient,
            "ambient": ambient,
        },
    });
    // Written only when set: an explicit `false` makes libcontainer 0.7 load a seccomp filter
    // after dropping CAP_SYS_ADMIN, which the kernel refuses without no_new_privs.
    if sc.is_some_and(|s| s.no_new_privs) {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some(r) = resources {
        let wanted = r.oom_score_adj;
        if wanted != 0 || input.daemon_oom_score_adj != 0 {
            let adj = if wanted < i64::from(input.daemon_oom_score_adj) {
                notes.push(format!(
                    "oom_score_adj {wanted} clamped to keel-cri's own {} (lowering it needs CAP_SYS_RESOURCE)",
                    input.daemon_oom_score_adj
                ));
                i64::from(input.daemon_oom_score_adj)
            } else {
                wanted
            };
            process["oomScoreAdj"] = json!(adj.clamp(-1000, 1000));
        }
    }

    // Mounts: the basic filesystems, then the sandbox's shared files, then the request's.
    let sys_options = if privileged {
        json!(["nosuid", "noexec", "nodev", "rw"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let mut mounts: Vec<Value> = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }]}),
    ];
    let requested: Vec<&str> = cfg
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    let mut shared = |dest: &str, src: Option<&PathBuf>, ro: bool| {
        if let Some(src) = src
            && !requested.iter().any(|r| r.trim_end_matches('/') == dest)
        {
            mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": bind_options(ro, 0)}));
        }
    };
    let host_shm = PathBuf::from("/dev/shm");
    shared(
        "/dev/shm",
        Some(sb.shm.as_ref().unwrap_or(&host_shm)),
        false,
    );
    shared("/etc/hostname", sb.hostname_file.as_ref(), false);
    shared("/etc/resolv.conf", sb.resolv_conf.as_ref(), false);
    let mut rootfs_propagation = None;
    for (index, m) in cfg.mounts.iter().enumerate() {
        let err = |message: String| Error::Mount { index, message };
        if !m.container_path.starts_with('/') {
            return Err(err(format!(
                "container_path {:?} is not absolute",
                m.container_path
            )));
        }
        if m.host_path.is_empty() || !m.host_path.starts_with('/') {
            return Err(err(format!(
                "host_path {:?} is not an absolute path",
                m.host_path
            )));
        }
        if m.image.is_some() {
            return Err(err("image volumes are not supported".to_string()));
        }
        match cri::MountPropagation::try_from(m.propagation) {
            Ok(cri::MountPropagation::PropagationBidirectional) => {
                rootfs_propagation = Some("rshared")
            }
            Ok(cri::MountPropagation::PropagationHostToContainer) => {
                rootfs_propagation = rootfs_propagation.or(Some("rslave"))
            }
            Ok(_) => {}
            Err(_) => return Err(err(format!("unknown propagation {}", m.propagation))),
        }
        mounts.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": bind_options(m.readonly, m.propagation),
        }));
    }

    // Namespaces.
    let ns_opts = sc.and_then(|s| s.namespace_options.as_ref());
    let mode = |f: fn(&cri::NamespaceOption) -> i32| {
        ns_opts
            .map(f)
            .and_then(|m| cri::NamespaceMode::try_from(m).ok())
            .unwrap_or(cri::NamespaceMode::Pod)
    };
    let mut namespaces = vec![json!({"type": "mount"})];
    match mode(|n| n.pid) {
        cri::NamespaceMode::Node => {}
        cri::NamespaceMode::Pod if sb.host_pid => {}
        cri::NamespaceMode::Pod if sb.pidns.is_some() => {
            namespaces.push(ns_entry("pid", sb.pidns.as_deref()))
        }
        cri::NamespaceMode::Target => {
            return Err(Error::Unsupported(
                "PID namespace mode TARGET is not supported yet".into(),
            ));
        }
        _ => namespaces.push(ns_entry("pid", None)),
    }
    if let Some(p) = &sb.netns {
        namespaces.push(ns_entry("network", Some(p)));
    }
    if let Some(p) = &sb.ipcns {
        namespaces.push(ns_entry("ipc", Some(p)));
    }
    if let Some(p) = &sb.utsns {
        namespaces.push(ns_entry("uts", Some(p)));
    }

    // Devices.
    let mut devices = Vec::new();
    let mut device_rules = vec![json!({"allow": false, "access": "rwm"})];
    if privileged {
        device_rules = vec![json!({"allow": true, "access": "rwm"})];
    }
    for d in &cfg.devices {
        let err = |message: &str| Error::Device {
            path: d.host_path.clone(),
            message: message.to_string(),
        };
        if !d.container_path.starts_with('/') {
            return Err(err("container_path is not absolute"));
        }
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(err("permissions may only hold r, w and m"));
        }
        let hd = input
            .devices
            .device(Path::new(&d.host_path))
            .ok_or_else(|| err("is not a device node on the host"))?;
        devices.push(json!({
            "path": d.container_path, "type": hd.kind.to_string(), "major": hd.major, "minor": hd.minor,
            "fileMode": hd.mode, "uid": hd.uid, "gid": hd.gid,
        }));
        device_rules.push(json!({
            "allow": true, "type": hd.kind.to_string(), "major": hd.major, "minor": hd.minor, "access": perms,
        }));
    }

    // Resources.
    let mut res = json!({"devices": device_rules});
    if let Some(r) = resources {
        let mut cpu = serde_json::Map::new();
        if r.cpu_shares > 0 {
            cpu.insert("shares".into(), json!(r.cpu_shares));
        }
        if r.cpu_quota != 0 {
            cpu.insert("quota".into(), json!(r.cpu_quota));
        }
        if r.cpu_period > 0 {
            cpu.insert("period".into(), json!(r.cpu_period));
        }
        if !r.cpuset_cpus.is_empty() {
            cpu.insert("cpus".into(), json!(r.cpuset_cpus));
        }
        if !r.cpuset_mems.is_empty() {
            cpu.insert("mems".into(), json!(r.cpuset_mems));
        }
        if !cpu.is_empty() {
            res["cpu"] = Value::Object(cpu);
        }
        if r.memory_limit_in_bytes > 0 {
            let swap = if r.memory_swap_limit_in_bytes > 0 {
                r.memory_swap_limit_in_bytes
            } else {
                r.memory_limit_in_bytes
            };
            res["memory"] = json!({"limit": r.memory_limit_in_bytes, "swap": swap});
        }
        if !r.hugepage_limits.is_empty() {
            res["hugepageLimits"] = Value::Array(
                r.hugepage_limits
                    .iter()
                    .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
                    .collect(),
            );
        }
        if !r.unified.is_empty() {
            let u: BTreeMap<&String, &String> = r.unified.iter().collect();
            res["unified"] = json!(u);
        }
    }

    let masked: Vec<String> = match sc {
        _ if privileged => Vec::new(),
        Some(s) if !s.masked_paths.is_empty() => s.masked_paths.clone(),
        _ => DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
    };
    let readonly: Vec<String> = match sc {
        _ if privileged => Vec::new(),
        Some(s) if !s.readonly_paths.is_empty() => s.readonly_paths.clone(),
        _ => DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };

    let name = cfg
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = cfg
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.container-name", name),
        ("io.kubernetes.cri.sandbox-id", sb.id.as_str()),
        ("io.kubernetes.cri.sandbox-name", sb.name.as_str()),
        ("io.kubernetes.cri.sandbox-namespace", sb.namespace.as_str()),
        ("io.kubernetes.cri.sandbox-uid", sb.uid.as_str()),
        ("io.kubernetes.cri.image-name", input.image.name.as_str()),
    ] {
        annotations.insert(k.to_string(), v.to_string());
    }

    let mut linux_json = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path(input.cgroup_driver, &sb.cgroup_parent, input.id),
        "resources": res,
        "devices": devices,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
    });
    if let Some(p) = rootfs_propagation {
        linux_json["rootfsPropagation"] = json!(p);
    }
    if let Some(profile) = seccomp {
        linux_json["seccomp"] = profile;
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": sc.is_some_and(|s| s.readonly_rootfs)},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux_json,
    });
    // The spec must also be a valid oci-spec document.
    if let Err(e) = serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone()) {
        return Err(Error::Unsupported(format!(
            "internal: generated spec is invalid: {e}"
        )));
    }
    Ok(Built { spec, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct NoDevices(HashMap<PathBuf, HostDevice>);
    impl DeviceLookup for NoDevices {
        fn device(&self, path: &Path) -> Option<HostDevice> {
            self.0.get(path).copied()
        }
    }

    fn sandbox() -> SandboxView {
        SandboxView {
            id: "sb1".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            hostname: "web".into(),
            netns: Some("/run/keel/cri/netns/sb1".into()),
            ipcns: Some("/run/keel/cri/ipcns/sb1".into()),
            utsns: Some("/run/keel/cri/utsns/sb1".into()),
            pidns: None,
            host_pid: false,
            cgroup_parent: "/kubepods/besteffort/podu-1".into(),
            hostname_file: Some("/var/lib/keel/cri/sandboxes/sb1/hostname".into()),
            resolv_conf: Some("/var/lib/keel/cri/sandboxes/sb1/resolv.conf".into()),
            shm: Some("/run/keel/cri/sandboxes/sb1/shm".into()),
        }
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: "/app".into(),
            name: "keel-test/user:latest".into(),
        }
    }

    fn root() -> ResolvedUser {
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            name: Some("root".into()),
        }
    }

    fn build_with(cfg: cri::ContainerConfig, oom_floor: i32) -> Result<Built, Error> {
        let devs = NoDevices(HashMap::from([(
            PathBuf::from("/dev/fuse"),
            HostDevice {
                kind: 'c',
                major: 10,
                minor: 229,
                mode: 0o666,
                uid: 0,
                gid: 0,
            },
        )]));
        build(&SpecInput {
            id: "c1",
            config: &cfg,
            sandbox: &sandbox(),
            image: &image(),
            user: &root(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            daemon_oom_score_adj: oom_floor,
            daemon_capabilities: u64::MAX,
            devices: &devs,
        })
    }

    fn cfg() -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_follow_cri_rules() {
        let img = image();
        let mut c = cfg();
        assert_eq!(
            process_args(&c, &img),
            Ok(vec!["/entry".to_string(), "serve".into()])
        );
        c.args = vec!["x".into()];
        assert_eq!(
            process_args(&c, &img),
            Ok(vec!["/entry".to_string(), "x".into()])
        );
        c.command = vec!["/bin/sh".into()];
        assert_eq!(
            process_args(&c, &img),
            Ok(vec!["/bin/sh".to_string(), "x".into()])
        );
        c.args.clear();
        assert_eq!(process_args(&c, &img), Ok(vec!["/bin/sh".to_string()]));
        assert_eq!(
            process_args(&cfg(), &ImageDefaults::default()),
            Err(Error::NoCommand)
        );
    }

    #[test]
    fn env_merges_image_and_request() {
        let mut c = cfg();
        c.envs = vec![cri::KeyValue {
            key: "A".into(),
            value: "req".into(),
        }];
        assert_eq!(
            process_env(&c, &image(), "web"),
            ["HOSTNAME=web", "PATH=/bin", "A=req"]
        );
        let env = process_env(&cfg(), &ImageDefaults::default(), "");
        assert_eq!(env, [DEFAULT_PATH]);
    }

    #[test]
    fn capability_sets() {
        let sc = |add: &[&str], drop: &[&str], privileged| cri::LinuxContainerSecurityContext {
            privileged,
            capabilities: Some(cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: vec![],
            }),
            ..Default::default()
        };
        let caps = capabilities(
            Some(&sc(&["NET_ADMIN"], &["kill", "CAP_CHOWN"], false)),
            u64::MAX,
        )
        .expect("caps");
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(
            !caps.contains(&"CAP_KILL".to_string()) && !caps.contains(&"CAP_CHOWN".to_string())
        );
        assert_eq!(
            capabilities(Some(&sc(&["NET_BIND_SERVICE"], &["ALL"], false)), u64::MAX),
            Ok(vec!["CAP_NET_BIND_SERVICE".to_string()])
        );
        assert_eq!(
            capabilities(Some(&sc(&[], &[], true)), u64::MAX).map(|c| c.len()),
            Ok(ALL_CAPABILITIES.len())
        );
        // Privileged under a daemon without CAP_SYS_RESOURCE (bit 24): everything else.
        let without_sys_resource =
            capabilities(Some(&sc(&[], &[], true)), !(1u64 << 24)).expect("privileged caps");
        assert_eq!(without_sys_resource.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!without_sys_resource.contains(&"CAP_SYS_RESOURCE".to_string()));
        assert_eq!(
            capabilities(Some(&sc(&["FLY"], &[], false)), u64::MAX),
            Err(Error::Capability("FLY".into()))
        );
    }

    #[test]
    fn cgroup_paths() {
        assert_eq!(
            cgroups_path(CgroupDriver::Cgroupfs, "/kubepods/pod1", "c"),
            "/kubepods/pod1/keel-c"
        );
        assert_eq!(
            cgroups_path(CgroupDriver::Cgroupfs, "", "c"),
            "/keel/keel-c"
        );
        assert_eq!(
            cgroups_path(
                CgroupDriver::Systemd,
                "/kubepods.slice/kubepods-pod1.slice",
                "c"
            ),
            "kubepods-pod1.slice:keel:c"
        );
    }

    #[test]
    fn pid_namespace_follows_the_pod() {
        let pid_ns = |sb: &SandboxView| {
            let c = cfg();
            let built = build(&SpecInput {
                id: "c1",
                config: &c,
                sandbox: sb,
                image: &image(),
                user: &root(),
                cgroup_driver: CgroupDriver::Cgroupfs,
                daemon_oom_score_adj: 0,
                daemon_capabilities: u64::MAX,
                devices: &NoDevices(HashMap::new()),
            })
            .expect("spec");
            built.spec["linux"]["namespaces"]
                .as_array()
                .expect("namespaces")
                .iter()
                .find(|n| n["type"] == "pid")
                .cloned()
        };
        let mut sb = sandbox();
        assert_eq!(pid_ns(&sb), Some(json!({"type": "pid"})), "its own");
        sb.pidns = Some("/run/keel/cri/pidns/sb1".into());
        assert_eq!(
            pid_ns(&sb),
            Some(json!({"type": "pid", "path": "/run/keel/cri/pidns/sb1"})),
            "the pod's"
        );
        sb.pidns = None;
        sb.host_pid = true;
        assert_eq!(pid_ns(&sb), None, "the host's, as the pod");
    }

    #[test]
    fn full_spec_shape() {
        let mut c = cfg();
        c.mounts = vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            readonly: true,
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }];
        c.devices = vec![cri::Device {
            container_path: "/dev/fuse".into(),
            host_path: "/dev/fuse".into(),
            permissions: "rw".into(),
        }];
        c.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_shares: 512,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: -997,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                readonly_rootfs: true,
                no_new_privs: true,
                ..Default::default()
            }),
        });
        let built = build_with(c, 0).expect("spec");
        let s = &built.spec;
        assert_eq!(s["process"]["args"], json!(["/entry", "serve"]));
        assert_eq!(s["process"]["cwd"], json!("/app"));
        assert_eq!(s["process"]["oomScoreAdj"], json!(0));
        assert_eq!(built.notes.len(), 1, "clamp is reported: {:?}", built.notes);
        assert_eq!(s["process"]["noNewPrivileges"], json!(true));
        assert_eq!(s["root"], json!({"path": "rootfs", "readonly": true}));
        assert_eq!(
            s["linux"]["cgroupsPath"],
            json!("/kubepods/besteffort/podu-1/keel-c1")
        );
        assert_eq!(
            s["linux"]["resources"]["memory"],
            json!({"limit": 64 << 20, "swap": 64 << 20})
        );
        assert_eq!(
            s["linux"]["resources"]["cpu"],
            json!({"shares": 512, "quota": 50_000, "period": 100_000})
        );
        assert_eq!(s["linux"]["rootfsPropagation"], json!("rslave"));
        assert_eq!(s["linux"]["devices"][0]["major"], json!(10));
        assert_eq!(s["linux"]["resources"]["devices"][1]["access"], json!("rw"));
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .map(|n| n["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(ns, ["mount", "pid", "network", "ipc", "uts"]);
        let data = s["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["destination"] == "/data")
            .expect("/data");
        assert_eq!(data["options"], json!(["rbind", "rslave", "ro"]));
        let dests: Vec<&str> = s["mounts"]
            .as_array()
            .expect("m")
            .iter()
            .map(|m| m["destination"].as_str().unwrap_or(""))
            .collect();
        assert!(
            dests.contains(&"/etc/resolv.conf")
                && dests.contains(&"/dev/shm")
                && dests.contains(&"/etc/hostname")
        );
        assert_eq!(
            s["linux"]["maskedPaths"].as_array().map(|a| a.len()),
            Some(DEFAULT_MASKED_PATHS.len())
        );
        assert_eq!(
            s["annotations"]["io.kubernetes.cri.sandbox-id"],
            json!("sb1")
        );
    }

    #[test]
    fn bad_requests_are_named() {
        let mut c = cfg();
        c.mounts = vec![cri::Mount {
            container_path: "rel".into(),
            host_path: "/x".into(),
            ..Default::default()
        }];
        assert!(matches!(
            build_with(c, 0),
            Err(Error::Mount { index: 0, .. })
        ));
        let mut c = cfg();
        c.devices = vec![cri::Device {
            container_path: "/dev/x".into(),
            host_path: "/etc/passwd".into(),
            permissions: "rwm".into(),
        }];
        assert!(matches!(build_with(c, 0), Err(Error::Device { .. })));
        let mut c = cfg();
        c.tty = true;
        assert!(matches!(build_with(c, 0), Err(Error::Unsupported(_))));
    }
}
