//! The dashboard's page, its assets, and the JSON it reads: an overview (counts, recent
//! events), and pages of the lease table, of services and of clients. Each page is bounded
//! (at most [`MAX_ROWS`] rows, or one lease page of [`SERVICE_SCAN`] rows for services)
//! and goes on from a cursor, so a registry of 100,000 leases is shown a page at a time.
//! The JSON shapes are the dashboard's own views, converted from the protocol's types here.

use super::{App, Operator};
use crate::driver::wall_clock_ms;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courier_protocol::{
    ClientInfo, Event, EventKind, LeaseCursor, LeaseFilter, LeaseId, LeaseInfo, LeasePage,
    VendorKey,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most rows of one page of leases or clients.
const MAX_ROWS: u32 = 200;
/// Rows of a page unless asked otherwise.
const DEFAULT_ROWS: u32 = 50;
/// Lease rows read for one page of services.
const SERVICE_SCAN: u32 = 1000;
/// Recent events an overview lists (the newest that are not renewals).
const RECENT_EVENTS: usize = 50;

const PAGE: &str = include_str!("assets/dashboard.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// What the page may load and do: only its own script, style and feed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard page (the caller checked the token).
pub(super) fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

/// `/dashboard.js` (no secret in it: served to anyone).
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `/dashboard.css`.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The counts and the recent events.
#[derive(Debug, Serialize)]
struct Overview {
    registry_id: String,
    now_ms: u64,
    leases: usize,
    registrations: usize,
    interfaces: usize,
    next_seq: u64,
    events: Vec<EventView>,
}

/// One event, as the dashboard shows it.
#[derive(Debug, Serialize)]
pub(super) struct EventView {
    seq: u64,
    kind: String,
    lease: String,
    name: String,
    interfaces: Vec<String>,
    at_ms: u64,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        Self {
            seq: e.seq,
            kind: e.kind.to_string(),
            lease: e.lease.to_string(),
            name: e.name,
            interfaces: e.interfaces,
            at_ms: e.at_ms,
        }
    }
}

/// `/api/overview`.
pub(super) async fn overview(State(app): State<App>, _: Operator) -> Response {
    let registry = app.registry.clone();
    let built = tokio::task::spawn_blocking(move || {
        let (leases, registrations, interfaces) = registry.counts();
        let next_seq = registry.next_seq();
        let from = next_seq.saturating_sub(courier_protocol::limits::MAX_EVENT_BATCH as u64);
        let (batch, _) = registry.events_since(from.max(1), None);
        let mut events: Vec<EventView> = batch
            .events
            .into_iter()
            .rev()
            .filter(|e| e.kind != EventKind::Renewed)
            .take(RECENT_EVENTS)
            .map(EventView::from)
            .collect();
        events.reverse();
        Overview {
            registry_id: registry.registry_id().to_string(),
            now_ms: wall_clock_ms(),
            leases,
            registrations,
            interfaces,
            next_seq,
            events,
        }
    })
    .await;
    json_or_500(built)
}

/// A page of rows after a lease cursor.
#[derive(Debug, Deserialize)]
pub(super) struct LeaseQuery {
    /// The service name of the last row seen.
    after_name: Option<String>,
    /// Its lease (hex).
    after_lease: Option<String>,
    /// Rows wanted.
    limit: Option<u32>,
}

impl LeaseQuery {
    /// The cursor asked for; a lease that is not hex is a 400.
    fn cursor(&self) -> Result<Option<LeaseCursor>, BadQuery> {
        let (Some(name), Some(lease)) = (&self.after_name, &self.after_lease) else {
            return Ok(None);
        };
        let lease: LeaseId = lease.parse().map_err(|e| BadQuery::new("after_lease", e))?;
        Ok(Some(LeaseCursor {
            name: name.clone(),
            lease,
        }))
    }
}

/// A query parameter that does not parse: answered 400, naming it and why.
struct BadQuery {
    field: &'static str,
    why: String,
}

impl BadQuery {
    fn new(field: &'static str, why: impl std::fmt::Display) -> Self {
        Self {
            field,
            why: why.to_string(),
        }
    }
}

impl IntoResponse for BadQuery {
    fn into_response(self) -> Response {
        let body = format!("400 bad `{}`: {}\n", self.field, self.why);
        (StatusCode::BAD_REQUEST, body).into_response()
    }
}

/// One lease row.
#[derive(Debug, Serialize)]
struct LeaseView {
    lease: String,
    name: String,
    version: String,
    vendor: String,
    interfaces: Vec<String>,
    endpoints: Vec<String>,
    remaining_ms: u64,
    ttl_ms: u64,
    renewals: u64,
    in_grace: bool,
}

impl From<LeaseInfo> for LeaseView {
    fn from(l: LeaseInfo) -> Self {
        Self {
            lease: l.lease.to_string(),
            name: l.name,
            version: l.version,
            vendor: l.vendor.to_string(),
            interfaces: l.interfaces,
            endpoints: l.endpoints,
            remaining_ms: l.remaining_ms,
            ttl_ms: l.ttl_ms,
            renewals: l.renewals,
            in_grace: l.in_grace,
        }
    }
}

/// Where the next page starts.
#[derive(Debug, Serialize)]
struct CursorView {
    after_name: String,
    after_lease: String,
}

impl From<LeaseCursor> for CursorView {
    fn from(c: LeaseCursor) -> Self {
        Self {
            after_name: c.name,
            after_lease: c.lease.to_string(),
        }
    }
}

/// A page of the lease table.
#[derive(Debug, Serialize)]
struct LeasesView {
    at_ms: u64,
    leases: Vec<LeaseView>,
    next: Option<CursorView>,
}

/// Reads one page of the lease table on the blocking pool (it reads the page's
/// manifests).
async fn lease_page(app: &App, after: Option<LeaseCursor>, limit: u32) -> Option<LeasePage> {
    let registry = app.registry.clone();
    let read = tokio::task::spawn_blocking(move || {
        registry.leases_page(
            registry.now(),
            &LeaseFilter::default(),
            after.as_ref(),
            limit,
        )
    })
    .await;
    match read {
        Ok(Ok(page)) => Some(page),
        Ok(Err(e)) => {
            tracing::warn!("dashboard: lease page not read: {e}");
            None
        }
        Err(e) => {
            tracing::error!("dashboard: lease page task failed: {e}");
            None
        }
    }
}

/// `/api/leases`.
pub(super) async fn leases(
    State(app): State<App>,
    _: Operator,
    Query(q): Query<LeaseQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_ROWS).clamp(1, MAX_ROWS);
    let after = match q.cursor() {
        Ok(c) => c,
        Err(bad) => return bad.into_response(),
    };
    let Some(page) = lease_page(&app, after, limit).await else {
        return unavailable();
    };
    Json(LeasesView {
        at_ms: wall_clock_ms(),
        leases: page.leases.into_iter().map(LeaseView::from).collect(),
        next: page.next.map(CursorView::from),
    })
    .into_response()
}

/// One service: its name, who registered it, how many leases.
#[derive(Debug, Serialize)]
struct ServiceView {
    name: String,
    vendors: BTreeSet<String>,
    versions: BTreeSet<String>,
    interfaces: BTreeSet<String>,
    leases: usize,
}

/// A page of services (the services of one page of the lease table).
#[derive(Debug, Serialize)]
struct ServicesView {
    services: Vec<ServiceView>,
    next: Option<CursorView>,
}

/// `/api/services`: the services of the next [`SERVICE_SCAN`] lease rows, grouped by
/// name (the rows are sorted by name; a service cut by the page's end continues on the
/// next).
pub(super) async fn services(
    State(app): State<App>,
    _: Operator,
    Query(q): Query<LeaseQuery>,
) -> Response {
    let after = match q.cursor() {
        Ok(c) => c,
        Err(bad) => return bad.into_response(),
    };
    let Some(page) = lease_page(&app, after, SERVICE_SCAN).await else {
        return unavailable();
    };
    let mut services: Vec<ServiceView> = Vec::new();
    for l in page.leases {
        let same = services.last().is_some_and(|s| s.name == l.name);
        if !same {
            services.push(ServiceView {
                name: l.name.clone(),
                vendors: BTreeSet::new(),
                versions: BTreeSet::new(),
                interfaces: BTreeSet::new(),
                leases: 0,
            });
        }
        if let Some(s) = services.last_mut() {
            s.vendors.insert(l.vendor.to_string());
            s.versions.insert(l.version);
            s.interfaces.extend(l.interfaces);
            s.leases += 1;
        }
    }
    Json(ServicesView {
        services,
        next: page.next.map(CursorView::from),
    })
    .into_response()
}

/// A page of clients after a key.
#[derive(Debug, Deserialize)]
pub(super) struct ClientQuery {
    /// The key of the last client seen (`ed25519:...`).
    after: Option<String>,
    /// Rows wanted.
    limit: Option<u32>,
}

/// One client.
#[derive(Debug, Serialize)]
struct ClientView {
    key: String,
    registered_at_ms: u64,
    last_contact_ms: u64,
    os: Option<String>,
    last_call: Option<LastCall>,
}

/// A client's latest reported call.
#[derive(Debug, Serialize)]
struct LastCall {
    name: String,
    ok: bool,
    at_ms: u64,
}

impl From<ClientInfo> for ClientView {
    fn from(c: ClientInfo) -> Self {
        Self {
            key: c.key.to_string(),
            registered_at_ms: c.registered_at_ms,
            last_contact_ms: c.last_contact_ms,
            os: c.os().map(str::to_string),
            last_call: c.last_outcome.map(|e| LastCall {
                name: e.outcome.name,
                ok: e.outcome.ok,
                at_ms: e.at_ms,
            }),
        }
    }
}

/// A page of clients.
#[derive(Debug, Serialize)]
struct ClientsView {
    clients: Vec<ClientView>,
    next: Option<String>,
}

/// `/api/clients`.
pub(super) async fn clients(
    State(app): State<App>,
    _: Operator,
    Query(q): Query<ClientQuery>,
) -> Response {
    let after: Option<VendorKey> = match q.after.as_deref().map(str::parse).transpose() {
        Ok(k) => k,
        Err(e) => return BadQuery::new("after", e).into_response(),
    };
    let limit = q.limit.unwrap_or(DEFAULT_ROWS).clamp(1, MAX_ROWS) as usize;
    let page = app.registry.clients(after.as_ref(), limit);
    Json(ClientsView {
        clients: page.clients.into_iter().map(ClientView::from).collect(),
        next: page.next.map(|k| k.to_string()),
    })
    .into_response()
}

/// The JSON of what a blocking task built, or a 500 if it failed.
fn json_or_500<T: Serialize>(built: Result<T, tokio::task::JoinError>) -> Response {
    match built {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            tracing::error!("dashboard task failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "500 internal error\n").into_response()
        }
    }
}

/// The registry could not read a page now.
fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "503 the registry could not read this page now; try again\n",
    )
        .into_response()
}
