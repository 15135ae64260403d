//! Who may see the dashboard: a holder of the token the registry printed at start (random,
//! kept in memory only, new at every start) or of a token an operator key signed
//! ([`DashboardToken`]). Either is given as `Authorization: Bearer`, as the `courier_token`
//! cookie, or once as `?token=` on the page's address, which answers with the cookie and
//! sends the browser on to the address without it (so the token stays out of history and
//! logs). A refusal is answered 401 and logged once per peer address.

use super::token::{DashboardToken, TokenError};
use crate::observe::Observer;
use axum::http::{HeaderMap, header};
use courier_protocol::{SpkiPin, VendorKey};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The cookie that carries the token.
pub(crate) const COOKIE: &str = "courier_token";

/// Peer addresses whose refusals are remembered (logged once each); past it, refusals of
/// new addresses are counted but not logged.
const LOGGED_PEERS: usize = 4096;

/// Who a request was let in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    /// The holder of the token printed at start.
    StartToken,
    /// An operator, by a token its key signed, valid until `not_after_ms`.
    Operator {
        /// The operator key.
        key: VendorKey,
        /// Until when the token is valid.
        not_after_ms: u64,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// No token came with it.
    #[error(
        "no token: open the address `courier registry serve` printed, or one with a token from `courier admin token`"
    )]
    Missing,
    /// A token came, and it is not valid here.
    #[error("token refused: {0}")]
    Invalid(#[from] TokenError),
}

/// The credentials the HTTP side accepts, and the peers already logged.
#[derive(Debug)]
pub(crate) struct Auth {
    start_token: String,
    pin: SpkiPin,
    operators: Vec<VendorKey>,
    logged: Mutex<HashSet<IpAddr>>,
    observer: Arc<Observer>,
}

impl Auth {
    /// Accepts a new random start token and tokens of `operators` for the registry of
    /// `pin`.
    pub fn new(pin: SpkiPin, operators: Vec<VendorKey>, observer: Arc<Observer>) -> Self {
        Self {
            start_token: hex::encode(rand::random::<[u8; 32]>()),
            pin,
            operators,
            logged: Mutex::new(HashSet::new()),
            observer,
        }
    }

    /// The token printed at start.
    pub fn start_token(&self) -> &str {
        &self.start_token
    }

    /// Checks one token at wall-clock time `now_ms`.
    pub fn check(&self, token: &str, now_ms: u64) -> Result<Credential, Refused> {
        if constant_time_eq(token.as_bytes(), self.start_token.as_bytes()) {
            return Ok(Credential::StartToken);
        }
        let signed: DashboardToken = token.parse()?;
        let key = signed.verify(&self.pin, &self.operators, now_ms)?;
        Ok(Credential::Operator {
            key,
            not_after_ms: signed.not_after_ms(),
        })
    }

    /// Checks the token of a request's headers (bearer first, then the cookie).
    pub fn check_headers(&self, headers: &HeaderMap, now_ms: u64) -> Result<Credential, Refused> {
        match bearer(headers).or_else(|| cookie(headers)) {
            Some(t) => self.check(t, now_ms),
            None => Err(Refused::Missing),
        }
    }

    /// Counts a refusal, and logs it if it is the first from `peer`.
    pub fn refused(&self, peer: IpAddr, path: &str, why: &Refused) {
        self.observer.metrics.http_unauthorized.inc();
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged.len() < LOGGED_PEERS && logged.insert(peer) {
            tracing::warn!(%peer, path, "dashboard request refused: {why} (further refusals from this address are not logged)");
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The token of the `courier_token` cookie.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Compares without stopping at the first difference, so the time taken says nothing of
/// how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use courier_protocol::SigningKey;

    fn auth(op: &SigningKey) -> Auth {
        Auth::new(
            SpkiPin([4; 32]),
            vec![VendorKey::of(op)],
            Arc::new(Observer::new(None)),
        )
    }

    #[test]
    fn tokens_come_from_the_bearer_header_or_the_cookie() {
        let op = SigningKey::from_bytes(&[1; 32]);
        let a = auth(&op);
        let start = a.start_token().to_string();
        assert_eq!(start.len(), 64);
        let mut h = HeaderMap::new();
        assert_eq!(a.check_headers(&h, 0), Err(Refused::Missing));
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {COOKIE}={start}")).unwrap(),
        );
        assert_eq!(a.check_headers(&h, 0), Ok(Credential::StartToken));
        let signed = DashboardToken::sign(&op, &SpkiPin([4; 32]), 500);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {signed}")).unwrap(),
        );
        assert_eq!(
            a.check_headers(&h, 100),
            Ok(Credential::Operator {
                key: VendorKey::of(&op),
                not_after_ms: 500
            })
        );
        assert_eq!(
            a.check_headers(&h, 501),
            Err(Refused::Invalid(TokenError::Expired))
        );
        assert_eq!(
            a.check(&start[..63], 0),
            Err(Refused::Invalid(TokenError::Malformed))
        );
    }

    #[test]
    fn refusals_are_counted_every_time_and_remembered_per_peer() {
        let a = auth(&SigningKey::from_bytes(&[1; 32]));
        let peer: IpAddr = [127, 0, 0, 9].into();
        for _ in 0..3 {
            a.refused(peer, "/", &Refused::Missing);
        }
        assert_eq!(a.observer.metrics.http_unauthorized.get(), 3);
        assert_eq!(a.logged.lock().unwrap().len(), 1);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
