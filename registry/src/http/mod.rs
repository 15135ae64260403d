//! The registry's HTTP listener, for operators: `/metrics` (Prometheus text, open, like
//! any exporter; the listener is on loopback by default) and the dashboard behind the
//! admin credential (`auth`): its page and assets (`assets/`, embedded in the binary), JSON
//! pages of the lease table, services and clients (`views`), and a live feed of the
//! registry's events as server-sent events (`feed`).
//!
//! Built on axum and hyper, with an accept loop of its own so that connections are capped
//! ([`HttpConfig::max_connections`]) and a client gets [`HttpConfig::header_timeout`] to
//! send a request's headers. Malformed requests get a 4xx from hyper (400, or 431 for
//! headers above 64 KiB) or from axum (400 for a bad query, 404, 405), each with a
//! one-line reason where there is one.

mod auth;
mod feed;
mod token;
mod views;

pub use token::{DASHBOARD_TOKEN_DOMAIN, DashboardToken, TokenError};

use crate::driver::{Registry, wall_clock_ms};
use crate::observe::{Exporter, Format, Observer};
use auth::{Auth, COOKIE, Credential, Refused};
use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use courier_protocol::{SpkiPin, VendorKey};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// The address the HTTP listener takes by default: loopback only.
pub const DEFAULT_HTTP_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7880);

/// The HTTP listener's settings. [`HttpConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Most HTTP connections at once; more are closed as they come.
    pub max_connections: usize,
    /// Most dashboard event streams at once; more are answered 503.
    pub max_streams: usize,
    /// How long a client has to send a request's headers.
    pub header_timeout: Duration,
}

impl HttpConfig {
    /// Listen on `listen`; 64 connections, 16 event streams, 10 s for a request's headers.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_connections: 64,
            max_streams: 16,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for HttpConfig {
    /// [`HttpConfig::new`] on [`DEFAULT_HTTP_LISTEN`].
    fn default() -> Self {
        Self::new(DEFAULT_HTTP_LISTEN)
    }
}

/// A running HTTP listener: its address, the token it printed, its task.
#[derive(Debug)]
pub(crate) struct HttpRunning {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// The dashboard token of this start.
    pub start_token: String,
    /// The accept loop.
    pub task: JoinHandle<()>,
}

/// What every handler shares.
#[derive(Debug, Clone)]
struct App {
    registry: Arc<Registry>,
    observer: Arc<Observer>,
    exporter: Arc<Exporter>,
    auth: Arc<Auth>,
    streams: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

/// The peer address of a request's connection.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// Binds the listener and serves until `shutdown` turns true. The dashboard accepts the
/// start token it makes and tokens signed by `operators` for the registry of `pin`.
pub(crate) async fn start(
    config: &HttpConfig,
    registry: Arc<Registry>,
    observer: Arc<Observer>,
    pin: SpkiPin,
    operators: Vec<VendorKey>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<HttpRunning> {
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let auth = Arc::new(Auth::new(pin, operators, observer.clone()));
    let start_token = auth.start_token().to_string();
    let app = App {
        exporter: Arc::new(Exporter::new(observer.clone(), registry.clone())),
        registry,
        observer,
        auth,
        streams: Arc::new(Semaphore::new(config.max_streams.max(1))),
        shutdown: shutdown.clone(),
    };
    let task = tokio::spawn(accept_loop(listener, router(app), config.clone(), shutdown));
    tracing::info!(%local_addr, "http listening (/metrics, dashboard)");
    Ok(HttpRunning {
        local_addr,
        start_token,
        task,
    })
}

/// The routes.
fn router(app: App) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/dashboard.js", get(views::script))
        .route("/dashboard.css", get(views::style))
        .route("/api/overview", get(views::overview))
        .route("/api/leases", get(views::leases))
        .route("/api/services", get(views::services))
        .route("/api/clients", get(views::clients))
        .route("/api/events", get(feed::events))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(app)
}

/// Accepts connections until shutdown, each served by a task of its own; connections
/// over the cap are closed at once.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    config: HttpConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut warned = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if !warned {
                tracing::warn!(%peer, "http connection cap reached: closing new connections (logged once)");
                warned = true;
            }
            continue;
        };
        let service =
            router
                .clone()
                .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    req
                });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let mut stop = shutdown.clone();
        let header_timeout = config.header_timeout;
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_header_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "http connection ended: {e}");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
            drop(permit);
        });
    }
}

/// `/metrics`: every metric now, in the format the scraper asks for.
async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    match app.exporter.render(format) {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded\n",
        )
            .into_response(),
    }
}

/// `?token=` on the page's address.
#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `/`: the dashboard. With `?token=`, a valid token is set as a cookie and the browser
/// sent on to `/`.
async fn page(State(app): State<App>, Query(query): Query<TokenQuery>, parts: Parts) -> Response {
    let now = wall_clock_ms();
    let checked = match &query.token {
        Some(t) => app.auth.check(t, now),
        None => app.auth.check_headers(&parts.headers, now),
    };
    match (checked, query.token) {
        (Ok(credential), Some(token)) => {
            let max_age = match credential {
                Credential::StartToken => String::new(),
                Credential::Operator { not_after_ms, .. } => {
                    format!("; Max-Age={}", not_after_ms.saturating_sub(now) / 1000)
                }
            };
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{max_age}");
            match HeaderValue::from_str(&cookie) {
                Ok(cookie) => (
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, HeaderValue::from_static("/"))],
                    [(header::SET_COOKIE, cookie)],
                )
                    .into_response(),
                Err(_) => refuse(&app, &parts, Refused::Invalid(TokenError::Malformed)),
            }
        }
        (Ok(_), None) => views::page(),
        (Err(why), _) => refuse(&app, &parts, why),
    }
}

/// Anything else: 404 with the path.
async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("404 not found: {}\n", uri.path()),
    )
        .into_response()
}

/// A method other than GET: 405.
async fn not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "405 method not allowed: only GET\n",
    )
        .into_response()
}

/// The proof that a request carried a valid dashboard token; its absence is a 401.
#[derive(Debug, Clone, Copy)]
struct Operator;

impl FromRequestParts<App> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        match app.auth.check_headers(&parts.headers, wall_clock_ms()) {
            Ok(_) => Ok(Operator),
            Err(why) => Err(refuse(app, parts, why)),
        }
    }
}

/// Counts and logs (once per peer) a refused request, and answers it 401.
fn refuse(app: &App, parts: &Parts, why: Refused) -> Response {
    let peer = parts
        .extensions
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
    app.auth.refused(peer, parts.uri.path(), &why);
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"courier\"")],
        format!("401 refused: {why}\n"),
    )
        .into_response()
}
