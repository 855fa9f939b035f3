//! Watch over HTTP: a chunked stream of JSON lines (`{"type":"ADDED","object":{...}}`) fed
//! from a watch-cache subscription, filtered by the request's selectors (an object that stops
//! matching is sent as DELETED, one that starts matching as ADDED), with bookmarks, the
//! `sendInitialEvents` end marker, `timeoutSeconds`, Table rows for kubectl, and a 410 ERROR
//! event when the requested resourceVersion is no longer kept.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::body::{Body, Wanted};
use super::objects::collection_prefix;
use super::request::{Query, RequestInfo};
use super::resources::ResourceInfo;
use super::selection::Selection;
use super::state::ApiState;
use super::status::ApiError;
use super::watch_cache::{CacheError, CachedEvent, EventType};
use crate::storage::Revision;

/// How often a watcher that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// Lines buffered per watcher before its sender waits for the client.
const WATCHER_BUFFER: usize = 256;

struct Watcher {
    resource: ResourceInfo,
    selection: Selection,
    wanted: Wanted,
    out: mpsc::Sender<Bytes>,
    last_sent: Revision,
}

pub async fn serve(
    state: &Arc<ApiState>,
    resource: &ResourceInfo,
    info: &RequestInfo,
    query: &Query,
    wanted: Wanted,
) -> Result<Response<Body>, ApiError> {
    let mut selection = Selection::from_query(resource, query)?;
    if !info.name.is_empty() {
        selection = selection.with_name(&info.name);
    }
    let from = match query.get("resourceVersion") {
        None | Some("0") => None,
        Some(text) => Some(
            text.parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {text:?}")))?,
        ),
    };
    let initial_events_end = query.send_initial_events() && from.is_none();
    let prefix = collection_prefix(resource, &info.namespace);
    let (out, lines) = mpsc::channel(WATCHER_BUFFER);
    let mut watcher = Watcher {
        resource: resource.clone(),
        selection,
        wanted,
        out,
        last_sent: from.unwrap_or(0),
    };
    match state.cache.subscribe(&prefix, from) {
        Ok(subscription) => {
            let cache = state.cache.clone();
            let bookmarks = query.allow_bookmarks();
            let timeout = query.timeout_seconds().map(Duration::from_secs);
            let open = super::metrics::LongRunning::start(info);
            tokio::spawn(async move {
                let _open = open;
                for event in &subscription.initial {
                    if !watcher.send_event(event).await {
                        return;
                    }
                }
                if initial_events_end {
                    let revision = subscription.after.max(watcher.last_sent);
                    if !watcher.send_bookmark(revision, true).await {
                        return;
                    }
                }
                watcher.last_sent = watcher.last_sent.max(subscription.after);
                watcher
                    .follow(
                        subscription.live,
                        subscription.after,
                        &cache,
                        bookmarks,
                        timeout,
                    )
                    .await;
            });
        }
        Err(CacheError::TooOld { requested, oldest }) => {
            let error = ApiError::gone(format!("too old resource version: {requested} ({oldest})"));
            let line = event_line("ERROR", &error.to_status());
            let _ = watcher.out.try_send(line);
        }
        Err(CacheError::Storage(error)) => {
            return Err(ApiError::from_storage(error, &Default::default()));
        }
    }
    let stream = ReceiverStream::new(lines).map(|line| Ok::<_, Infallible>(Frame::data(line)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl Watcher {
    /// Forwards live events until the client leaves, the timeout passes or the cache resets.
    async fn follow(
        &mut self,
        mut live: broadcast::Receiver<Arc<CachedEvent>>,
        after: Revision,
        cache: &super::watch_cache::WatchCache,
        bookmarks: bool,
        timeout: Option<Duration>,
    ) {
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600)));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) if event.revision <= after => {}
                    Ok(event) => {
                        if !self.send_event(&event).await {
                            return;
                        }
                    }
                    // Lagged or closed: end the watch; the client resumes from its last resourceVersion.
                    Err(_) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    let seen = cache.revision();
                    let revision = if live.is_empty() { seen.max(self.last_sent) } else { self.last_sent };
                    if !self.send_bookmark(revision, false).await {
                        return;
                    }
                }
                _ = self.out.closed() => return,
                _ = &mut deadline => return,
            }
        }
    }

    /// Sends one event as this watcher's selection sees it; false when the client is gone.
    async fn send_event(&mut self, event: &CachedEvent) -> bool {
        let now_matches = self.selection.matches(&event.object);
        let before_matches = event
            .prev
            .as_ref()
            .is_some_and(|prev| self.selection.matches(prev));
        let event_type = match event.event_type {
            EventType::Modified if now_matches && before_matches => EventType::Modified,
            EventType::Modified if now_matches => EventType::Added,
            EventType::Modified if before_matches => EventType::Deleted,
            EventType::Added | EventType::Deleted if now_matches => event.event_type,
            _ => return true,
        };
        let line = if self.wanted == Wanted::Table {
            let table = super::table::to_table(
                &self.resource,
                std::slice::from_ref(&*event.object),
                super::table::IncludeObject::from_query(None),
                chrono::Utc::now(),
                json!({}),
            );
            event_line(event_type.as_str(), &table)
        } else if event_type == event.event_type {
            event.wire_json().clone()
        } else {
            event_line(event_type.as_str(), &event.object)
        };
        self.last_sent = self.last_sent.max(event.revision);
        self.out.send(line).await.is_ok()
    }

    async fn send_bookmark(&mut self, revision: Revision, initial_events_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata});
        self.last_sent = self.last_sent.max(revision);
        self.out.send(event_line("BOOKMARK", &object)).await.is_ok()
    }
}
