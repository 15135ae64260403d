//! Bundles built from the real echo and kv proxy components: exports and imports read from
//! the components themselves, a signature that verifies, and refusals of bad input.
#![allow(clippy::unwrap_used)]

use courier_protocol::{ContentHash, Export, SpkiPin, VendorKey};
use courier_provider::{BundleBuilder, BundleError, DEFAULT_VALIDITY, generate_key};
use courier_proxy_artifacts::{ECHO, KV};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn echo_builder() -> BundleBuilder {
    BundleBuilder::new(ECHO)
        .name("acme/echo")
        .version("0.1.0")
        .endpoint("127.0.0.1:7901")
        .provider_pin(SpkiPin([7; 32]))
        .attribute("region", "eu")
}

#[test]
fn echo_bundle_reads_real_exports_and_verifies() {
    let key = generate_key();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let bundle = echo_builder().sign(&key).unwrap();
    let manifest = bundle.verify().unwrap().into_inner();
    assert_eq!(
        manifest.exports,
        [Export {
            interface: "courier:echo/echo@0.1.0".into(),
            functions: vec!["say".into()],
        }]
    );
    assert!(
        manifest
            .imports
            .contains(&"courier:proxy/provider@0.1.0".to_string())
    );
    assert_eq!(manifest.name, "acme/echo");
    assert_eq!(manifest.version, "0.1.0");
    assert_eq!(manifest.endpoints, ["127.0.0.1:7901"]);
    assert_eq!(manifest.provider_pin, SpkiPin([7; 32]));
    assert_eq!(
        manifest.attributes.get("region").map(String::as_str),
        Some("eu")
    );
    assert_eq!(manifest.vendor_key, VendorKey::of(&key));
    assert_eq!(manifest.component_hash, ContentHash::of(ECHO));
    assert_eq!(manifest.component_size, ECHO.len() as u64);
    assert!(manifest.issued_at_ms >= before);
    assert_eq!(
        manifest.not_after_ms - manifest.issued_at_ms,
        DEFAULT_VALIDITY.as_millis() as u64
    );
    manifest.check_times(manifest.issued_at_ms + 1).unwrap();
    assert_eq!(bundle.component, ECHO);

    let request = bundle.register_request(Duration::from_secs(30));
    assert_eq!(request.ttl_ms, 30_000);
    assert_eq!(request.manifest, bundle.manifest);
}

#[test]
fn kv_bundle_lists_every_function() {
    let bundle = BundleBuilder::new(KV)
        .name("acme/kv")
        .version("1.0.0")
        .endpoint("127.0.0.1:7902")
        .provider_pin(SpkiPin([1; 32]))
        .sign(&generate_key())
        .unwrap();
    let manifest = bundle.verify().unwrap();
    assert_eq!(manifest.exports.len(), 1);
    assert_eq!(manifest.exports[0].interface, "courier:kv/store@0.1.0");
    assert_eq!(
        manifest.exports[0].functions,
        ["delete", "get", "keys", "set"]
    );
}

#[test]
fn issue_time_and_validity_are_the_callers() {
    let issued = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let bundle = echo_builder()
        .issued_at(issued)
        .validity(Duration::from_secs(60))
        .sign(&generate_key())
        .unwrap();
    let m = bundle.verify().unwrap();
    assert_eq!(m.issued_at_ms, 1_700_000_000_000);
    assert_eq!(m.not_after_ms, 1_700_000_060_000);
    assert!(m.check_times(1_700_000_060_000).is_err());
}

#[test]
fn bad_input_is_refused() {
    let key = generate_key();
    let missing = |b: BundleBuilder| match b.sign(&key) {
        Err(BundleError::Missing(what)) => what,
        other => panic!("expected a missing field, got {other:?}"),
    };
    assert_eq!(
        missing(
            BundleBuilder::new(ECHO)
                .version("0.1.0")
                .endpoint("a:1")
                .provider_pin(SpkiPin([0; 32]))
        ),
        "name"
    );
    assert_eq!(
        missing(
            BundleBuilder::new(ECHO)
                .name("a")
                .endpoint("a:1")
                .provider_pin(SpkiPin([0; 32]))
        ),
        "version"
    );
    assert_eq!(
        missing(
            BundleBuilder::new(ECHO)
                .name("a")
                .version("0.1.0")
                .endpoint("a:1")
        ),
        "provider pin"
    );
    assert_eq!(
        missing(
            BundleBuilder::new(ECHO)
                .name("a")
                .version("0.1.0")
                .provider_pin(SpkiPin([0; 32]))
        ),
        "endpoint"
    );

    assert!(matches!(
        BundleBuilder::new(b"not a component".to_vec())
            .name("a")
            .sign(&key),
        Err(BundleError::Inspect(_))
    ));
    assert!(matches!(
        echo_builder().version("one").sign(&key),
        Err(BundleError::Manifest(_))
    ));
    assert!(matches!(
        echo_builder().name("bad name!").sign(&key),
        Err(BundleError::Manifest(_))
    ));
    assert!(matches!(
        echo_builder()
            .only_export("courier:kv/store@0.1.0")
            .sign(&key),
        Err(BundleError::NotExported(_))
    ));
    echo_builder()
        .only_export("courier:echo/echo@0.1.0")
        .sign(&key)
        .unwrap();
}

#[test]
fn tampering_is_detected() {
    let bundle = echo_builder().sign(&generate_key()).unwrap();
    let mut tampered = bundle.clone();
    let mid = tampered.component.len() / 2;
    tampered.component[mid] ^= 1;
    assert!(tampered.verify().is_err());
    let mut tampered = bundle;
    tampered.manifest.signature[3] ^= 1;
    assert!(tampered.verify().is_err());
}
