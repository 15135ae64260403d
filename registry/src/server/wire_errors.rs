//! What each of the registry's errors means on the wire, decided once: the kind a peer can
//! act on, and the error's own message.

use crate::core::catalog::CatalogError;
use crate::core::clients::ClientError;
use crate::core::interests::InterestError;
use crate::core::keys::KeyError;
use crate::errors::FreshnessRefused;
use crate::errors::{
    AdminError, ClientRequestError, FindError, GrantError, LeaseError, ReadError, RegisterError,
    ReportError, RootPublishError, StatementRefused,
};
use courier_protocol::{ErrorKind, FreshnessError, StatementError, VerifyError, WireError};

/// An error as a peer receives it.
pub(super) trait ToWire: std::fmt::Display {
    /// The kind a peer can act on.
    fn kind(&self) -> ErrorKind;

    /// The wire form: the kind and this error's message.
    fn to_wire(&self) -> WireError {
        WireError::new(self.kind(), self.to_string())
    }
}

/// The refusal of a request an authenticated key may not make.
pub(super) fn forbidden(what: &str) -> WireError {
    WireError::new(ErrorKind::Forbidden, what)
}

/// The refusal of a request that needs an authenticated connection.
pub(super) fn not_authenticated() -> WireError {
    WireError::new(
        ErrorKind::NotAuthenticated,
        "connection is not authenticated",
    )
}

fn signature(e: &VerifyError) -> ErrorKind {
    match e {
        VerifyError::BadSignature | VerifyError::InvalidKey | VerifyError::WeakKey => {
            ErrorKind::BadSignature
        }
        _ => ErrorKind::BadManifest,
    }
}

impl ToWire for KeyError {
    fn kind(&self) -> ErrorKind {
        match self {
            KeyError::Revoked(_) | KeyError::TargetRevoked(_) => ErrorKind::Revoked,
            KeyError::Rotated { .. } | KeyError::TargetRotated(_) | KeyError::ChainTooLong => {
                ErrorKind::Rotated
            }
        }
    }
}

impl ToWire for RegisterError {
    fn kind(&self) -> ErrorKind {
        match self {
            RegisterError::WrongVendor { .. } => ErrorKind::NotAuthenticated,
            RegisterError::Verify(e) => signature(e),
            RegisterError::Times(_) => ErrorKind::BadManifest,
            RegisterError::Component(_)
            | RegisterError::Inspect(_)
            | RegisterError::NotExported(_) => ErrorKind::BadComponent,
            RegisterError::Catalog(CatalogError::NotOwner { .. }) => ErrorKind::NotOwner,
            RegisterError::Catalog(CatalogError::Interface(_)) => ErrorKind::BadManifest,
            RegisterError::Key(e) => e.kind(),
            RegisterError::Banned { .. } => ErrorKind::Banned,
            RegisterError::Draining { .. } => ErrorKind::Draining,
            RegisterError::StagedInCluster => ErrorKind::BadQuery,
            RegisterError::Store(e) => store(e),
        }
    }
}

impl ToWire for StatementRefused {
    fn kind(&self) -> ErrorKind {
        match self {
            StatementRefused::WrongKey { .. } => ErrorKind::NotAuthenticated,
            StatementRefused::Verify(StatementError::Verify(e)) => match signature(e) {
                ErrorKind::BadSignature => ErrorKind::BadSignature,
                _ => ErrorKind::BadQuery,
            },
            StatementRefused::Verify(_) => ErrorKind::BadQuery,
            StatementRefused::Key(e) => e.kind(),
            StatementRefused::Store(e) => store(e),
        }
    }
}

impl ToWire for FreshnessRefused {
    fn kind(&self) -> ErrorKind {
        match self {
            FreshnessRefused::WrongKey { .. } => ErrorKind::NotAuthenticated,
            FreshnessRefused::Verify(FreshnessError::Verify(e)) => match signature(e) {
                ErrorKind::BadSignature => ErrorKind::BadSignature,
                _ => ErrorKind::BadQuery,
            },
            FreshnessRefused::Verify(_) | FreshnessRefused::Time(_) => ErrorKind::BadQuery,
            FreshnessRefused::Key(e) => e.kind(),
            FreshnessRefused::NotOwner(_) => ErrorKind::NotOwner,
            FreshnessRefused::NotNewer(_) => ErrorKind::Stale,
            FreshnessRefused::Store(e) => store(e),
        }
    }
}

impl ToWire for LeaseError {
    fn kind(&self) -> ErrorKind {
        match self {
            LeaseError::Unknown(_) => ErrorKind::UnknownLease,
            LeaseError::NotOwner(_) => ErrorKind::NotOwner,
            LeaseError::Revoked { .. } => ErrorKind::LeaseRevoked,
            LeaseError::Draining { .. } => ErrorKind::Draining,
            LeaseError::NoHeadroom => ErrorKind::Busy,
            LeaseError::Mirrored(_) => ErrorKind::NotOwner,
            LeaseError::Store(e) => store(e),
        }
    }
}

impl ToWire for FindError {
    fn kind(&self) -> ErrorKind {
        match self {
            FindError::Query(_) => ErrorKind::BadQuery,
            FindError::Store(e) => store(e),
        }
    }
}

impl ToWire for ReadError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReadError::NotFound(_) => ErrorKind::NotFound,
            ReadError::Store(e) => store(e),
        }
    }
}

impl ToWire for ReportError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReportError::Invalid(_) => ErrorKind::BadQuery,
            ReportError::UnknownClient(_) => ErrorKind::UnknownClient,
            ReportError::Store(e) => store(e),
        }
    }
}

impl ToWire for GrantError {
    fn kind(&self) -> ErrorKind {
        match self {
            GrantError::Name(_) => ErrorKind::BadQuery,
            GrantError::Store(e) => store(e),
        }
    }
}

impl ToWire for AdminError {
    fn kind(&self) -> ErrorKind {
        match self {
            AdminError::UnknownLease(_) => ErrorKind::UnknownLease,
            AdminError::Name(_) | AdminError::Reason(_) | AdminError::ChildName(_) => {
                ErrorKind::BadQuery
            }
            AdminError::UnknownChild(_) | AdminError::UnknownApproval { .. } => ErrorKind::NotFound,
            AdminError::Rule(crate::core::mirror::RuleError::Unknown(_)) => ErrorKind::NotFound,
            AdminError::Rule(_)
            | AdminError::NotAChild
            | AdminError::RolloutSpec(_)
            | AdminError::RolloutsInCluster
            | AdminError::RolloutUnderWay { .. } => ErrorKind::BadQuery,
            AdminError::NotStaged { .. } | AdminError::NoRollout { .. } => ErrorKind::NotFound,
            AdminError::Statement(_) => ErrorKind::BadSignature,
            AdminError::NotTheSigner { .. } => ErrorKind::Forbidden,
            AdminError::Store(e) => store(e),
        }
    }
}

impl ToWire for ClientRequestError {
    fn kind(&self) -> ErrorKind {
        match self {
            ClientRequestError::Client(ClientError::Unknown(_)) => ErrorKind::UnknownClient,
            ClientRequestError::Client(ClientError::TooLarge(_)) => ErrorKind::BadQuery,
            ClientRequestError::Forbidden(_) => ErrorKind::Forbidden,
            ClientRequestError::Store(e) => store(e),
        }
    }
}

impl ToWire for InterestError {
    fn kind(&self) -> ErrorKind {
        match self {
            InterestError::Template(_) => ErrorKind::BadQuery,
            InterestError::Unknown(_) => ErrorKind::UnknownInterest,
            InterestError::NotAClient => ErrorKind::UnknownClient,
            InterestError::TooMany(_) => ErrorKind::Busy,
        }
    }
}

impl ToWire for RootPublishError {
    fn kind(&self) -> ErrorKind {
        use crate::core::roots::RootRefused;
        match self {
            RootPublishError::Refused(RootRefused::Root(
                courier_protocol::RootError::PreviousThreshold { .. }
                | courier_protocol::RootError::OwnThreshold { .. },
            )) => ErrorKind::BadSignature,
            RootPublishError::Refused(RootRefused::Delegation(
                courier_protocol::DelegationError::Verify(VerifyError::BadSignature),
            )) => ErrorKind::BadSignature,
            RootPublishError::Refused(_) => ErrorKind::BadQuery,
            RootPublishError::Store(e) => store(e),
        }
    }
}

/// A storage failure: `Unavailable` when the store cannot commit now (a cluster store
/// without quorum), `Internal` otherwise. Nothing was acknowledged either way.
fn store(e: &crate::store::StoreError) -> ErrorKind {
    match e {
        crate::store::StoreError::Unavailable(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}
