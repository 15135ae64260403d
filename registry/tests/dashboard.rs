//! The dashboard in a real headless Chromium: refused without the token; with it, the page
//! shows a lease the test registers (with its time-left bar) without a reload, and shows
//! it gone once it lapses. Skipped, with a line saying so, where `chromium` is missing
//! (`.ci/run` installs it).
//!
//! `COURIER_DASHBOARD_SCREENSHOT=docs/dashboard.png` also fills the registry with a few
//! services and clients and saves a screenshot of the page there (the README's picture).
#![allow(clippy::unwrap_used)]

mod browser;
mod common;
mod ops;

use browser::Browser;
use common::*;
use courier_protocol::{ClientProfile, ContentHash, Outcome, SystemData, VendorKey};
use courier_registry::RegistryHandle;
use ops::{http_addr, http_config, scrape, tool, value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_lease_live_and_its_lapse() {
    let Some(chromium) = tool("chromium", "chromium", "the dashboard in headless Chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut setup = config(dir.path());
    setup.registry.operators = vec![VendorKey::of(&key(9))];
    setup.server.http = Some(http_config());
    let h = start(setup).await;
    let base = format!("http://{}", http_addr(&h));
    let mut b = Browser::launch(&chromium).await;

    // Without the token: refused.
    b.goto(&format!("{base}/")).await;
    let text = b.eval("document.body.innerText").await;
    assert!(text.as_str().unwrap().starts_with("401 refused"), "{text}");
    assert!(value(&scrape(&h).await, "courier_http_unauthorized_total") >= 1.0);

    // With it once: the cookie, the page, the live feed.
    let token = h.dashboard_token().unwrap();
    b.goto(&format!("{base}/?token={token}")).await;
    assert_eq!(b.eval("location.pathname + location.search").await, "/");
    assert!(
        b.wait_for(
            "document.getElementById('status').dataset.state === 'live'",
            Duration::from_secs(10)
        )
        .await,
        "the event feed did not connect"
    );
    assert_eq!(
        b.eval("document.getElementById('registry-id').textContent")
            .await,
        h.registry().registry_id()
    );

    if let Some(path) = std::env::var_os("COURIER_DASHBOARD_SCREENSHOT") {
        populate(&h).await;
        b.goto(&format!("{base}/")).await;
        let rows = "document.querySelectorAll('#leases tbody tr').length >= 5 \
                    && document.querySelectorAll('#clients tbody tr').length >= 2";
        assert!(b.wait_for(rows, Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_millis(600)).await;
        std::fs::write(&path, b.screenshot(1280, 880).await).unwrap();
        println!("screenshot saved to {}", path.to_string_lossy());
    }

    // A lease registered now appears without a reload, with its bar...
    let vendor_key = key(1);
    let v = vendor(&h, &vendor_key).await;
    let lease = v
        .register(echo(&vendor_key, "acme/brief", 2_000))
        .await
        .unwrap()
        .lease;
    let row = format!("document.querySelector('#leases tr[data-lease=\"{lease}\"]')");
    assert!(
        b.wait_for(&format!("{row} !== null"), Duration::from_secs(5))
            .await,
        "the lease did not appear"
    );
    assert_eq!(
        b.eval(&format!("{row}.querySelector('td.name').textContent"))
            .await,
        "acme/brief"
    );
    let width = b
        .eval(&format!(
            "parseFloat({row}.querySelector('.fill').style.width)"
        ))
        .await;
    assert!(width.as_f64().unwrap() > 0.0, "bar width {width}");
    assert!(
        b.wait_for(
            "[...document.querySelectorAll('#events .badge')].some(e => e.textContent === 'registered')",
            Duration::from_secs(5)
        )
        .await
    );
    assert_eq!(
        value(&scrape(&h).await, "courier_subscribers{feed=\"dashboard\"}"),
        1.0
    );

    // ...and is gone once it lapses, with the expiry among the events.
    assert!(
        b.wait_for(&format!("{row} === null"), Duration::from_secs(10))
            .await,
        "the lease did not go"
    );
    assert!(
        b.wait_for(
            "[...document.querySelectorAll('#events .badge')].some(e => e.textContent === 'expired')",
            Duration::from_secs(5)
        )
        .await
    );
    drop(b);
    h.shutdown().await;
}

/// A few vendors, services and clients, and some of their time gone, for the screenshot.
async fn populate(h: &RegistryHandle) {
    let vendors = [key(1), key(2), key(3)];
    let mut i = 0;
    for (v_key, services) in vendors.iter().zip([
        &["acme/echo", "acme/echo-eu"][..],
        &["globex/kv", "globex/kv-cache"][..],
        &["initech/echo"][..],
    ]) {
        let v = vendor(h, v_key).await;
        for name in services {
            i += 1;
            let ttl = [60_000, 45_000, 30_000, 20_000, 12_000][i % 5];
            let reg = if name.contains("kv") {
                kv(v_key, name, ttl)
            } else {
                echo(v_key, name, ttl)
            };
            let grant = v.register(reg).await.unwrap();
            for _ in 0..i {
                v.renew(grant.lease, ttl).await.unwrap();
            }
        }
    }
    let v = vendor(h, &vendors[0]).await;
    let canary = v
        .register(echo(&vendors[0], "acme/canary", 60_000))
        .await
        .unwrap();
    v.cancel(canary.lease).await.unwrap();
    v.register(echo(&vendors[0], "acme/nightly", 1_500))
        .await
        .unwrap();
    for (seed, os, ok) in [
        (21, "Debian GNU/Linux 12 (bookworm)", true),
        (22, "Alpine Linux v3.20", false),
    ] {
        let c = vendor(h, &key(seed)).await;
        c.register_client(ClientProfile::default()).await.unwrap();
        c.share_system_data(SystemData {
            facts: [("os-name".to_string(), os.to_string())].into(),
        })
        .await
        .unwrap();
        c.report(Outcome {
            client: String::new(),
            name: "acme/echo".into(),
            version: "1.0.0".into(),
            component: ContentHash([1; 32]),
            function: "courier:echo/echo@0.1.0.say".into(),
            ok,
            detail: String::new(),
            duration_us: 180,
            facts: Default::default(),
        })
        .await
        .unwrap();
    }
    // Let the bars run down a little, and the nightly lease lapse.
    tokio::time::sleep(Duration::from_secs(5)).await;
}
