//! The load generator of `hack/bench/apiserver.sh`: drives the same operations against
//! keel-apiserver (HTTPS, HTTP/2, the admin client certificate of a kubeconfig) or directly
//! against etcd (the etcd-client crate: txn put-if-absent, get, range, watch) and prints one
//! `RESULT <name> <value>` line per measurement.
//!
//! Phases, in order: RSS idle; writes from 1 client then from N clients (the first round fills
//! one namespace to `--objects` objects); RSS at that count; GET and LIST latency in that
//! namespace; the delay from a write to its event at `--watchers` watchers; further write
//! rounds in fresh namespaces (write figures are the medians over rounds). Every phase has a
//! deadline; the program exits non-zero when anything fails.
//!
//! Run with `harness = false`: `apiserver_load --target apiserver --kubeconfig K --pid P`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Longest any one phase may take.
const PHASE_DEADLINE: Duration = Duration::from_secs(180);

#[derive(Debug, Parser)]
struct Args {
    /// `apiserver` or `etcd`.
    #[arg(long)]
    target: String,
    /// The admin kubeconfig (target apiserver).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// etcd's client URL (target etcd), e.g. http://127.0.0.1:2379.
    #[arg(long)]
    etcd_endpoint: Option<String>,
    /// Processes whose RSS is reported, as NAME=PID (repeatable).
    #[arg(long = "pid")]
    pids: Vec<String>,
    /// Objects in the namespace GET and LIST are measured in.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Writes of the single-client phase (the rest of `objects` come from the concurrent one).
    #[arg(long, default_value_t = 1_000)]
    single_writes: usize,
    /// Concurrent clients of the concurrent write phase (one connection each).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 2_000)]
    gets: usize,
    #[arg(long, default_value_t = 30)]
    lists: usize,
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Watch streams multiplexed on one HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Writes whose event delay is measured.
    #[arg(long, default_value_t = 30)]
    watch_events: usize,
    /// Write rounds (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let target = match args.target.as_str() {
            "apiserver" => {
                let path = args
                    .kubeconfig
                    .as_ref()
                    .context("--kubeconfig is required")?;
                Target::Api(Api::from_kubeconfig(path)?)
            }
            "etcd" => {
                let endpoint = args
                    .etcd_endpoint
                    .clone()
                    .context("--etcd-endpoint is required")?;
                Target::Etcd(endpoint)
            }
            other => bail!("unknown --target {other:?}"),
        };
        run(&args, &target).await
    })
}

fn report(name: &str, value: impl std::fmt::Display) {
    println!("RESULT {name} {value}");
}

async fn run(args: &Args, target: &Target) -> Result<()> {
    let rss = |label: &str| -> Result<()> {
        for entry in &args.pids {
            let (name, pid) = entry.split_once('=').context("--pid wants NAME=PID")?;
            report(
                &format!("rss_{label}_mb_{name}"),
                format!("{:.1}", rss_mb(pid)?),
            );
        }
        Ok(())
    };
    rss("idle")?;
    let mut singles = Vec::new();
    let mut concurrents = Vec::new();
    for round in 0..args.rounds.max(1) {
        let namespace = format!("bench-{round}");
        target.prepare_namespace(&namespace).await?;
        let single = phase(
            "writes from 1 client",
            writes(target, &namespace, "a", args.single_writes, 1),
        )
        .await?;
        let rest = args.objects.saturating_sub(args.single_writes).max(1);
        let concurrent = phase(
            "concurrent writes",
            writes(target, &namespace, "b", rest, args.clients),
        )
        .await?;
        eprintln!(
            "round {round}: 1 client {:.0}/s p99 {:.2} ms; {} clients {:.0}/s p99 {:.2} ms",
            single.rate,
            ms(single.latency.p99),
            args.clients,
            concurrent.rate,
            ms(concurrent.latency.p99)
        );
        singles.push(single);
        concurrents.push(concurrent);
        if round == 0 {
            rss("loaded")?;
            let names: Vec<String> = (0..args.single_writes)
                .map(|i| format!("a-{i}"))
                .chain((0..rest).map(|i| format!("b-{i}")))
                .collect();
            let get = phase("GET", gets(target, &namespace, &names, args.gets)).await?;
            report("get_p50_ms", format!("{:.2}", ms(get.p50)));
            report("get_p99_ms", format!("{:.2}", ms(get.p99)));
            let list = phase("LIST", lists(target, &namespace, args.lists, names.len())).await?;
            report("list_p50_ms", format!("{:.1}", ms(list.p50)));
            report("list_p99_ms", format!("{:.1}", ms(list.p99)));
            let delay = phase("watch", watch_delay(target, args)).await?;
            report("watch_p50_ms", format!("{:.2}", ms(delay.p50)));
            report("watch_p99_ms", format!("{:.2}", ms(delay.p99)));
            rss("watching")?;
        }
    }
    let median = |runs: &[Throughput], f: fn(&Throughput) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    report(
        "writes_1_per_s",
        format!("{:.0}", median(&singles, |t| t.rate)),
    );
    report(
        "write_1_p50_ms",
        format!("{:.2}", median(&singles, |t| ms(t.latency.p50))),
    );
    report(
        "write_1_p99_ms",
        format!("{:.2}", median(&singles, |t| ms(t.latency.p99))),
    );
    report(
        "writes_n_per_s",
        format!("{:.0}", median(&concurrents, |t| t.rate)),
    );
    report(
        "write_n_p50_ms",
        format!("{:.2}", median(&concurrents, |t| ms(t.latency.p50))),
    );
    report(
        "write_n_p99_ms",
        format!("{:.2}", median(&concurrents, |t| ms(t.latency.p99))),
    );
    report("rounds", singles.len());
    Ok(())
}

async fn phase<T>(name: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(PHASE_DEADLINE, work)
        .await
        .map_err(|_| anyhow!("phase {name:?} did not finish within {PHASE_DEADLINE:?}"))?
        .with_context(|| format!("phase {name:?}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_mb(pid: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Result<Percentiles> {
    if samples.is_empty() {
        bail!("no samples");
    }
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Ok(Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    })
}

struct Throughput {
    rate: f64,
    latency: Percentiles,
}

/// `count` creates named `{tag}-{i}` in `namespace` from `clients` concurrent clients.
async fn writes(
    target: &Target,
    namespace: &str,
    tag: &str,
    count: usize,
    clients: usize,
) -> Result<Throughput> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(target.connect().await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut connection in connections {
        let next = next.clone();
        let namespace = namespace.to_string();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let begun = Instant::now();
                connection
                    .create(&namespace, &format!("{tag}-{i}"), i)
                    .await?;
                latencies.push(begun.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    Ok(Throughput {
        rate: count as f64 / elapsed.as_secs_f64(),
        latency: percentiles(latencies)?,
    })
}

async fn gets(
    target: &Target,
    namespace: &str,
    names: &[String],
    count: usize,
) -> Result<Percentiles> {
    let mut connection = target.connect().await?;
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        // A fixed stride walks the names in a scattered order.
        let name = &names[(i * 7919) % names.len()];
        let begun = Instant::now();
        connection.get(namespace, name).await?;
        latencies.push(begun.elapsed());
    }
    percentiles(latencies)
}

async fn lists(
    target: &Target,
    namespace: &str,
    count: usize,
    expected: usize,
) -> Result<Percentiles> {
    let mut connection = target.connect().await?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let begun = Instant::now();
        let items = connection.list(namespace).await?;
        latencies.push(begun.elapsed());
        if items != expected {
            bail!("LIST returned {items} items, expected {expected}");
        }
    }
    percentiles(latencies)
}

/// Which event each watcher has seen and when.
struct Arrivals {
    /// Per event: how many watchers have seen it.
    seen: Vec<AtomicUsize>,
    notify: Notify,
}

/// Opens `watchers` watches on an empty namespace, then writes `watch_events` objects one at a
/// time, each once every watcher saw the previous one; the delay is from the start of the
/// write request to the event's arrival at a watcher.
async fn watch_delay(target: &Target, args: &Args) -> Result<Percentiles> {
    let namespace = "bench-watch";
    target.prepare_namespace(namespace).await?;
    let events = args.watch_events;
    let arrivals = Arc::new(Arrivals {
        seen: (0..events).map(|_| AtomicUsize::new(0)).collect(),
        notify: Notify::new(),
    });
    let mut receivers = Vec::new();
    let per_connection = args.streams_per_connection.max(1);
    let mut opened = 0;
    while opened < args.watchers {
        let connection = target.connect().await?;
        for _ in 0..per_connection.min(args.watchers - opened) {
            let stream = connection.watch(namespace).await?;
            let arrivals = arrivals.clone();
            receivers.push(tokio::spawn(stream.collect(events, arrivals)));
            opened += 1;
        }
        // The connection lives on in its streams.
    }
    let mut writer = target.connect().await?;
    let mut starts = Vec::with_capacity(events);
    for (index, seen) in arrivals.seen.iter().enumerate() {
        let begun = Instant::now();
        starts.push(begun);
        writer
            .create(namespace, &format!("ev-{index}"), index)
            .await?;
        let all_seen = async {
            loop {
                let notified = arrivals.notify.notified();
                if seen.load(Ordering::Acquire) >= args.watchers {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all_seen)
            .await
            .map_err(|_| {
                anyhow!(
                    "event {index} reached {} of {} watchers within 10 s",
                    seen.load(Ordering::Acquire),
                    args.watchers
                )
            })?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delays = Vec::with_capacity(events * args.watchers);
    for receiver in receivers {
        for (index, arrived) in receiver.await?? {
            delays.push(arrived.saturating_duration_since(starts[index]));
        }
    }
    percentiles(delays)
}

/// A ConfigMap as a client sends it.
fn config_map(name: &str, i: usize) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"data":{{"index":"{i}","payload":"{}"}}}}"#,
        "x".repeat(64)
    )
}

/// The event index of a watch line whose object is named `ev-<index>` (the bench's objects
/// carry no other `"name":"ev-` field). A substring search, not a JSON parse, so that the
/// generator, which shares the machine with the server, spends little per event.
fn event_index(line: &[u8]) -> Option<usize> {
    const NEEDLE: &[u8] = b"\"name\":\"ev-";
    let at = line.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let digits = &line[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn event_index_from_key(key: &[u8]) -> Option<usize> {
    let key = std::str::from_utf8(key).ok()?;
    key.rsplit_once("/ev-")?.1.parse().ok()
}

enum Target {
    Api(Api),
    Etcd(String),
}

enum Connection {
    Api(ApiConnection),
    Etcd(etcd_client::Client),
}

enum WatchStream {
    Api(hyper::body::Incoming),
    Etcd(etcd_client::WatchStream),
}

impl Target {
    async fn connect(&self) -> Result<Connection> {
        match self {
            Target::Api(api) => Ok(Connection::Api(api.connect().await?)),
            Target::Etcd(endpoint) => Ok(Connection::Etcd(
                etcd_client::Client::connect([endpoint.as_str()], None).await?,
            )),
        }
    }

    async fn prepare_namespace(&self, namespace: &str) -> Result<()> {
        match self {
            Target::Api(_) => {
                let Connection::Api(mut sender) = self.connect().await? else {
                    bail!("an apiserver target connected elsewhere");
                };
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{namespace}"}}}}"#
                );
                let (status, text) =
                    send(&mut sender, Method::POST, "/api/v1/namespaces", Some(body)).await?;
                if status != StatusCode::CREATED {
                    bail!(
                        "creating namespace {namespace}: {status} {}",
                        String::from_utf8_lossy(&text)
                    );
                }
                Ok(())
            }
            Target::Etcd(_) => Ok(()),
        }
    }
}

fn etcd_key(namespace: &str, name: &str) -> String {
    format!("/registry/configmaps/{namespace}/{name}")
}

/// What the apiserver would store for `config_map(name, i)`.
fn stored_config_map(namespace: &str, name: &str, i: usize) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"{namespace}","uid":"{}","creationTimestamp":"2026-01-01T00:00:00Z","labels":{{"app":"bench"}},"managedFields":[{{"manager":"apiserver_load","operation":"Update","apiVersion":"v1","time":"2026-01-01T00:00:00Z","fieldsType":"FieldsV1","fieldsV1":{{"f:data":{{".":{{}},"f:index":{{}},"f:payload":{{}}}}}}}}]}},"data":{{"index":"{i}","payload":"{}"}}}}"#,
        uuid::Uuid::new_v4(),
        "x".repeat(64)
    )
}

impl Connection {
    async fn create(&mut self, namespace: &str, name: &str, i: usize) -> Result<()> {
        match self {
            Connection::Api(sender) => {
                let path = format!("/api/v1/namespaces/{namespace}/configmaps");
                let (status, text) =
                    send(sender, Method::POST, &path, Some(config_map(name, i))).await?;
                if status != StatusCode::CREATED {
                    bail!("create {name}: {status} {}", String::from_utf8_lossy(&text));
                }
                Ok(())
            }
            Connection::Etcd(client) => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let key = etcd_key(namespace, name);
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, stored_config_map(namespace, name, i), None)]);
                let response = client.txn(txn).await?;
                if !response.succeeded() {
                    bail!("create {name}: key exists");
                }
                Ok(())
            }
        }
    }

    async fn get(&mut self, namespace: &str, name: &str) -> Result<()> {
        match self {
            Connection::Api(sender) => {
                let path = format!("/api/v1/namespaces/{namespace}/configmaps/{name}");
                let (status, _) = send(sender, Method::GET, &path, None).await?;
                if status != StatusCode::OK {
                    bail!("get {name}: {status}");
                }
                Ok(())
            }
            Connection::Etcd(client) => {
                let response = client.get(etcd_key(namespace, name), None).await?;
                if response.kvs().is_empty() {
                    bail!("get {name}: not found");
                }
                Ok(())
            }
        }
    }

    /// Lists the namespace; returns the item count.
    async fn list(&mut self, namespace: &str) -> Result<usize> {
        match self {
            Connection::Api(sender) => {
                let path = format!("/api/v1/namespaces/{namespace}/configmaps");
                let (status, body) = send(sender, Method::GET, &path, None).await?;
                if status != StatusCode::OK {
                    bail!("list: {status}");
                }
                #[derive(serde::Deserialize)]
                struct List {
                    items: Vec<serde::de::IgnoredAny>,
                }
                let list: List = serde_json::from_slice(&body)?;
                Ok(list.items.len())
            }
            Connection::Etcd(client) => {
                let prefix = format!("/registry/configmaps/{namespace}/");
                let options = etcd_client::GetOptions::new().with_prefix();
                let mut kv = client.kv_client().max_decoding_message_size(256 << 20);
                let response = kv.get(prefix, Some(options)).await?;
                Ok(response.kvs().len())
            }
        }
    }

    async fn watch(&self, namespace: &str) -> Result<WatchStream> {
        match self {
            Connection::Api(sender) => {
                let mut sender = sender.clone();
                let path = format!("/api/v1/namespaces/{namespace}/configmaps?watch=1");
                let request = request(&sender.base, Method::GET, &path, None)?;
                sender.sender.ready().await?;
                let response = sender.sender.send_request(request).await?;
                if response.status() != StatusCode::OK {
                    bail!("watch: {}", response.status());
                }
                Ok(WatchStream::Api(response.into_body()))
            }
            Connection::Etcd(client) => {
                let mut client = client.clone();
                let prefix = format!("/registry/configmaps/{namespace}/");
                let options = etcd_client::WatchOptions::new().with_prefix();
                let stream = client.watch(prefix, Some(options)).await?;
                Ok(WatchStream::Etcd(stream))
            }
        }
    }
}

impl WatchStream {
    /// Records when each of the `events` events arrives; ends once all did.
    async fn collect(
        self,
        events: usize,
        arrivals: Arc<Arrivals>,
    ) -> Result<Vec<(usize, Instant)>> {
        let mut seen = Vec::with_capacity(events);
        let arrived = |index: usize, seen: &mut Vec<(usize, Instant)>| {
            if index < events {
                seen.push((index, Instant::now()));
                arrivals.seen[index].fetch_add(1, Ordering::AcqRel);
                arrivals.notify.notify_waiters();
            }
        };
        match self {
            WatchStream::Api(mut body) => {
                let mut pending: Vec<u8> = Vec::new();
                while seen.len() < events {
                    let frame = body.frame().await.context("watch ended")??;
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    pending.extend_from_slice(&data);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        if let Some(index) = event_index(&pending[..end]) {
                            arrived(index, &mut seen);
                        }
                        pending.drain(..=end);
                    }
                }
            }
            WatchStream::Etcd(mut stream) => {
                while seen.len() < events {
                    let response = stream.message().await?.context("watch ended")?;
                    for event in response.events() {
                        if let Some(index) =
                            event.kv().and_then(|kv| event_index_from_key(kv.key()))
                        {
                            arrived(index, &mut seen);
                        }
                    }
                }
            }
        }
        Ok(seen)
    }
}

/// The apiserver's address and the admin's TLS identity, from a kubeconfig.
struct Api {
    address: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Api {
    fn from_kubeconfig(path: &std::path::Path) -> Result<Api> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: serde_json::Value = serde_yaml::from_str(&text)?;
        let field = |pointer: &str| -> Result<Vec<u8>> {
            let encoded = config
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .with_context(|| format!("kubeconfig has no {pointer}"))?;
            Ok(base64::engine::general_purpose::STANDARD.decode(encoded)?)
        };
        let server = config
            .pointer("/clusters/0/cluster/server")
            .and_then(|v| v.as_str())
            .context("kubeconfig has no server")?;
        let address: SocketAddr = server
            .trim_start_matches("https://")
            .parse()
            .with_context(|| format!("server {server:?} is not https://IP:PORT"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&field(
            "/clusters/0/cluster/certificate-authority-data",
        )?) {
            roots.add(cert?)?;
        }
        let chain =
            CertificateDer::pem_slice_iter(&field("/users/0/user/client-certificate-data")?)
                .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&field("/users/0/user/client-key-data")?)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Api {
            address,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        })
    }

    async fn connect(&self) -> Result<ApiConnection> {
        let tcp = TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.address.ip().into());
        let tls = self.tls.connect(name, tcp).await?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await?;
        tokio::spawn(connection);
        Ok(ApiConnection {
            sender,
            base: format!("https://{}", self.address),
        })
    }
}

/// One HTTP/2 connection to the apiserver.
#[derive(Clone)]
struct ApiConnection {
    sender: SendRequest<Full<Bytes>>,
    /// `https://IP:PORT`, the scheme and authority of every request.
    base: String,
}

fn request(
    base: &str,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "apiserver_load/1");
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    Ok(builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
}

async fn send(
    connection: &mut ApiConnection,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(StatusCode, Bytes)> {
    let request = request(&connection.base, method, path, body)?;
    connection.sender.ready().await?;
    let response = connection.sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
