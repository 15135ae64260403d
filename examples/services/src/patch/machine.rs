//! The inventory a patch proxy would send for the machine whose root is given (`/` for this
//! one), read the way the client reads its host facts: dpkg's status file, the kernel
//! release, `/etc/os-release`. For tests and benchmarks that stand in for the proxy.

use std::path::Path;

use courier_debian::status::{self, StatusError};
use courier_patch_api::{Inventory, Package};

/// This machine's inventory as the proxy would send it (no fingerprint evidence).
pub fn machine_inventory(root: &Path, client: &str) -> Result<Inventory, StatusError> {
    let dpkg = status::read_dpkg_status(&root.join(status::DPKG_STATUS.trim_start_matches('/')))?;
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path))
            .map(|t| t.trim_end().to_owned())
            .unwrap_or_default()
    };
    Ok(Inventory {
        client: client.to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        kernel: read("proc/sys/kernel/osrelease"),
        os_release: read("etc/os-release"),
        package_manager: "dpkg".to_owned(),
        packages: dpkg
            .packages
            .into_iter()
            .map(|p| Package {
                name: p.name,
                version: p.version.to_string(),
                arch: p.arch,
            })
            .collect(),
        ..Inventory::default()
    })
}
