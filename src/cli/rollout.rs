//! The grammar of staged rollouts (`courier rollout ...`).

use super::{OperatorArgs, parse_duration};
use clap::{Args, Subcommand};
use courier_protocol::WaveSelector;
use std::time::Duration;

/// `courier rollout`
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RolloutCommand,
    /// The operator.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// `courier rollout ...`
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start rolling out a staged version (`courier publish --staged`): its first wave
    /// sees it at once, the next after the delay if the failures reported stay under the
    /// threshold.
    Start(RolloutStartArgs),
    /// The staged versions waiting for a rollout (`courier publish --staged`), and those
    /// under one.
    Staged {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each rollout: its waves, their clients, successes, failures, undos.
    Status {
        /// Only this service's rollouts.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a service's rollout: its open waves stay open, no new one opens.
    Pause {
        /// The service name.
        name: String,
    },
    /// Resume a paused rollout (the open wave's delay counts from now).
    Resume {
        /// The service name.
        name: String,
    },
    /// Abort a service's rollout: the version is hidden from every client again, and the
    /// clients that ran it are asked to undo it (if the rollout says how).
    Abort {
        /// The service name.
        name: String,
    },
}

/// `courier rollout start`
#[derive(Debug, Args)]
pub struct RolloutStartArgs {
    /// The staged version: `NAME@VERSION`, e.g. `acme/patch@2.1.0`.
    #[arg(value_parser = super::parse_pin)]
    pub version: (String, semver::Version),
    /// The waves, in order: groups of clients by attribute or shared fact (`ring=canary`),
    /// then growing shares of all clients (`5%`); the last is `100%`.
    #[arg(long, value_delimiter = ',', default_value = "5%,25%,100%")]
    pub waves: Vec<WaveSelector>,
    /// How long each wave runs before the next may open.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub delay: Duration,
    /// Halt when more than this share of the reports so far are failures (`0%`: any).
    #[arg(long, value_parser = parse_percent, default_value = "2%")]
    pub max_failures: u32,
    /// Reports each wave needs before the next opens (or one per client of a smaller
    /// wave); clients that never report count as unknown, not as successes.
    #[arg(long, default_value_t = 5)]
    pub min_reports: u32,
}

/// Parses a percentage (`2%`, `0.5%`, `0%`) into parts per million.
pub fn parse_percent(s: &str) -> Result<u32, String> {
    if s.trim_end_matches('%')
        .chars()
        .all(|c| c == '0' || c == '.')
        && s.ends_with('%')
    {
        return Ok(0);
    }
    match s.parse::<WaveSelector>() {
        Ok(WaveSelector::Share { ppm }) => Ok(ppm),
        _ => Err(format!(
            "expected a percentage such as 2% or 0.5%, got {s:?}"
        )),
    }
}
