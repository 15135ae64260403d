#![allow(clippy::unwrap_used)]
use super::*;
use courier_protocol::SystemSnapshot;

fn key(i: u32) -> VendorKey {
    // Distinct, well-spread keys (a real key's bytes are a curve point's encoding).
    let mut k = [0u8; 32];
    for (j, b) in k.iter_mut().enumerate() {
        *b = (mix(u64::from(i) * 31 + j as u64) & 0xff) as u8;
    }
    VendorKey(k)
}

fn clients(n: u32, canary: u32) -> ClientBook {
    let mut book = ClientBook::default();
    for i in 0..n {
        let mut attributes = BTreeMap::new();
        if i < canary {
            attributes.insert("ring".to_string(), "canary".to_string());
        }
        book.put(
            key(i),
            ClientRecord {
                attributes,
                registered_at_ms: 0,
                last_contact_ms: 0,
                system: (i % 2 == 0).then(|| SystemSnapshot {
                    at_ms: 0,
                    facts: [("os".to_string(), "debian".to_string())].into(),
                }),
                last_outcome: None,
            },
        );
    }
    book
}

fn record(waves: &str) -> RolloutRecord {
    RolloutRecord {
        id: 7,
        spec: RolloutSpec {
            name: "acme/patch".into(),
            version: "2.1.0".into(),
            waves: waves.split(',').map(|w| w.parse().unwrap()).collect(),
            delay_ms: 1_000,
            max_failure_ppm: 20_000,
            min_reports: 5,
        },
        lease: LeaseId([1; 16]),
        vendor: VendorKey([2; 32]),
        state: RolloutState::Running,
        started_at_ms: 10_000,
        opened_at_ms: vec![10_000],
        resumed_at_ms: None,
        manifest: None,
    }
}

#[test]
fn places_spread_evenly_and_waves_take_groups_first() {
    let book = clients(10_000, 30);
    let r = record("ring=canary,5%,25%,100%");
    let mut per_wave = [0u32; 4];
    for (k, c) in book.iter() {
        let view = ClientView {
            key: k,
            record: Some(c),
        };
        per_wave[wave_of(&r, view).unwrap()] += 1;
    }
    assert_eq!(per_wave[0], 30);
    // 5% of the other 9,970, then 20% more, then the rest; within 1% of the whole.
    for (got, want) in per_wave[1..].iter().zip([498.5, 1_994.0, 7_477.5]) {
        assert!((f64::from(*got) - want).abs() < 100.0, "{per_wave:?}");
    }
    // A group by a shared fact, and an unregistered client in a share wave.
    let r = record("os=debian,100%");
    let (k, c) = book.iter().next().unwrap();
    assert_eq!(
        wave_of(
            &r,
            ClientView {
                key: k,
                record: Some(c)
            }
        ),
        Some(0)
    );
    let stranger = key(99_999);
    assert_eq!(
        wave_of(
            &r,
            ClientView {
                key: &stranger,
                record: None
            }
        ),
        None,
        "an unregistered key is in no wave"
    );
    // Another rollout places clients afresh.
    let same = book
        .iter()
        .filter(|(k, _)| (place(7, k) < 100_000) == (place(8, k) < 100_000))
        .count();
    assert!(same < 9_000, "{same}");
}

#[test]
fn waves_open_after_their_delay_and_reports_then_failures_halt() {
    let book = clients(1_000, 0);
    let mut rollouts = RolloutBook::default();
    rollouts.put(record("10%,50%,100%"));
    let wave0: Vec<VendorKey> = book
        .iter()
        .filter(|(k, c)| {
            wave_of(
                &rollouts.get(7).unwrap().record,
                ClientView {
                    key: k,
                    record: Some(c),
                },
            ) == Some(0)
        })
        .map(|(k, _)| *k)
        .collect();
    // Not before its delay; then not without reports.
    assert!(rollouts.due(10_999, &book).is_empty());
    assert!(rollouts.due(11_000, &book).is_empty());
    for k in &wave0[..4] {
        rollouts.mark(7, *k, RolloutMark::Succeeded);
    }
    assert!(rollouts.due(11_000, &book).is_empty());
    rollouts.mark(7, wave0[4], RolloutMark::Succeeded);
    assert_eq!(
        rollouts.due(11_000, &book),
        vec![Step::Open { id: 7, wave: 1 }]
    );
    let mut r = rollouts.get(7).unwrap().record.clone();
    r.opened_at_ms.push(11_000);
    rollouts.put(r);
    assert!(rollouts.due(11_500, &book).is_empty());
    // One failure in 50 is at the 2% threshold, not over it.
    for k in &wave0[5..50] {
        rollouts.mark(7, *k, RolloutMark::Succeeded);
    }
    rollouts.mark(7, wave0[0], RolloutMark::Failed);
    assert!(rollouts.due(11_500, &book).is_empty());
    rollouts.mark(7, wave0[1], RolloutMark::Failed);
    match &rollouts.due(11_500, &book)[..] {
        [Step::Halt { id: 7, reason }] => assert!(reason.contains("2 of 50"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn specs_are_checked() {
    let ok = record("ring=canary,5%,100%").spec;
    assert_eq!(check_spec(&ok), Ok(()));
    for (waves, why) in [
        ("5%,25%", "last wave"),
        ("25%,5%,100%", "grow"),
        ("5%,5%,100%", "grow"),
    ] {
        let mut s = ok.clone();
        s.waves = waves.split(',').map(|w| w.parse().unwrap()).collect();
        assert!(check_spec(&s).unwrap_err().contains(why), "{waves}");
    }
    let mut s = ok.clone();
    s.version = "two".into();
    assert!(check_spec(&s).is_err());
    let mut s = ok;
    s.max_failure_ppm = 1_000_001;
    assert!(check_spec(&s).is_err());
}

#[test]
fn a_small_canary_group_that_all_fails_halts_before_the_next_wave() {
    let book = clients(1_000, 3);
    let mut rollouts = RolloutBook::default();
    rollouts.put(record("ring=canary,5%,100%"));
    for (k, c) in book
        .iter()
        .filter(|(_, c)| c.attributes.contains_key("ring"))
    {
        let _ = c;
        rollouts.mark(7, *k, RolloutMark::Failed);
    }
    // 3 reports, fewer than min_reports (5), but all the open wave has: halted, even
    // after the delay that would open the next wave.
    assert!(matches!(
        &rollouts.due(10_000 + 1_000, &book)[..],
        [Step::Halt { id: 7, .. }]
    ));
}
