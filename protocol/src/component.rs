//! Reads what a component really exports and imports, from its own type information.
//!
//! The registry checks a manifest's claims against this, and the client checks a proxy's
//! imports against its policy, before anything is compiled. The bytes come from outside:
//! they are validated in memory before the decoder sees them (see [`inspect`]), and a panic
//! inside the decoder is caught and reported as an error.

use crate::manifest::Export;
use wasmparser::{Validator, WasmFeatures};
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{WorldItem, WorldKey};

/// The interfaces a component exports (with their functions) and imports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentInterfaces {
    /// Exported interfaces with their functions, sorted by interface name.
    pub exports: Vec<Export>,
    /// Imported interfaces (full names with versions), sorted.
    pub imports: Vec<String>,
}

/// Why a component's interfaces could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The bytes are not a valid component.
    #[error("not a valid component: {0}")]
    Invalid(String),
    /// The bytes are a WIT package, not a component.
    #[error("a WIT package, not a component")]
    WitPackage,
}

impl ComponentInterfaces {
    /// The export for `interface` (full name with version), if the component has it.
    pub fn export(&self, interface: &str) -> Option<&Export> {
        self.exports.iter().find(|e| e.interface == interface)
    }

    /// Checks that every interface and function a manifest claims is really exported.
    /// Returns the first claim that is not, as `interface` or `interface.function`.
    pub fn check_claims(&self, claimed: &[Export]) -> Result<(), String> {
        for claim in claimed {
            let Some(real) = self.export(&claim.interface) else {
                return Err(claim.interface.clone());
            };
            for f in &claim.functions {
                if !real.functions.contains(f) {
                    return Err(format!("{}.{}", claim.interface, f));
                }
            }
        }
        Ok(())
    }
}

/// Reads the exported and imported interfaces of a component.
///
/// The bytes are validated as a whole first. wit-parser's decoder reads through
/// `std::io::Read` and reserves (and zero-fills) whatever length the next section header
/// announces before reading it, so a few bytes announcing a 2 GiB section made it allocate
/// 2 GiB (found by the `bundles` fuzz target). Validation of the bytes in memory refuses a
/// section longer than the input, which bounds everything the decoder reserves by the
/// input's own length.
pub fn inspect(bytes: &[u8]) -> Result<ComponentInterfaces, InspectError> {
    std::panic::catch_unwind(|| inspect_inner(bytes))
        .unwrap_or_else(|_| Err(InspectError::Invalid("decoder panicked".into())))
}

fn inspect_inner(bytes: &[u8]) -> Result<ComponentInterfaces, InspectError> {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| InspectError::Invalid(format!("{e:#}")))?;
    let (resolve, world) = match decode(bytes) {
        Ok(DecodedWasm::Component(resolve, world)) => (resolve, world),
        Ok(DecodedWasm::WitPackage(..)) => return Err(InspectError::WitPackage),
        Err(e) => return Err(InspectError::Invalid(format!("{e:#}"))),
    };
    let world = &resolve.worlds[world];
    let name_of = |key: &WorldKey, item: &WorldItem| -> Option<(String, Vec<String>)> {
        match (key, item) {
            (WorldKey::Interface(id), WorldItem::Interface { .. }) => {
                let iface = &resolve.interfaces[*id];
                iface.package?;
                let name = resolve.id_of(*id)?;
                let mut functions: Vec<String> = iface.functions.keys().cloned().collect();
                functions.sort();
                Some((name, functions))
            }
            _ => None,
        }
    };
    let mut exports: Vec<Export> = world
        .exports
        .iter()
        .filter_map(|(k, v)| name_of(k, v))
        .map(|(interface, functions)| Export {
            interface,
            functions,
        })
        .collect();
    exports.sort_by(|a, b| a.interface.cmp(&b.interface));
    let mut imports: Vec<String> = world
        .imports
        .iter()
        .filter_map(|(k, v)| name_of(k, v).map(|(n, _)| n))
        .collect();
    imports.sort();
    Ok(ComponentInterfaces { exports, imports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            inspect(b"not wasm"),
            Err(InspectError::Invalid(_))
        ));
        assert!(inspect(&[]).is_err());
        // A core module header is not a component.
        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        let r = inspect(&core);
        assert!(r.is_err() || r.is_ok_and(|c| c.exports.is_empty()));
    }

    #[test]
    fn a_section_longer_than_the_input_is_refused_before_decoding() {
        // A component header, then a core module section announcing 0xffff_fff0 bytes.
        // The decoder alone would reserve that much before reading; now it is refused.
        let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x01];
        bytes.extend_from_slice(&[0xf0, 0xff, 0xff, 0xff, 0x0f]);
        bytes.extend_from_slice(&[0; 16]);
        assert!(matches!(inspect(&bytes), Err(InspectError::Invalid(_))));
    }

    #[test]
    fn claims_are_checked() {
        let real = ComponentInterfaces {
            exports: vec![Export {
                interface: "courier:echo/echo@0.1.0".into(),
                functions: vec!["say".into()],
            }],
            imports: vec![],
        };
        assert!(real.check_claims(&real.exports.clone()).is_ok());
        let extra_fn = vec![Export {
            interface: "courier:echo/echo@0.1.0".into(),
            functions: vec!["shout".into()],
        }];
        assert_eq!(
            real.check_claims(&extra_fn),
            Err("courier:echo/echo@0.1.0.shout".into())
        );
        let other = vec![Export {
            interface: "courier:kv/store@0.1.0".into(),
            functions: vec![],
        }];
        assert_eq!(
            real.check_claims(&other),
            Err("courier:kv/store@0.1.0".into())
        );
    }
}
