//! Self-installing prerequisites end to end over loopback, every part real: signed
//! `echo-needs` and `installer` proxies registered at a real registry, each with its own
//! provider (`InstallService`); the client runs their predicates and installers in the
//! sandbox against a real managed directory. A three-deep chain installs deepest first
//! and is recorded in the ledger; a cycle and a chain past the depth cap install nothing;
//! a failure at depth 2 undoes the chain in reverse; a prerequisite two proxies share is
//! installed once; an installer whose provider plans something other than it is signed
//! for is refused; a predicate that still names what was installed is caught by the second
//! check; a "no" installs nothing; two processes of one client install a chain once.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/install.rs"]
mod world;

use courier_client::{Answer, OperatorAnswer, PrerequisiteError, Requirement};
use world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_deep_chain_installs_deepest_first_and_is_recorded() {
    let mut world = World::new().await;
    chain(&mut world, &[("b.txt", "B")]).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;

    let report = client.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    let installed: Vec<(String, String, usize)> = report
        .installed
        .iter()
        .map(|i| (i.requirement.to_string(), i.by.clone(), i.depth))
        .collect();
    assert_eq!(
        installed,
        [
            (
                "acme:chain/c ^1".to_string(),
                "acme/c-installer 1.0.0".to_string(),
                3
            ),
            ("acme:chain/b ^1".into(), "acme/b-installer 1.2.0".into(), 2),
            ("acme:chain/a ^1".into(), "acme/a-installer 1.0.0".into(), 1),
        ]
    );
    assert_eq!(
        machine.listing(),
        [
            ".installed/acme.chain.a=1.0.0\n",
            ".installed/acme.chain.b=1.2.0\n",
            ".installed/acme.chain.c=1.0.0\n",
            "acme.chain.a/a.txt=A",
            "acme.chain.b/b.txt=B",
            "acme.chain.c/lib/c.txt=C",
        ]
    );
    let ledger: Vec<String> = client.installed().iter().map(|e| e.key()).collect();
    assert_eq!(ledger, ["acme:chain/c", "acme:chain/b", "acme:chain/a"]);

    // In place: the next call installs nothing; a new process reads the same ledger.
    assert!(client.call_str(SAY).await.unwrap().installed.is_empty());
    drop(client);
    let again = world.client(&machine, OperatorAnswer::DenyAll, 4).await;
    assert_eq!(again.installed().len(), 3);
    assert!(again.call_str(SAY).await.unwrap().installed.is_empty());

    // The same chain past a cap of 2 is refused before anything runs.
    let fresh = Machine::new();
    let capped = world.client(&fresh, OperatorAnswer::ApproveAll, 2).await;
    let (error, unwound) = prerequisite_error(capped.call_str(SAY).await);
    match error {
        PrerequisiteError::TooDeep { chain, cap } => {
            assert_eq!(cap, 2);
            assert_eq!(
                chain,
                [
                    "acme/app 1.0.0",
                    "acme:chain/a ^1",
                    "acme:chain/b ^1",
                    "acme:chain/c ^1"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(unwound.is_empty());
    assert!(fresh.listing().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_is_refused_with_its_chain_and_installs_nothing() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:cyc/a"])))
        .await;
    let a = installer("acme:cyc/a", "1.0.0", needs(&["acme:cyc/b"]), &[("a", "A")]);
    world.publish("acme/a-installer", "1.0.0", a).await;
    let b = installer("acme:cyc/b", "1.0.0", needs(&["acme:cyc/a"]), &[("b", "B")]);
    world.publish("acme/b-installer", "1.0.0", b).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 8).await;

    let result = client.call_str(SAY).await;
    let message = format!("{}", result.as_ref().unwrap_err());
    let (error, unwound) = prerequisite_error(result);
    match error {
        PrerequisiteError::Cycle { chain } => assert_eq!(
            chain,
            [
                "acme/app 1.0.0",
                "acme:cyc/a ^1",
                "acme:cyc/b ^1",
                "acme:cyc/a ^1"
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        message,
        "prerequisites in a cycle: acme/app 1.0.0 -> acme:cyc/a ^1 -> acme:cyc/b ^1 -> acme:cyc/a ^1"
    );
    assert!(unwound.is_empty());
    assert!(machine.listing().is_empty());
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_depth_two_undoes_the_chain_in_reverse() {
    let mut world = World::new().await;
    // b writes its first file, then meets a path outside its directory: it fails halfway.
    chain(&mut world, &[("b.txt", "B"), ("../escape.txt", "evil")]).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;

    let (error, unwound) = prerequisite_error(client.call_str(SAY).await);
    match &error {
        PrerequisiteError::InstallFailed { chain, by, reason } => {
            assert_eq!(
                chain,
                &["acme/app 1.0.0", "acme:chain/a ^1", "acme:chain/b ^1"]
            );
            assert_eq!(by, "acme/b-installer 1.2.0");
            assert!(reason.contains("../escape.txt"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let undone: Vec<(String, bool)> = unwound
        .iter()
        .map(|u| (u.requirement.to_string(), u.result.is_ok()))
        .collect();
    assert_eq!(
        undone,
        [
            ("acme:chain/b ^1".to_string(), true),
            ("acme:chain/c ^1".to_string(), true)
        ]
    );
    assert_eq!(unwound[1].result.as_deref(), Ok("removed acme:chain/c"));
    // Nothing of the chain is left: no file, no marker, no ledger entry; nothing escaped.
    assert!(machine.listing().is_empty(), "{:?}", machine.listing());
    assert!(!machine.dir.path().join("escape.txt").exists());
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_installer_is_refused_and_a_no_installs_nothing() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:lie/a"])))
        .await;
    // Signed as providing acme:lie/a, its provider's plan installs something else.
    let liar = installer("acme:lie/other", "1.0.0", vec![], &[("x", "X")]);
    world
        .publish_liar("acme/a-installer", liar, "acme:lie/a")
        .await;
    let machine = Machine::new();

    let declining = world.client(&machine, OperatorAnswer::DenyAll, 4).await;
    let (error, unwound) = prerequisite_error(declining.call_str(SAY).await);
    assert!(
        matches!(error, PrerequisiteError::Declined { .. }),
        "{error:?}"
    );
    assert!(unwound.is_empty());
    assert!(machine.listing().is_empty());
    drop(declining);

    // The installer holds its provider to what it is signed for: it refuses the plan, and
    // its remove (by the signed interface, not the provider's word) finds nothing.
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let (error, unwound) = prerequisite_error(client.call_str(SAY).await);
    match &error {
        PrerequisiteError::InstallFailed { reason, .. } => assert_eq!(
            reason,
            "the plan installs provides \"acme:lie/other\", but the installer is signed for \
             \"acme:lie/a\""
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(unwound.len(), 1);
    assert_eq!(
        unwound[0].result.as_deref(),
        Ok("acme:lie/a was not installed")
    );
    assert!(machine.listing().is_empty(), "{:?}", machine.listing());
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predicate_that_still_misses_after_the_install_is_caught() {
    let mut world = World::new().await;
    // It names acme:lie/a twice, at ^1 and at ^2: only 1.0.0 can be installed, which the
    // first meets; the second check still names ^2.
    world
        .publish(
            "acme/app",
            "1.0.0",
            app(vec![need("acme:lie/a", "^1"), need("acme:lie/a", "^2")]),
        )
        .await;
    let a = installer("acme:lie/a", "1.0.0", vec![], &[("a", "A")]);
    world.publish("acme/a-installer", "1.0.0", a).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let (error, unwound) = prerequisite_error(client.call_str(SAY).await);
    match error {
        PrerequisiteError::StillMissing { proxy, missing } => {
            assert_eq!(proxy, "acme/app 1.0.0");
            assert_eq!(
                missing,
                [Requirement::Service {
                    interface: "acme:lie/a".into(),
                    version: "^2".into()
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(unwound.len(), 1);
    assert_eq!(unwound[0].result.as_deref(), Ok("removed acme:lie/a"));
    assert!(machine.listing().is_empty(), "{:?}", machine.listing());
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prerequisite_nobody_installs_is_named() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:none/x"])))
        .await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let result = client.call_str(SAY).await;
    assert_eq!(
        result.as_ref().unwrap_err().to_string(),
        "cannot install acme/app 1.0.0 -> acme:none/x ^1: \
         no installer in the registry provides acme:none/x ^1"
    );
    assert!(matches!(
        prerequisite_error(result).0,
        PrerequisiteError::NoInstaller { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prerequisite_two_proxies_share_is_installed_once() {
    let mut world = World::new().await;
    // The app needs a and b, named twice; a's installer needs b as well.
    let app_needs = needs(&["acme:share/a", "acme:share/b", "acme:share/b"]);
    world.publish("acme/app", "1.0.0", app(app_needs)).await;
    let a = installer(
        "acme:share/a",
        "1.0.0",
        needs(&["acme:share/b"]),
        &[("a", "A")],
    );
    world.publish("acme/a-installer", "1.0.0", a).await;
    let b = installer("acme:share/b", "1.0.0", vec![], &[("b", "B")]);
    world.publish("acme/b-installer", "1.0.0", b).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;

    let report = client.call_str(SAY).await.unwrap();
    let installed: Vec<String> = report
        .installed
        .iter()
        .map(|i| i.requirement.to_string())
        .collect();
    assert_eq!(installed, ["acme:share/b ^1", "acme:share/a ^1"]);
    assert_eq!(client.installed().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_one_client_install_a_chain_once() {
    let mut world = World::new().await;
    chain(&mut world, &[("b.txt", "B")]).await;
    let machine = Machine::new();
    // Two clients on one state directory, as two `courier call`s are: one installs the
    // chain, the other waits for it and then finds nothing missing. Neither takes the
    // other's fresh install for its own to undo.
    let first = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let second = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let (a, b) = tokio::join!(first.call_str(SAY), second.call_str(SAY));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(b.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    let mut counts = [a.installed.len(), b.installed.len()];
    counts.sort_unstable();
    assert_eq!(counts, [0, 3]);
    assert_eq!(machine.listing().len(), 6, "{:?}", machine.listing());
    assert_eq!(first.installed().len(), 3);
}
