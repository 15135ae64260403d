//! Fuzz target `bundles`: arbitrary bytes as a proxy component through
//! `courier_protocol::inspect`, what the registry uses to read a component's real exports
//! before storing it and the client uses to check imports before compiling.
//!
//! Oracle: nothing panics (not even inside the decoder, where `inspect` would catch it and
//! report `decoder panicked`); what it reads is sorted, deterministic, and satisfies its own
//! claims, while a claim of a function it lacks is refused.

use courier_protocol::{Export, InspectError, inspect};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let first = inspect(data);
    match &first {
        Ok(found) => {
            assert!(
                found
                    .exports
                    .is_sorted_by(|a, b| a.interface <= b.interface),
                "exports not sorted"
            );
            assert!(found.imports.is_sorted(), "imports not sorted");
            for e in &found.exports {
                assert!(
                    e.functions.is_sorted(),
                    "functions of {} not sorted",
                    e.interface
                );
            }
            assert_eq!(found.check_claims(&found.exports), Ok(()));
            if let Some(e) = found.exports.first() {
                let missing = Export {
                    interface: e.interface.clone(),
                    functions: vec!["no function has this name!".into()],
                };
                assert!(found.check_claims(&[missing]).is_err());
            }
        }
        Err(InspectError::Invalid(message)) => {
            assert_ne!(
                message, "decoder panicked",
                "the component decoder panicked"
            );
        }
        Err(InspectError::WitPackage) => {}
    }
    assert_eq!(inspect(data), first, "inspect is not deterministic");
}
