//! Stock levels as Prometheus gauges, refreshed from the database on a
//! timer rather than on each write, so every replica reports the shared
//! truth even when other replicas did the writing.

use crate::db::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StockLabels {
    /// in_stock, low or out_of_stock.
    pub stock: &'static str,
}

#[derive(Clone, Default)]
pub struct StockMetrics {
    products: Family<StockLabels, Gauge>,
    units: Gauge,
}

impl StockMetrics {
    pub fn register(&self, metrics: &mut kit::metrics::Metrics) {
        let r = metrics.registry_mut();
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
