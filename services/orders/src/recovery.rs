//! The recovery loop: at start and every `RECOVERY_INTERVAL_MS`, claim the
//! checkouts without an outcome whose next attempt is due and that no live
//! driver holds (a drive that ran out of time, an orders process that
//! stopped mid-saga, a replica that died), and drive each forward, or
//! through its compensation, with the same ids and keys as before.

use crate::saga::Saga;
use kit::telemetry::{RequestContext, TraceContext};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checkouts one sweep takes on, driven at once; the next sweep takes
/// the rest.
const BATCH: i64 = 32;

/// Sweeps every `every` until the task is aborted.
pub fn spawn(saga: Arc<Saga>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sweep(&saga).await;
            match saga.store.pending_count().await {
                Ok(n) => saga.metrics.set_pending(n),
                Err(e) => tracing::warn!(error = %e, "could not count pending checkouts"),
            }
        }
    })
}

/// One sweep: claims what is due and drives it, all at once, and returns
/// when every drive has ended (each within the saga's deadline).
pub async fn sweep(saga: &Arc<Saga>) {
    let due = match saga.store.due(crate::db::now_ms(), BATCH).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for checkouts to recover");
            return;
        }
    };
    let mut drives = tokio::task::JoinSet::new();
    for id in due {
        let lease = saga.lease();
        let order = match saga.store.claim(&id, &lease).await {
            Ok(Some(o)) => o,
            // Done meanwhile, or another replica got there first.
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, order = %id, "could not claim a checkout");
                continue;
            }
        };
        let saga = saga.clone();
        drives.spawn(async move {
            let ctx = RequestContext {
                request_id: format!("recovery-{id}"),
                trace: TraceContext::from_headers(&Default::default()),
            };
            tracing::info!(order = %id, step = order.step.as_str(), attempts = order.attempts, "recovering a checkout");
            let deadline = Instant::now() + saga.deadline;
            if let Err(e) = saga.drive(order, &lease, &ctx, deadline).await {
                tracing::warn!(error = %e, order = %id, "recovering a checkout failed; its lease runs out and it is tried again");
            }
        });
    }
    while drives.join_next().await.is_some() {}
}
