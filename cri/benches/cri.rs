//! CRI benchmark: drives one or more CRI v1 runtimes (keel-cri, containerd, ...) through the
//! same client code and prints their latencies and memory side by side.
//!
//! Run as `cargo bench -p keel-cri --bench cri -- --endpoint NAME=unix:///path ...`
//! (`hack/bench/cri.sh` sets up both daemons, a shared CNI network and the registry, then runs
//! this). For every endpoint it pulls the image once, then runs `--warmup` untimed and
//! `--iterations` timed pod lifecycles. A lifecycle is one pod sandbox with one container
//! (`sleep 3600` from the busybox test image) and is timed per operation:
//!
//! ```text
//!   RunPodSandbox │ CreateContainer │ StartContainer │ StopContainer+RemoveContainer │
//!   StopPodSandbox+RemovePodSandbox
//! ```
//!
//! Iterations are interleaved across endpoints (A, B, A, B, ...), so load from other work on
//! the machine is spread evenly instead of landing on one runtime. Between start and stop,
//! untimed status calls check that the pod got an IP and that the container runs.
//!
//! Memory: the daemon's VmRSS (pid from `--pid NAME=PID`, else the process listening on the
//! socket) when idle and with `--rss-pods` pods running, and the RSS/PSS of the per-pod
//! monitor or shim processes those pods added (`keel-cri-monitor`, `containerd-shim-runc-v2`,
//! or `--monitor NAME=PROCESS`).
//!
//! Every pod carries the label `keel.bench/run=<run id>`; at the end, on failure and on
//! SIGINT/SIGTERM (after the RPC under way), every pod this run made is stopped and removed.
//! Every RPC has a timeout.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const RUN_LABEL: &str = "keel.bench/run";
const POD_NAMESPACE: &str = "keel-bench";

/// The timed operations, in the order of a pod lifecycle.
const OPS: [&str; 5] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer+RemoveContainer",
    "StopPodSandbox+RemovePodSandbox",
];

#[derive(Parser, Debug)]
#[command(
    name = "cri-bench",
    about = "Times pod/container lifecycles and measures memory on CRI v1 endpoints"
)]
struct Args {
    /// A runtime to drive, as NAME=unix:///path/to.sock (repeatable; columns keep this order).
    #[arg(long = "endpoint", required = true, value_parser = parse_endpoint)]
    endpoints: Vec<(String, PathBuf)>,
    /// The daemon pid of an endpoint, as NAME=PID; default: the process listening on its socket.
    #[arg(long = "pid", value_parser = parse_pid)]
    pids: Vec<(String, i32)>,
    /// The per-pod monitor/shim process name of an endpoint, as NAME=PROCESS; default from the
    /// runtime's name: containerd-shim-runc-v2 for containerd, keel-cri-monitor otherwise.
    #[arg(long = "monitor", value_parser = parse_pair)]
    monitors: Vec<(String, String)>,
    /// The runtime handler RunPodSandbox asks for on an endpoint, as NAME=HANDLER (default "").
    #[arg(long = "handler", value_parser = parse_pair)]
    handlers: Vec<(String, String)>,
    /// Timed pod lifecycles per endpoint.
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Untimed pod lifecycles per endpoint before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Pods kept running at once for the memory measurement (0 = skip it).
    #[arg(long, default_value_t = 10)]
    rss_pods: usize,
    /// The container image (pulled once per endpoint, before anything is timed).
    #[arg(long, default_value = "127.0.0.1:5000/keel-test/busybox:latest")]
    image: String,
    /// Further images to pull before timing (e.g. containerd's sandbox image), repeatable.
    #[arg(long = "pre-pull")]
    pre_pull: Vec<String>,
    /// StopContainer's grace period in seconds. `sleep` as PID 1 ignores SIGTERM, so anything
    /// above 0 times the grace period rather than the runtime.
    #[arg(long, default_value_t = 0)]
    stop_timeout: i64,
    /// Longest wait for any single RPC, in seconds.
    #[arg(long, default_value_t = 120)]
    rpc_timeout: u64,
    /// The endpoint the ratio column divides by; default: "containerd" if present, else the last.
    #[arg(long)]
    baseline: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

fn parse_endpoint(s: &str) -> Result<(String, PathBuf), String> {
    let (name, addr) = parse_pair(s)?;
    match addr.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok((name, PathBuf::from(p))),
        _ => Err(format!("{addr:?} is not unix:///absolute/path")),
    }
}

fn parse_pid(s: &str) -> Result<(String, i32), String> {
    let (name, pid) = parse_pair(s)?;
    let pid = pid
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{pid:?} is not a pid"))?;
    Ok((name, pid))
}

/// One runtime under test.
struct Endpoint {
    name: String,
    socket: PathBuf,
    handler: String,
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
    pid: Option<i32>,
    monitor: String,
    version: String,
    image_ref: String,
}

/// Settings shared by every lifecycle.
struct Settings {
    image: String,
    stop_timeout: i64,
    rpc_timeout: Duration,
    run_id: String,
    log_root: PathBuf,
    /// Set by SIGINT/SIGTERM: finish the RPC under way, then stop and clean up.
    stop: Arc<AtomicBool>,
}

impl Settings {
    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("interrupted by a signal");
        }
        Ok(())
    }
}

/// Pods made by this run and not yet removed: (endpoint index, sandbox id, log dir).
#[derive(Default)]
struct Live {
    pods: Vec<(usize, String, PathBuf)>,
}

impl Live {
    fn forget(&mut self, idx: usize, sandbox: &str) {
        self.pods.retain(|(i, s, _)| !(*i == idx && s == sandbox));
    }
}

/// Awaits one RPC with the run's timeout, turning a status into an error naming the call.
async fn call<T>(
    what: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => bail!("{what}: no answer within {timeout:?}"),
        Ok(Err(status)) => bail!("{what}: {:?}: {}", status.code(), status.message()),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A started pod: its ids and where its logs go.
struct Pod {
    sandbox: String,
    container: String,
}

fn sandbox_config(s: &Settings, tag: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    let uid = uuid::Uuid::new_v4().to_string();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("bench-{tag}"),
            uid,
            namespace: POD_NAMESPACE.to_string(),
            attempt: 0,
        }),
        hostname: format!("bench-{tag}"),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([(RUN_LABEL.to_string(), s.run_id.clone())]),
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// RunPodSandbox, CreateContainer, StartContainer, each timed.
async fn start_pod(
    ep: &Endpoint,
    idx: usize,
    s: &Settings,
    live: &mut Live,
    tag: &str,
) -> Result<(Pod, [f64; 3])> {
    let (mut rt, t) = (ep.rt.clone(), s.rpc_timeout);
    // Like the kubelet, make the pod's log directory before asking for the pod.
    let log_dir = s.log_root.join(format!("{}-{tag}", ep.name));
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let config = sandbox_config(s, tag, &log_dir);

    let t0 = Instant::now();
    let resp = call(
        "RunPodSandbox",
        t,
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: ep.handler.clone(),
        }),
    );
    let resp = resp.await?;
    let run = ms(t0.elapsed());
    let sandbox = resp.pod_sandbox_id;
    live.pods.push((idx, sandbox.clone(), log_dir));

    let container_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "sleeper".to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: ep.image_ref.clone(),
            user_specified_image: s.image.clone(),
            ..Default::default()
        }),
        command: vec!["sleep".to_string(), "3600".to_string()],
        log_path: "sleeper/0.log".to_string(),
        labels: HashMap::from([(RUN_LABEL.to_string(), s.run_id.clone())]),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let t1 = Instant::now();
    let created = call(
        "CreateContainer",
        t,
        rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config),
            sandbox_config: Some(config),
        }),
    )
    .await?;
    let create = ms(t1.elapsed());
    let container = created.container_id;

    let t2 = Instant::now();
    call(
        "StartContainer",
        t,
        rt.start_container(cri::StartContainerRequest {
            container_id: container.clone(),
        }),
    )
    .await?;
    let start = ms(t2.elapsed());
    Ok((Pod { sandbox, container }, [run, create, start]))
}

/// Untimed: the pod has an IP and the container is running. Returns the pod IP.
async fn check_pod(ep: &Endpoint, s: &Settings, pod: &Pod) -> Result<String> {
    let (mut rt, t) = (ep.rt.clone(), s.rpc_timeout);
    let status = call(
        "PodSandboxStatus",
        t,
        rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.sandbox.clone(),
            verbose: false,
        }),
    )
    .await?;
    let ip = status
        .status
        .and_then(|st| st.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    if ip.is_empty() {
        bail!("pod {} has no IP: is the CNI network set up?", pod.sandbox);
    }
    let cs = call(
        "ContainerStatus",
        t,
        rt.container_status(cri::ContainerStatusRequest {
            container_id: pod.container.clone(),
            verbose: false,
        }),
    )
    .await?;
    let state = cs.status.map(|c| c.state).unwrap_or(-1);
    if state != cri::ContainerState::ContainerRunning as i32 {
        bail!(
            "container {} is in state {state} after StartContainer, not running",
            pod.container
        );
    }
    Ok(ip)
}

/// StopContainer+RemoveContainer and StopPodSandbox+RemovePodSandbox, each pair timed.
async fn stop_pod(
    ep: &Endpoint,
    idx: usize,
    s: &Settings,
    live: &mut Live,
    pod: &Pod,
) -> Result<[f64; 2]> {
    let (mut rt, t) = (ep.rt.clone(), s.rpc_timeout);
    let t0 = Instant::now();
    call(
        "StopContainer",
        t,
        rt.stop_container(cri::StopContainerRequest {
            container_id: pod.container.clone(),
            timeout: s.stop_timeout,
        }),
    )
    .await?;
    call(
        "RemoveContainer",
        t,
        rt.remove_container(cri::RemoveContainerRequest {
            container_id: pod.container.clone(),
        }),
    )
    .await?;
    let container = ms(t0.elapsed());

    let t1 = Instant::now();
    remove_sandbox(ep, s, &pod.sandbox).await?;
    let sandbox = ms(t1.elapsed());
    forget_pod(live, idx, &pod.sandbox);
    Ok([container, sandbox])
}

async fn remove_sandbox(ep: &Endpoint, s: &Settings, sandbox: &str) -> Result<()> {
    let (mut rt, t) = (ep.rt.clone(), s.rpc_timeout);
    call(
        "StopPodSandbox",
        t,
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.to_string(),
        }),
    )
    .await?;
    call(
        "RemovePodSandbox",
        t,
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.to_string(),
        }),
    )
    .await?;
    Ok(())
}

/// Drops a removed pod from `live` and deletes its log directory.
fn forget_pod(live: &mut Live, idx: usize, sandbox: &str) {
    if let Some((_, _, dir)) = live.pods.iter().find(|(i, s, _)| *i == idx && s == sandbox) {
        let _ = std::fs::remove_dir_all(dir);
    }
    live.forget(idx, sandbox);
}

/// One whole timed lifecycle: the five operations in [`OPS`] order.
async fn cycle(
    ep: &Endpoint,
    idx: usize,
    s: &Settings,
    live: &mut Live,
    tag: &str,
) -> Result<([f64; 5], String)> {
    let (pod, [run, create, start]) = start_pod(ep, idx, s, live, tag).await?;
    let ip = check_pod(ep, s, &pod).await?;
    let [stop_c, stop_s] = stop_pod(ep, idx, s, live, &pod).await?;
    Ok(([run, create, start, stop_c, stop_s], ip))
}

/// Memory of one process, in KiB.
#[derive(Clone, Copy, Debug)]
struct Mem {
    rss_kib: u64,
    pss_kib: Option<u64>,
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn mem_of(pid: i32) -> Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = kib_field(&status, "VmRSS:")
        .ok_or_else(|| anyhow!("/proc/{pid}/status has no VmRSS (a kernel thread or a zombie?)"))?;
    let pss_kib = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| kib_field(&t, "Pss:"));
    Ok(Mem { rss_kib, pss_kib })
}

fn proc_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// What the memory attribution needs to know of one process.
struct ProcInfo {
    pid: i32,
    ppid: i32,
    argv: Vec<String>,
    /// The base name of argv[0], else of the executable.
    name: String,
    /// `/proc/<pid>/ns/pid`, e.g. `pid:[4026531836]`.
    pidns: String,
    /// The pid inside its own (innermost) PID namespace.
    inner_pid: Option<i32>,
}

fn base_name(p: &str) -> String {
    Path::new(p.trim_end_matches(" (deleted)"))
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every process now (those that vanish while being read are skipped).
fn scan_procs() -> Vec<ProcInfo> {
    proc_pids()
        .into_iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::trim)
            };
            let ppid = field("PPid:")?.parse().ok()?;
            let inner_pid = field("NSpid:")
                .and_then(|v| v.split_whitespace().last())
                .and_then(|v| v.parse().ok());
            let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()?
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let name = match argv.first() {
                Some(a0) => base_name(a0),
                None => std::fs::read_link(format!("/proc/{pid}/exe"))
                    .map(|e| base_name(&e.to_string_lossy()))
                    .unwrap_or_default(),
            };
            let pidns = std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some(ProcInfo {
                pid,
                ppid,
                argv,
                name,
                pidns,
                inner_pid,
            })
        })
        .collect()
}

/// The per-pod processes of `pods`: the monitors/shims (named `monitor`, with one of the pods'
/// sandbox or container ids on their command line) and the pod holders (PID 1 of the PID
/// namespace the monitors' children run in: containerd's pause, keel-cri's `--pause` holder).
fn pod_processes(monitor: &str, pods: &[Pod]) -> (Vec<i32>, Vec<i32>) {
    let procs = scan_procs();
    let ids: Vec<&str> = pods
        .iter()
        .flat_map(|p| [p.sandbox.as_str(), p.container.as_str()])
        .collect();
    let monitors: HashSet<i32> = procs
        .iter()
        .filter(|p| p.name == monitor && p.argv.iter().any(|a| ids.iter().any(|id| a.contains(id))))
        .map(|p| p.pid)
        .collect();
    let host_ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pod_ns: HashSet<&str> = procs
        .iter()
        .filter(|p| monitors.contains(&p.ppid) && !monitors.contains(&p.pid))
        .map(|p| p.pidns.as_str())
        .filter(|ns| *ns != host_ns)
        .collect();
    let holders = procs
        .iter()
        .filter(|p| p.inner_pid == Some(1) && pod_ns.contains(p.pidns.as_str()))
        .filter(|p| !monitors.contains(&p.pid))
        .map(|p| p.pid)
        .collect();
    (monitors.into_iter().collect(), holders)
}

/// The pid holding the listening unix socket at `path`, from /proc/net/unix and /proc/*/fd.
fn pid_listening_on(path: &Path) -> Result<Option<i32>> {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let table = std::fs::read_to_string("/proc/net/unix").context("reading /proc/net/unix")?;
    let want = path.to_string_lossy();
    let inodes: HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let listening = f
                .get(3)
                .and_then(|fl| u32::from_str_radix(fl, 16).ok())
                .is_some_and(|fl| fl & SO_ACCEPTCON != 0);
            (listening && f.get(7).is_some_and(|p| *p == want))
                .then(|| f.get(6).map(|i| format!("socket:[{i}]")))
                .flatten()
        })
        .collect();
    if inodes.is_empty() {
        return Ok(None);
    }
    let mut owners: Vec<i32> = proc_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.filter_map(|e| e.ok())
                        .filter_map(|e| std::fs::read_link(e.path()).ok())
                        .any(|l| inodes.contains(l.to_string_lossy().as_ref()))
                })
                .unwrap_or(false)
        })
        .collect();
    owners.sort_unstable();
    Ok(owners.first().copied())
}

/// Memory results of one endpoint.
#[derive(Default)]
struct MemReport {
    idle: Option<Mem>,
    loaded: Option<Mem>,
    monitors: Vec<Mem>,
    holders: Vec<Mem>,
}

/// Starts `n` pods, measures the daemon and the monitor/shim processes they added, removes them.
async fn measure_loaded(
    ep: &Endpoint,
    idx: usize,
    s: &Settings,
    live: &mut Live,
    n: usize,
    report: &mut MemReport,
) -> Result<()> {
    let mut pods = Vec::with_capacity(n);
    for i in 0..n {
        s.check_stop()?;
        let (pod, _) = start_pod(ep, idx, s, live, &format!("mem-{i}")).await?;
        check_pod(ep, s, &pod).await?;
        pods.push(pod);
    }
    if let Some(pid) = ep.pid {
        report.loaded = Some(mem_of(pid)?);
    }
    let (monitors, holders) = pod_processes(&ep.monitor, &pods);
    report.monitors = monitors.iter().filter_map(|p| mem_of(*p).ok()).collect();
    report.holders = holders.iter().filter_map(|p| mem_of(*p).ok()).collect();
    if report.monitors.is_empty() {
        eprintln!(
            "cri-bench: {}: found no {:?} process naming any of the {n} pods",
            ep.name, ep.monitor
        );
    }
    for pod in &pods {
        s.check_stop()?;
        stop_pod(ep, idx, s, live, pod).await?;
    }
    Ok(())
}

/// Everything measured: per endpoint, timed samples and memory.
struct Results {
    samples: Vec<Vec<[f64; 5]>>,
    mem: Vec<MemReport>,
}

async fn bench(args: &Args, eps: &[Endpoint], s: &Settings, live: &mut Live) -> Result<Results> {
    let mut mem: Vec<MemReport> = eps.iter().map(|_| MemReport::default()).collect();
    for (ep, m) in eps.iter().zip(mem.iter_mut()) {
        if let Some(pid) = ep.pid {
            m.idle = Some(mem_of(pid).with_context(|| format!("{}: daemon memory", ep.name))?);
        }
    }
    let mut samples: Vec<Vec<[f64; 5]>> = eps.iter().map(|_| Vec::new()).collect();
    for i in 0..args.warmup + args.iterations {
        let timed = i >= args.warmup;
        for (idx, ep) in eps.iter().enumerate() {
            s.check_stop()?;
            let tag = if timed {
                format!("{}", i - args.warmup)
            } else {
                format!("warmup-{i}")
            };
            let (ops, ip) = cycle(ep, idx, s, live, &tag)
                .await
                .with_context(|| format!("{}: pod lifecycle {tag}", ep.name))?;
            if i == 0 {
                eprintln!("cri-bench: {}: first pod got IP {ip}", ep.name);
            }
            if timed {
                samples[idx].push(ops);
            }
        }
    }
    if args.rss_pods > 0 {
        for (idx, ep) in eps.iter().enumerate() {
            eprintln!(
                "cri-bench: {}: memory with {} pods running",
                ep.name, args.rss_pods
            );
            measure_loaded(ep, idx, s, live, args.rss_pods, &mut mem[idx])
                .await
                .with_context(|| format!("{}: memory with {} pods", ep.name, args.rss_pods))?;
        }
    }
    Ok(Results { samples, mem })
}

/// Stops and removes every pod this run made: the ones it knows of, then any left carrying the
/// run label (say, a RunPodSandbox that timed out here but went through in the daemon).
async fn cleanup(eps: &[Endpoint], s: &Settings, live: &mut Live) -> Result<()> {
    let mut failures = Vec::new();
    for (idx, sandbox, _) in live.pods.clone() {
        let ep = &eps[idx];
        match remove_sandbox(ep, s, &sandbox).await {
            Ok(()) => forget_pod(live, idx, &sandbox),
            Err(e) => failures.push(format!("{}: pod {sandbox}: {e:#}", ep.name)),
        }
    }
    for ep in eps {
        let mut rt = ep.rt.clone();
        let listed = call(
            "ListPodSandbox",
            s.rpc_timeout,
            rt.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: HashMap::from([(RUN_LABEL.to_string(), s.run_id.clone())]),
                    ..Default::default()
                }),
            }),
        )
        .await;
        match listed {
            Ok(list) => {
                for pod in list.items {
                    eprintln!("cri-bench: {}: removing leftover pod {}", ep.name, pod.id);
                    if let Err(e) = remove_sandbox(ep, s, &pod.id).await {
                        failures.push(format!("{}: pod {}: {e:#}", ep.name, pod.id));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: listing leftover pods: {e:#}", ep.name)),
        }
    }
    let _ = std::fs::remove_dir_all(&s.log_root);
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("could not remove every pod:\n  {}", failures.join("\n  "))
    }
}

async fn connect(
    args: &Args,
    name: &str,
    socket: &Path,
    rpc_timeout: Duration,
) -> Result<Endpoint> {
    let lookup =
        |list: &[(String, String)]| list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let channel = keel_testkit::connect_unix(socket, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let version = call(
        "Version",
        rpc_timeout,
        rt.version(cri::VersionRequest {
            version: "v1".to_string(),
        }),
    )
    .await
    .with_context(|| format!("{name}: CRI Version on {}", socket.display()))?;
    let pid = match args.pids.iter().find(|(n, _)| n == name) {
        Some((_, pid)) => Some(*pid),
        None => pid_listening_on(socket)?,
    };
    if pid.is_none() {
        eprintln!(
            "cri-bench: {name}: no pid given and none found listening on {}: daemon memory not measured",
            socket.display()
        );
    }
    let monitor = lookup(&args.monitors).unwrap_or_else(|| {
        if version.runtime_name.contains("containerd") {
            "containerd-shim-runc-v2".to_string()
        } else {
            "keel-cri-monitor".to_string()
        }
    });
    Ok(Endpoint {
        name: name.to_string(),
        socket: socket.to_path_buf(),
        handler: lookup(&args.handlers).unwrap_or_default(),
        rt,
        img: ImageServiceClient::new(channel),
        pid,
        monitor,
        version: format!("{} {}", version.runtime_name, version.runtime_version),
        image_ref: String::new(),
    })
}

async fn pull(ep: &Endpoint, s: &Settings, image: &str) -> Result<String> {
    let mut img = ep.img.clone();
    let resp = call(
        "PullImage",
        s.rpc_timeout,
        img.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await
    .with_context(|| format!("{}: pulling {image}", ep.name))?;
    Ok(resp.image_ref)
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Nearest-rank percentile.
fn percentile(v: &[f64], p: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.max(1) - 1).copied()
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

fn print_table(eps: &[Endpoint], baseline: usize, res: &Results, args: &Args) {
    let others: Vec<usize> = (0..eps.len()).filter(|i| *i != baseline).collect();
    let mut header = vec!["operation".to_string()];
    header.extend(eps.iter().map(|e| format!("{} median", e.name)));
    header.extend(
        others
            .iter()
            .map(|i| format!("ratio {}/{}", eps[*i].name, eps[baseline].name)),
    );
    header.extend(eps.iter().map(|e| format!("{} p90", e.name)));
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |label: String, med: Vec<Option<f64>>, p90: Vec<Option<f64>>, digits: usize| {
        let mut r = vec![label];
        r.extend(med.iter().map(|m| fmt_opt(*m, digits)));
        r.extend(others.iter().map(|i| match (med[*i], med[baseline]) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".to_string(),
        }));
        r.extend(p90.iter().map(|m| fmt_opt(*m, digits)));
        rows.push(r);
    };
    let column = |op: &dyn Fn(&[f64; 5]) -> f64| -> Vec<Vec<f64>> {
        res.samples
            .iter()
            .map(|s| s.iter().map(op).collect())
            .collect()
    };
    let mut series: Vec<(String, Vec<Vec<f64>>)> = OPS
        .iter()
        .enumerate()
        .map(|(k, name)| (format!("{name} (ms)"), column(&|o: &[f64; 5]| o[k])))
        .collect();
    series.push((
        "pod+container start (ms)".to_string(),
        column(&|o: &[f64; 5]| o[0] + o[1] + o[2]),
    ));
    for (label, per_ep) in series {
        let med = per_ep.iter().map(|v| median(v)).collect();
        let p90 = per_ep.iter().map(|v| percentile(v, 90.0)).collect();
        row(label, med, p90, 1);
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let none = || vec![None; eps.len()];
    let daemon = |f: &dyn Fn(&MemReport) -> Option<Mem>| -> Vec<Option<f64>> {
        res.mem
            .iter()
            .map(|m| f(m).map(|x| mib(x.rss_kib)))
            .collect()
    };
    row(
        "daemon RSS idle (MiB)".to_string(),
        daemon(&|m| m.idle),
        none(),
        1,
    );
    if args.rss_pods > 0 {
        let n = args.rss_pods;
        row(
            format!("daemon RSS, {n} pods running (MiB)"),
            daemon(&|m| m.loaded),
            none(),
            1,
        );
        type Pick = fn(&MemReport) -> &Vec<Mem>;
        let kinds: [(&str, Pick); 2] = [
            ("monitor/shim", |m| &m.monitors),
            ("pod holder", |m| &m.holders),
        ];
        for (kind, pick) in kinds {
            let count = res.mem.iter().map(|m| Some(pick(m).len() as f64)).collect();
            row(format!("{kind} processes, {n} pods"), count, none(), 0);
            let rss: Vec<Vec<f64>> = res
                .mem
                .iter()
                .map(|m| pick(m).iter().map(|x| mib(x.rss_kib)).collect())
                .collect();
            let pss: Vec<Vec<f64>> = res
                .mem
                .iter()
                .map(|m| pick(m).iter().filter_map(|x| x.pss_kib.map(mib)).collect())
                .collect();
            row(
                format!("{kind} RSS per process (MiB)"),
                rss.iter().map(|v| median(v)).collect(),
                rss.iter().map(|v| percentile(v, 90.0)).collect(),
                2,
            );
            row(
                format!("{kind} PSS per process (MiB)"),
                pss.iter().map(|v| median(v)).collect(),
                pss.iter().map(|v| percentile(v, 90.0)).collect(),
                2,
            );
        }
        let per_pod = res
            .mem
            .iter()
            .map(|m| {
                let all: Vec<u64> = m
                    .monitors
                    .iter()
                    .chain(&m.holders)
                    .filter_map(|x| x.pss_kib)
                    .collect();
                (!all.is_empty()).then(|| mib(all.iter().sum()) / n as f64)
            })
            .collect();
        row(
            "per-pod overhead: monitors+holders PSS / pods (MiB)".to_string(),
            per_pod,
            none(),
            2,
        );
    }

    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    for ep in eps {
        println!(
            "{}: {} on {} (pid {}, handler {:?}, monitor {})",
            ep.name,
            ep.version,
            ep.socket.display(),
            ep.pid.map_or_else(|| "?".to_string(), |p| p.to_string()),
            ep.handler,
            ep.monitor
        );
    }
    println!(
        "{} timed iterations after {} warm-up, interleaved; medians, ratio of medians, nearest-rank p90; stop grace period {} s",
        args.iterations, args.warmup, args.stop_timeout
    );
    println!();
    line(&header);
    let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", sep.join("-|-"));
    for r in &rows {
        line(r);
    }
    println!();
    println!(
        "Runtimes split the work of CreateContainer and StartContainer differently (where the \
         OCI runtime's create runs): compare \"pod+container start\" across runtimes."
    );
    if args.rss_pods > 0 {
        println!(
            "monitor/shim: the per-pod process the daemon starts (containerd-shim-runc-v2, keel-cri-monitor); \
             pod holder: PID 1 of the pod's PID namespace (containerd's pause, keel-cri's `keel-cri-monitor --pause`). \
             PSS shares each shared page among the processes mapping it."
        );
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("SIGINT handler")?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let mut names = HashSet::new();
    for (name, _) in &args.endpoints {
        if !names.insert(name.as_str()) {
            bail!("endpoint {name:?} given twice");
        }
    }
    for (name, _) in args
        .pids
        .iter()
        .map(|(n, _)| (n, ()))
        .chain(args.monitors.iter().map(|(n, _)| (n, ())))
        .chain(args.handlers.iter().map(|(n, _)| (n, ())))
    {
        if !names.contains(name.as_str()) {
            bail!("{name:?} names no --endpoint");
        }
    }
    let baseline = match &args.baseline {
        Some(b) => args
            .endpoints
            .iter()
            .position(|(n, _)| n == b)
            .ok_or_else(|| anyhow!("--baseline {b:?} names no --endpoint"))?,
        None => args
            .endpoints
            .iter()
            .position(|(n, _)| n == "containerd")
            .unwrap_or(args.endpoints.len() - 1),
    };
    let rpc_timeout = Duration::from_secs(args.rpc_timeout.max(1));
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let s = Settings {
        image: args.image.clone(),
        stop_timeout: args.stop_timeout,
        rpc_timeout,
        log_root: std::env::temp_dir().join(format!("keel-cri-bench-{run_id}")),
        run_id,
        stop: Arc::new(AtomicBool::new(false)),
    };

    let mut eps = Vec::new();
    for (name, socket) in &args.endpoints {
        eps.push(connect(&args, name, socket, rpc_timeout).await?);
    }
    eprintln!("cri-bench: run {}, load average {}", s.run_id, loadavg());
    for ep in &mut eps {
        for image in &args.pre_pull {
            pull(ep, &s, image).await?;
        }
        ep.image_ref = pull(ep, &s, &args.image).await?;
        eprintln!(
            "cri-bench: {} ({}): pulled {} as {}",
            ep.name, ep.version, args.image, ep.image_ref
        );
    }

    let mut live = Live::default();
    // A signal does not drop the RPC under way (the daemon would cancel it half done): the
    // bench stops at the next operation boundary and cleans up; a second signal exits at once.
    let stop = s.stop.clone();
    let signals = tokio::spawn(async move {
        if let Err(e) = shutdown_signal().await {
            eprintln!("cri-bench: not watching signals: {e:#}");
            return;
        }
        eprintln!("cri-bench: signal: stopping after the RPC under way, then removing the pods");
        stop.store(true, Ordering::SeqCst);
        if shutdown_signal().await.is_ok() {
            eprintln!("cri-bench: second signal: exiting without cleanup");
            std::process::exit(130);
        }
    });
    let outcome = bench(&args, &eps, &s, &mut live).await;
    let cleaned = cleanup(&eps, &s, &mut live).await;
    signals.abort();
    let results = match (outcome, cleaned) {
        (Ok(r), Ok(())) => r,
        (Err(e), Ok(())) => return Err(e),
        (Ok(_), Err(c)) => return Err(c),
        (Err(e), Err(c)) => return Err(e.context(format!("and then cleanup failed: {c:#}"))),
    };
    eprintln!("cri-bench: done, load average {}", loadavg());
    print_table(&eps, baseline, &results, &args);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cri-bench: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cri-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
