//! `apply` and `remove`: the operator confirms, payloads come from the provider in chunks
//! with progress, the engine installs with rollback, the health command and the package
//! upgrades run only through commands the policy lends, and the outcome goes to the
//! provider.

use std::io::Write;

use courier_patch_api::download::download;
use courier_patch_api::engine::Installed;
use courier_patch_api::messages::encode;
use courier_patch_api::{
    ChunkRequest, Engine, InstallReport, NewFile, PatchRecord, Recommendation, ReportEntry, Stage,
    UpgradeOffer, methods,
};

use crate::bindings::courier::proxy::{commands, operator, provider};
use crate::bindings::exports::courier::patch::delivery::Outcome;
use crate::{call, gather, outcome};

/// The command a policy lends for package upgrades (package names as arguments).
const APT_UPGRADE: &str = "apt-upgrade";

/// The id of the package-upgrade step.
const PACKAGES: &str = "packages";

/// `apply(ids)`.
pub fn apply(ids: &[String]) -> Result<Vec<Outcome>, String> {
    let mut engine = gather::engine()?;
    let inventory = gather::inventory(engine.as_ref())?;
    let client = inventory.client.clone();
    let answer: Recommendation = call(methods::RECOMMEND, &encode(&inventory))?;
    let lent = commands::names();
    let mut report = Vec::new();

    // What was asked for, and what of it can be done.
    let wanted = |id: &str| ids.is_empty() || ids.iter().any(|i| i == id);
    let mut records = Vec::new();
    for offer in answer.patches.iter().filter(|p| wanted(&p.id)) {
        let record: PatchRecord = call(methods::PATCH, offer.id.as_bytes())?;
        match &record.health {
            _ if engine.is_none() => report.push(entry(
                &record.id,
                Stage::NotApplied,
                gather::no_managed_dir(),
            )),
            Some(check) if !lent.contains(&check.command) => report.push(entry(
                &record.id,
                Stage::NotApplied,
                format!(
                    "the policy lends no command {} for its health check",
                    check.command
                ),
            )),
            _ => records.push(record),
        }
    }
    for id in ids.iter().filter(|id| *id != PACKAGES) {
        if !answer.patches.iter().any(|p| p.id == *id) {
            let why = answer
                .notes
                .iter()
                .find(|n| n.starts_with(&format!("{id}:")))
                .cloned()
                .unwrap_or_else(|| format!("{id}: not recommended for this machine"));
            report.push(entry(id, Stage::NotApplied, why));
        }
    }
    let upgrades: &[UpgradeOffer] = if wanted(PACKAGES) {
        &answer.upgrades
    } else {
        &[]
    };
    let can_upgrade = !upgrades.is_empty() && lent.iter().any(|c| c == APT_UPGRADE);

    if !records.is_empty() || can_upgrade {
        let mut lines = vec!["The patch service would:".to_owned()];
        lines.extend(records.iter().map(|r| format!("  apply {}", r.summary())));
        if can_upgrade {
            lines.push(format!(
                "  upgrade {} packages with {APT_UPGRADE}",
                upgrades.len()
            ));
        }
        operator::display(&lines.join("\n"));
        let question = match (records.len(), can_upgrade) {
            (n, false) => format!("Apply {n} patches?"),
            (0, true) => format!("Upgrade {} packages?", upgrades.len()),
            (n, true) => format!("Apply {n} patches and upgrade {} packages?", upgrades.len()),
        };
        if !operator::confirm(&question) {
            for record in &records {
                report.push(entry(
                    &record.id,
                    Stage::Declined,
                    "declined by the operator: nothing changed".into(),
                ));
            }
            if can_upgrade {
                report.push(entry(
                    PACKAGES,
                    Stage::Declined,
                    "declined by the operator: nothing upgraded".into(),
                ));
            }
            return finish(&client, report);
        }
    }

    if let Some(engine) = engine.as_mut() {
        let total: u64 = records.iter().flat_map(|r| &r.files).map(|f| f.size).sum();
        let mut progress = Progress::new(total);
        for record in &records {
            report.push(install(engine, record, &mut progress));
        }
    }
    if !upgrades.is_empty() {
        report.push(upgrade(upgrades, can_upgrade));
    }
    finish(&client, report)
}

/// `remove(id)`.
pub fn remove(id: &str) -> Result<Outcome, String> {
    let mut engine = gather::engine()?.ok_or_else(gather::no_managed_dir)?;
    let result = if !operator::confirm(&format!("Remove patch {id} and restore its backup?")) {
        entry(
            id,
            Stage::Declined,
            "declined by the operator: nothing changed".into(),
        )
    } else {
        match engine.remove(id) {
            Ok(removed) => entry(
                id,
                Stage::Removed,
                format!(
                    "removed: {} files restored from the backup",
                    removed.files.len()
                ),
            ),
            Err(e) => entry(id, Stage::NotApplied, e.to_string()),
        }
    };
    let mut outcomes = finish(&gather::client_id(), vec![result])?;
    outcomes.pop().ok_or_else(|| "no outcome".to_owned())
}

/// Installs one patch, its payloads fetched in chunks, its health command run through the
/// policy.
fn install(engine: &mut Engine, record: &PatchRecord, progress: &mut Progress) -> ReportEntry {
    let mut fetch = |file: &NewFile, out: &mut dyn Write| {
        let chunk = |request: &ChunkRequest| {
            provider::call(methods::CHUNK, &encode(request))
                .map_err(|e| format!("the patch provider did not answer chunk: {e}"))
        };
        download(file, out, chunk, |bytes| progress.add(bytes, &record.id))
    };
    let mut health = |record: &PatchRecord| -> Result<(), String> {
        let Some(check) = &record.health else {
            return Ok(());
        };
        let out = commands::run(&check.command, &check.args)?;
        if out.status == 0 {
            Ok(())
        } else {
            Err(format!(
                "health command {} exited {}: {}",
                check.command,
                out.status,
                last_line(&out.stderr)
                    .or(last_line(&out.stdout))
                    .unwrap_or("")
            ))
        }
    };
    match engine.install(record, &mut fetch, &mut health) {
        Ok(Installed::Applied { files }) => entry(
            &record.id,
            Stage::Applied,
            format!("applied: {files} files in place, checks passed"),
        ),
        Ok(Installed::AlreadyApplied | Installed::AlreadyInPlace) => entry(
            &record.id,
            Stage::AlreadyApplied,
            "already applied: nothing to do".into(),
        ),
        Err(e) => entry(&record.id, e.stage(), e.to_string()),
    }
}

/// The package-upgrade step: through the policy's command, or a note of what would be
/// upgraded.
fn upgrade(upgrades: &[UpgradeOffer], lent: bool) -> ReportEntry {
    let names: Vec<String> = upgrades.iter().map(|u| u.name.clone()).collect();
    if !lent {
        let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return entry(
            PACKAGES,
            Stage::NotUpgraded,
            format!(
                "would upgrade {} packages ({}{more}); the policy lends no {APT_UPGRADE} command",
                names.len(),
                shown.join(", ")
            ),
        );
    }
    match commands::run(APT_UPGRADE, &names) {
        Ok(out) if out.status == 0 => entry(
            PACKAGES,
            Stage::Upgraded,
            format!("upgraded {} packages with {APT_UPGRADE}", names.len()),
        ),
        Ok(out) => entry(
            PACKAGES,
            Stage::NotUpgraded,
            format!(
                "{APT_UPGRADE} exited {}: {}",
                out.status,
                last_line(&out.stderr).unwrap_or("")
            ),
        ),
        Err(e) => entry(
            PACKAGES,
            Stage::NotUpgraded,
            format!("{APT_UPGRADE} did not run: {e}"),
        ),
    }
}

/// Reports the entries to the provider (a failure to report is logged, not fatal) and turns
/// them into outcomes.
fn finish(client: &str, entries: Vec<ReportEntry>) -> Result<Vec<Outcome>, String> {
    if !entries.is_empty() {
        let report = InstallReport {
            client: client.to_owned(),
            entries: entries.clone(),
        };
        if let Err(e) = provider::call(methods::REPORT, &encode(&report)) {
            eprintln!("patch: the provider did not take the report: {e}");
        }
    }
    Ok(entries
        .into_iter()
        .map(|e| outcome(&e.id, e.stage, e.detail))
        .collect())
}

fn entry(id: &str, stage: Stage, detail: String) -> ReportEntry {
    ReportEntry {
        id: id.to_owned(),
        stage,
        detail,
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().find(|l| !l.trim().is_empty())
}

/// Download progress for the operator, in bytes (KiB past 4 GiB, to fit a u32).
struct Progress {
    done: u64,
    total: u64,
    unit: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        let unit = if total > u64::from(u32::MAX) { 1024 } else { 1 };
        Self {
            done: 0,
            total,
            unit,
        }
    }

    fn add(&mut self, bytes: u64, id: &str) {
        self.done += bytes;
        let fit = |n: u64| u32::try_from(n / self.unit).unwrap_or(u32::MAX);
        operator::progress(
            fit(self.done),
            fit(self.total),
            &format!("downloading {id}"),
        );
    }
}
