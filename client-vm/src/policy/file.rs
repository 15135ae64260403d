//! The client policy file, `policy.toml` (by default in the client's state directory): what
//! a client lends proxies and shares with the registry, in one place a person can read.
//! `examples/policy.toml` at the root of the repository is a commented example.
//!
//! The format lives here, next to the types it fills ([`Policy`], [`LentCommand`]), rather
//! than in the CLI: every program that embeds the client (the CLI, the demo, a daemon) reads
//! the same file the same way, and its errors are typed. Unknown keys are refused (a typo
//! must not silently lend nothing, or everything); every error names the file and the line,
//! or the field when the problem is between fields.

use super::commands::{ExtraArgs, LentCommand, validate_all};
use super::{EndpointRules, Limits, OperatorAnswer, OperatorMode, Policy, Preopen};
use courier_protocol::VendorKey;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default file name, inside the client's state directory.
pub const POLICY_FILE: &str = "policy.toml";

/// What a policy file says: the [`Policy`] and the client settings beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// What proxies get: facts to read, the operator's answers, a directory, commands,
    /// limits. `host-info` and `operator` are granted (facts filtered, questions answered
    /// as the file says).
    pub policy: Policy,
    /// The facts the client shares with the registry (`courier client register/share`),
    /// if the file names them.
    pub share: Option<Vec<String>>,
    /// Vendor keys trusted for proxies.
    pub trusted_vendors: Vec<VendorKey>,
    /// Operator keys whose signed revocations of vendor keys the client follows.
    pub trusted_operators: Vec<VendorKey>,
    /// Whether reports to the service history carry the proxy's answer.
    pub report_answer: bool,
}

/// Why a policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("policy file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong form.
    #[error("policy file {path} line {line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Values that are each well-formed do not go together.
    #[error("policy file {path}, {field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `command.name`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl PolicyFile {
    /// Reads and checks the policy file at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Reads `path` if it exists (`None` if it does not).
    pub fn load_if_present(path: &Path) -> Result<Option<Self>, PolicyFileError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => Self::load(path).map(Some),
        }
    }

    /// Parses policy text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyFileError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| PolicyFileError::Syntax {
            path: path.to_path_buf(),
            line: e.span().map_or(0, |s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            }),
            message: e.message().trim().to_string(),
        })?;
        raw.into_file()
            .map_err(|(field, message)| PolicyFileError::Invalid {
                path: path.to_path_buf(),
                field,
                message,
            })
    }
}

/// The file as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    #[serde(default)]
    facts: RawFacts,
    #[serde(default)]
    operator: RawOperator,
    #[serde(default)]
    reports: RawReports,
    #[serde(default)]
    trust: RawTrust,
    directory: Option<RawDirectory>,
    #[serde(default, rename = "command")]
    commands: Vec<RawCommand>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    provider_endpoints: RawEndpoints,
}

/// `[provider-endpoints]`: where proxies may send their provider calls.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEndpoints {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default, deserialize_with = "networks")]
    networks: Vec<ipnet::IpNet>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    local_from_remote: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFacts {
    #[serde(default, deserialize_with = "fact_names")]
    read: Vec<String>,
    #[serde(default, deserialize_with = "optional_fact_names")]
    share: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOperator {
    #[serde(default)]
    answer: RawAnswer,
}

/// How questions are answered.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawAnswer {
    /// Asked on the terminal; no if there is none.
    #[default]
    Terminal,
    /// Yes, unattended.
    Approve,
    /// No, unattended.
    Deny,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawReports {
    #[serde(default)]
    include_answer: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTrust {
    #[serde(default, deserialize_with = "keys")]
    vendors: Vec<VendorKey>,
    #[serde(default, deserialize_with = "keys")]
    operators: Vec<VendorKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDirectory {
    path: PathBuf,
    #[serde(default = "default_guest")]
    guest: String,
    #[serde(default)]
    writable: bool,
}

fn default_guest() -> String {
    "/managed".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCommand {
    name: String,
    argv: Vec<String>,
    #[serde(default)]
    args: RawArgs,
    #[serde(deserialize_with = "duration")]
    timeout: Duration,
    #[serde(default = "yes")]
    confirm: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawArgs {
    #[default]
    None,
    PackageNames,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    memory_mib: Option<u32>,
    #[serde(default, deserialize_with = "optional_duration")]
    cpu_time: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    wall_time: Option<Duration>,
    output_kib: Option<u32>,
    command_output_kib: Option<u32>,
    #[serde(default, deserialize_with = "optional_duration")]
    provider_timeout: Option<Duration>,
}

impl RawFile {
    /// The checked settings, or the field that is wrong and why.
    fn into_file(self) -> Result<PolicyFile, (&'static str, String)> {
        let commands: Vec<LentCommand> = self
            .commands
            .into_iter()
            .map(|c| LentCommand {
                name: c.name,
                argv: c.argv,
                extra_args: match c.args {
                    RawArgs::None => ExtraArgs::None,
                    RawArgs::PackageNames => ExtraArgs::PackageNames,
                },
                timeout: c.timeout,
                confirm: c.confirm,
            })
            .collect();
        validate_all(&commands).map_err(|e| ("command", e.to_string()))?;
        let preopen = match self.directory {
            None => None,
            Some(d) => {
                if !d.path.is_absolute() {
                    return Err(("directory.path", "must be an absolute path".into()));
                }
                if !d.guest.starts_with('/') {
                    return Err(("directory.guest", "must start with /".into()));
                }
                Some(Preopen {
                    host: d.path,
                    guest: d.guest,
                    writable: d.writable,
                })
            }
        };
        let limits = self.limits.apply(Limits::default())?;
        let operator = match self.operator.answer {
            RawAnswer::Terminal => OperatorMode::Terminal {
                fallback: OperatorAnswer::DenyAll,
            },
            RawAnswer::Approve => OperatorMode::Unattended(OperatorAnswer::ApproveAll),
            RawAnswer::Deny => OperatorMode::Unattended(OperatorAnswer::DenyAll),
        };
        Ok(PolicyFile {
            policy: Policy {
                grant_host_info: true,
                grant_operator: true,
                allowed_facts: self.facts.read.into_iter().collect::<BTreeSet<_>>(),
                operator,
                preopen,
                commands,
                limits,
                provider_endpoints: EndpointRules {
                    hosts: self.provider_endpoints.hosts,
                    networks: self.provider_endpoints.networks,
                    ports: self.provider_endpoints.ports,
                    local_from_remote: self.provider_endpoints.local_from_remote,
                },
            },
            share: self.facts.share,
            trusted_vendors: self.trust.vendors,
            trusted_operators: self.trust.operators,
            report_answer: self.reports.include_answer,
        })
    }
}

impl RawLimits {
    /// `limits` with the values the file sets.
    fn apply(self, mut limits: Limits) -> Result<Limits, (&'static str, String)> {
        let positive = |field: &'static str, v: u32| {
            if v == 0 {
                Err((field, "must be more than zero".to_string()))
            } else {
                Ok(v as usize)
            }
        };
        if let Some(v) = self.memory_mib {
            limits.memory_bytes = positive("limits.memory-mib", v)? << 20;
        }
        if let Some(v) = self.output_kib {
            limits.output_bytes = positive("limits.output-kib", v)? << 10;
        }
        if let Some(v) = self.command_output_kib {
            limits.command_output_bytes = positive("limits.command-output-kib", v)? << 10;
        }
        for (field, value, slot) in [
            ("limits.cpu-time", self.cpu_time, &mut limits.cpu_time),
            ("limits.wall-time", self.wall_time, &mut limits.wall_time),
            (
                "limits.provider-timeout",
                self.provider_timeout,
                &mut limits.provider_timeout,
            ),
        ] {
            if let Some(d) = value {
                if d.is_zero() {
                    return Err((field, "must be more than zero".into()));
                }
                *slot = d;
            }
        }
        Ok(limits)
    }
}

/// A list of known fact names.
fn fact_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    if let Some(bad) = names
        .iter()
        .find(|n| !crate::host::FACT_NAMES.contains(&n.as_str()))
    {
        return Err(serde::de::Error::custom(format!(
            "unknown fact {bad:?} (known: {})",
            crate::host::FACT_NAMES.join(", ")
        )));
    }
    Ok(names)
}

fn optional_fact_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    fact_names(d).map(Some)
}

/// A list of `ed25519:<hex>` keys, each usable.
fn keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<VendorKey>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            let key: VendorKey = s.parse().map_err(|_| {
                serde::de::Error::custom(format!("{s:?} is not an ed25519:<64 hex digits> key"))
            })?;
            key.verifying_key()
                .map_err(|_| serde::de::Error::custom(format!("{s} is not a usable key")))?;
            Ok(key)
        })
        .collect()
}

/// A list of address ranges such as `10.0.0.0/8` or `2001:db8::/32`.
fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{s:?} is not an address range (e.g. \"10.0.0.0/8\", \"2001:db8::/32\")"
                ))
            })
        })
        .collect()
}

/// A duration such as `90s`, `10m` or `1h 30m`.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("duration {text:?}: {e} (e.g. \"90s\", \"10m\")"))
    })
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[cfg(test)]
mod tests;
