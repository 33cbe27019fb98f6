//! Stock levels as Prometheus gauges, refreshed from the database on a
//! timer rather than on each write, so every replica reports the shared
//! truth even when other replicas did the writing. Hold outcomes are
//! counters instead: each replica counts what it did, and Prometheus sums
//! them.

use crate::db::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StockLabels {
    /// in_stock, low or out_of_stock.
    pub stock: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HoldLabels {
    /// One of [`HoldOutcomes::OUTCOMES`].
    pub outcome: &'static str,
}

/// Holds by what became of them, counted once each when the change commits
/// (idempotent replays count nothing).
#[derive(Clone, Debug, Default)]
pub struct HoldOutcomes(Family<HoldLabels, Counter>);

impl HoldOutcomes {
    /// held: granted; refused: not enough stock; the rest: how they ended.
    pub const OUTCOMES: [&'static str; 5] = ["held", "refused", "committed", "released", "expired"];

    pub fn count(&self, outcome: &'static str) {
        self.0.get_or_create(&HoldLabels { outcome }).inc();
    }
}

#[derive(Clone, Default)]
pub struct StockMetrics {
    products: Family<StockLabels, Gauge>,
    units: Gauge,
    held: Gauge,
}

impl StockMetrics {
    pub fn register(&self, metrics: &mut kit::metrics::Metrics, holds: &HoldOutcomes) {
        // Every outcome shows from the start, so rate() has a zero to begin at.
        for outcome in HoldOutcomes::OUTCOMES {
            let _ = holds.0.get_or_create(&HoldLabels { outcome });
        }
        let r = metrics.registry_mut();
        r.register(
            "inventory_holds",
            "Stock holds by outcome: held, refused (not enough stock), committed, released, expired",
            holds.0.clone(),
        );
        r.register(
            "inventory_held_units",
            "Units held by open reservations across all products",
            self.held.clone(),
        );
        r.register(
            "inventory_products",
            "Products by stock state (low means at or below LOW_STOCK_THRESHOLD units)",
            self.products.clone(),
        );
        r.register(
            "inventory_stock_units",
            "Units on hand across all products",
            self.units.clone(),
        );
    }

    pub async fn refresh(&self, store: &Store, low: i64) {
        match store.stock_summary(low).await {
            Ok(s) => {
                for (stock, n) in [
                    ("in_stock", s.in_stock),
                    ("low", s.low),
                    ("out_of_stock", s.out),
                ] {
                    self.products.get_or_create(&StockLabels { stock }).set(n);
                }
                self.units.set(s.units);
                self.held.set(s.held);
            }
            Err(e) => tracing::warn!(error = %e, "could not refresh stock metrics"),
        }
    }

    /// Refreshes now and then every `every` until the task is aborted.
    pub fn spawn(self, store: Store, low: i64, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.refresh(&store, low).await;
            }
        })
    }
}
