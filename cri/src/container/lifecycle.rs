//! Container lifecycle: CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ContainerStatus, ListContainers and ExecSync, as `impl Runtime`; and the watch on each
//! container's monitor that records its exit.
//!
//! CreateContainer is one undo stack (rootfs mount, bundle, image hold, monitor): nothing is left
//! behind when a step fails. State transitions are in `store`'s diagram.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::sync::{Mutex, watch};

use super::{rootfs, spec, user};
use crate::monitor::ExitRecord;
use crate::monitor::client::{self, MonitorHandle};
use crate::runtime::{ContainerEntry, Error, Runtime};
use crate::store::{self, ContainerRecord, ContainerState, MountRecord, SandboxState};
use crate::undo::Undo;

/// How long the monitor may take to create a container.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the monitor may take to reopen a container's log.
const REOPEN_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for an exit after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// The request with each bind mount's host path ready, as containerd does it: a missing host
/// path is created as a directory, and symlinks in it are resolved (the runtime must not follow
/// a link that changes later). A relative path is refused here, naming the mount.
fn prepare_host_paths(config: &cri::ContainerConfig) -> Result<cri::ContainerConfig, Error> {
    let mut out = config.clone();
    for m in &mut out.mounts {
        if !m.host_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "mount of {:?}: host_path {:?} is not an absolute path",
                m.container_path, m.host_path
            )));
        }
        let path = std::path::Path::new(&m.host_path);
        if !path.exists() {
            std::fs::create_dir_all(path).map_err(|e| {
                Error::InvalidArgument(format!(
                    "mount of {:?}: creating the missing host path {}: {e}",
                    m.container_path, m.host_path
                ))
            })?;
            tracing::info!(path = %m.host_path, "created the missing host path of a mount");
        }
        let resolved = std::fs::canonicalize(path).map_err(|e| {
            Error::InvalidArgument(format!(
                "mount of {:?}: host path {}: {e}",
                m.container_path, m.host_path
            ))
        })?;
        m.host_path = resolved.to_string_lossy().into_owned();
    }
    Ok(out)
}

fn rt_err(e: crate::oci_runtime::Error) -> Error {
    Error::Internal(e.to_string())
}

impl Runtime {
    pub async fn create_container(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: &cri::ContainerConfig,
    ) -> Result<String, Error> {
        let sandbox = self
            .sandbox(sandbox_id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {sandbox_id:?} not found")))?;
        let sb = sandbox.record.lock().await.clone();
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        let meta = config
            .metadata
            .as_ref()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument("container config has no metadata.name".into())
            })?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::InvalidArgument("container config has no image".into()))?;
        let image = self.images.resolve_for_container(&image_name)?;
        let with_host_paths = prepare_host_paths(config)?;
        let config = &with_host_paths;

        let id = store::new_id();
        let name = format!(
            "{}_{}_{}_{}_{}",
            meta.name, sb.meta.name, sb.meta.namespace, sb.meta.uid, meta.attempt
        );
        self.names.reserve(&name, &id).map_err(|e| {
            Error::AlreadyExists(format!("container {name}: {e} (a CreateContainer with this name is done or still in progress)"))
        })?;
        let mut undo = Undo::new();
        let mut stages = crate::stages::Stages::new();
        {
            let rt = self.clone();
            let name = name.clone();
            undo.push(move || rt.names.release(&name));
        }

        let dir = self.container_dir(&id);
        let mon_dir = self.monitor_dir(&id);
        for d in [&dir, &mon_dir] {
            std::fs::create_dir_all(d).map_err(|e| Error::internal(d.display(), e))?;
            let d = d.clone();
            undo.push(move || {
                let _ = std::fs::remove_dir_all(&d);
            });
        }
        self.images.hold(&id, &image.id)?;
        {
            let images = self.images.clone();
            let id = id.clone();
            undo.push(move || images.release(&id));
        }
        stages.mark("prepare");
        let bundle = dir.join("bundle");
        let rootfs_dir = bundle.join("rootfs");
        let (layers, upper, work) = (image.layers.clone(), dir.join("upper"), dir.join("work"));
        let target = rootfs_dir.clone();
        tokio::task::spawn_blocking(move || rootfs::mount(&layers, &upper, &work, &target))
            .await
            .map_err(|e| Error::internal("rootfs task", e))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        {
            let t = rootfs_dir.clone();
            undo.push(move || {
                let _ = rootfs::unmount(&t);
            });
        }

        let sc = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref());
        let resolved_user = user::resolve(
            &rootfs_dir,
            &user::UserRequest {
                run_as_user: sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value),
                run_as_group: sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value),
                run_as_username: sc.map(|s| s.run_as_username.as_str()).unwrap_or(""),
                supplemental_groups: sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]),
                image_user: &image.user,
            },
        )
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let view = spec::SandboxView {
            id: sb.id.clone(),
            name: sb.meta.name.clone(),
            namespace: sb.meta.namespace.clone(),
            uid: sb.meta.uid.clone(),
            hostname: sb.hostname.clone(),
            netns: sb.pinned.netns.clone(),
            ipcns: sb.pinned.ipcns.clone(),
            utsns: sb.pinned.utsns.clone(),
            pidns: sb.pid_holder.as_ref().map(|h| h.path.clone()),
            host_pid: sb.modes.pid == cri::NamespaceMode::Node as i32,
            cgroup_parent: sb.cgroup_parent.clone(),
            hostname_file: Some(self.sandbox_dir(&sb.id).join("hostname")),
            resolv_conf: Some(self.sandbox_dir(&sb.id).join("resolv.conf")),
            shm: sb.shm.clone(),
        };
        let mut defaults = image.defaults.clone();
        defaults.name = image_name.clone();
        let built = spec::build(&spec::SpecInput {
            id: &id,
            config,
            sandbox: &view,
            image: &defaults,
            user: &resolved_user,
            cgroup_driver: self.config.cgroup_driver,
            daemon_oom_score_adj: self.daemon_oom_score_adj,
            daemon_capabilities: self.daemon_capabilities,
            devices: &spec::HostDevices,
        })
        .map_err(|e| match e {
            spec::Error::Unsupported(m) => Error::Unimplemented(m),
            other => Error::InvalidArgument(other.to_string()),
        })?;
        for note in &built.notes {
            tracing::warn!(container = %id, "{note}");
        }
        let cgroups_path = built.spec["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        std::fs::write(bundle.join("config.json"), built.spec.to_string())
            .map_err(|e| Error::internal("writing config.json", e))?;

        let log_path = if !sb.log_directory.is_empty() && !config.log_path.is_empty() {
            let p = PathBuf::from(&sb.log_directory).join(&config.log_path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::internal(parent.display(), e))?;
            }
            Some(p)
        } else {
            None
        };

        stages.mark("rootfs+spec");
        let runtime = self.oci_runtime(&sb.runtime_handler)?;
        let argv = runtime.create_argv(
            &id,
            &bundle,
            &mon_dir.join(crate::monitor::PID_FILE),
            &mon_dir.join(crate::monitor::MONITOR_LOG),
        );
        let started = client::spawn(client::SpawnRequest {
            monitor_binary: &self.monitor_binary,
            id: &id,
            dir: &mon_dir,
            log_path: log_path.as_deref(),
            runtime_argv: argv,
            timeout: CREATE_TIMEOUT,
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        {
            let (runtime, id) = (runtime.clone(), id.clone());
            undo.push(move || {
                // Best effort from a synchronous context: the runtime binary removes the container.
                let _ = std::process::Command::new(&runtime.binary)
                    .arg("--root")
                    .arg(&runtime.root)
                    .args(["delete", "--force", &id])
                    .output();
            });
        }

        stages.mark("monitor+runtime-create");
        let record = ContainerRecord {
            version: store::CHECKPOINT_VERSION,
            id: id.clone(),
            sandbox_id: sb.id.clone(),
            name: name.clone(),
            meta_name: meta.name.clone(),
            attempt: meta.attempt,
            image: image_name,
            image_id: image.id.clone(),
            image_ref: image.image_ref.clone(),
            runtime_handler: sb.runtime_handler.clone(),
            state: ContainerState::Created,
            created_at: store::now_ns(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: started.init_pid,
            monitor_pid: started.monitor_pid,
            monitor_start_time: started.monitor_start_time,
            log_path: log_path
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            stop_signal: image.stop_signal.clone(),
            cgroups_path,
            mounts: config
                .mounts
                .iter()
                .map(|m| MountRecord {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    propagation: m.propagation,
                })
                .collect(),
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
        };
        store::write_json(&dir.join("container.json"), &record)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let (tx, _) = watch::channel(false);
        self.containers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                Arc::new(ContainerEntry {
                    record: Mutex::new(record),
                    exited: tx,
                }),
            );
        undo.disarm();
        self.watch_monitor(id.clone(), started.handle);
        stages.mark("checkpoint");
        tracing::info!(container = %id, %name, stages = %stages.summary(), "container created");
        Ok(id)
    }

    /// Waits (in the background) for a container's monitor to exit, then records the exit.
    pub(crate) fn watch_monitor(self: &Arc<Self>, id: String, handle: MonitorHandle) {
        let rt = self.clone();
        tokio::spawn(async move {
            handle.exited().await;
            rt.record_exit(&id).await;
        });
    }

    async fn record_exit(&self, id: &str) {
        let Some(entry) = self.container(id) else {
            return;
        };
        let mut rec = entry.record.lock().await;
        if matches!(rec.state, ContainerState::Exited | ContainerState::Unknown) {
            let _ = entry.exited.send_replace(true);
            return;
        }
        match ExitRecord::read(&self.monitor_dir(id)) {
            Some(exit) => {
                rec.exit_code = exit.exit_code;
                rec.finished_at = exit
                    .finished_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(0)
                    .max(rec.started_at);
                rec.reason = if oom_killed(&rec.cgroups_path) {
                    "OOMKilled"
                } else if exit.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string();
                rec.state = ContainerState::Exited;
            }
            None => {
                rec.state = ContainerState::Exited;
                rec.exit_code = 255;
                rec.finished_at = store::now_ns();
                rec.reason = "Unknown".to_string();
                rec.message =
                    "the container's monitor exited without recording an exit status".to_string();
            }
        }
        if let Err(e) = store::write_json(&self.container_dir(id).join("container.json"), &*rec) {
            tracing::error!(container = %id, "recording exit: {e}");
        }
        tracing::info!(container = %id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
        let _ = entry.exited.send_replace(true);
    }

    pub async fn start_container(&self, id: &str) -> Result<(), Error> {
        let entry = self
            .container(id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))?;
        let mut rec = entry.record.lock().await;
        if rec.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, not Created",
                rec.id, rec.state
            )));
        }
        let runtime = self.oci_runtime(&rec.runtime_handler)?;
        // Taken before the start: a process that exits at once must not end before it started.
        let started_at = store::now_ns();
        runtime.start(&rec.id).await.map_err(rt_err)?;
        rec.state = ContainerState::Running;
        rec.started_at = started_at;
        store::write_json(&self.container_dir(&rec.id).join("container.json"), &*rec)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(())
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout_secs`.
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<(), Error> {
        let Some(entry) = self.container(id) else {
            return Ok(());
        };
        let mut exited = entry.exited.subscribe();
        if *exited.borrow() {
            return Ok(());
        }
        let (cid, handler, state, signal) = {
            let r = entry.record.lock().await;
            (
                r.id.clone(),
                r.runtime_handler.clone(),
                r.state,
                r.stop_signal.clone(),
            )
        };
        let runtime = self.oci_runtime(&handler)?;
        if state == ContainerState::Running && timeout_secs > 0 {
            let signal = if signal.is_empty() {
                "SIGTERM".to_string()
            } else {
                signal
            };
            if let Err(e) = runtime.kill(&cid, &signal, false).await {
                tracing::debug!(container = %cid, "stop signal: {e}");
            }
            let wait = Duration::from_secs(timeout_secs as u64);
            if tokio::time::timeout(wait, exited.wait_for(|e| *e))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tracing::info!(container = %cid, "did not stop within {timeout_secs}s: killing");
        }
        if let Err(e) = runtime.kill(&cid, "SIGKILL", true).await
            && !*exited.borrow()
        {
            tracing::debug!(container = %cid, "SIGKILL: {e}");
        }
        match tokio::time::timeout(KILL_WAIT, exited.wait_for(|e| *e)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "container {cid} did not exit within {KILL_WAIT:?} of SIGKILL"
            ))),
        }
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), Error> {
        let Some(entry) = self.container(id) else {
            return Ok(());
        };
        let cid = entry.record.lock().await.id.clone();
        self.stop_container(&cid, 0).await?;
        let rec = entry.record.lock().await;
        let runtime = self.oci_runtime(&rec.runtime_handler)?;
        if let Err(e) = runtime.delete(&rec.id, true).await
            && !e.is_not_found()
        {
            return Err(rt_err(e));
        }
        let dir = self.container_dir(&rec.id);
        rootfs::unmount(&dir.join("bundle").join("rootfs"))
            .map_err(|e| Error::Internal(e.to_string()))?;
        for d in [dir, self.monitor_dir(&rec.id)] {
            if let Err(e) = std::fs::remove_dir_all(&d)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::internal(d.display(), e));
            }
        }
        self.images.release(&rec.id);
        self.containers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        self.names.release(&rec.name);
        tracing::info!(container = %rec.id, "container removed");
        Ok(())
    }

    pub async fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(cri::ContainerStatus, BTreeMap<String, String>), Error> {
        let entry = self
            .container(id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))?;
        let rec = entry.record.lock().await;
        let status = cri::ContainerStatus {
            id: rec.id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: rec.meta_name.clone(),
                attempt: rec.attempt,
            }),
            state: container_state(rec.state) as i32,
            created_at: rec.created_at,
            started_at: rec.started_at,
            finished_at: rec.finished_at,
            exit_code: rec.exit_code,
            image: Some(cri::ImageSpec {
                image: rec.image.clone(),
                ..Default::default()
            }),
            image_ref: rec.image_ref.clone(),
            reason: rec.reason.clone(),
            message: rec.message.clone(),
            labels: rec.labels.clone().into_iter().collect(),
            annotations: rec.annotations.clone().into_iter().collect(),
            mounts: rec
                .mounts
                .iter()
                .map(|m| cri::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    propagation: m.propagation,
                    ..Default::default()
                })
                .collect(),
            log_path: rec.log_path.clone(),
            image_id: rec.image_id.clone(),
            ..Default::default()
        };
        let mut info = BTreeMap::new();
        if verbose {
            info.insert(
                "info".to_string(),
                serde_json::to_string(&*rec).unwrap_or_default(),
            );
        }
        Ok((status, info))
    }

    pub async fn list_containers(
        &self,
        filter: Option<&cri::ContainerFilter>,
    ) -> Vec<cri::Container> {
        let mut out = Vec::new();
        for e in self.all_containers() {
            let rec = e.record.lock().await;
            if let Some(f) = filter {
                if !f.id.is_empty() && !rec.id.starts_with(&f.id) {
                    continue;
                }
                if !f.pod_sandbox_id.is_empty() && !rec.sandbox_id.starts_with(&f.pod_sandbox_id) {
                    continue;
                }
                if let Some(s) = &f.state
                    && s.state != container_state(rec.state) as i32
                {
                    continue;
                }
                if !f
                    .label_selector
                    .iter()
                    .all(|(k, v)| rec.labels.get(k) == Some(v))
                {
                    continue;
                }
            }
            out.push(cri::Container {
                id: rec.id.clone(),
                pod_sandbox_id: rec.sandbox_id.clone(),
                metadata: Some(cri::ContainerMetadata {
                    name: rec.meta_name.clone(),
                    attempt: rec.attempt,
                }),
                image: Some(cri::ImageSpec {
                    image: rec.image.clone(),
                    ..Default::default()
                }),
                image_ref: rec.image_ref.clone(),
                state: container_state(rec.state) as i32,
                created_at: rec.created_at,
                labels: rec.labels.clone().into_iter().collect(),
                annotations: rec.annotations.clone().into_iter().collect(),
                image_id: rec.image_id.clone(),
            });
        }
        out.sort_by_key(|c| c.created_at);
        out
    }

    /// ReopenContainerLog: the kubelet has renamed the container's log file (rotation); the
    /// monitor opens a new one at the same path (SIGUSR1). Returns once the new file exists.
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), Error> {
        let entry = self
            .container(id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))?;
        let (cid, state, log_path, monitor_pid, monitor_start) = {
            let r = entry.record.lock().await;
            (
                r.id.clone(),
                r.state,
                r.log_path.clone(),
                r.monitor_pid,
                r.monitor_start_time,
            )
        };
        if state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {cid} is {state:?}: only a running container's log can be reopened"
            )));
        }
        if log_path.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "container {cid} has no log path"
            )));
        }
        if client::process_start_time(monitor_pid) != Some(monitor_start) {
            return Err(Error::FailedPrecondition(format!(
                "the monitor of container {cid} is gone"
            )));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor_pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|e| Error::internal(format!("signalling the monitor of {cid}"), e))?;
        let path = PathBuf::from(&log_path);
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        while !path.exists() {
            if std::time::Instant::now() > deadline {
                return Err(Error::DeadlineExceeded(format!(
                    "container {cid}: the monitor did not reopen {log_path} within {REOPEN_WAIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Runs a command in a running container and returns its output; `timeout_secs` 0 = no limit.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout_secs: i64,
    ) -> Result<crate::oci_runtime::ExecOutput, Error> {
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("exec: cmd is empty".into()));
        }
        let entry = self
            .container(id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))?;
        let (cid, handler) = {
            let rec = entry.record.lock().await;
            if rec.state != ContainerState::Running {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is {:?}, not running",
                    rec.id, rec.state
                )));
            }
            (rec.id.clone(), rec.runtime_handler.clone())
        };
        let spec_path = self.container_dir(&cid).join("bundle").join("config.json");
        let spec: serde_json::Value = std::fs::read(&spec_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::Internal(format!("reading {}", spec_path.display())))?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(false);
        if let Some(p) = process.as_object_mut() {
            p.remove("oomScoreAdj");
        }
        let timeout = (timeout_secs > 0).then(|| Duration::from_secs(timeout_secs as u64));
        let runtime = self.oci_runtime(&handler)?;
        runtime
            .exec(&cid, &process, timeout)
            .await
            .map_err(|e| match e {
                crate::oci_runtime::Error::Timeout { .. } => Error::DeadlineExceeded(format!(
                    "command {cmd:?} timed out after {timeout_secs}s"
                )),
                other => rt_err(other),
            })
    }
}

fn container_state(s: ContainerState) -> cri::ContainerState {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

/// Whether the kernel's OOM killer killed something in the container's memory cgroup.
fn oom_killed(cgroups_path: &str) -> bool {
    if cgroups_path.is_empty() || cgroups_path.contains(':') {
        return false;
    }
    let rel = cgroups_path.trim_start_matches('/');
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (file, path) = if unified {
        (
            "memory.events",
            PathBuf::from("/sys/fs/cgroup")
                .join(rel)
                .join("memory.events"),
        )
    } else {
        (
            "memory.oom_control",
            PathBuf::from("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control"),
        )
    };
    let _ = file;
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        })
        .is_some_and(|n| n > 0)
}
