//! The answer to each one-shot request. Every arm says where it runs: `inline` on the
//! connection's task (memory only, or a bounded read that costs less than a hand-off), or
//! `blocking` on tokio's blocking pool (commits with fsync, reads of files and pages). The
//! answers that can be large (a component, a page of the lease table, a history) take their
//! room before they are built, so what answers in flight hold is counted before it exists.

use super::admission::AnswerRoom;
use super::connection::Session;
use super::people;
use super::respond::{refusal, reserve};
use super::wire_errors::{ToWire, not_authenticated};
use crate::driver::Registry;
use courier_protocol::limits::{
    MAX_CATALOG_BYTES, MAX_CATALOG_PAGE, MAX_HISTORY_BYTES, MAX_LEASE_PAGE,
};
use courier_protocol::{AUTH_DOMAIN, auth_message};
use courier_protocol::{ErrorKind, Request, Response, VendorKey, WireError};
use std::sync::Arc;

/// Room a lease-table row is given before a page is built (a typical row is about 250
/// bytes; a longer one takes more room when the page is encoded, if there is some at once).
const LEASE_ROW_BYTES: usize = 512;

/// Answers one one-shot request, with the room its answer holds if it is large.
pub(super) async fn answer(req: Request, session: &Session) -> (Response, Option<AnswerRoom>) {
    let registry = &session.shared.registry;
    let peer = session.peer;
    let reserved = match &req {
        Request::Fetch { hash, .. } => {
            let hash = *hash;
            // Blocking: a stat of the component file.
            match blocking(registry, move |r| {
                r.component_size(&hash).map_err(|e| e.to_wire())
            })
            .await
            {
                // Its bytes and its frame, both alive while it is encoded.
                Ok(n) => usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(2)
                    .saturating_add(64),
                Err(e) => return (refusal(e, peer, "fetch"), None),
            }
        }
        Request::History { .. } => 2 * MAX_HISTORY_BYTES + (64 << 10),
        Request::Leases { limit, .. } => {
            let rows = (*limit).clamp(1, MAX_LEASE_PAGE) as usize;
            2 * rows * LEASE_ROW_BYTES
        }
        // The manifests read, and the frame they are encoded into.
        Request::Catalog { limit, .. } => {
            let rows = (*limit).clamp(1, MAX_CATALOG_PAGE) as usize;
            2 * (MAX_CATALOG_BYTES + rows * LEASE_ROW_BYTES)
        }
        _ => return (build(req, session).await, None),
    };
    match reserve(session, reserved).await {
        Ok(room) => (build(req, session).await, Some(room)),
        Err(refused) => (refused, None),
    }
}

/// Builds the answer to a one-shot request.
async fn build(req: Request, session: &Session) -> Response {
    let (registry, peer) = (&session.shared.registry, session.peer);
    let key = session.auth.get().copied();
    let what = request_name(&req);
    let observer = session.shared.observer.as_deref();
    let probe = observer.map(|o| o.before(&req));
    if let Some(key) = &key
        && !matches!(req, Request::Renew { .. })
    {
        registry.contact(registry.now(), key);
    }
    let answer = match req {
        // Inline: a signature check.
        Request::Authenticate { vendor, signature } => authenticate(session, vendor, &signature),
        // Inline: memory only (a cluster's standby: until its row is written); refused
        // rather than blocked when event numbers run out.
        Request::Renew { lease, ttl_ms } => match key {
            None => Err(not_authenticated()),
            Some(key) => registry
                .renew_durably(registry.now(), &key, lease, ttl_ms)
                .await
                .map(Response::Renewed)
                .map_err(|e| e.to_wire()),
        },
        // Inline: memory, then the candidates' manifests (see `Registry::find`).
        Request::Find(q) => registry
            .find_as(registry.now(), &q, key.as_ref())
            .map(Response::Candidates)
            .map_err(|e| e.to_wire()),
        // Inline: memory only.
        Request::KeyStatements { keys } => {
            Ok(Response::KeyStatements(registry.key_statements(&keys)))
        }
        // Inline: memory only.
        Request::FreshnessStatements { vendors } => Ok(Response::FreshnessStatements(
            registry.freshness_of_vendors(&vendors),
        )),
        // Blocking: stores the component, commits with fsync.
        Request::Register(r) => match key {
            None => Err(not_authenticated()),
            Some(key) => blocking(registry, move |reg| {
                reg.register(reg.now(), &key, r).map_err(|e| e.to_wire())
            })
            .await
            .map(Response::Registered),
        },
        // Blocking: commits with fsync.
        Request::Cancel { lease } => match key {
            None => Err(not_authenticated()),
            Some(key) => blocking(registry, move |reg| {
                reg.cancel(reg.now(), &key, lease).map_err(|e| e.to_wire())
            })
            .await
            .map(|()| Response::Cancelled),
        },
        // Blocking: commits with fsync.
        Request::KeyStatement(statement) => match key {
            None => Err(not_authenticated()),
            Some(key) => blocking(registry, move |reg| {
                reg.key_statement(reg.now(), &key, statement)
                    .map_err(|e| e.to_wire())
            })
            .await
            .map(|_| Response::StatementAccepted),
        },
        // Blocking: reads the component file.
        Request::Fetch { hash, lease } => blocking(registry, move |reg| {
            reg.fetch(&hash, lease, key).map_err(|e| e.to_wire())
        })
        .await
        .map(Response::Payload),
        // Blocking: reads a page of manifests.
        Request::Leases {
            filter,
            after,
            limit,
        } => blocking(registry, move |reg| {
            reg.leases_page(reg.now(), &filter, after.as_ref(), limit)
                .map_err(|e| e.to_wire())
        })
        .await
        .map(Response::Leases),
        // Blocking: reads a page of manifests.
        Request::Catalog { after, limit } => blocking(registry, move |reg| {
            reg.catalog_page(reg.now(), after.as_ref(), limit)
                .map_err(|e| e.to_wire())
        })
        .await
        .map(Response::Catalog),
        // Blocking: reads a manifest.
        Request::Registration { lease } => blocking(registry, move |reg| {
            reg.registration(reg.now(), &lease).map_err(|e| e.to_wire())
        })
        .await
        .map(Response::Registration),
        // Clients' and operators' requests, each authorized there.
        req @ (Request::RegisterClient(_)
        | Request::ShareSystemData(_)
        | Request::Client { .. }
        | Request::Report(_)
        | Request::History { .. }
        | Request::Clients { .. }
        | Request::Admin(_)
        | Request::Audit { .. }
        | Request::Usage(_)
        | Request::RegisterInterest(_)
        | Request::RenewInterest { .. }
        | Request::CancelInterest { .. }
        | Request::ChildHello
        | Request::Children
        | Request::ChildReport(_)
        | Request::AskChildReport { .. }
        | Request::MirrorStatus
        | Request::Approvals
        | Request::Rollouts
        | Request::Directives
        | Request::UndoReport(_)
        | Request::Staged) => people::answer(req, session).await,
        // Blocking: commits with fsync.
        Request::Freshness(signed) => match key {
            None => Err(not_authenticated()),
            Some(key) => blocking(registry, move |reg| {
                reg.freshness(reg.now(), &key, signed)
                    .map_err(|e| e.to_wire())
            })
            .await
            .map(|_| Response::FreshnessAccepted),
        },
        // Inline: memory only.
        Request::RootStatements { roots } if registry.asks_parent_for_roots(&roots) => {
            // Blocking at a child: roots it holds nothing of are asked of its parent.
            blocking(registry, move |reg| {
                Ok::<_, WireError>(reg.root_statements_through(&roots))
            })
            .await
            .map(Response::RootStatements)
        }
        Request::RootStatements { roots } => {
            Ok(Response::RootStatements(registry.root_statements(&roots)))
        }
        // Blocking: verifies m-of-n signatures, commits with fsync.
        Request::RootStatement(statement) => blocking(registry, move |reg| {
            reg.root_statement(reg.now(), statement)
                .map_err(|e| e.to_wire())
        })
        .await
        .map(|_| Response::StatementAccepted),
        // Blocking: commits with fsync.
        Request::Delegation(delegation) => blocking(registry, move |reg| {
            reg.delegation(delegation).map_err(|e| e.to_wire())
        })
        .await
        .map(|_| Response::StatementAccepted),
        // Inline: memory only.
        Request::OperatorStatements { keys } => Ok(Response::OperatorStatements(
            registry.operator_statements(&keys),
        )),
        Request::Hello(_) => Err(WireError::new(ErrorKind::BadHandshake, "hello sent twice")),
        Request::Unlisten { .. } => Err(WireError::new(
            ErrorKind::BadFrame,
            "unlisten belongs on a listening stream",
        )),
        Request::Subscribe { .. } | Request::KeepAlive | Request::Listen { .. } => Err(
            WireError::new(ErrorKind::Internal, "long-lived request not taken over"),
        ),
    };
    if let (Some(o), Some(p)) = (observer, probe) {
        o.after(p, &answer);
    }
    answer.unwrap_or_else(|e| match e.kind {
        // A child that is not allowed says hello again every few seconds: the registry
        // logs each refused key once (see `driver/children.rs`).
        ErrorKind::Forbidden if what == "child hello" => Response::Error(e),
        _ => refusal(e, peer, what),
    })
}

/// Whether a cluster's standby answers `req`: reads, event streams (every node numbers
/// the cluster's events alike) and renewals (the node a vendor is connected to holds its
/// leases), yes; anything else that writes goes to the writer.
pub(super) fn standby_answers(req: &Request) -> bool {
    matches!(
        req,
        Request::Hello(_)
            | Request::Authenticate { .. }
            | Request::Renew { .. }
            | Request::KeepAlive
            | Request::Find(_)
            | Request::Fetch { .. }
            | Request::Subscribe { .. }
            | Request::Leases { .. }
            | Request::Catalog { .. }
            | Request::Registration { .. }
            | Request::ChildHello
            | Request::Children
            | Request::ChildReport(_)
            | Request::AskChildReport { .. }
            | Request::MirrorStatus
            | Request::Approvals
            | Request::KeyStatements { .. }
            | Request::FreshnessStatements { .. }
            | Request::RootStatements { .. }
            | Request::OperatorStatements { .. }
            | Request::History { .. }
            | Request::Clients { .. }
            | Request::Client { .. }
            | Request::Audit { .. }
            | Request::Usage(_)
            | Request::Rollouts
            | Request::Staged
    )
}

/// A standby's answer to what only the writer does.
pub(super) fn standby_refusal() -> WireError {
    WireError::new(
        ErrorKind::Unavailable,
        "this node is a standby of its cluster: registrations and other writes go to the \
         cluster's writer (`courier cluster status` names it); lookups, fetches, event \
         streams and renewals work here",
    )
}

/// What a request is, for the log line of its refusal.
fn request_name(req: &Request) -> &'static str {
    match req {
        Request::Hello(_) => "hello",
        Request::Authenticate { .. } => "authenticate",
        Request::Register(_) => "register",
        Request::Renew { .. } => "renew",
        Request::Cancel { .. } => "cancel",
        Request::Find(_) => "find",
        Request::Fetch { .. } => "fetch",
        Request::Leases { .. } => "leases",
        Request::Catalog { .. } => "catalog",
        Request::Registration { .. } => "registration",
        Request::ChildHello => "child hello",
        Request::Children => "children",
        Request::ChildReport(_) => "child report",
        Request::AskChildReport { .. } => "ask a child for a report",
        Request::MirrorStatus => "mirror status",
        Request::Approvals => "approvals",
        Request::Subscribe { .. } => "subscribe",
        Request::KeepAlive => "keep-alive",
        Request::Report(_) => "report",
        Request::Rollouts => "rollouts",
        Request::Directives => "directives",
        Request::UndoReport(_) => "undo report",
        Request::Staged => "staged registrations",
        Request::History { .. } => "history",
        Request::KeyStatement(_) => "key statement",
        Request::KeyStatements { .. } => "key statements",
        Request::FreshnessStatements { .. } => "freshness statements",
        Request::RegisterClient(_) => "client registration",
        Request::ShareSystemData(_) => "system data",
        Request::Clients { .. } => "clients",
        Request::Client { .. } => "client",
        Request::Admin(_) => "operator action",
        Request::Audit { .. } => "audit",
        Request::OperatorStatements { .. } => "operator statements",
        Request::Usage(_) => "usage",
        Request::RegisterInterest(_) => "event registration",
        Request::RenewInterest { .. } => "event registration renewal",
        Request::CancelInterest { .. } => "event registration cancellation",
        Request::Listen { .. } => "listen",
        Request::Unlisten { .. } => "unlisten",
        Request::RootStatement(_) => "root statement",
        Request::Delegation(_) => "delegation",
        Request::RootStatements { .. } => "root statements",
        Request::Freshness(_) => "freshness statement",
    }
}

/// Checks a vendor's signature over the connection's challenge and the registry's pin,
/// and binds the connection to its key (once: another key later is refused).
fn authenticate(
    session: &Session,
    vendor: VendorKey,
    signature: &[u8; 64],
) -> Result<Response, WireError> {
    let message = auth_message(&session.challenge, &session.shared.pin);
    vendor
        .verify(AUTH_DOMAIN, &message, signature)
        .map_err(|e| WireError::new(ErrorKind::BadSignature, format!("authentication: {e}")))?;
    match session.auth.set(vendor) {
        Ok(()) => {
            tracing::debug!(peer = %session.peer, %vendor, "authenticated");
            Ok(Response::Authenticated)
        }
        Err(_) if session.auth.get() == Some(&vendor) => Ok(Response::Authenticated),
        Err(_) => Err(WireError::new(
            ErrorKind::BadHandshake,
            "connection is already authenticated as another key",
        )),
    }
}

/// Runs `f` on the registry on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    registry: &Arc<Registry>,
    f: impl FnOnce(&Registry) -> Result<T, WireError> + Send + 'static,
) -> Result<T, WireError> {
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || f(&registry))
        .await
        .map_err(|e| WireError::new(ErrorKind::Internal, format!("handler failed: {e}")))?
}
