//! The server's background tasks: expiry (sleeps until the next lease deadline, woken early
//! when an earlier one appears, then collects what is due in slices), the write-behind
//! flush, and the notifications of event registrations. Whatever commits runs on the
//! blocking pool.

use crate::driver::Registry;
use crate::observe::Observer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Expires leases as their deadlines pass (counted in `observer`), until shutdown.
pub(super) async fn expiry(
    registry: Arc<Registry>,
    observer: Option<Arc<Observer>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let notified = registry.deadline_changed().notified();
        let wake = match registry.next_deadline() {
            Some(d) => registry.instant(d),
            None => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = notified => {}
            _ = tokio::time::sleep_until(wake) => {
                // In slices, yielding between them: a storm never holds lookups long.
                let expired = registry.expire_due().await;
                if let (Ok(n), Some(o)) = (&expired, &observer) {
                    o.expired(*n);
                }
                if expired.is_err() {
                    // Out of event numbers: reserve more (a commit), then expire.
                    let reg = registry.clone();
                    match tokio::task::spawn_blocking(move || reg.reserve_events(1)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!("cannot reserve event numbers (will retry): {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => tracing::error!("reservation task failed: {e}"),
                    }
                }
            }
        }
    }
}

/// Writes renewals and expiries behind every flush interval, until shutdown; a cluster's
/// standby also as soon as a renewal waits for its row (those that come meanwhile go with
/// the next flush).
pub(super) async fn flush(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(registry.config().flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            () = registry.held_waiting().notified() => {}
            _ = tick.tick() => {}
        }
        let reg = registry.clone();
        match tokio::task::spawn_blocking(move || reg.flush(reg.now())).await {
            Ok(Ok(_)) => {}
            // The registry logs when the store starts and stops refusing writes.
            Ok(Err(crate::store::StoreError::Unavailable(e))) => {
                tracing::debug!("flush refused (will retry): {e}");
            }
            Ok(Err(e)) => tracing::error!("flush failed (will retry): {e}"),
            Err(e) => tracing::error!("flush task failed: {e}"),
        }
    }
}

/// Fans transitions out to the listeners of event registrations, and ends registrations
/// whose lease ran out (checked every second), until shutdown.
pub(super) async fn notifications(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let mut feed = registry.transitions();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {
                registry.expire_interests();
            }
            rec = feed.recv() => match rec {
                Ok(rec) => registry.dispatch(&rec),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    registry.all_listeners_behind();
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Takes the running rollouts' steps (waves opened, halts, completions) every second and
/// soon after a client's report, until shutdown.
pub(super) async fn rollouts(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            () = registry.rollout_reported(crate::driver::ROLLOUT_TICK) => {}
        }
        let reg = registry.clone();
        match tokio::task::spawn_blocking(move || reg.rollout_tick(reg.now())).await {
            Ok(Ok(_)) => {}
            Ok(Err(crate::store::StoreError::Unavailable(e))) => {
                tracing::debug!("rollout step refused (will retry): {e}");
            }
            Ok(Err(e)) => tracing::error!("rollout step failed (will retry): {e}"),
            Err(e) => tracing::error!("rollout task failed: {e}"),
        }
    }
}
