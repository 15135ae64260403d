//! The patch-delivery proxy (`courier:patch/delivery`): runs once at the client, in the
//! sandbox, with what the client's policy lends it: host facts, the operator, the commands
//! it names, and the managed directory (a WASI preopen, named by the `managed-dir` fact or
//! at [`DEFAULT_MANAGED_DIR`]).
//!
//! - `inventory`: the facts, packages and fingerprint evidence it would send (nothing is
//!   sent but the request for the list of files to gather).
//! - `recommend`: sends the inventory to its provider and returns what applies.
//! - `apply(ids)`: shows the list, asks the operator, downloads each payload in chunks
//!   (with progress), installs it with the engine of `courier-patch-api` (staged, checked,
//!   swapped in with a backup, the health command run through `commands`, rolled back on
//!   any failure), runs the package upgrades through the policy's `apt-upgrade` command
//!   when it lends one, and reports the outcome to its provider. `ids` empty means every
//!   recommended patch and the upgrades; otherwise the listed patches, and the upgrades
//!   only if `packages` is listed.
//! - `remove(id)`: undoes a patch from its backup, after the operator confirms.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/patch-proxy@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

mod apply;
mod gather;

use bindings::exports::courier::patch::delivery::{self as wit, Guest};
use courier_patch_api::messages::{DeserializeOwned, decode, encode};
use courier_patch_api::{DEFAULT_MANAGED_DIR, Recommendation, Stage, methods};

struct Proxy;

impl Guest for Proxy {
    fn inventory() -> Result<String, String> {
        let engine = gather::engine()?;
        Ok(gather::inventory(engine.as_ref())?.to_json())
    }

    fn recommend() -> Result<wit::Recommendation, String> {
        let engine = gather::engine()?;
        let inventory = gather::inventory(engine.as_ref())?;
        let mut answer: Recommendation = call(methods::RECOMMEND, &encode(&inventory))?;
        if engine.is_none() {
            answer.notes.push(gather::no_managed_dir());
        }
        Ok(to_wit(answer))
    }

    fn apply(ids: Vec<String>) -> Result<Vec<wit::Outcome>, String> {
        apply::apply(&ids)
    }

    fn remove(id: String) -> Result<wit::Outcome, String> {
        apply::remove(&id)
    }
}

/// Calls `method` on the provider and decodes its answer.
fn call<T: DeserializeOwned>(method: &str, payload: &[u8]) -> Result<T, String> {
    let reply = bindings::courier::proxy::provider::call(method, payload)
        .map_err(|e| format!("the patch provider did not answer {method}: {e}"))?;
    decode("answer", &reply).map_err(|e| format!("the patch provider's {method} answer: {e}"))
}

/// The WIT form of a recommendation.
fn to_wit(answer: Recommendation) -> wit::Recommendation {
    wit::Recommendation {
        upgrades: answer
            .upgrades
            .into_iter()
            .map(|u| wit::Upgrade {
                name: u.name,
                arch: u.arch,
                installed: u.installed,
                candidate: u.candidate,
            })
            .collect(),
        patches: answer
            .patches
            .into_iter()
            .map(|p| wit::Patch {
                id: p.id,
                title: p.title,
                severity: p.severity.as_str().to_owned(),
                reason: p.reason,
            })
            .collect(),
        notes: answer.notes,
    }
}

/// The WIT outcome of one step.
fn outcome(id: &str, stage: Stage, detail: String) -> wit::Outcome {
    wit::Outcome {
        id: id.to_owned(),
        ok: stage.in_place() || stage == Stage::Removed,
        detail,
    }
}
