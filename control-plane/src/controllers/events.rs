//! A core/v1 Event recorder for controllers (what `kubectl describe` lists under Events):
//! an event is named `<object>.<hex time>`, sourced from the controller's component name,
//! and a repeat of the same object, type, reason and message bumps the first one's `count`
//! and `lastTimestamp` instead of adding another (kube's aggregation of repeats).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;

/// Repeats remembered at most; past this the memory starts over.
const MAX_REMEMBERED: usize = 4096;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The event already written for a repeat key, and how often it happened.
struct Recorded {
    name: String,
    count: i32,
}

pub struct EventRecorder {
    client: Client,
    component: String,
    recorded: Mutex<HashMap<(String, String, String, String), Recorded>>,
}

impl EventRecorder {
    pub fn new(client: Client, component: &str) -> EventRecorder {
        EventRecorder {
            client,
            component: component.to_string(),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event about `object`; failures are logged, never returned (events are
    /// best-effort, as in kube).
    pub async fn record<K>(&self, object: &K, type_: &str, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = object.meta();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let uid = meta.uid.clone().unwrap_or_default();
        let key = (
            uid.clone(),
            type_.to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let now = Timestamp::now();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = {
            let recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            recorded.get(&key).map(|r| (r.name.clone(), r.count + 1))
        };
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": Time(now)});
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, name, count);
                    return;
                }
                Err(error) => tracing::debug!(%error, "updating a repeated event failed"),
            }
        }
        let name = format!(
            "{}.{:x}",
            meta.name.as_deref().unwrap_or_default(),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(K::api_version(&()).into_owned()),
                kind: Some(K::kind(&()).into_owned()),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => self.remember(key, name, 1),
            Err(error) => tracing::debug!(%error, "recording an event failed"),
        }
    }

    fn remember(&self, key: (String, String, String, String), name: String, count: i32) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.len() >= MAX_REMEMBERED && !recorded.contains_key(&key) {
            recorded.clear();
        }
        recorded.insert(key, Recorded { name, count });
    }
}
