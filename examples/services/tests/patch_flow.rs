//! The example catalog end to end without the sandbox: what the patch proxy does, done here
//! natively against the provider (in process and over loopback QUIC). `hello-1.1` installs
//! and passes its health check (`sh app/bin/hello.sh --self-test`, as the policy's
//! `example-app-health` runs it), `hello-config-2` fails it and is rolled back, a second run
//! finds nothing to do, and the provider withdraws nothing after one failure: other
//! machines are still offered the patch that failed here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{client_inventory, example_catalog, managed, provider};
use courier_example_services::patch::{IndexSource, PatchProvider};
use courier_patch_api::download::download;
use courier_patch_api::engine::{InstallError, Installed};
use courier_patch_api::messages::{decode, encode};
use courier_patch_api::{
    ChunkRequest, Engine, GatherList, InstallReport, Inventory, MAX_CHUNK, NewFile, PatchRecord,
    Recommendation, ReportEntry, Stage, methods, tree,
};
use courier_provider::ProviderClient;
use courier_transport::Identity;

/// The policy's `example-app-health`: hello's self-test, run in the managed directory.
fn self_test(dir: &Path) -> Result<(), String> {
    let out = Command::new("sh")
        .arg(dir.join("app/bin/hello.sh"))
        .arg("--self-test")
        .output()
        .map_err(|e| e.to_string())?;
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned())
}

/// Installs `record` with payloads fetched from `provider` in chunks.
fn install(
    provider: &PatchProvider,
    engine: &mut Engine,
    record: &PatchRecord,
) -> Result<Installed, InstallError> {
    let root = engine.root().to_path_buf();
    let mut fetch = |file: &NewFile, out: &mut dyn Write| {
        let chunk = |request: &ChunkRequest| provider.chunk(request).map_err(|e| e.to_string());
        download(file, out, chunk, |_| {})
    };
    engine.install(record, &mut fetch, &mut |_| self_test(&root))
}

#[test]
fn one_patch_installs_one_is_rolled_back_and_a_second_run_does_nothing() {
    let provider = provider(Some(example_catalog()), IndexSource::None);
    let dir = managed();
    let before = tree::listing(dir.path()).unwrap();
    let answer = provider
        .recommend(&client_inventory(&provider, dir.path()), 1)
        .unwrap();
    assert_eq!(answer.patches.len(), 2);

    let mut engine = Engine::open(dir.path()).unwrap();
    let mut entries = Vec::new();
    for offer in &answer.patches {
        let record = provider.record(&offer.id).unwrap().clone();
        let result = install(&provider, &mut engine, &record);
        let (stage, detail) = match &result {
            Ok(_) => (Stage::Applied, "applied".to_owned()),
            Err(e) => (e.stage(), e.to_string()),
        };
        entries.push(ReportEntry {
            id: offer.id.clone(),
            stage,
            detail,
        });
    }
    assert_eq!(entries[0].stage, Stage::Applied, "{entries:?}");
    assert_eq!(entries[1].stage, Stage::Failed, "{entries:?}");
    assert!(
        entries[1].detail.contains("GREETING is empty"),
        "{entries:?}"
    );
    let hello = Command::new("sh")
        .arg(dir.path().join("app/bin/hello.sh"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "Hello, world\n");

    // Only hello-1.1's files changed: the rolled-back config is as shipped.
    let after = tree::listing(dir.path()).unwrap();
    let config = |l: &Vec<String>| l.iter().find(|e| e.contains("defaults.conf")).cloned();
    assert_eq!(config(&after), config(&before));
    provider
        .report(
            &InstallReport {
                client: "client-a".into(),
                entries,
            },
            2,
        )
        .unwrap();

    // The second run finds nothing to do: hello-1.1 is done, and hello-config-2 failed on
    // this machine; another machine is still offered it (one failure is not a withdrawal).
    let inventory = client_inventory(&provider, dir.path());
    let answer = provider.recommend(&inventory, 3).unwrap();
    assert!(answer.patches.is_empty(), "{:?}", answer.patches);
    assert!(
        answer
            .notes
            .contains(&"hello-1.1: already applied".to_owned())
    );
    let failed_here = "hello-config-2: failed on this machine (";
    assert!(
        answer.notes.iter().any(|n| n.starts_with(failed_here)),
        "{:?}",
        answer.notes
    );
    let elsewhere = Inventory {
        client: "client-b".into(),
        ..inventory
    };
    let ids: Vec<String> = provider
        .recommend(&elsewhere, 3)
        .unwrap()
        .patches
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["hello-config-2"]);
    let record = provider.record("hello-1.1").unwrap().clone();
    assert_eq!(
        install(&provider, &mut engine, &record).unwrap(),
        Installed::AlreadyApplied
    );
    assert_eq!(tree::listing(dir.path()).unwrap(), after);
}

#[tokio::test]
async fn the_provider_answers_over_quic() {
    let provider = Arc::new(provider(Some(example_catalog()), IndexSource::None));
    let identity = Identity::generate().unwrap();
    let handle = provider
        .clone()
        .service()
        .serve("127.0.0.1:0".parse().unwrap(), &identity)
        .await
        .unwrap();
    let client = ProviderClient::connect(handle.local_addr(), handle.pin())
        .await
        .unwrap();

    let list: GatherList = decode(
        "list",
        &client.call(methods::FINGERPRINTS, vec![]).await.unwrap(),
    )
    .unwrap();
    assert!(list.paths.contains(&"app/bin/hello.sh".to_owned()));
    let dir = managed();
    let inventory = client_inventory(&provider, dir.path());
    let reply = client
        .call(methods::RECOMMEND, encode(&inventory))
        .await
        .unwrap();
    let answer: Recommendation = decode("recommendation", &reply).unwrap();
    assert_eq!(answer.patches.len(), 2);
    let reply = client.call(methods::PATCH, "hello-1.1").await.unwrap();
    let record: PatchRecord = decode("record", &reply).unwrap();
    let request = ChunkRequest {
        sha256: record.files[1].sha256,
        offset: 0,
        len: MAX_CHUNK,
    };
    let chunk = client.call(methods::CHUNK, encode(&request)).await.unwrap();
    assert_eq!(chunk, b"1.1.0\n");
    let report = InstallReport {
        client: inventory.client.clone(),
        entries: vec![],
    };
    assert!(
        client
            .call(methods::REPORT, encode(&report))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(provider.store().reports("client-a").unwrap().len(), 1);

    // Bad requests get the provider's one-line answer, and the connection goes on.
    let bad = client
        .call(methods::RECOMMEND, vec![0xff; 3])
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("malformed inventory"), "{bad}");
    let unknown = client.call(methods::PATCH, "nope").await.unwrap_err();
    assert!(unknown.to_string().contains("no patch nope"), "{unknown}");
    let bare = Inventory {
        client: "c".into(),
        ..Inventory::default()
    };
    assert!(client.call(methods::RECOMMEND, encode(&bare)).await.is_ok());
    handle.shutdown().await;
}
