//! The cluster-wide record of which Service ClusterIPs and NodePorts are taken: one storage key
//! per allocated value (`/registry/_allocations/serviceips/<ip>`, `.../servicenodeports/<port>`),
//! written with create-if-absent so several apiservers sharing one etcd never hand out the same
//! value twice, and naming the Service that holds it. The bitmaps of `allocator` are only this
//! apiserver's hint of what is free (for random picks); storage decides.
//!
//! The keys sit under `/registry/` so the watch cache sees every write (its revision must keep
//! up with storage's, or consistent lists would wait for it), but `_allocations` can never be
//! an API group (groups start with a letter or digit), so no list, watch or namespace cleanup
//! of a resource ever reaches them.
//!
//! `repair` (at start and periodically) makes the records match the stored Services: it records
//! what Services use and releases records no Service holds any more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::allocator::{AllocError, ClusterIpAllocator, NodePortAllocator};
use super::config::Config;
use crate::storage::{self, Store};

/// Where the allocation records live.
pub const ALLOCATIONS_PREFIX: &str = "/registry/_allocations/";
const IP_PREFIX: &str = "/registry/_allocations/serviceips/";
const PORT_PREFIX: &str = "/registry/_allocations/servicenodeports/";
/// How many taken candidates a dynamic pick skips before giving up on this round.
const PICK_ATTEMPTS: usize = 64;
/// A record no Service holds is released only once it is this old: a write in flight on
/// another apiserver claims its values before it stores the Service.
pub const LEAK_GRACE: Duration = Duration::from_secs(60);

/// One allocated value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Allocated {
    ClusterIp(IpAddr),
    NodePort(u16),
}

impl Allocated {
    fn key(&self) -> String {
        match self {
            Allocated::ClusterIp(ip) => format!("{IP_PREFIX}{ip}"),
            Allocated::NodePort(port) => format!("{PORT_PREFIX}{port}"),
        }
    }

    fn from_key(key: &str) -> Option<Allocated> {
        if let Some(ip) = key.strip_prefix(IP_PREFIX) {
            return ip.parse().ok().map(Allocated::ClusterIp);
        }
        key.strip_prefix(PORT_PREFIX)
            .and_then(|p| p.parse().ok())
            .map(Allocated::NodePort)
    }
}

impl std::fmt::Display for Allocated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allocated::ClusterIp(ip) => write!(f, "cluster IP {ip}"),
            Allocated::NodePort(port) => write!(f, "node port {port}"),
        }
    }
}

/// The Service holding a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    /// The owner named by a Service object's metadata.
    pub fn of(service: &Value) -> Owner {
        let field = |f: &str| {
            service
                .pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Owner {
            namespace: field("namespace"),
            name: field("name"),
            uid: field("uid"),
        }
    }

    /// The stored record of `what` held by this owner (shaped like an object, as everything
    /// under `/registry/` is).
    fn record(&self, what: Allocated) -> Vec<u8> {
        let name = match what {
            Allocated::ClusterIp(ip) => ip.to_string(),
            Allocated::NodePort(port) => port.to_string(),
        };
        json!({
            "apiVersion": "internal.keel.dev/v1",
            "kind": "ServiceAllocation",
            "metadata": {"name": name},
            "service": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
            "allocatedAt": chrono::Utc::now().to_rfc3339(),
        })
        .to_string()
        .into_bytes()
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A stored record: its owner and when it was written.
struct Record {
    uid: String,
    allocated_at: Option<chrono::DateTime<chrono::Utc>>,
    revision: storage::Revision,
}

impl Record {
    fn decode(kv: &storage::KeyValue) -> Record {
        let value: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        Record {
            uid: value
                .pointer("/service/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            allocated_at: value
                .get("allocatedAt")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            revision: kv.mod_revision,
        }
    }

    fn older_than(&self, grace: Duration) -> bool {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        self.allocated_at
            .is_none_or(|at| chrono::Utc::now() - at >= grace)
    }
}

/// Why a claim failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Taken, out of range or the range is full (kube's allocator messages).
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("the service cluster IP range is unusable: {0}")]
    Unconfigured(AllocError),
    #[error("allocation storage: {0}")]
    Storage(#[from] storage::Error),
}

/// What a repair pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Values Services use that had no record (now recorded).
    pub recorded: Vec<Allocated>,
    /// Records no Service holds (now released).
    pub released: Vec<Allocated>,
    /// Records that named another holder than the Service using the value (now corrected).
    pub reassigned: Vec<Allocated>,
    /// Values outside the configured ranges, or used by more than one Service (left as is).
    pub conflicts: Vec<String>,
}

/// This apiserver's view of the allocations, backed by the records in storage.
pub struct ServiceAllocations {
    store: Store,
    cluster_ips: Result<Mutex<ClusterIpAllocator>, AllocError>,
    node_ports: Mutex<NodePortAllocator>,
}

impl ServiceAllocations {
    pub fn new(store: Store, config: &Config) -> ServiceAllocations {
        ServiceAllocations {
            store,
            cluster_ips: ClusterIpAllocator::new(config.service_cluster_ip_range).map(Mutex::new),
            node_ports: Mutex::new(NodePortAllocator::new(
                config.service_node_port_range.clone(),
            )),
        }
    }

    /// Fails when the configured cluster IP range cannot be served.
    pub fn check_config(&self) -> Result<(), AllocError> {
        self.cluster_ips.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    fn ips(&self) -> Result<MutexGuard<'_, ClusterIpAllocator>, ClaimError> {
        match &self.cluster_ips {
            Ok(ips) => Ok(ips.lock().unwrap_or_else(|p| p.into_inner())),
            Err(error) => Err(ClaimError::Unconfigured(error.clone())),
        }
    }

    fn ports(&self) -> MutexGuard<'_, NodePortAllocator> {
        self.node_ports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service CIDR, when it is usable.
    pub fn range(&self) -> Option<IpNet> {
        self.ips().ok().map(|ips| ips.range())
    }

    /// "IPv4" or "IPv6": the family of the service CIDR.
    pub fn family(&self) -> &'static str {
        match self.range() {
            Some(IpNet::V6(_)) => "IPv6",
            _ => "IPv4",
        }
    }

    /// The `kubernetes` Service's address: the first of the range.
    pub fn kubernetes_ip(&self) -> Result<IpAddr, ClaimError> {
        Ok(self.ips()?.reserved_kubernetes_ip())
    }

    /// Claims a user-chosen value for `owner`. A dry run only checks that it is free.
    pub async fn claim(
        &self,
        what: Allocated,
        owner: &Owner,
        dry_run: bool,
    ) -> Result<(), ClaimError> {
        // The range check and the local hint; storage decides whether it is free.
        let newly_marked = match what {
            Allocated::ClusterIp(ip) => match self.ips()?.allocate_specific(ip) {
                Ok(()) => true,
                Err(AllocError::IpAllocated) => false,
                Err(error) => return Err(error.into()),
            },
            Allocated::NodePort(port) => match self.ports().allocate_specific(port) {
                Ok(()) => true,
                Err(AllocError::PortAllocated) => false,
                Err(error) => return Err(error.into()),
            },
        };
        let taken = || match what {
            Allocated::ClusterIp(_) => AllocError::IpAllocated,
            Allocated::NodePort(_) => AllocError::PortAllocated,
        };
        if dry_run {
            let exists = self.store.get(&what.key()).await;
            if newly_marked {
                self.unmark(what);
            }
            return match exists? {
                Some(_) => Err(taken().into()),
                None => Ok(()),
            };
        }
        match self.store.create(&what.key(), owner.record(what)).await {
            Ok(_) => Ok(()),
            Err(storage::Error::AlreadyExists { .. }) => Err(taken().into()),
            Err(error) => {
                if newly_marked {
                    self.unmark(what);
                }
                Err(error.into())
            }
        }
    }

    /// Claims a free cluster IP for `owner`.
    pub async fn claim_next_ip(&self, owner: &Owner, dry_run: bool) -> Result<IpAddr, ClaimError> {
        let picked = self
            .claim_next(owner, dry_run, |s| {
                Ok(s.ips()?.allocate_next().map(Allocated::ClusterIp))
            })
            .await?;
        match picked {
            Allocated::ClusterIp(ip) => Ok(ip),
            Allocated::NodePort(_) => Err(AllocError::Full.into()),
        }
    }

    /// Claims a free node port for `owner`.
    pub async fn claim_next_port(&self, owner: &Owner, dry_run: bool) -> Result<u16, ClaimError> {
        let picked = self
            .claim_next(owner, dry_run, |s| {
                Ok(s.ports().allocate_next().map(Allocated::NodePort))
            })
            .await?;
        match picked {
            Allocated::NodePort(port) => Ok(port),
            Allocated::ClusterIp(_) => Err(AllocError::Full.into()),
        }
    }

    /// Picks candidates from the local bitmap until one is free in storage; when the bitmap is
    /// full (or every pick was taken elsewhere) it is rebuilt from storage once.
    async fn claim_next<F>(
        &self,
        owner: &Owner,
        dry_run: bool,
        pick: F,
    ) -> Result<Allocated, ClaimError>
    where
        F: Fn(&Self) -> Result<Result<Allocated, AllocError>, ClaimError>,
    {
        for round in 0..2 {
            for _ in 0..PICK_ATTEMPTS {
                let candidate = match pick(self)? {
                    Ok(candidate) => candidate,
                    Err(_) => break,
                };
                if dry_run {
                    let exists = self.store.get(&candidate.key()).await;
                    match exists {
                        Ok(None) => {
                            self.unmark(candidate);
                            return Ok(candidate);
                        }
                        Ok(Some(_)) => continue,
                        Err(error) => {
                            self.unmark(candidate);
                            return Err(error.into());
                        }
                    }
                }
                match self
                    .store
                    .create(&candidate.key(), owner.record(candidate))
                    .await
                {
                    Ok(_) => return Ok(candidate),
                    // Taken by another apiserver: the mark stays, try another.
                    Err(storage::Error::AlreadyExists { .. }) => continue,
                    Err(error) => {
                        self.unmark(candidate);
                        return Err(error.into());
                    }
                }
            }
            if round == 0 {
                self.resync().await?;
            }
        }
        Err(AllocError::Full.into())
    }

    fn unmark(&self, what: Allocated) {
        match what {
            Allocated::ClusterIp(ip) => {
                if let Ok(mut ips) = self.ips() {
                    ips.release(ip);
                }
            }
            Allocated::NodePort(port) => self.ports().release(port),
        }
    }

    /// Releases a value held by `owner`; a record naming another holder is left alone.
    /// Storage errors are logged: the next repair pass releases what is left.
    pub async fn release(&self, what: Allocated, owner: &Owner) {
        let key = what.key();
        let outcome = match self.store.get(&key).await {
            Ok(None) => Ok(true),
            Ok(Some(kv)) => {
                let record = Record::decode(&kv);
                if record.uid != owner.uid && !record.uid.is_empty() {
                    tracing::debug!(%what, %owner, "not releasing a value another service holds");
                    Ok(false)
                } else {
                    match self.store.delete(&key, Some(record.revision)).await {
                        Ok(_) | Err(storage::Error::NotFound { .. }) => Ok(true),
                        Err(error) => Err(error),
                    }
                }
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(true) => self.unmark(what),
            Ok(false) => {}
            Err(error) => tracing::warn!(%what, %owner, %error, "releasing failed; repair will"),
        }
    }

    /// Every record in storage.
    async fn records(&self) -> Result<HashMap<Allocated, Record>, storage::Error> {
        let mut records = HashMap::new();
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            let page = self.store.list(prefix, None, 0, None).await?;
            for kv in &page.items {
                if let Some(what) = Allocated::from_key(&kv.key) {
                    records.insert(what, Record::decode(kv));
                }
            }
        }
        Ok(records)
    }

    /// Rebuilds the local bitmaps from the records in storage.
    pub async fn resync(&self) -> Result<(), ClaimError> {
        let records = self.records().await?;
        let ips = records.keys().filter_map(|a| match a {
            Allocated::ClusterIp(ip) => Some(*ip),
            Allocated::NodePort(_) => None,
        });
        self.ips()?.rebuild_from(ips);
        let ports = records.keys().filter_map(|a| match a {
            Allocated::NodePort(port) => Some(*port),
            Allocated::ClusterIp(_) => None,
        });
        self.ports().rebuild_from(ports);
        Ok(())
    }

    /// Makes the records match `in_use` (every value stored Services use, with its Service):
    /// records what is missing, corrects holders, releases records older than `grace` that no
    /// Service uses, then rebuilds the local bitmaps. Logs every change.
    pub async fn repair(
        &self,
        in_use: &[(Allocated, Owner)],
        grace: Duration,
    ) -> Result<RepairReport, ClaimError> {
        let mut report = RepairReport::default();
        let mut records = self.records().await?;
        let mut wanted: HashMap<Allocated, &Owner> = HashMap::new();
        for (what, owner) in in_use {
            if !self.in_range(*what) {
                let message = format!(
                    "the {what} of service {owner} is not within the configured range; please recreate the service"
                );
                tracing::error!("{message}");
                report.conflicts.push(message);
                continue;
            }
            if let Some(first) = wanted.get(what) {
                if first.uid != owner.uid {
                    let message = format!(
                        "the {what} of service {owner} was assigned to multiple services ({first} too); please recreate the service"
                    );
                    tracing::error!("{message}");
                    report.conflicts.push(message);
                }
                continue;
            }
            wanted.insert(*what, owner);
        }
        for (what, owner) in &wanted {
            match records.remove(what) {
                Some(record) if record.uid == owner.uid => {}
                Some(record) => {
                    tracing::warn!(%what, service = %owner, "allocation record named another holder; repairing");
                    let key = what.key();
                    match self
                        .store
                        .update(&key, owner.record(*what), record.revision)
                        .await
                    {
                        Ok(_) => report.reassigned.push(*what),
                        Err(error) => {
                            tracing::warn!(%what, %error, "could not correct the allocation record")
                        }
                    }
                }
                None => {
                    tracing::warn!(%what, service = %owner, "in use but not allocated; repairing");
                    match self.store.create(&what.key(), owner.record(*what)).await {
                        Ok(_) => report.recorded.push(*what),
                        // Claimed meanwhile (the next pass checks the holder).
                        Err(storage::Error::AlreadyExists { .. }) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        for (what, record) in records {
            if !record.older_than(grace) {
                continue;
            }
            match self.store.delete(&what.key(), Some(record.revision)).await {
                Ok(_) => {
                    tracing::warn!(%what, "no service uses it; released");
                    report.released.push(what);
                }
                Err(storage::Error::NotFound { .. } | storage::Error::Conflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.resync().await?;
        report.recorded.sort();
        report.released.sort();
        report.reassigned.sort();
        Ok(report)
    }

    fn in_range(&self, what: Allocated) -> bool {
        match what {
            Allocated::ClusterIp(ip) => self.ips().is_ok_and(|ips| ips.contains(ip)),
            Allocated::NodePort(port) => self.ports().contains(port),
        }
    }

    /// Whether this apiserver believes `what` is taken (its local hint).
    pub fn is_marked(&self, what: Allocated) -> bool {
        match what {
            Allocated::ClusterIp(ip) => self.ips().is_ok_and(|ips| ips.is_allocated(ip)),
            Allocated::NodePort(port) => self.ports().is_allocated(port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> Owner {
        Owner {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    async fn allocations(dir: &std::path::Path) -> (ServiceAllocations, Store) {
        let store = Store::open_embedded(dir).await.expect("store");
        let mut config = Config::new(dir.to_path_buf());
        config.service_cluster_ip_range = "10.0.0.0/28".parse().expect("cidr");
        config.service_node_port_range = 30000..=30003;
        (ServiceAllocations::new(store.clone(), &config), store)
    }

    fn ip(s: &str) -> Allocated {
        Allocated::ClusterIp(s.parse().expect("ip"))
    }

    #[tokio::test]
    async fn two_apiservers_never_share_a_value() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, store) = allocations(dir.path()).await;
        let mut config = Config::new(dir.path().to_path_buf());
        config.service_cluster_ip_range = "10.0.0.0/28".parse().expect("cidr");
        config.service_node_port_range = 30000..=30003;
        let b = ServiceAllocations::new(store, &config);
        // 14 usable addresses, .1 kept for `kubernetes`: 13 dynamic ones between both.
        let mut seen = std::collections::HashSet::new();
        for i in 0..13 {
            let (who, alloc) = if i % 2 == 0 { ("a", &a) } else { ("b", &b) };
            let got = alloc.claim_next_ip(&owner(who), false).await.expect("free");
            assert!(seen.insert(got), "{got} handed out twice");
        }
        assert!(matches!(
            b.claim_next_ip(&owner("b"), false).await,
            Err(ClaimError::Alloc(AllocError::Full))
        ));
        // a specific value b's bitmap does not know about is refused by storage
        let taken = *seen.iter().next().expect("one");
        let err = b
            .claim(Allocated::ClusterIp(taken), &owner("c"), false)
            .await
            .expect_err("taken");
        assert_eq!(err.to_string(), "provided IP is already allocated");
        for _ in 0..4 {
            a.claim_next_port(&owner("a"), false).await.expect("port");
        }
        assert!(b.claim_next_port(&owner("b"), false).await.is_err());
    }

    #[tokio::test]
    async fn release_checks_the_holder_and_dry_run_keeps_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, store) = allocations(dir.path()).await;
        a.claim(ip("10.0.0.5"), &owner("x"), false)
            .await
            .expect("free");
        a.release(ip("10.0.0.5"), &owner("y")).await;
        assert!(
            store
                .get(&ip("10.0.0.5").key())
                .await
                .expect("get")
                .is_some()
        );
        a.release(ip("10.0.0.5"), &owner("x")).await;
        assert!(
            store
                .get(&ip("10.0.0.5").key())
                .await
                .expect("get")
                .is_none()
        );
        assert!(!a.is_marked(ip("10.0.0.5")));

        a.claim(ip("10.0.0.6"), &owner("x"), true)
            .await
            .expect("dry");
        let got = a.claim_next_ip(&owner("x"), true).await.expect("dry next");
        assert_eq!(store.count(ALLOCATIONS_PREFIX).await.expect("count"), 0);
        assert!(!a.is_marked(ip("10.0.0.6")) && !a.is_marked(Allocated::ClusterIp(got)));
        let outside = a
            .claim(ip("10.1.0.6"), &owner("x"), false)
            .await
            .expect_err("outside");
        assert_eq!(
            outside.to_string(),
            "the provided IP (10.1.0.6) is not in the valid range. The range of valid IPs is 10.0.0.0/28"
        );
        let port = a
            .claim(Allocated::NodePort(8080), &owner("x"), false)
            .await
            .expect_err("outside");
        assert_eq!(
            port.to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-30003"
        );
    }

    #[tokio::test]
    async fn repair_records_what_is_used_and_releases_leaks() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, store) = allocations(dir.path()).await;
        a.claim(ip("10.0.0.5"), &owner("gone"), false)
            .await
            .expect("free");
        a.claim(ip("10.0.0.6"), &owner("old"), false)
            .await
            .expect("free");
        a.claim(Allocated::NodePort(30001), &owner("web"), false)
            .await
            .expect("free");
        let in_use = vec![
            (ip("10.0.0.7"), owner("web")),
            (ip("10.0.0.6"), owner("new")),
            (Allocated::NodePort(30001), owner("web")),
            (Allocated::NodePort(30002), owner("web")),
            (ip("192.168.0.1"), owner("stray")),
            (ip("10.0.0.7"), owner("twin")),
        ];
        // Young leaks stay (a write may be in flight elsewhere).
        let young = a.repair(&in_use, LEAK_GRACE).await.expect("repair");
        assert!(young.released.is_empty());
        assert_eq!(
            young.recorded,
            vec![ip("10.0.0.7"), Allocated::NodePort(30002)]
        );
        assert_eq!(young.reassigned, vec![ip("10.0.0.6")]);
        assert_eq!(young.conflicts.len(), 2, "{:?}", young.conflicts);
        let report = a.repair(&in_use, Duration::ZERO).await.expect("repair");
        assert_eq!(report.released, vec![ip("10.0.0.5")]);
        assert!(report.recorded.is_empty() && report.reassigned.is_empty());
        assert!(
            store
                .get(&ip("10.0.0.5").key())
                .await
                .expect("get")
                .is_none()
        );
        assert!(a.is_marked(ip("10.0.0.7")) && !a.is_marked(ip("10.0.0.5")));
        // the new holder can release it, the old one no longer can
        a.release(ip("10.0.0.6"), &owner("old")).await;
        assert!(a.is_marked(ip("10.0.0.6")));
        a.release(ip("10.0.0.6"), &owner("new")).await;
        assert!(!a.is_marked(ip("10.0.0.6")));
    }
}
