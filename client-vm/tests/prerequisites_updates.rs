//! Prerequisites that are packages, and updates of what was installed, end to end over
//! loopback: a missing package goes through the command the policy lends, one already
//! there is never removed; the ledger's installs are offered newer versions within their
//! requirement (a staged one hidden) and updated; a failed upgrade keeps the version
//! before; a declined install does not raise the rollback mark.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/install.rs"]
mod world;

use courier_client::{
    Answer, Client, ExtraArgs, LentCommand, OperatorAnswer, PrerequisiteError, Unwound,
};
use courier_install_api::Need;
use std::path::PathBuf;
use std::time::Duration;
use world::*;

/// Lends `machine` an `install-package` and a `remove-package` command that only append
/// `<command> <package>` to the returned log file.
fn log_package_commands(machine: &mut Machine) -> PathBuf {
    let log = machine.dir.path().join("commands.log");
    let logging = |name: &str| LentCommand {
        name: name.into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!("echo {name} \"$0\" >> {}", log.display()),
        ],
        extra_args: ExtraArgs::PackageNames,
        timeout: Duration::from_secs(10),
        confirm: false,
    };
    machine.commands = vec![logging("install-package"), logging("remove-package")];
    log
}

/// Calls through a client of `machine` that approves everything, expecting the second
/// check of the predicate to still find something missing: the client, and what the chain
/// undid.
async fn call_still_missing(world: &World, machine: &Machine) -> (Client, Vec<Unwound>) {
    let client = world.client(machine, OperatorAnswer::ApproveAll, 4).await;
    let (error, unwound) = prerequisite_error(client.call_str(SAY).await);
    assert!(
        matches!(error, PrerequisiteError::StillMissing { .. }),
        "{error:?}"
    );
    (client, unwound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_package_is_installed_through_the_lent_command() {
    let mut world = World::new().await;
    let mut needs = needs(&[]);
    needs.push(Need::Package("libglyph1".into()));
    world.publish("acme/app", "1.0.0", app(needs)).await;
    let mut machine = Machine::new();
    // The package manager here appends to the status file the packages fact is read from.
    let status = machine.status();
    let paragraph =
        "Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n\n";
    machine.commands = vec![LentCommand {
        name: "install-package".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!("printf '{paragraph}' \"$0\" >> {}", status.display()),
        ],
        extra_args: ExtraArgs::PackageNames,
        timeout: Duration::from_secs(10),
        confirm: false,
    }];
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let report = client.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(report.installed.len(), 1);
    assert_eq!(
        report.installed[0].requirement.to_string(),
        "package libglyph1"
    );
    assert_eq!(report.installed[0].by, "install-package");
    assert!(
        std::fs::read_to_string(&status)
            .unwrap()
            .contains("Package: libglyph1")
    );
    let ledger: Vec<String> = client.installed().iter().map(|e| e.key()).collect();
    assert_eq!(ledger, ["package libglyph1"]);
    assert!(client.call_str(SAY).await.unwrap().installed.is_empty());

    // Without the command, the package cannot be installed, and that is said.
    let bare = Machine::new();
    let client = world.client(&bare, OperatorAnswer::ApproveAll, 4).await;
    let (error, _) = prerequisite_error(client.call_str(SAY).await);
    assert!(
        matches!(error, PrerequisiteError::NoPackageCommand { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_offered_from_the_ledger_and_applied() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:fonts/glyphs"])))
        .await;
    let v = |version: &str, text: &str| {
        installer(
            "acme:fonts/glyphs",
            version,
            vec![],
            &[("glyphs.txt", text)],
        )
    };
    world
        .publish("acme/glyphs", "1.4.0", v("1.4.0", "old"))
        .await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    assert_eq!(client.call_str(SAY).await.unwrap().installed.len(), 1);
    assert!(client.check_updates().await.unwrap().offers.is_empty());

    // 1.5.0 is published; 1.6.0 is only staged, so no client sees it yet.
    world
        .publish("acme/glyphs", "1.5.0", v("1.5.0", "new"))
        .await;
    world
        .publish_with("acme/glyphs", "1.6.0", v("1.6.0", "staged"), How::Staged)
        .await;
    let check = client.check_updates().await.unwrap();
    let offered: Vec<(String, String, String)> = check
        .offers
        .iter()
        .map(|o| {
            (
                o.provides.clone(),
                o.installed.to_string(),
                o.offered.to_string(),
            )
        })
        .collect();
    assert_eq!(
        offered,
        [(
            "acme:fonts/glyphs".to_string(),
            "1.4.0".to_string(),
            "1.5.0".to_string()
        )]
    );
    let applied = client.apply_updates(check.offers).await;
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0].result.as_deref().unwrap(),
        "installed acme:fonts/glyphs 1.5.0 (1 files)"
    );
    assert_eq!(
        machine.listing(),
        [
            ".installed/acme.fonts.glyphs=1.5.0\n",
            "acme.fonts.glyphs/glyphs.txt=new"
        ]
    );
    match &client.installed()[0] {
        courier_client::LedgerEntry::Service {
            version,
            required_by,
            ..
        } => {
            assert_eq!(version.to_string(), "1.5.0");
            assert_eq!(required_by, "acme/app 1.0.0");
        }
        other => panic!("{other:?}"),
    }
    assert!(client.check_updates().await.unwrap().offers.is_empty());
    // 2.0.0 is outside the ^1 the app asked for: not an update of it.
    world
        .publish("acme/glyphs", "2.0.0", v("2.0.0", "major"))
        .await;
    assert!(client.check_updates().await.unwrap().offers.is_empty());
    // The app still runs, with nothing more to install.
    assert!(client.call_str(SAY).await.unwrap().installed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_already_there_is_never_removed() {
    let mut world = World::new().await;
    world
        .publish(
            "acme/app",
            "1.0.0",
            app(vec![Need::Package("base-files".into())]),
        )
        .await;
    let mut machine = Machine::new();
    // The proxy may not see the packages, so its predicate calls base-files missing; the
    // client sees it installed, installs nothing, and removes nothing when the second
    // check fails.
    machine.facts = ["managed-dir".to_string()].into();
    let log = log_package_commands(&mut machine);
    let (client, unwound) = call_still_missing(&world, &machine).await;
    assert!(unwound.is_empty());
    assert!(!log.exists(), "{:?}", std::fs::read_to_string(&log));
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_the_client_cannot_see_is_not_removed_by_a_failed_chain() {
    let mut world = World::new().await;
    world
        .publish(
            "acme/app",
            "1.0.0",
            app(vec![Need::Package("libglyph1".into())]),
        )
        .await;
    let mut machine = Machine::new();
    // No package database the client reads: it cannot tell whether libglyph1 was there
    // before its install command ran, so the failed chain (the second check still misses
    // it) must not remove it.
    std::fs::remove_file(machine.status()).unwrap();
    let log = log_package_commands(&mut machine);
    let (_client, unwound) = call_still_missing(&world, &machine).await;
    assert!(unwound.is_empty(), "{unwound:?}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "install-package libglyph1\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_keeps_the_version_before_and_a_no_keeps_the_rollback_mark() {
    let mut world = World::new().await;
    let glyphs = |version: &str, files: &[(&str, &str)]| {
        installer("acme:fonts/glyphs", version, vec![], files)
    };
    world
        .publish_full(
            "acme/app",
            "1.0.0",
            app(vec![need("acme:fonts/glyphs", "^1")]),
            How::Live,
            &[("app", "one")],
        )
        .await;
    world
        .publish(
            "acme/glyphs",
            "1.4.0",
            glyphs("1.4.0", &[("glyphs.txt", "old")]),
        )
        .await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let one = courier_protocol::AttributeConstraint::Equals("app".into(), "one".into());
    let two = courier_protocol::AttributeConstraint::Equals("app".into(), "two".into());
    let spec: courier_client::CallSpec = SAY.parse().unwrap();
    client.call_spec(&spec, vec![one]).await.unwrap();
    let before = machine.listing();
    assert_eq!(before.len(), 2, "{before:?}");

    // Another app needs ^1.5; the 1.5.0 installer fails halfway.
    world
        .publish_full(
            "acme/app2",
            "1.0.0",
            app(vec![need("acme:fonts/glyphs", "^1.5")]),
            How::Live,
            &[("app", "two")],
        )
        .await;
    world
        .publish_with(
            "acme/glyphs",
            "1.5.0",
            glyphs("1.5.0", &[("glyphs.txt", "new"), ("../out", "x")]),
            How::WithoutStatement,
        )
        .await;
    let (error, unwound) = prerequisite_error(client.call_spec(&spec, vec![two.clone()]).await);
    assert!(
        matches!(error, PrerequisiteError::InstallFailed { .. }),
        "{error:?}"
    );
    // 1.4.0 was courier's before: it is not removed, and the ledger keeps it.
    assert!(unwound.is_empty(), "{unwound:?}");
    assert_eq!(machine.listing(), before);
    match &client.installed()[0] {
        courier_client::LedgerEntry::Service { version, .. } => {
            assert_eq!(version.to_string(), "1.4.0")
        }
        other => panic!("{other:?}"),
    }
    // Neither the failed 1.5.0 nor a declined one raised the rollback mark.
    let vendor = courier_protocol::VendorKey::of(&world.vendor);
    assert_eq!(
        client.accepted_version(&vendor, "acme/glyphs"),
        Some("1.4.0".parse().unwrap())
    );
    drop(client);
    let declining = world.client(&machine, OperatorAnswer::DenyAll, 4).await;
    let (error, _) = prerequisite_error(declining.call_spec(&spec, vec![two]).await);
    assert!(
        matches!(error, PrerequisiteError::Declined { .. }),
        "{error:?}"
    );
    assert_eq!(
        declining.accepted_version(&vendor, "acme/glyphs"),
        Some("1.4.0".parse().unwrap())
    );
}
