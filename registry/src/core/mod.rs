//! The registry's pure core: everything here takes the time (`now`) and the ids it needs
//! from its caller, does no IO, reads no clock, takes no lock and spawns nothing, in the
//! sans-IO style of `quinn-proto`. The driver ([`crate::Registry`]) owns the locks, the
//! clocks, the random ids, the store and the fan-out of events; a test
//! (`core_is_pure` in `registry/tests/architecture.rs`) checks that no file under this
//! directory reaches for any of them.
//!
//! - [`lease_table`]: leases and their deadlines.
//! - [`catalog`] and [`matcher`]: registrations indexed by interface, ranked matching.
//! - [`keys`]: key rotations and revocations in force, operators' revocations included.
//! - [`clients`]: the clients the registry knows; [`controls`]: what operators set;
//!   [`usage`]: usage metering; [`interests`]: leased event registrations.
//! - [`roots`]: vendor roots' statements and delegations, and the names they own.
//! - [`events`]: the numbered event ring.
//! - [`mirror`]: a child registry's rules and approvals (what it mirrors of its parent).
//! - [`freshness`]: the latest freshness statement of each vendor's service.
//! - [`rollouts`]: staged rollouts (who sees a staged version, when waves open, halts).
//! - [`state`]: all of them together as one state machine, and the restart rule.

pub mod catalog;
pub mod children;
pub mod clients;
pub mod controls;
pub mod events;
pub mod freshness;
pub mod interests;
pub mod keys;
pub mod lease_table;
pub mod matcher;
pub mod mirror;
pub mod rollouts;
pub mod roots;
pub mod state;
pub mod usage;
