//! Running a network config list as a chain, as libcni does: ADD in list order passing
//! `prevResult`, the final result cached; DEL in reverse order with the cached result; CHECK in
//! order against the cached result; GC and STATUS for lists of version 1.1.0.
//!
//! ```text
//!   ADD p1 ─► ADD p2 ─► … ─► ADD pN ─► cache(result, config)          success
//!                 └─ fails ─► DEL p2, p1 (reverse, prevResult so far)  nothing leaked
//!   DEL: cached? ─yes─► DEL pN … p1 with the cached config and result ─► drop cache entry
//!               └─no──► DEL pN … p1 of the current config, without prevResult
//! ```
//!
//! Missing plugin binaries on DEL: when a cache entry exists, something was attached and only
//! that plugin can take it back, so a missing binary is an error (the entry stays; a later DEL
//! retries). Without a cache entry nothing is known to be attached (ADD either cached or rolled
//! back), so a missing binary is skipped with a warning rather than blocking the pod's teardown
//! forever; the only leak this allows is an ADD interrupted by a crash of the runtime itself.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::cache::{self, CacheEntry, ResultCache};
use super::invoke::{Command, Env, InvokeError, Invoker};
use super::{Attachment, Error};
use crate::spec::{self, CniResult, NetworkConfigList, Version};

/// The CNI runtime: plugin bin dirs, a timeout and a result cache.
#[derive(Debug, Clone)]
pub struct Cni {
    invoker: Invoker,
    cache: ResultCache,
}

/// The `prevResult` carried along a chain (raw JSON: plugins see exactly what the previous
/// one printed).
type Prev = Option<Value>;

impl Cni {
    pub fn new(bin_dirs: Vec<std::path::PathBuf>, cache_dir: &Path) -> Cni {
        Cni {
            invoker: Invoker::new(bin_dirs),
            cache: ResultCache::new(cache_dir),
        }
    }

    /// How long one plugin may run before it is killed (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Cni {
        self.invoker.timeout = timeout;
        self
    }

    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// ADD: attaches `att` to `list`. On failure every plugin already run is deleted again.
    pub fn add(&self, list: &NetworkConfigList, att: &Attachment) -> Result<CniResult, Error> {
        validate(att)?;
        if !att.netns.exists() {
            return Err(Error::InvalidAttachment {
                container_id: att.container_id.clone(),
                reason: format!("netns {} does not exist", att.netns.display()),
            });
        }
        let mut prev: Prev = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let step = self
                .run(list, plugin, Command::Add, att, prev.as_ref())
                .and_then(|out| {
                    parse_result(&out).map_err(|reason| Error::BadResult {
                        network: list.name.clone(),
                        plugin: spec::plugin_type(plugin).to_string(),
                        command: Command::Add,
                        container_id: att.container_id.clone(),
                        reason,
                    })
                });
            match step {
                Ok(v) => prev = Some(v),
                Err(e) => {
                    // The failing plugin may have done part of its work: DEL it too, unless it
                    // never ran.
                    let ran = !matches!(&e, Error::Plugin { source, .. }
                        if matches!(**source, InvokeError::NotFound { .. } | InvokeError::Spawn { .. }));
                    self.rollback(list, att, if ran { i + 1 } else { i }, prev);
                    return Err(e);
                }
            }
        }
        let final_value = prev.unwrap_or(Value::Null);
        let result = CniResult::from_value(&final_value).map_err(|e| Error::BadResult {
            network: list.name.clone(),
            plugin: list
                .plugins
                .last()
                .map(|p| spec::plugin_type(p).to_string())
                .unwrap_or_default(),
            command: Command::Add,
            container_id: att.container_id.clone(),
            reason: e.to_string(),
        });
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.rollback(list, att, list.plugins.len(), Some(final_value));
                return Err(e);
            }
        };
        let entry = cache_entry(list, att, final_value.clone());
        if let Err(source) = self.cache.save(&entry) {
            self.rollback(list, att, list.plugins.len(), Some(final_value));
            return Err(Error::Cache {
                network: list.name.clone(),
                container_id: att.container_id.clone(),
                source,
            });
        }
        Ok(result)
    }

    /// DELs the first `upto` plugins after a failed ADD. If that fails too, the attachment is
    /// cached so that a later DEL (or GC) can finish the job.
    fn rollback(&self, list: &NetworkConfigList, att: &Attachment, upto: usize, prev: Prev) {
        if upto == 0 {
            return;
        }
        let prev_for_del = (list.version() >= Version::V0_4_0)
            .then(|| prev.clone())
            .flatten();
        if let Err(e) = self.del_plugins(list, upto, att, prev_for_del, true) {
            tracing::warn!(network = %list.name, container = %att.container_id, error = %e,
                "rollback of a failed cni ADD failed; keeping a cache entry for a later DEL");
            let entry = cache_entry(list, att, prev.unwrap_or(Value::Null));
            if let Err(e) = self.cache.save(&entry) {
                tracing::error!(network = %list.name, container = %att.container_id, error = %e,
                    "cannot record a half-attached cni network");
            }
        }
    }

    /// DEL: detaches `att` from the network `list` names. Uses the cached config and result
    /// when there is one (so a changed conf dir does not matter), else `list` without
    /// `prevResult`. Idempotent: DEL of something not attached succeeds if the plugins do.
    pub fn del(&self, list: &NetworkConfigList, att: &Attachment) -> Result<(), Error> {
        validate(att)?;
        let cached = self
            .cache
            .load(&list.name, &att.container_id, &att.ifname)
            .map_err(|source| Error::Cache {
                network: list.name.clone(),
                container_id: att.container_id.clone(),
                source,
            })?;
        match cached {
            Some(entry) => self.del_cached(&entry, Some(&att.netns)),
            None => self.del_plugins(list, list.plugins.len(), att, None, false),
        }
    }

    /// DEL of one cached attachment, with the config, args and result stored at ADD time.
    /// `netns` overrides the cached netns path (`None`: use the cached one).
    pub fn del_cached(&self, entry: &CacheEntry, netns: Option<&Path>) -> Result<(), Error> {
        let bytes = serde_json::to_vec(&entry.config).unwrap_or_default();
        let list =
            NetworkConfigList::from_list_bytes(&bytes).map_err(|e| Error::BadCachedConfig {
                network: entry.network_name.clone(),
                container_id: entry.container_id.clone(),
                reason: e.to_string(),
            })?;
        let att = Attachment {
            container_id: entry.container_id.clone(),
            netns: netns
                .map(Path::to_path_buf)
                .unwrap_or_else(|| entry.netns.clone().into()),
            ifname: entry.if_name.clone(),
            args: parse_cni_args(&entry.cni_args),
            capability_args: entry.capability_args.clone(),
        };
        let prev = (list.version() >= Version::V0_4_0 && !entry.result.is_null())
            .then(|| entry.result.clone());
        self.del_plugins(&list, list.plugins.len(), &att, prev, true)?;
        self.cache
            .remove(&list.name, &att.container_id, &att.ifname)
            .map_err(|source| Error::Cache {
                network: list.name.clone(),
                container_id: att.container_id.clone(),
                source,
            })
    }

    /// The cached attachments of one container (all networks and interfaces).
    pub fn cached_attachments(&self, container_id: &str) -> Vec<CacheEntry> {
        self.cache
            .all()
            .into_iter()
            .filter(|e| e.container_id == container_id)
            .collect()
    }

    /// DEL of `list.plugins[..upto]` in reverse order. Every plugin is tried; the first error
    /// is returned. `attached`: see the module doc on missing binaries.
    fn del_plugins(
        &self,
        list: &NetworkConfigList,
        upto: usize,
        att: &Attachment,
        prev: Prev,
        attached: bool,
    ) -> Result<(), Error> {
        let mut first_err = None;
        for plugin in list.plugins[..upto.min(list.plugins.len())].iter().rev() {
            match self.run(list, plugin, Command::Del, att, prev.as_ref()) {
                Ok(_) => {}
                Err(Error::Plugin { source, .. })
                    if !attached && matches!(*source, InvokeError::NotFound { .. }) =>
                {
                    tracing::warn!(network = %list.name, container = %att.container_id,
                        plugin = spec::plugin_type(plugin), error = %source,
                        "cni DEL: plugin binary missing and nothing cached as attached; skipped");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cni DEL failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// CHECK: each plugin in order against the cached result. Skipped for versions before
    /// 0.4.0 and for lists with `disableCheck`.
    pub fn check(&self, list: &NetworkConfigList, att: &Attachment) -> Result<(), Error> {
        validate(att)?;
        if list.version() < Version::V0_4_0 || list.disable_check {
            return Ok(());
        }
        let cached = self
            .cache
            .load(&list.name, &att.container_id, &att.ifname)
            .map_err(|source| Error::Cache {
                network: list.name.clone(),
                container_id: att.container_id.clone(),
                source,
            })?
            .ok_or_else(|| Error::NoCachedResult {
                network: list.name.clone(),
                container_id: att.container_id.clone(),
            })?;
        for plugin in &list.plugins {
            self.run(list, plugin, Command::Check, att, Some(&cached.result))?;
        }
        Ok(())
    }

    /// GC: DELs every cached attachment of this network not in `valid` (container id, ifname),
    /// then (version 1.1.0, unless `disableGC`) sends GC with `cni.dev/valid-attachments` to
    /// each plugin. Everything is tried; the first error is returned.
    pub fn gc(&self, list: &NetworkConfigList, valid: &[(String, String)]) -> Result<(), Error> {
        let mut first_err = None;
        for entry in self.cache.all() {
            let known = valid
                .iter()
                .any(|(c, i)| *c == entry.container_id && *i == entry.if_name);
            if entry.network_name == list.name
                && !known
                && let Err(e) = self.del_cached(&entry, None)
            {
                first_err.get_or_insert(e);
            }
        }
        if list.version() >= Version::V1_1_0 && !list.disable_gc {
            let attachments: Vec<Value> = valid
                .iter()
                .map(|(c, i)| serde_json::json!({"containerID": c, "ifname": i}))
                .collect();
            for plugin in &list.plugins {
                let mut extra = Map::new();
                extra.insert(
                    "cni.dev/valid-attachments".into(),
                    Value::Array(attachments.clone()),
                );
                if let Err(e) = self.run_global(list, plugin, Command::Gc, extra) {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// STATUS (version 1.1.0): each plugin in order; the first that is not ready is returned.
    /// Lists of older versions are ready by definition.
    pub fn status(&self, list: &NetworkConfigList) -> Result<(), Error> {
        if list.version() < Version::V1_1_0 {
            return Ok(());
        }
        for plugin in &list.plugins {
            self.run_global(list, plugin, Command::Status, Map::new())?;
        }
        Ok(())
    }

    /// Runs one plugin for one attachment; returns its stdout.
    fn run(
        &self,
        list: &NetworkConfigList,
        plugin: &Map<String, Value>,
        command: Command,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>, Error> {
        let config = plugin_config(list, plugin, prev, &att.capability_args);
        let args = att.cni_args();
        let netns = att.netns.to_string_lossy();
        let env = Env {
            container_id: &att.container_id,
            netns: &netns,
            ifname: &att.ifname,
            args: &args,
        };
        self.exec(list, plugin, command, &env, &config, &att.container_id)
    }

    /// Runs one plugin for a command without a container (GC, STATUS).
    fn run_global(
        &self,
        list: &NetworkConfigList,
        plugin: &Map<String, Value>,
        command: Command,
        extra: Map<String, Value>,
    ) -> Result<Vec<u8>, Error> {
        let mut config = plugin_config(list, plugin, None, &Map::new());
        if let Value::Object(m) = &mut config {
            m.extend(extra);
        }
        self.exec(list, plugin, command, &Env::default(), &config, "")
    }

    fn exec(
        &self,
        list: &NetworkConfigList,
        plugin: &Map<String, Value>,
        command: Command,
        env: &Env<'_>,
        config: &Value,
        container_id: &str,
    ) -> Result<Vec<u8>, Error> {
        let plugin_type = spec::plugin_type(plugin);
        let wrap = |source| Error::Plugin {
            network: list.name.clone(),
            plugin: plugin_type.to_string(),
            command,
            container_id: container_id.to_string(),
            source: Box::new(source),
        };
        let path = self.invoker.find(plugin_type).map_err(wrap)?;
        let stdin = serde_json::to_vec(config).unwrap_or_default();
        self.invoker.exec(&path, command, env, &stdin).map_err(wrap)
    }
}

/// The stdin of one plugin: its config with the list's `name` and `cniVersion`, the
/// `prevResult` if any, and `runtimeConfig` holding only the capabilities it declares.
pub fn plugin_config(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut m = plugin.clone();
    m.insert("name".into(), list.name.clone().into());
    m.insert("cniVersion".into(), list.cni_version.clone().into());
    if let Some(p) = prev {
        m.insert("prevResult".into(), p.clone());
    }
    let runtime: Map<String, Value> = spec::capabilities(plugin)
        .into_iter()
        .filter_map(|c| capability_args.get(c).map(|v| (c.to_string(), v.clone())))
        .collect();
    if !runtime.is_empty() {
        m.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(m)
}

fn parse_result(out: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(out).map_err(|e| {
        if out.iter().all(u8::is_ascii_whitespace) {
            "no result on stdout".to_string()
        } else {
            format!("invalid JSON: {e}")
        }
    })?;
    CniResult::from_value(&v).map_err(|e| e.to_string())?;
    Ok(v)
}

fn parse_cni_args(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

fn validate(att: &Attachment) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::InvalidAttachment {
            container_id: att.container_id.clone(),
            reason,
        })
    };
    if !spec::valid_name(&att.container_id) {
        return bad(format!("invalid container id {:?}", att.container_id));
    }
    if att.ifname.is_empty()
        || att.ifname.len() > 15
        || att.ifname.contains(['/', ':'])
        || att.ifname.chars().any(char::is_whitespace)
        || att.ifname == "."
        || att.ifname == ".."
    {
        return bad(format!("invalid interface name {:?}", att.ifname));
    }
    Ok(())
}

/// What the cache keeps of an attachment: enough to DEL it later whatever the conf dir says.
fn cache_entry(list: &NetworkConfigList, att: &Attachment, result: Value) -> CacheEntry {
    CacheEntry {
        kind: cache::KIND.to_string(),
        container_id: att.container_id.clone(),
        if_name: att.ifname.clone(),
        network_name: list.name.clone(),
        netns: att.netns.to_string_lossy().into_owned(),
        cni_args: att.cni_args(),
        capability_args: att.capability_args.clone(),
        config: list.to_value(),
        result,
    }
}
