//! The installer proxy: installs what its provider's plan holds into the managed directory
//! (the `managed-dir` fact, or `courier_install_api::DEFAULT_MANAGED_DIR`), with the staged
//! install of `courier-install-api`.
//!
//! - `install()`: asks the provider for its plan (`plan`), refuses one that is not what the
//!   client says this installer is signed for (the `courier-provides` and `courier-version`
//!   facts; without them it does nothing), and installs it: written beside, swapped in, the
//!   marker last; a failure leaves what was there before.
//! - `remove()`: removes what an install of the interface it is signed for put in place (or
//!   a failed one left), without asking its provider.
//! - `missing()`: the installer's own prerequisites, from its provider's `needs` answer.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/installer-proxy@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

mod predicate;

use bindings::courier::proxy::{host_info, provider};
use bindings::exports::courier::proxy::installer;
use bindings::exports::courier::proxy::prerequisites::{self, Requirement};
use courier_install_api::{
    PROVIDES_FACT, Plan, VERSION_FACT, decode, managed_root, methods, signed_plan,
};

struct Proxy;

impl installer::Guest for Proxy {
    fn install() -> Result<String, String> {
        let (provides, version) = signed()?;
        let plan = signed_plan(plan()?, Some(&provides), Some(&version))
            .map_err(|e| e.to_string())?;
        courier_install_api::install(&root(), &plan).map_err(|e| e.to_string())
    }

    fn remove() -> Result<String, String> {
        let (provides, _) = signed()?;
        courier_install_api::remove(&root(), &provides).map_err(|e| e.to_string())
    }
}

impl prerequisites::Guest for Proxy {
    fn missing() -> Result<Vec<Requirement>, String> {
        predicate::missing()
    }
}

/// What the client says this installer is signed for (the `courier-provides` and
/// `courier-version` facts). Without them it is not being run as an installer (say, by a
/// plain `courier call`), and installs and removes nothing.
fn signed() -> Result<(String, String), String> {
    match (host_info::get(PROVIDES_FACT), host_info::get(VERSION_FACT)) {
        (Some(provides), Some(version)) => Ok((provides, version)),
        _ => Err(format!(
            "not run as an installer: the client states no {PROVIDES_FACT} and {VERSION_FACT}"
        )),
    }
}

/// The managed directory.
fn root() -> std::path::PathBuf {
    managed_root(host_info::get("managed-dir"))
}

/// The provider's plan.
fn plan() -> Result<Plan, String> {
    let answer = provider::call(methods::PLAN, &[])
        .map_err(|e| format!("the provider did not answer {}: {e}", methods::PLAN))?;
    // The error reads `the provider's plan answer is not well formed: ...`.
    decode("provider's plan answer", &answer).map_err(|e| e.to_string())
}
