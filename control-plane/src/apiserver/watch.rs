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
use tokio::sync::broadcast;

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

/// What one watcher wants to see, and how far it got.
struct Watcher {
    state: Arc<ApiState>,
    resource: ResourceInfo,
    /// The keys this watch covers (the live broadcast carries every resource's events).
    prefix: String,
    selection: Selection,
    wanted: Wanted,
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
    let watcher = Watcher {
        state: state.clone(),
        resource: resource.clone(),
        prefix: prefix.clone(),
        selection,
        wanted,
        last_sent: from.unwrap_or(0),
    };
    let lines = match state.cache.subscribe(&prefix, from) {
        Ok(subscription) => {
            let timeout = query.timeout_seconds().map(Duration::from_secs);
            let stream = WatchStream {
                watcher,
                initial: subscription.initial.into_iter(),
                live: subscription.live,
                after: subscription.after,
                initial_events_end,
                withdrawn: state.crds().withdrawn(resource),
                cache: state.cache.clone(),
                bookmarks: query.allow_bookmarks(),
                ticker: None,
                deadline: Box::pin(tokio::time::sleep(
                    timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600)),
                )),
                _open: super::metrics::LongRunning::start(info),
                phase: Phase::Initial,
            };
            futures::stream::unfold(stream, |mut stream| async move {
                let line = stream.next_line().await?;
                Some((line, stream))
            })
            .boxed()
        }
        Err(CacheError::TooOld { requested, oldest }) => {
            let error = ApiError::gone(format!("too old resource version: {requested} ({oldest})"));
            let line = event_line("ERROR", &error.to_status());
            futures::stream::once(async move { line }).boxed()
        }
        Err(CacheError::Storage(error)) => {
            return Err(ApiError::from_storage(error, &Default::default()));
        }
    };
    let stream = ExclusiveStream(std::sync::Mutex::new(lines))
        .map(|line| Ok::<_, Infallible>(Frame::data(line)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A stream only ever polled through `&mut`, which makes it `Sync` (the response body type
/// asks for it) without a lock being taken: `Mutex::get_mut` is free.
struct ExclusiveStream(std::sync::Mutex<futures::stream::BoxStream<'static, Bytes>>);

impl futures::Stream for ExclusiveStream {
    type Item = Bytes;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.as_mut().poll_next(cx)
    }
}

/// Where a watch stream is.
enum Phase {
    /// Sending the subscription's initial events.
    Initial,
    /// Following live events.
    Live,
}

/// The body of a watch response, polled by the connection itself: no task or queue of its
/// own between the cache's broadcast and the client.
struct WatchStream {
    watcher: Watcher,
    initial: std::vec::IntoIter<Arc<CachedEvent>>,
    live: broadcast::Receiver<Arc<CachedEvent>>,
    /// Live events at or below this revision were covered by the initial events.
    after: Revision,
    initial_events_end: bool,
    /// Ends the watch when its (custom) resource stops being served.
    withdrawn: tokio_util::sync::CancellationToken,
    cache: super::watch_cache::WatchCache,
    bookmarks: bool,
    /// Started with the live phase.
    ticker: Option<tokio::time::Interval>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _open: super::metrics::LongRunning,
    phase: Phase,
}

impl WatchStream {
    /// The next line for the client; None ends the watch (timeout, lag or cache reset: the
    /// client resumes from its last resourceVersion).
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            match self.phase {
                Phase::Initial => {
                    if let Some(event) = self.initial.next() {
                        if let Some(line) = self.watcher.render_event(&event) {
                            return Some(line);
                        }
                        continue;
                    }
                    self.phase = Phase::Live;
                    let mut ticker = tokio::time::interval_at(
                        tokio::time::Instant::now() + BOOKMARK_INTERVAL,
                        BOOKMARK_INTERVAL,
                    );
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    self.ticker = Some(ticker);
                    let end_marker = self.initial_events_end.then(|| {
                        let revision = self.after.max(self.watcher.last_sent);
                        self.watcher.bookmark(revision, true)
                    });
                    self.watcher.last_sent = self.watcher.last_sent.max(self.after);
                    if end_marker.is_some() {
                        return end_marker;
                    }
                }
                Phase::Live => {
                    let ticker = self.ticker.as_mut()?;
                    let withdrawn = self.withdrawn.clone();
                    tokio::select! {
                        received = self.live.recv() => match received {
                            Ok(event)
                                if event.revision <= self.after
                                    || !event.key.starts_with(&self.watcher.prefix) => {}
                            Ok(event) => {
                                if let Some(line) = self.watcher.render_event(&event) {
                                    return Some(line);
                                }
                            }
                            Err(_) => return None,
                        },
                        _ = ticker.tick(), if self.bookmarks => {
                            let seen = self.cache.revision();
                            let revision = if self.live.is_empty() {
                                seen.max(self.watcher.last_sent)
                            } else {
                                self.watcher.last_sent
                            };
                            return Some(self.watcher.bookmark(revision, false));
                        }
                        _ = withdrawn.cancelled() => return None,
                        _ = &mut self.deadline => return None,
                    }
                }
            }
        }
    }
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl Watcher {
    /// The line for one event as this watcher's selection sees it; None when it does not
    /// concern the watcher.
    fn render_event(&mut self, event: &CachedEvent) -> Option<Bytes> {
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
            _ => return None,
        };
        let served = self.state.crds().get(&self.resource);
        let converted =
            super::crd_serving::read_form(served.as_deref(), &self.resource, &event.object);
        let object = converted.as_ref().unwrap_or(&event.object);
        let line = if self.wanted == Wanted::Table {
            let table = super::crd_serving::to_table(
                &self.state,
                &self.resource,
                std::slice::from_ref(object),
                super::table::IncludeObject::from_query(None),
                chrono::Utc::now(),
                json!({}),
            );
            event_line(event_type.as_str(), &table)
        } else if event_type == event.event_type && converted.is_none() {
            event.wire_json().clone()
        } else {
            event_line(event_type.as_str(), object)
        };
        self.last_sent = self.last_sent.max(event.revision);
        Some(line)
    }

    fn bookmark(&mut self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata});
        self.last_sent = self.last_sent.max(revision);
        event_line("BOOKMARK", &object)
    }
}
