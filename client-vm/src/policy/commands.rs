//! Commands a policy lends proxies by name: a fixed program and arguments (`argv`), the
//! kind of extra arguments a proxy may append (none, or package names of Debian's strict
//! form), a timeout, and whether the operator must confirm each run.
//!
//! A proxy never supplies a command line: it names a lent command and may add only
//! arguments of the allowed kind, each checked here before anything runs, so `;rm -rf /`,
//! `/etc/passwd` or `--option` can never reach the program.

use std::time::Duration;

/// Most extra arguments a proxy may add to one run.
pub const MAX_EXTRA_ARGS: usize = 4096;

pub use courier_debian::is_package_name;

/// The kind of arguments a proxy may append to a lent command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraArgs {
    /// None: the command runs exactly as the policy wrote it.
    None,
    /// Debian package names: lower-case letters, digits, `+`, `-` and `.`, at least two
    /// characters, starting with a letter or digit (Debian policy 5.6.1). No option, path,
    /// version or shell syntax can pass.
    PackageNames,
}

/// A command lent to proxies by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LentCommand {
    /// The name a proxy calls it by (`[a-z0-9][a-z0-9-]*`).
    pub name: String,
    /// The program and its fixed arguments. The program is an absolute path, or is looked
    /// up in the minimal `PATH` the command runs with (`/usr/sbin:/usr/bin:/sbin:/bin`).
    pub argv: Vec<String>,
    /// What a proxy may append.
    pub extra_args: ExtraArgs,
    /// The longest a run may take (also bounded by the time left of the proxy's run);
    /// the command's whole process group is killed when it passes.
    pub timeout: Duration,
    /// Whether the operator (or the policy's unattended answer) must confirm each run.
    pub confirm: bool,
}

/// Why a lent command's definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LentCommandError {
    /// The name is not `[a-z0-9][a-z0-9-]*` (at most 64 characters).
    #[error("command name {0:?} must be lower-case letters, digits and '-' (at most 64)")]
    BadName(String),
    /// The argv is empty or its program is empty.
    #[error("command {0}: argv must name a program")]
    NoProgram(String),
    /// An argv element contains a NUL byte.
    #[error("command {0}: argv contains a NUL byte")]
    Nul(String),
    /// The timeout is zero.
    #[error("command {0}: the timeout must be more than zero")]
    NoTimeout(String),
    /// Two commands have the same name.
    #[error("command {0} is lent twice")]
    Duplicate(String),
}

/// Why a proxy's extra arguments are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgRefusal {
    /// The command takes no extra arguments.
    #[error("command {command} takes no arguments")]
    NoneAllowed {
        /// The command.
        command: String,
    },
    /// An argument is not a package name.
    #[error("command {command}: argument {index} ({shown}) is not a package name")]
    NotAPackageName {
        /// The command.
        command: String,
        /// Its position among the extra arguments, from 0.
        index: usize,
        /// The argument, escaped and clipped for display.
        shown: String,
    },
    /// More arguments than [`MAX_EXTRA_ARGS`].
    #[error("command {command}: {count} arguments, at most {MAX_EXTRA_ARGS}")]
    TooMany {
        /// The command.
        command: String,
        /// How many were given.
        count: usize,
    },
}

impl LentCommand {
    /// Checks the definition: its name, a program, no NUL byte, a timeout.
    pub fn validate(&self) -> Result<(), LentCommandError> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-');
        if !name_ok {
            return Err(LentCommandError::BadName(self.name.clone()));
        }
        if self.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(LentCommandError::NoProgram(self.name.clone()));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(LentCommandError::Nul(self.name.clone()));
        }
        if self.timeout.is_zero() {
            return Err(LentCommandError::NoTimeout(self.name.clone()));
        }
        Ok(())
    }

    /// Checks the arguments a proxy wants to append.
    pub fn check_args(&self, args: &[String]) -> Result<(), ArgRefusal> {
        let command = || self.name.clone();
        match self.extra_args {
            ExtraArgs::None if args.is_empty() => Ok(()),
            ExtraArgs::None => Err(ArgRefusal::NoneAllowed { command: command() }),
            ExtraArgs::PackageNames => {
                if args.len() > MAX_EXTRA_ARGS {
                    return Err(ArgRefusal::TooMany {
                        command: command(),
                        count: args.len(),
                    });
                }
                match args.iter().position(|a| !is_package_name(a)) {
                    None => Ok(()),
                    Some(index) => Err(ArgRefusal::NotAPackageName {
                        command: command(),
                        index,
                        shown: crate::host::printable(&args[index]),
                    }),
                }
            }
        }
    }
}

/// Checks a set of lent commands: each valid, names unique.
pub(crate) fn validate_all(commands: &[LentCommand]) -> Result<(), LentCommandError> {
    let mut seen = std::collections::BTreeSet::new();
    for c in commands {
        c.validate()?;
        if !seen.insert(c.name.as_str()) {
            return Err(LentCommandError::Duplicate(c.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lent(extra: ExtraArgs) -> LentCommand {
        LentCommand {
            name: "apt-upgrade".into(),
            argv: vec!["apt-get".into(), "install".into(), "--only-upgrade".into()],
            extra_args: extra,
            timeout: Duration::from_secs(60),
            confirm: true,
        }
    }

    #[test]
    fn package_names_pass_and_shell_paths_and_options_do_not() {
        let c = lent(ExtraArgs::PackageNames);
        let ok: Vec<String> = ["libc6", "g++", "libstdc++6", "python3.11", "0ad"]
            .map(String::from)
            .into();
        c.check_args(&ok).unwrap();
        c.check_args(&[]).unwrap();
        for bad in [
            ";rm -rf /",
            "/etc/passwd",
            "--foo",
            "-y",
            "a",
            "Bash",
            "bash=5.2",
            "libc6:i386",
            "../x",
            "a b",
            "x\0y",
            "$(id)",
            "",
        ] {
            let err = c.check_args(&["bash".into(), bad.into()]).unwrap_err();
            assert!(
                matches!(err, ArgRefusal::NotAPackageName { index: 1, .. }),
                "{bad:?}: {err}"
            );
        }
        let many = vec!["ab".to_string(); MAX_EXTRA_ARGS + 1];
        assert!(matches!(
            c.check_args(&many),
            Err(ArgRefusal::TooMany { .. })
        ));
        let none = lent(ExtraArgs::None);
        none.check_args(&[]).unwrap();
        assert_eq!(
            none.check_args(&["bash".into()]).unwrap_err(),
            ArgRefusal::NoneAllowed {
                command: "apt-upgrade".into()
            }
        );
    }

    #[test]
    fn definitions_are_checked() {
        lent(ExtraArgs::None).validate().unwrap();
        let mut c = lent(ExtraArgs::None);
        c.name = "Apt Upgrade".into();
        assert!(matches!(c.validate(), Err(LentCommandError::BadName(_))));
        let mut c = lent(ExtraArgs::None);
        c.argv.clear();
        assert!(matches!(c.validate(), Err(LentCommandError::NoProgram(_))));
        let mut c = lent(ExtraArgs::None);
        c.timeout = Duration::ZERO;
        assert!(matches!(c.validate(), Err(LentCommandError::NoTimeout(_))));
        let twice = [lent(ExtraArgs::None), lent(ExtraArgs::PackageNames)];
        assert_eq!(
            validate_all(&twice),
            Err(LentCommandError::Duplicate("apt-upgrade".into()))
        );
    }
}
