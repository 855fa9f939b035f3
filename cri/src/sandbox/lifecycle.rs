//! Pod sandbox lifecycle: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus
//! and ListPodSandbox, as `impl Runtime`.
//!
//! ```text
//!   RunPodSandbox ──► Ready ──StopPodSandbox──► NotReady ──RemovePodSandbox──► (gone)
//! ```
//! RunPodSandbox is one undo stack: namespaces, /dev/shm, the PID holder and the CNI attachment
//! are all taken back if a later step fails. Stop tears down the network and the namespaces
//! (containers are stopped first); Remove deletes the containers and the checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio::sync::Mutex;

use super::{files, namespaces, pidns};
use crate::runtime::{Error, NetworkAttachment, PortMapping, Runtime, SandboxEntry};
use crate::store::{self, NamespaceModes, PodMeta, SandboxRecord, SandboxState};
use crate::undo::Undo;

const SHM_SIZE: &str = "size=65536k";

fn ns_mode(v: i32) -> cri::NamespaceMode {
    cri::NamespaceMode::try_from(v).unwrap_or(cri::NamespaceMode::Pod)
}

impl SandboxRecord {
    pub(crate) fn attachment(&self, port_mappings: Vec<PortMapping>) -> Option<NetworkAttachment> {
        Some(NetworkAttachment {
            sandbox_id: self.id.clone(),
            netns: self.pinned.netns.clone()?,
            pod_name: self.meta.name.clone(),
            pod_namespace: self.meta.namespace.clone(),
            pod_uid: self.meta.uid.clone(),
            port_mappings,
        })
    }
}

fn port_mappings(config: &cri::PodSandboxConfig) -> Vec<PortMapping> {
    config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| PortMapping {
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            }
            .to_string(),
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

impl Runtime {
    pub async fn run_pod_sandbox(
        self: &Arc<Self>,
        config: &cri::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, Error> {
        let meta = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("sandbox config has no metadata".into()))?;
        for (field, v) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            if v.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "sandbox metadata.{field} is empty"
                )));
            }
        }
        let handler = if runtime_handler.is_empty() {
            self.config.default_runtime.clone()
        } else {
            runtime_handler.to_string()
        };
        self.oci_runtime(&handler)?;
        let linux = config.linux.clone().unwrap_or_default();
        let sc = linux.security_context.clone().unwrap_or_default();
        let ns = sc.namespace_options.clone().unwrap_or_default();
        let host_net = ns_mode(ns.network) == cri::NamespaceMode::Node;
        let host_ipc = ns_mode(ns.ipc) == cri::NamespaceMode::Node;
        let pid_mode = ns_mode(ns.pid);
        if pid_mode == cri::NamespaceMode::Target {
            return Err(Error::InvalidArgument(
                "a sandbox cannot use PID namespace mode TARGET".into(),
            ));
        }
        let mut sysctls: Vec<(String, String)> = linux
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sysctls.sort();
        namespaces::validate_sysctls(&sysctls, !host_net, !host_ipc)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if !host_net {
            self.network.ready().map_err(|m| {
                Error::FailedPrecondition(format!("the pod network is not ready: {m}"))
            })?;
        }

        let id = store::new_id();
        let name = format!(
            "{}_{}_{}_{}",
            meta.name, meta.namespace, meta.uid, meta.attempt
        );
        self.names.reserve(&name, &id).map_err(|e| {
            Error::AlreadyExists(format!(
                "sandbox {name}: {e} (a RunPodSandbox with this name is done or still in progress)"
            ))
        })?;
        let mut undo = Undo::new();
        let mut stages = crate::stages::Stages::new();
        {
            let rt = self.clone();
            let name = name.clone();
            undo.push(move || rt.names.release(&name));
        }

        let dir = self.sandbox_dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::internal(dir.display(), e))?;
        {
            let dir = dir.clone();
            undo.push(move || {
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
        let hostname = if !config.hostname.is_empty() {
            config.hostname.clone()
        } else if host_net {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            meta.name.clone()
        };
        files::write(&dir, config.dns_config.as_ref(), &hostname)
            .map_err(|e| Error::internal("writing resolv.conf and hostname", e))?;

        // Namespaces, on a blocking thread (mounts and unshare).
        let req = namespaces::NamespaceRequest {
            network: !host_net,
            ipc: !host_ipc,
            uts: !host_net,
            hostname: hostname.clone(),
            sysctls,
        };
        let state = self.config.state.clone();
        let idc = id.clone();
        let pinned = tokio::task::spawn_blocking(move || namespaces::create(&state, &idc, &req))
            .await
            .map_err(|e| Error::internal("namespace task", e))?
            .map_err(|e| match e {
                namespaces::Error::Sysctl { .. } => Error::InvalidArgument(e.to_string()),
                other => Error::Internal(other.to_string()),
            })?;
        {
            let p = pinned.clone();
            undo.push(move || namespaces::remove(&p));
        }

        stages.mark("namespaces");
        let shm = if host_ipc {
            None
        } else {
            let shm = self.config.state.join("sandboxes").join(&id).join("shm");
            std::fs::create_dir_all(&shm).map_err(|e| Error::internal(shm.display(), e))?;
            nix::mount::mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                Some(format!("mode=1777,{SHM_SIZE}").as_str()),
            )
            .map_err(|e| Error::internal("mounting the pod's /dev/shm", e))?;
            let s = shm.clone();
            undo.push(move || {
                let _ = nix::mount::umount2(&s, nix::mount::MntFlags::MNT_DETACH);
                if let Some(parent) = s.parent() {
                    let _ = std::fs::remove_dir_all(parent);
                }
            });
            Some(shm)
        };

        let pid_holder = if pid_mode == cri::NamespaceMode::Pod {
            let (bin, state, idc) = (
                self.monitor_binary.clone(),
                self.config.state.clone(),
                id.clone(),
            );
            let h = tokio::task::spawn_blocking(move || pidns::spawn(&bin, &state, &idc))
                .await
                .map_err(|e| Error::internal("pid namespace task", e))?
                .map_err(|e| Error::Internal(e.to_string()))?;
            let hc = h.clone();
            undo.push(move || pidns::stop(&hc));
            Some(h)
        } else {
            None
        };

        let mut record = SandboxRecord {
            version: store::CHECKPOINT_VERSION,
            id: id.clone(),
            name: name.clone(),
            meta: PodMeta {
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                namespace: meta.namespace.clone(),
                attempt: meta.attempt,
            },
            state: SandboxState::Ready,
            created_at: store::now_ns(),
            runtime_handler: handler,
            hostname,
            log_directory: config.log_directory.clone(),
            cgroup_parent: linux.cgroup_parent.clone(),
            modes: NamespaceModes {
                network: ns.network,
                pid: ns.pid,
                ipc: ns.ipc,
            },
            pinned,
            pid_holder,
            shm,
            ips: Vec::new(),
            network_attached: false,
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
        };

        stages.mark("shm+pid-holder");
        if let Some(att) = record.attachment(port_mappings(config)) {
            let net = self.network.clone();
            let a = att.clone();
            let ips = tokio::task::spawn_blocking(move || net.setup(&a))
                .await
                .map_err(|e| Error::internal("network task", e))??;
            let net = self.network.clone();
            undo.push(move || {
                let _ = net.teardown(&att);
            });
            record.ips = ips;
            record.network_attached = true;
        }
        stages.mark("network");
        store::write_json(&dir.join("sandbox.json"), &record)
            .map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(
            dir.join("port-mappings.json"),
            serde_json::to_vec(&port_mappings(config)).unwrap_or_default(),
        )
        .map_err(|e| Error::internal("writing port mappings", e))?;
        self.sandboxes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                Arc::new(SandboxEntry {
                    record: Mutex::new(record),
                }),
            );
        undo.disarm();
        stages.mark("checkpoint");
        tracing::info!(sandbox = %id, %name, stages = %stages.summary(), "sandbox ready");
        Ok(id)
    }

    fn saved_port_mappings(&self, id: &str) -> Vec<PortMapping> {
        std::fs::read(self.sandbox_dir(id).join("port-mappings.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub async fn stop_pod_sandbox(self: &Arc<Self>, id: &str) -> Result<(), Error> {
        let Some(entry) = self.sandbox(id) else {
            return Ok(());
        };
        let sandbox_id = entry.record.lock().await.id.clone();
        for c in self.all_containers() {
            let (cid, belongs) = {
                let r = c.record.lock().await;
                (r.id.clone(), r.sandbox_id == sandbox_id)
            };
            if belongs {
                self.stop_container(&cid, 0).await?;
            }
        }
        let mut rec = entry.record.lock().await;
        if rec.network_attached {
            if let Some(att) = rec.attachment(self.saved_port_mappings(&rec.id)) {
                let net = self.network.clone();
                tokio::task::spawn_blocking(move || net.teardown(&att))
                    .await
                    .map_err(|e| Error::internal("network task", e))??;
            }
            rec.network_attached = false;
        }
        if let Some(h) = rec.pid_holder.take() {
            pidns::stop(&h);
        }
        namespaces::remove(&rec.pinned);
        if let Some(shm) = &rec.shm {
            let _ = nix::mount::umount2(shm, nix::mount::MntFlags::MNT_DETACH);
        }
        rec.state = SandboxState::NotReady;
        store::write_json(&self.sandbox_dir(&rec.id).join("sandbox.json"), &*rec)
            .map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(sandbox = %rec.id, "sandbox stopped");
        Ok(())
    }

    pub async fn remove_pod_sandbox(self: &Arc<Self>, id: &str) -> Result<(), Error> {
        let Some(entry) = self.sandbox(id) else {
            return Ok(());
        };
        let sandbox_id = entry.record.lock().await.id.clone();
        self.stop_pod_sandbox(&sandbox_id).await?;
        for c in self.all_containers() {
            let (cid, belongs) = {
                let r = c.record.lock().await;
                (r.id.clone(), r.sandbox_id == sandbox_id)
            };
            if belongs {
                self.remove_container(&cid).await?;
            }
        }
        let rec = entry.record.lock().await;
        if let Some(shm) = &rec.shm
            && let Some(parent) = shm.parent()
        {
            let _ = std::fs::remove_dir_all(parent);
        }
        let dir = self.sandbox_dir(&rec.id);
        std::fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| Error::internal(dir.display(), e))?;
        self.sandboxes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        self.names.release(&rec.name);
        tracing::info!(sandbox = %rec.id, "sandbox removed");
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(cri::PodSandboxStatus, BTreeMap<String, String>), Error> {
        let entry = self
            .sandbox(id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?} not found")))?;
        let rec = entry.record.lock().await;
        let status = sandbox_status(&rec);
        let mut info = BTreeMap::new();
        if verbose {
            info.insert(
                "info".to_string(),
                serde_json::to_string(&*rec).unwrap_or_default(),
            );
        }
        Ok((status, info))
    }

    pub async fn list_pod_sandboxes(
        &self,
        filter: Option<&cri::PodSandboxFilter>,
    ) -> Vec<cri::PodSandbox> {
        let mut out = Vec::new();
        for e in self.all_sandboxes() {
            let rec = e.record.lock().await;
            if let Some(f) = filter {
                if !f.id.is_empty() && !rec.id.starts_with(&f.id) {
                    continue;
                }
                if let Some(s) = &f.state
                    && s.state != sandbox_state(rec.state) as i32
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
            out.push(cri::PodSandbox {
                id: rec.id.clone(),
                metadata: Some(sandbox_meta(&rec)),
                state: sandbox_state(rec.state) as i32,
                created_at: rec.created_at,
                labels: rec.labels.clone().into_iter().collect(),
                annotations: rec.annotations.clone().into_iter().collect(),
                runtime_handler: rec.runtime_handler.clone(),
            });
        }
        out.sort_by_key(|s| s.created_at);
        out
    }
}

fn sandbox_state(s: SandboxState) -> cri::PodSandboxState {
    match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

fn sandbox_meta(rec: &SandboxRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: rec.meta.name.clone(),
        uid: rec.meta.uid.clone(),
        namespace: rec.meta.namespace.clone(),
        attempt: rec.meta.attempt,
    }
}

fn sandbox_status(rec: &SandboxRecord) -> cri::PodSandboxStatus {
    let network = (!rec.ips.is_empty()).then(|| cri::PodSandboxNetworkStatus {
        ip: rec.ips[0].clone(),
        additional_ips: rec.ips[1..]
            .iter()
            .map(|ip| cri::PodIp { ip: ip.clone() })
            .collect(),
    });
    cri::PodSandboxStatus {
        id: rec.id.clone(),
        metadata: Some(sandbox_meta(rec)),
        state: sandbox_state(rec.state) as i32,
        created_at: rec.created_at,
        network: Some(network.unwrap_or_default()),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: rec.modes.network,
                    pid: rec.modes.pid,
                    ipc: rec.modes.ipc,
                    ..Default::default()
                }),
            }),
        }),
        labels: rec.labels.clone().into_iter().collect(),
        annotations: rec.annotations.clone().into_iter().collect(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}
