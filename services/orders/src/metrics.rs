//! The service's own metrics. Checkouts and compensations are counters
//! each replica counts as it moves a saga (Prometheus sums them); the
//! pending gauge is read from the database, so every replica reports the
//! shared truth.

use crate::db::Change;
use crate::model::Reason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Action {
    pub action: &'static str,
}

#[derive(Clone, Default, Debug)]
pub struct Metrics {
    checkouts: Family<Outcome, Counter>,
    compensations: Family<Action, Counter>,
    pending: Gauge,
    cart_updates: Family<Action, Counter>,
}

impl Metrics {
    pub fn register(&self, m: &mut kit::metrics::Metrics) {
        // Every label shows from the start, so rate() has a zero to begin at.
        for outcome in ["started", "confirmed"]
            .into_iter()
            .chain(Reason::ALL.map(Reason::outcome))
        {
            let _ = self.checkouts.get_or_create(&Outcome { outcome });
        }
        for action in ["release", "refund"] {
            let _ = self.compensations.get_or_create(&Action { action });
        }
        for action in ["set", "remove"] {
            let _ = self.cart_updates.get_or_create(&Action { action });
        }
        let r = m.registry_mut();
        r.register(
            "orders_checkouts",
            "Checkouts by outcome: started, confirmed, failed_<reason>",
            self.checkouts.clone(),
        );
        r.register(
            "orders_compensations",
            "Steps undone for failed checkouts: release (a stock hold), refund (a charge)",
            self.compensations.clone(),
        );
        r.register(
            "orders_pending",
            "Checkouts without an outcome yet (being driven, or waiting for a service)",
            self.pending.clone(),
        );
        r.register(
            "orders_cart_updates",
            "Cart line changes by action: set (add or change a quantity), remove",
            self.cart_updates.clone(),
        );
    }

    pub fn started(&self) {
        self.checkouts
            .get_or_create(&Outcome { outcome: "started" })
            .inc();
    }

    /// Counts a saga move once it is written.
    pub fn changed(&self, change: &Change) {
        match change {
            Change::Confirmed => {
                self.checkouts
                    .get_or_create(&Outcome {
                        outcome: "confirmed",
                    })
                    .inc();
            }
            Change::Failed { reason, .. } => {
                self.checkouts
                    .get_or_create(&Outcome {
                        outcome: reason.outcome(),
                    })
                    .inc();
            }
            Change::Compensated {
                action: Some(action),
            } => {
                self.compensations.get_or_create(&Action { action }).inc();
            }
            _ => {}
        }
    }

    pub fn cart_update(&self, action: &'static str) {
        self.cart_updates.get_or_create(&Action { action }).inc();
    }

    pub fn set_pending(&self, n: i64) {
        self.pending.set(n);
    }
}
