//! The CRI RuntimeService over [`Runtime`]: translation between CRI messages and the runtime
//! core, nothing more. Streaming, stats, events and resource updates answer
//! `Unimplemented` until their issue lands.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::status::not_yet;
use crate::runtime::Runtime;

type Reply<T> = Result<Response<T>, Status>;

pub struct RuntimeServiceImpl {
    runtime: Arc<Runtime>,
    /// The pod CIDR last given by UpdateRuntimeConfig (reported in verbose Status).
    pod_cidr: Mutex<String>,
}

impl RuntimeServiceImpl {
    pub fn new(runtime: Arc<Runtime>) -> RuntimeServiceImpl {
        RuntimeServiceImpl {
            runtime,
            pod_cidr: Mutex::new(String::new()),
        }
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServiceImpl {
    async fn version(&self, _r: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".to_string(),
            runtime_name: "keel-cri".to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: "v1".to_string(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Reply<cri::RunPodSandboxResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("RunPodSandbox: config is missing"))?;
        let id = self
            .runtime
            .run_pod_sandbox(&config, &r.runtime_handler)
            .await?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Reply<cri::StopPodSandboxResponse> {
        self.runtime
            .stop_pod_sandbox(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Reply<cri::RemovePodSandboxResponse> {
        self.runtime
            .remove_pod_sandbox(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Reply<cri::PodSandboxStatusResponse> {
        let r = r.into_inner();
        let (status, info) = self
            .runtime
            .pod_sandbox_status(&r.pod_sandbox_id, r.verbose)
            .await?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(status),
            info: info.into_iter().collect(),
            containers_statuses: Vec::new(),
            timestamp: crate::store::now_ns(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Reply<cri::ListPodSandboxResponse> {
        let r = r.into_inner();
        let items = self.runtime.list_pod_sandboxes(r.filter.as_ref()).await;
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Reply<cri::CreateContainerResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("CreateContainer: config is missing"))?;
        let id = self
            .runtime
            .create_container(&r.pod_sandbox_id, &config)
            .await?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Reply<cri::StartContainerResponse> {
        self.runtime
            .start_container(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Reply<cri::StopContainerResponse> {
        let r = r.into_inner();
        self.runtime
            .stop_container(&r.container_id, r.timeout)
            .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Reply<cri::RemoveContainerResponse> {
        self.runtime
            .remove_container(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Reply<cri::ListContainersResponse> {
        let r = r.into_inner();
        let containers = self.runtime.list_containers(r.filter.as_ref()).await;
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Reply<cri::ContainerStatusResponse> {
        let r = r.into_inner();
        let (status, info) = self
            .runtime
            .container_status(&r.container_id, r.verbose)
            .await?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(status),
            info: info.into_iter().collect(),
        }))
    }

    async fn update_container_resources(
        &self,
        _r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        Err(not_yet("UpdateContainerResources"))
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Reply<cri::ReopenContainerLogResponse> {
        self.runtime
            .reopen_container_log(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, r: Request<cri::ExecSyncRequest>) -> Reply<cri::ExecSyncResponse> {
        let r = r.into_inner();
        let out = self
            .runtime
            .exec_sync(&r.container_id, &r.cmd, r.timeout)
            .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn exec(&self, _r: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        Err(not_yet("Exec (streaming)"))
    }

    async fn attach(&self, _r: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        Err(not_yet("Attach"))
    }

    async fn port_forward(
        &self,
        _r: Request<cri::PortForwardRequest>,
    ) -> Reply<cri::PortForwardResponse> {
        Err(not_yet("PortForward"))
    }

    async fn container_stats(
        &self,
        _r: Request<cri::ContainerStatsRequest>,
    ) -> Reply<cri::ContainerStatsResponse> {
        Err(not_yet("ContainerStats"))
    }

    async fn list_container_stats(
        &self,
        _r: Request<cri::ListContainerStatsRequest>,
    ) -> Reply<cri::ListContainerStatsResponse> {
        Err(not_yet("ListContainerStats"))
    }

    async fn pod_sandbox_stats(
        &self,
        _r: Request<cri::PodSandboxStatsRequest>,
    ) -> Reply<cri::PodSandboxStatsResponse> {
        Err(not_yet("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Reply<cri::ListPodSandboxStatsResponse> {
        Err(not_yet("ListPodSandboxStats"))
    }

    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Reply<cri::UpdateRuntimeConfigResponse> {
        let cidr = r
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
            *self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()) = cidr;
        }
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, r: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        let verbose = r.into_inner().verbose;
        let network = self.runtime.network_ready();
        let conditions = vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".to_string(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            cri::RuntimeCondition {
                r#type: "NetworkReady".to_string(),
                status: network.is_ok(),
                reason: if network.is_ok() {
                    String::new()
                } else {
                    "NetworkPluginNotReady".to_string()
                },
                message: network.err().unwrap_or_default(),
            },
        ];
        let mut info = HashMap::new();
        if verbose {
            let c = self.runtime.config();
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "root": c.root, "state": c.state, "cgroupDriver": c.cgroup_driver.as_str(),
                    "defaultRuntime": c.default_runtime, "cniConfDir": c.cni.conf_dir, "cniBinDirs": c.cni.bin_dirs,
                    "podCIDR": *self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()),
                })
                .to_string(),
            );
        }
        let runtime_handlers = self
            .runtime
            .config()
            .runtimes
            .keys()
            .map(|name| cri::RuntimeHandler {
                name: name.clone(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            })
            .collect();
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers,
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: false,
            }),
        }))
    }

    async fn checkpoint_container(
        &self,
        _r: Request<cri::CheckpointContainerRequest>,
    ) -> Reply<cri::CheckpointContainerResponse> {
        Err(not_yet("CheckpointContainer"))
    }

    type GetContainerEventsStream = Pin<
        Box<
            dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>>
                + Send
                + 'static,
        >,
    >;

    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        Err(not_yet("GetContainerEvents"))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Reply<cri::ListMetricDescriptorsResponse> {
        Err(not_yet("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Reply<cri::ListPodSandboxMetricsResponse> {
        Err(not_yet("ListPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _r: Request<cri::RuntimeConfigRequest>,
    ) -> Reply<cri::RuntimeConfigResponse> {
        let driver = match self.runtime.config().cgroup_driver {
            crate::config::CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
            crate::config::CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }
}
