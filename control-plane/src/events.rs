//! core/v1 Events written by the scheduler and the controllers (what `kubectl describe` lists
//! under Events): an event is named `<object>.<hex time>` and sourced from the component's
//! name. `write` and `record_about` write one event per call; an `EventRecorder` also folds a
//! repeat of the same object, type, reason and message into the first one's `count` and
//! `lastTimestamp` (kube's aggregation of repeats).

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
        let event = event_about(
            reference_to(object),
            &self.component,
            type_,
            reason,
            message,
            now,
        );
        let name = event.metadata.name.clone().unwrap_or_default();
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

/// A reference to `object` for an Event's `involvedObject`.
pub fn reference_to<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// The Event `component` reports about `involved` at `now` (in the object's namespace, or
/// `default` for cluster-scoped objects, as kube's recorder does).
pub fn event_about(
    involved: ObjectReference,
    component: &str,
    type_: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Event {
    let namespace = involved
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{:x}",
                involved.name.as_deref().unwrap_or("object"),
                now.as_nanosecond()
            )),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        ..Default::default()
    }
}

/// Writes one Event about `involved`; failures are only logged (events are best effort).
pub async fn write(
    client: &Client,
    component: &str,
    involved: ObjectReference,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let event = event_about(
        involved,
        component,
        type_,
        reason,
        message,
        Timestamp::now(),
    );
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(error) = events.create(&PostParams::default(), &event).await {
        tracing::debug!(%error, reason, "recording an event failed");
    }
}

/// Writes one Event about `object`.
pub async fn record_about<K: Resource<DynamicType = ()>>(
    client: &Client,
    component: &str,
    object: &K,
    type_: &str,
    reason: &str,
    message: &str,
) {
    write(
        client,
        component,
        reference_to(object),
        type_,
        reason,
        message,
    )
    .await;
}
