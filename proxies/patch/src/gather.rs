//! What the proxy learns about the machine: the host facts the policy shows, the packages
//! (`packages` fact: one `name<TAB>version[<TAB>arch]` line each), and the digests of the
//! files the provider's fingerprints name, in the managed directory.

use std::path::PathBuf;

use courier_patch_api::{Engine, GatherList, Inventory, Package, methods};

use crate::bindings::courier::proxy::host_info;
use crate::{DEFAULT_MANAGED_DIR, call};

/// The engine over the managed directory, if the policy lends one; what it recovered from
/// an interrupted run is shown to the operator.
pub fn engine() -> Result<Option<Engine>, String> {
    let dir = host_info::get("managed-dir").unwrap_or_else(|| DEFAULT_MANAGED_DIR.to_owned());
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Ok(None);
    }
    let engine = Engine::open(&dir).map_err(|e| e.to_string())?;
    if let Some(recovered) = engine.recovered() {
        crate::bindings::courier::proxy::operator::display(&format!("patch: {recovered}"));
    }
    Ok(Some(engine))
}

/// The note for a run without a managed directory.
pub fn no_managed_dir() -> String {
    format!(
        "no managed directory is lent (the policy's directory, at the managed-dir fact or \
         {DEFAULT_MANAGED_DIR}): patches can be recommended only if they need no files"
    )
}

/// The inventory: facts, packages, the evidence the provider's fingerprints ask for, and
/// the patches the ledger has.
pub fn inventory(engine: Option<&Engine>) -> Result<Inventory, String> {
    let facts = host_info::all();
    let fact = |name: &str| {
        facts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut inventory = Inventory {
        client: client_id(),
        os: fact("os"),
        arch: fact("arch"),
        kernel: fact("kernel"),
        os_release: fact("os-release"),
        package_manager: fact("package-manager"),
        packages: packages(&fact("packages")),
        ..Inventory::default()
    };
    if let Some(engine) = engine {
        let list: GatherList = call(methods::FINGERPRINTS, &[])?;
        inventory.evidence = engine.gather(&list.paths);
        inventory.applied = engine
            .applied()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|a| a.id)
            .collect();
    }
    Ok(inventory)
}

/// The client's id for its provider: the `client-id` fact if the policy shares one, else
/// the `hostname` fact, else `anonymous`.
pub fn client_id() -> String {
    ["client-id", "hostname"]
        .into_iter()
        .filter_map(host_info::get)
        .find(|id| !id.is_empty())
        .unwrap_or_else(|| "anonymous".to_owned())
}

/// The `packages` fact's lines; a line without a version is left out.
fn packages(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split('\t');
            let (name, version) = (words.next()?, words.next()?);
            Some(Package {
                name: name.to_owned(),
                version: version.to_owned(),
                arch: words.next().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}
