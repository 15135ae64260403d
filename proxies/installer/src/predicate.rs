//! The predicate's glue: the provider's `needs` answer and the host facts in, the WIT
//! requirements out. The check itself is `courier_install_api::missing_from_answer`.

use courier_install_api::{Need, managed_root, methods, missing_from_answer};

use crate::bindings::courier::proxy::{host_info, provider};
use crate::bindings::exports::courier::proxy::prerequisites::{Requirement, ServiceRequirement};

/// What is missing on this client, as the WIT `missing` answers it.
pub fn missing() -> Result<Vec<Requirement>, String> {
    let answer = provider::call(methods::NEEDS, &[])
        .map_err(|e| format!("the provider did not answer {}: {e}", methods::NEEDS))?;
    let root = managed_root(host_info::get("managed-dir"));
    let packages = host_info::get("packages");
    // The error reads `the provider's needs answer is not well formed: ...`.
    let missing =
        missing_from_answer(&root, &answer, packages.as_deref()).map_err(|e| e.to_string())?;
    Ok(missing.into_iter().map(requirement).collect())
}

/// The WIT form of a need.
fn requirement(need: Need) -> Requirement {
    match need {
        Need::Service { interface, version } => {
            Requirement::Service(ServiceRequirement { interface, version })
        }
        Need::Package(name) => Requirement::Package(name),
    }
}
