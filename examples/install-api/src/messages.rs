//! The messages between an example proxy and its provider, one answer per method (see
//! [`crate::methods`]; both methods take an empty request), encoded with postcard.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest message [`decode`] accepts (16 MiB).
pub const MAX_MESSAGE: usize = 16 << 20;

/// One thing a service needs on the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Need {
    /// A service interface (`acme:fonts/glyphs`) at a semver requirement (`^1.2`).
    Service {
        /// The interface, without a version.
        interface: String,
        /// The requirement on the installed version.
        version: String,
    },
    /// A Debian package, by name.
    Package(String),
}

impl std::fmt::Display for Need {
    /// `acme:fonts/glyphs ^1.2`, `package zlib1g`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Service { interface, version } => write!(f, "{interface} {version}"),
            Need::Package(name) => write!(f, "package {name}"),
        }
    }
}

/// The answer to `needs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// Everything the service needs, in place or not.
    pub needs: Vec<Need>,
}

/// One file an installer writes, relative to its interface's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Its path, relative (`bin/tool`); no `..`, no absolute path.
    pub path: String,
    /// Its bytes.
    pub contents: Vec<u8>,
}

/// The answer to `plan`: what an installer puts in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The interface it provides (`acme:fonts/glyphs`).
    pub provides: String,
    /// The version it installs.
    pub version: String,
    /// The files, written under `<managed>/<slug>/`.
    pub files: Vec<File>,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("the {what} is {len} bytes, over the {MAX_MESSAGE}-byte cap")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Not a message of the expected type.
    #[error("the {what} is not well formed: {source}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// postcard's reason.
        source: postcard::Error,
    },
}

/// Encodes a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these types to a Vec cannot fail: no maps with non-string keys, no
    // sequences of unknown length.
    postcard::to_stdvec(message).unwrap_or_default()
}

/// Decodes a message of at most [`MAX_MESSAGE`] bytes; `what` names it in errors.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
        });
    }
    postcard::from_bytes(bytes).map_err(|source| DecodeError::Malformed { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let plan = Plan {
            provides: "acme:fonts/glyphs".into(),
            version: "1.2.0".into(),
            files: vec![File {
                path: "share/glyphs.txt".into(),
                contents: b"abc".to_vec(),
            }],
        };
        assert_eq!(decode::<Plan>("plan", &encode(&plan)).unwrap(), plan);
        let needs = Needs {
            needs: vec![Need::Package("zlib1g".into())],
        };
        assert_eq!(decode::<Needs>("needs", &encode(&needs)).unwrap(), needs);
        assert!(matches!(
            decode::<Plan>("plan", &[0xff, 0xff, 0xff]),
            Err(DecodeError::Malformed { what: "plan", .. })
        ));
    }
}
