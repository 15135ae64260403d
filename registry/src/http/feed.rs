//! `/api/events`: the registry's transitions ([`crate::Registry::transitions`], the feed
//! event registrations and webhooks read too) as server-sent events, for the dashboard to
//! update without reloading. Renewals are not in it (a busy registry renews tens of
//! thousands of times a second; the page's periodic snapshot shows the time left); every
//! transition is sent as a `lease` event with the event as JSON. A stream too slow for the feed is told with a `gap` event (how many it
//! missed), and the page reads a fresh snapshot. At most [`super::HttpConfig::max_streams`]
//! streams at once; each ends when the registry shuts down.

use super::views::EventView;
use super::{App, Operator};
use crate::core::events::EventRecord;
use crate::observe::Observer;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};

/// One live stream: what it reads, and what it holds until it ends.
struct Feed {
    rx: broadcast::Receiver<EventRecord>,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
    _live: LiveStream,
}

/// Counts a live dashboard stream in the metrics while it lasts.
struct LiveStream(Arc<Observer>);

impl LiveStream {
    fn new(observer: Arc<Observer>) -> Self {
        observer.metrics.dashboard_streams.inc();
        Self(observer)
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        self.0.metrics.dashboard_streams.dec();
    }
}

/// `/api/events`.
pub(super) async fn events(State(app): State<App>, _: Operator) -> Response {
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 too many dashboard event streams; try later\n",
        )
            .into_response();
    };
    // Only what happens from now on.
    let rx = app.registry.transitions();
    let feed = Feed {
        rx,
        shutdown: app.shutdown.clone(),
        _permit: permit,
        _live: LiveStream::new(app.observer.clone()),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = next_event(&mut feed).await?;
        Some((event, feed))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The next event to send, or `None` when the stream ends.
async fn next_event(feed: &mut Feed) -> Option<Result<Event, axum::Error>> {
    let received = tokio::select! {
        _ = feed.shutdown.changed() => return None,
        r = feed.rx.recv() => r,
    };
    match received {
        Ok(rec) => Some(
            Event::default()
                .event("lease")
                .json_data(EventView::from(rec.to_wire())),
        ),
        Err(broadcast::error::RecvError::Lagged(n)) => {
            Some(Ok(Event::default().event("gap").data(n.to_string())))
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}
