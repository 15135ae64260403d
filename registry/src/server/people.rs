//! Clients' and operators' requests, and who may make them: a client's data and history
//! are its own key's (or an operator's); operators' actions and reads need an operator key.
//! Lookups stay open to anyone.

use super::connection::Session;
use super::dispatch::blocking;
use super::wire_errors::{ToWire, forbidden, not_authenticated};
use courier_protocol::limits::{MAX_AUDIT_PAGE, MAX_CLIENT_PAGE};
use courier_protocol::{ErrorKind, Request, Response, VendorKey, WireError};

/// Answers a client's or an operator's request (the other kinds are not passed here).
pub(super) async fn answer(req: Request, session: &Session) -> Result<Response, WireError> {
    let registry = &session.shared.registry;
    let key = session.auth.get().copied();
    match req {
        // Blocking: commits with fsync.
        Request::RegisterClient(profile) => {
            let key = key.ok_or_else(not_authenticated)?;
            blocking(registry, move |reg| {
                reg.register_client(reg.now(), key, profile)
                    .map_err(|e| e.to_wire())
            })
            .await
            .map(|()| Response::ClientRegistered)
        }
        // Blocking: commits with fsync.
        Request::ShareSystemData(data) => {
            let key = key.ok_or_else(not_authenticated)?;
            blocking(registry, move |reg| {
                reg.share_data(reg.now(), key, data)
                    .map_err(|e| e.to_wire())
            })
            .await
            .map(|()| Response::SystemDataStored)
        }
        // Blocking: commits with fsync.
        Request::Report(outcome) => {
            let key = key.ok_or_else(not_authenticated)?;
            blocking(registry, move |reg| {
                reg.report(reg.now(), &key, outcome)
                    .map_err(|e| e.to_wire())
            })
            .await
            .map(|()| Response::Reported)
        }
        // Inline: memory only.
        Request::Client { key: client } => {
            own_or_operator(session, key, |k| *k == client)?;
            registry
                .client(&client)
                .map(Response::Client)
                .ok_or_else(|| {
                    WireError::new(ErrorKind::UnknownClient, format!("no client {client}"))
                })
        }
        // Blocking: reads history pages.
        Request::History { client, limit } => {
            own_or_operator(session, key, |k| k.to_string() == client)?;
            blocking(registry, move |reg| {
                reg.history(&client, limit).map_err(|e| e.to_wire())
            })
            .await
            .map(Response::History)
        }
        // Inline: memory only.
        Request::Clients { after, limit } => {
            operator(session, key)?;
            let limit = limit.clamp(1, MAX_CLIENT_PAGE) as usize;
            Ok(Response::Clients(registry.clients(after.as_ref(), limit)))
        }
        // Blocking: commits with fsync.
        Request::Admin(action) => {
            let operator = operator(session, key)?;
            blocking(registry, move |reg| {
                reg.admin(reg.now(), Some(operator), action)
                    .map_err(|e| e.to_wire())
            })
            .await
            .map(Response::AdminDone)
        }
        // Blocking: reads the audit log.
        Request::Audit { from_seq, limit } => {
            operator(session, key)?;
            let limit = limit.clamp(1, MAX_AUDIT_PAGE) as usize;
            blocking(registry, move |reg| {
                reg.audit(from_seq, limit).map_err(|e| e.to_wire())
            })
            .await
            .map(Response::Audit)
        }
        // Blocking: reads the usage table.
        Request::Usage(query) => {
            operator(session, key)?;
            blocking(registry, move |reg| {
                reg.usage(&query).map_err(|e| e.to_wire())
            })
            .await
            .map(Response::Usage)
        }
        // Inline: memory only.
        Request::ChildHello => {
            let key = key.ok_or_else(not_authenticated)?;
            registry
                .child_hello(registry.now(), key)
                .map(Response::ChildWelcome)
                .map_err(|e| forbidden(&e.to_string()))
        }
        Request::Children => {
            operator(session, key)?;
            Ok(Response::Children(registry.children()))
        }
        Request::ChildReport(report) => {
            let key = key.ok_or_else(not_authenticated)?;
            registry
                .child_report(registry.now(), key, report)
                .map(|()| Response::ChildReported)
                .map_err(|e| match e {
                    crate::core::children::ChildRefused::BadReport(_) => {
                        WireError::new(ErrorKind::BadQuery, e.to_string())
                    }
                    _ => forbidden(&e.to_string()),
                })
        }
        Request::AskChildReport { key: child } => {
            operator(session, key)?;
            registry
                .ask_child_report(child)
                .map(|()| Response::ChildReportAsked)
                .map_err(|e| WireError::new(ErrorKind::NotFound, e.to_string()))
        }
        Request::MirrorStatus => {
            operator(session, key)?;
            let (status, rules) = registry.mirror_status();
            Ok(Response::MirrorStatus(status, rules))
        }
        Request::Approvals => {
            operator(session, key)?;
            Ok(Response::Approvals(registry.approvals()))
        }
        // Inline: memory only.
        Request::Rollouts => {
            operator(session, key)?;
            Ok(Response::Rollouts(registry.rollouts()))
        }
        // Blocking: reads the staged registrations' manifests.
        Request::Staged => {
            operator(session, key)?;
            blocking(registry, move |reg| {
                reg.staged(reg.now()).map_err(|e| e.to_wire())
            })
            .await
            .map(Response::Staged)
        }
        // Blocking: reads the versions' manifests.
        Request::Directives => {
            let key = key.ok_or_else(not_authenticated)?;
            blocking(registry, move |reg| {
                reg.directives(reg.now(), &key).map_err(|e| e.to_wire())
            })
            .await
            .map(Response::Directives)
        }
        // Blocking: commits with fsync.
        Request::UndoReport(report) => {
            let key = key.ok_or_else(not_authenticated)?;
            blocking(registry, move |reg| {
                reg.undo_report(reg.now(), &key, report)
                    .map_err(|e| e.to_wire())
            })
            .await
            .map(|()| Response::UndoReported)
        }
        // Inline: memory only (the registrations' own lock).
        Request::RegisterInterest(interest) => {
            let key = key.ok_or_else(not_authenticated)?;
            registry
                .register_interest(key, &interest)
                .map(Response::InterestGranted)
                .map_err(|e| e.to_wire())
        }
        Request::RenewInterest { id, ttl_ms } => {
            let key = key.ok_or_else(not_authenticated)?;
            registry
                .renew_interest(key, id, ttl_ms)
                .map(Response::InterestGranted)
                .map_err(|e| e.to_wire())
        }
        Request::CancelInterest { id } => {
            let key = key.ok_or_else(not_authenticated)?;
            registry
                .cancel_interest(key, id)
                .map(|()| Response::InterestCancelled)
                .map_err(|e| e.to_wire())
        }
        _ => Err(WireError::new(
            ErrorKind::Internal,
            "not a client's or operator's request",
        )),
    }
}

/// The connection's operator key; a missing or other key is refused (and logged once per
/// connection by the caller's refusal, once here for a key that is not an operator's).
fn operator(session: &Session, key: Option<VendorKey>) -> Result<VendorKey, WireError> {
    let key = key.ok_or_else(not_authenticated)?;
    if session.shared.registry.is_operator(&key) {
        return Ok(key);
    }
    if !session
        .refused_admin
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(peer = %session.peer, %key, "operator request from a key that is not an operator's");
    }
    Err(forbidden("this request needs an operator key"))
}

/// Allows the request if the connection's key is the one `own` accepts, or an operator's.
fn own_or_operator(
    session: &Session,
    key: Option<VendorKey>,
    own: impl Fn(&VendorKey) -> bool,
) -> Result<(), WireError> {
    let key = key.ok_or_else(not_authenticated)?;
    if own(&key) || session.shared.registry.is_operator(&key) {
        Ok(())
    } else {
        Err(forbidden("a client reads only its own data and history"))
    }
}
