//! The typed client of the registry protocol, used by vendors, clients and operators.
//!
//! One QUIC connection per client, pinned to the registry's key; the Hello/Welcome handshake
//! on the first stream. Requests go over streams kept for reuse (a stream carries requests
//! one after the other, so a request costs no stream set-up once the client is warm);
//! renewals share one long-lived keep-alive stream per connection.

use crate::{
    FrameBuffer, PinBook, PinMove, StreamPool, TransportError, call, client_endpoint,
    connect_following, write_frame,
};
use courier_protocol::limits::{MAX_FRAME_LEN, MAX_LEASE_PAGE, REQUEST_TIMEOUT};
use courier_protocol::{AUTH_DOMAIN, auth_message, sign};
use courier_protocol::{
    Candidate, CatalogEntry, CatalogPage, ClusterNodes, ContentHash, ErrorKind, EventBatch, Hello,
    HistoryEntry, LeaseCursor, LeaseFilter, LeaseGrant, LeaseId, LeaseInfo, LeasePage, Outcome,
    PROTOCOL_VERSION, Register, Request, Response, ServiceQuery, SignedFreshness,
    SignedKeyStatement, SigningKey, SpkiPin, VendorKey, WireError,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting (QUIC + TLS + Hello) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one node of a registry cluster may take to answer when there are others to
/// try.
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a request to one node of a registry cluster may take when there are others to
/// try: a node killed outright answers nothing, and QUIC notices only at its idle timeout.
pub const NODE_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Cap on ordinary responses (candidate lists, lease tables, history).
pub(crate) const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection or a stream failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The registry refused the request with a typed error.
    #[error("registry refused: {0}")]
    Registry(WireError),
    /// The registry answered with a message that does not fit the request.
    #[error("unexpected answer from the registry: {0}")]
    Unexpected(&'static str),
}

/// The lease table read page by page ([`RegistryClient::lease_table`]).
#[derive(Debug, Clone, Default)]
pub struct LeaseTable {
    /// The rows, sorted by service name then lease.
    pub leases: Vec<LeaseInfo>,
    /// How long the registry's store has refused writes, as of the last page (ms; `None`:
    /// it accepts them).
    pub store_unwritable_ms: Option<u64>,
    /// In a cluster: the node that answered and the writer that holds the leases.
    pub cluster: Option<ClusterNodes>,
}

/// Cap on one keep-alive answer (a grant or an error).
const MAX_KEEP_ALIVE_RESPONSE: usize = 64 * 1024;

/// A connection to a registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    challenge: [u8; 32],
    /// The pin of the key the registry presented.
    pin: SpkiPin,
    /// The move of the given pin a rotation proved on connecting, if any.
    moved: Option<PinMove>,
    addr: SocketAddr,
    keep_alive: Arc<tokio::sync::Mutex<Option<KeepAliveStream>>>,
    /// The connection's listening stream, once something listens.
    listening: Arc<tokio::sync::Mutex<Option<Arc<listening::Shared>>>>,
    streams: Arc<StreamPool>,
    /// The key the connection authenticated as, once it has.
    authenticated: Arc<std::sync::OnceLock<VendorKey>>,
}

/// The connection's keep-alive stream ([`Request::KeepAlive`]).
#[derive(Debug)]
struct KeepAliveStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    frames: FrameBuffer,
    /// A renewal was written and its answer not yet read (its caller gave up mid-way):
    /// the stream is out of step and must be replaced.
    pending: bool,
}

macro_rules! expect {
    ($resp:expr, $pat:pat => $out:expr, $what:literal) => {
        match $resp {
            $pat => Ok($out),
            Response::Error(e) => Err(ClientError::Registry(e)),
            _ => Err(ClientError::Unexpected($what)),
        }
    };
}

// After the macro, which the module uses.
mod listening;
mod people;
mod roots;

pub use listening::{LISTENER_BACKLOG, Listener};

impl RegistryClient {
    /// Connects to the registry at `addr` whose TLS key hashes to `pin`, and says Hello.
    /// A registry in the overlap of a rotation its pinned key signed is reached too (see
    /// [`RegistryClient::moved`]).
    pub async fn connect(addr: SocketAddr, pin: SpkiPin, agent: &str) -> Result<Self, ClientError> {
        let endpoint = client_endpoint(addr)?;
        Self::connect_with(endpoint, addr, pin, agent).await
    }

    /// Connects with `pin` as moved by the rotations recorded in `book`, and records in
    /// `book` a move this connection proves (logged; a book that cannot be written is
    /// logged too, and the connection kept).
    pub async fn connect_recording(
        endpoint: quinn::Endpoint,
        addr: SocketAddr,
        pin: SpkiPin,
        agent: &str,
        book: &PinBook,
    ) -> Result<Self, ClientError> {
        let client = Self::connect_with(endpoint, addr, book.follow(pin), agent).await?;
        if let Some(moved) = client.moved {
            tracing::warn!(from = %moved.from, to = %moved.to, overlap_ends = moved.overlap_ends,
                "the registry rotated its TLS identity: moving its pin");
            if let Err(e) = book.record(&moved) {
                tracing::error!("cannot keep the registry's new pin: {e}");
            }
        }
        Ok(client)
    }

    /// Connects to the first of `nodes` (a registry and the other nodes of its cluster)
    /// that answers, in order, following and recording pin moves in `book`. With several
    /// nodes each may take [`NODE_CONNECT_TIMEOUT`]; with one, the ordinary connect
    /// timeout holds. If none answers: why each failed.
    pub async fn connect_first(
        nodes: &[(SocketAddr, SpkiPin)],
        agent: &str,
        book: &PinBook,
    ) -> Result<Self, Vec<(SocketAddr, ClientError)>> {
        let mut failures = Vec::new();
        for &(addr, pin) in nodes {
            let connect = async {
                let endpoint = client_endpoint(addr)?;
                Self::connect_recording(endpoint, addr, pin, agent, book).await
            };
            let result = if nodes.len() > 1 {
                tokio::time::timeout(NODE_CONNECT_TIMEOUT, connect)
                    .await
                    .unwrap_or(Err(ClientError::Transport(TransportError::Timeout(
                        NODE_CONNECT_TIMEOUT,
                    ))))
            } else {
                connect.await
            };
            match result {
                Ok(client) => return Ok(client),
                Err(e) => failures.push((addr, e)),
            }
        }
        Err(failures)
    }

    /// Like [`RegistryClient::connect`], reusing a client endpoint.
    pub async fn connect_with(
        endpoint: quinn::Endpoint,
        addr: SocketAddr,
        pin: SpkiPin,
        agent: &str,
    ) -> Result<Self, ClientError> {
        let (conn, moved) = connect_following(&endpoint, addr, pin, CONNECT_TIMEOUT).await?;
        let pin = moved.map_or(pin, |m| m.to);
        let hello = Request::Hello(Hello {
            version: PROTOCOL_VERSION,
            agent: agent.to_string(),
        });
        let resp = tokio::time::timeout(CONNECT_TIMEOUT, call(&conn, &hello, MAX_RESPONSE))
            .await
            .map_err(|_| TransportError::Timeout(CONNECT_TIMEOUT))??;
        let welcome = expect!(resp, Response::Welcome(w) => w, "expected Welcome")?;
        Ok(Self {
            endpoint,
            conn,
            challenge: welcome.challenge,
            pin,
            moved,
            addr,
            keep_alive: Arc::default(),
            listening: Arc::default(),
            streams: Arc::default(),
            authenticated: Arc::default(),
        })
    }

    /// The registry's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pin of the TLS key the registry presented: the pin given, or the one a
    /// rotation signed by it moved it to. Authentication signs over this pin.
    pub fn pin(&self) -> SpkiPin {
        self.pin
    }

    /// The move of the given pin that a rotation proved on connecting: the registry
    /// presented a new key and a statement, signed by the pinned key, naming it.
    pub fn moved(&self) -> Option<PinMove> {
        self.moved
    }

    /// The underlying QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The client endpoint (reusable for other connections).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    async fn request(&self, req: &Request) -> Result<Response, ClientError> {
        self.request_capped(req, MAX_RESPONSE, REQUEST_TIMEOUT)
            .await
    }

    /// Sends `req` on a kept stream (see [`StreamPool`]) and reads its answer of at most
    /// `max` bytes, within `timeout`.
    async fn request_capped(
        &self,
        req: &Request,
        max: usize,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        // The registry ends a stream after a frame it could not read; any other answer
        // leaves it open for the next request.
        let reusable =
            |r: &Response| !matches!(r, Response::Error(e) if e.kind == ErrorKind::BadFrame);
        let exchange = self.streams.request(&self.conn, req, max, reusable);
        Ok(tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout(timeout))??)
    }

    /// Proves possession of `key`: the connection then acts for that key (a vendor, a
    /// client or an operator). A connection authenticates as one key only.
    pub async fn authenticate(&self, key: &SigningKey) -> Result<(), ClientError> {
        let signature = sign(key, AUTH_DOMAIN, &auth_message(&self.challenge, &self.pin));
        let req = Request::Authenticate {
            vendor: VendorKey::of(key),
            signature,
        };
        expect!(self.request(&req).await?, Response::Authenticated => (), "expected Authenticated")?;
        let _ = self.authenticated.set(VendorKey::of(key));
        Ok(())
    }

    /// Authenticates as `key` unless the connection already has.
    pub async fn ensure_authenticated(&self, key: &SigningKey) -> Result<(), ClientError> {
        if self.authenticated.get() == Some(&VendorKey::of(key)) {
            return Ok(());
        }
        self.authenticate(key).await
    }

    /// The key the connection authenticated as, if it has.
    pub fn authenticated_as(&self) -> Option<VendorKey> {
        self.authenticated.get().copied()
    }

    /// Registers a proxy.
    pub async fn register(&self, register: Register) -> Result<LeaseGrant, ClientError> {
        let resp = self.request(&Request::Register(register)).await?;
        expect!(resp, Response::Registered(g) => g, "expected Registered")
    }

    /// Renews a lease, on the connection's keep-alive stream (opened on first use, replaced
    /// when it fails). Concurrent renewals on one client take turns on that stream.
    pub async fn renew(&self, lease: LeaseId, ttl_ms: u64) -> Result<LeaseGrant, ClientError> {
        let mut slot = self.keep_alive.lock().await;
        let stream = match slot.take() {
            Some(s) if !s.pending => slot.insert(s),
            _ => {
                let (mut send, recv) = self.conn.open_bi().await.map_err(TransportError::from)?;
                write_frame(&mut send, &Request::KeepAlive).await?;
                slot.insert(KeepAliveStream {
                    send,
                    recv,
                    frames: FrameBuffer::new(),
                    pending: false,
                })
            }
        };
        stream.pending = true;
        let answer = async {
            write_frame(&mut stream.send, &Request::Renew { lease, ttl_ms }).await?;
            stream
                .frames
                .read::<Response>(&mut stream.recv, MAX_KEEP_ALIVE_RESPONSE)
                .await?
                .ok_or(TransportError::Truncated)
        }
        .await;
        match answer {
            Ok(resp) => {
                stream.pending = false;
                expect!(resp, Response::Renewed(g) => g, "expected Renewed")
            }
            Err(e) => {
                *slot = None;
                Err(e.into())
            }
        }
    }

    /// Cancels a lease.
    pub async fn cancel(&self, lease: LeaseId) -> Result<(), ClientError> {
        let resp = self.request(&Request::Cancel { lease }).await?;
        expect!(resp, Response::Cancelled => (), "expected Cancelled")
    }

    /// Finds candidates for a query, best first.
    pub async fn find(&self, query: ServiceQuery) -> Result<Vec<Candidate>, ClientError> {
        let resp = self.request(&Request::Find(query)).await?;
        expect!(resp, Response::Candidates(c) => c, "expected Candidates")
    }

    /// Fetches a component by hash. Reading stops at `expected_size` (plus framing): a
    /// registry cannot make the client download more than the signed manifest declared.
    pub async fn fetch(
        &self,
        hash: ContentHash,
        expected_size: u64,
        deadline: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        self.fetch_for(None, hash, expected_size, deadline).await
    }

    /// [`RegistryClient::fetch`] of the component of the candidate under `lease`, which
    /// the registry meters as a proxy of that service handed out to this client.
    pub async fn fetch_for(
        &self,
        lease: Option<LeaseId>,
        hash: ContentHash,
        expected_size: u64,
        deadline: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        // postcard: enum tag (1) + length varint (<= 10) + bytes.
        let cap = usize::try_from(expected_size)
            .unwrap_or(usize::MAX)
            .saturating_add(16)
            .min(MAX_FRAME_LEN);
        let req = Request::Fetch { hash, lease };
        let resp = self.request_capped(&req, cap, deadline).await?;
        expect!(resp, Response::Payload(p) => p, "expected Payload")
    }

    /// The whole lease table, sorted by service name then lease, read a page at a time.
    pub async fn leases(&self) -> Result<Vec<LeaseInfo>, ClientError> {
        self.leases_where(&LeaseFilter::default()).await
    }

    /// The leases that pass `filter`, sorted by service name then lease, read a page at a
    /// time.
    pub async fn leases_where(&self, filter: &LeaseFilter) -> Result<Vec<LeaseInfo>, ClientError> {
        Ok(self.lease_table(filter).await?.leases)
    }

    /// [`RegistryClient::leases_where`], with what the last page said of the registry:
    /// how long its store has refused writes, and, in a cluster, which node answered and
    /// which holds the leases.
    pub async fn lease_table(&self, filter: &LeaseFilter) -> Result<LeaseTable, ClientError> {
        let mut out = Vec::new();
        let mut after: Option<LeaseCursor> = None;
        loop {
            let page = self
                .leases_page(filter.clone(), after.clone(), MAX_LEASE_PAGE)
                .await?;
            out.extend(page.leases);
            let Some(next) = page.next else {
                return Ok(LeaseTable {
                    leases: out,
                    store_unwritable_ms: page.store_unwritable_ms,
                    cluster: page.cluster,
                });
            };
            // A cursor that does not move on would loop for ever: the registry is broken
            // or lying.
            if after
                .as_ref()
                .is_some_and(|a| (&next.name, next.lease) <= (&a.name, a.lease))
            {
                return Err(ClientError::Unexpected(
                    "lease page cursor does not move on",
                ));
            }
            after = Some(next);
        }
    }

    /// One page of the leases that pass `filter`: at most `limit` rows after `after`.
    pub async fn leases_page(
        &self,
        filter: LeaseFilter,
        after: Option<LeaseCursor>,
        limit: u32,
    ) -> Result<LeasePage, ClientError> {
        let req = Request::Leases {
            filter,
            after,
            limit,
        };
        let resp = self.request(&req).await?;
        expect!(resp, Response::Leases(p) => p, "expected Leases")
    }

    /// One page of the catalog after `after` (at most `limit` entries): signed manifests
    /// and lease state, and the event number to follow the feed from. Nothing here is
    /// verified: the caller verifies each manifest itself.
    pub async fn catalog_page(
        &self,
        after: Option<LeaseCursor>,
        limit: u32,
    ) -> Result<CatalogPage, ClientError> {
        let resp = self.request(&Request::Catalog { after, limit }).await?;
        expect!(resp, Response::Catalog(p) => p, "expected Catalog")
    }

    /// The registration of `lease` as a catalog page lists it, if it is live (a mirror
    /// reads the one an event names). Nothing here is verified.
    pub async fn registration(&self, lease: LeaseId) -> Result<Option<CatalogEntry>, ClientError> {
        let resp = self.request(&Request::Registration { lease }).await?;
        expect!(resp, Response::Registration(r) => r, "expected Registration")
    }

    /// Subscribes to events from `from_seq`, optionally for one interface.
    pub async fn subscribe(
        &self,
        interface: Option<String>,
        from_seq: u64,
    ) -> Result<EventStream, ClientError> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(TransportError::from)?;
        write_frame(
            &mut send,
            &Request::Subscribe {
                interface,
                from_seq,
            },
        )
        .await?;
        Ok(EventStream {
            _send: send,
            recv,
            frames: FrameBuffer::new(),
        })
    }

    /// Reports a run's outcome for the client's service history.
    pub async fn report(&self, outcome: Outcome) -> Result<(), ClientError> {
        let resp = self.request(&Request::Report(outcome)).await?;
        expect!(resp, Response::Reported => (), "expected Reported")
    }

    /// The service history of `client`, newest first.
    pub async fn history(
        &self,
        client: &str,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        let req = Request::History {
            client: client.to_string(),
            limit,
        };
        let resp = self.request(&req).await?;
        expect!(resp, Response::History(h) => h, "expected History")
    }

    /// Publishes a key statement (rotation or revocation); the connection must be
    /// authenticated as the key the statement is about.
    pub async fn publish_statement(
        &self,
        statement: SignedKeyStatement,
    ) -> Result<(), ClientError> {
        let resp = self.request(&Request::KeyStatement(statement)).await?;
        expect!(resp, Response::StatementAccepted => (), "expected StatementAccepted")
    }

    /// Publishes a freshness statement; the connection must be authenticated as its vendor
    /// key, which must own (or be granted) every service it names.
    pub async fn publish_freshness(&self, statement: SignedFreshness) -> Result<(), ClientError> {
        let resp = self.request(&Request::Freshness(statement)).await?;
        expect!(resp, Response::FreshnessAccepted => (), "expected FreshnessAccepted")
    }

    /// The key statements the registry holds about `keys` and the keys they rotated to.
    /// Nothing here is verified: the caller verifies each statement itself.
    pub async fn key_statements(
        &self,
        keys: Vec<VendorKey>,
    ) -> Result<Vec<SignedKeyStatement>, ClientError> {
        let resp = self.request(&Request::KeyStatements { keys }).await?;
        expect!(resp, Response::KeyStatements(s) => s, "expected KeyStatements")
    }

    /// The freshness statements the registry holds about `vendors`' services (at most
    /// [`MAX_STATEMENT_KEYS`](courier_protocol::limits::MAX_STATEMENT_KEYS) vendors).
    /// Nothing here is verified.
    pub async fn freshness_statements(
        &self,
        vendors: Vec<VendorKey>,
    ) -> Result<Vec<SignedFreshness>, ClientError> {
        let resp = self
            .request(&Request::FreshnessStatements { vendors })
            .await?;
        expect!(resp, Response::FreshnessStatements(s) => s, "expected FreshnessStatements")
    }

    /// Closes the connection politely.
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"bye");
    }
}

/// A live event subscription.
#[derive(Debug)]
pub struct EventStream {
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
    frames: FrameBuffer,
}

impl EventStream {
    /// The next batch of events; `None` when the registry closed the subscription.
    pub async fn next(&mut self) -> Result<Option<EventBatch>, ClientError> {
        match self
            .frames
            .read::<Response>(&mut self.recv, MAX_RESPONSE)
            .await?
        {
            None => Ok(None),
            Some(Response::Events(b)) => Ok(Some(b)),
            Some(Response::Error(e)) => Err(ClientError::Registry(e)),
            Some(_) => Err(ClientError::Unexpected("expected Events")),
        }
    }
}
