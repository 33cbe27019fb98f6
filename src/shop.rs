//! The catalogue of the shop's services: the one place that says which
//! services eshop builds, ships and runs, and how they fit together.
//!
//! Every phase reads it: phase 1 builds one crate per entry, phase 2 one
//! image and (locally) one container, phase 5 one Deployment, Service,
//! autoscaler and ConfigMap, phase 6 one NetworkPolicy derived from the
//! `calls` edges, phase 7 one scrape job. Adding a service is an entry
//! here plus its crate under services/, never an edit in each phase.

/// One bundled service. The crate under `services/<name>` builds a binary
/// of the same name that serves HTTP on `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Crate, binary, image, container, Deployment and job name.
    pub name: &'static str,
    /// The port it listens on inside its container or pod, and the
    /// default port it is published on by the local target.
    pub port: u16,
    /// The services it calls. Each call reaches it through the variable
    /// `<NAME>_URL` (e.g. `INVENTORY_URL`), and phase 6 opens exactly
    /// these flows. A service calls only services listed before it, so
    /// the catalogue's order is also a safe start order.
    pub calls: &'static [&'static str],
    /// Owns a database: SQLite in a volume on the local target, its own
    /// database in the shop's PostgreSQL on Kubernetes (only its owner may
    /// reach it).
    pub database: bool,
    /// Signs the shop's access tokens. Locally it makes its key in its
    /// volume; on Kubernetes every replica must sign with the same key, so
    /// eshop generates one into a Secret (`SIGNING_KEY_FILE`).
    pub signing_key: bool,
    /// Calls other services as itself (role `service`, e.g. orders
    /// finishing a checkout after a restart): eshop generates its client
    /// secret, gives it to the service (`SERVICE_SECRET_FILE`) and to the
    /// token issuer (`SERVICE_CLIENTS_DIR/<name>`).
    pub service_client: bool,
    /// Signs its forms with a key every replica must share: on Kubernetes
    /// eshop generates it into a Secret (`SESSION_KEY_FILE`); one local
    /// container makes its own at start.
    pub session_key: bool,
    /// The shop's public entry: the URL `eshop up` prints, the NodePort or
    /// Ingress on Kubernetes, the load balancer's target on AWS.
    pub public: bool,
    /// Liveness: the process serves HTTP.
    pub live_path: &'static str,
    /// Readiness: its dependencies answer.
    pub ready_path: &'static str,
    /// Prometheus metrics.
    pub metrics_path: &'static str,
    /// Demo data the local target loads into an empty service.
    pub demo: Option<Demo>,
}

/// A small set of records that makes a fresh local shop usable at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demo {
    /// The collection: `GET` lists it (`{"items": [...]}`), `POST` adds one.
    pub collection: &'static str,
    /// A JSON array of records to `POST` (a file under templates/demo/).
    pub records: &'static str,
    /// A page of the public entry that shows the first record, with `{id}`
    /// standing for its `id`.
    pub try_path: &'static str,
}

impl Service {
    /// The variable its callers find it by: `INVENTORY_URL`.
    pub fn url_env(&self) -> String {
        format!("{}_URL", self.name.to_ascii_uppercase().replace('-', "_"))
    }

    /// The catalogue entries this one calls.
    pub fn callees<'a>(&'a self, shop: &'a [Service]) -> impl Iterator<Item = &'a Service> + 'a {
        shop.iter().filter(|s| self.calls.contains(&s.name))
    }

    /// Who calls this service.
    pub fn callers<'a>(&'a self, shop: &'a [Service]) -> impl Iterator<Item = &'a Service> + 'a {
        shop.iter().filter(|s| s.calls.contains(&self.name))
    }
}

/// Accounts and access tokens: the keys every other service checks
/// tokens with.
pub const USERS: Service = Service {
    name: "users",
    port: 8082,
    calls: &[],
    database: true,
    public: false,
    signing_key: true,
    service_client: false,
    session_key: false,
    live_path: "/healthz",
    ready_path: "/readyz",
    metrics_path: "/metrics",
    demo: None,
};

pub const INVENTORY: Service = Service {
    name: "inventory",
    port: 8081,
    // For the keys its admin and caller tokens are checked with.
    calls: &["users"],
    database: true,
    public: false,
    signing_key: false,
    service_client: false,
    session_key: false,
    live_path: "/healthz",
    ready_path: "/readyz",
    metrics_path: "/metrics",
    demo: Some(Demo {
        collection: "/products",
        records: include_str!("../templates/demo/inventory.json"),
        try_path: "/products/{id}",
    }),
};

/// Seed 004's EasyPay: wallets on a double-entry ledger.
pub const PAYMENTS: Service = Service {
    name: "payments",
    port: 8083,
    // For the keys its callers' tokens are checked with.
    calls: &["users"],
    database: true,
    public: false,
    signing_key: false,
    service_client: false,
    session_key: false,
    live_path: "/healthz",
    ready_path: "/readyz",
    metrics_path: "/metrics",
    demo: None,
};

pub const PRICING: Service = Service {
    name: "pricing",
    port: 8080,
    calls: &["inventory"],
    database: false,
    public: false,
    signing_key: false,
    service_client: false,
    session_key: false,
    live_path: "/healthz",
    ready_path: "/readyz",
    metrics_path: "/metrics",
    demo: None,
};

/// Carts and the checkout saga: holds stock, prices, charges, commits.
pub const ORDERS: Service = Service {
    name: "orders",
    port: 8084,
    // users for its own token and its callers' keys.
    calls: &["users", "inventory", "pricing", "payments"],
    database: true,
    public: false,
    signing_key: false,
    service_client: true,
    session_key: false,
    live_path: "/healthz",
    ready_path: "/readyz",
    metrics_path: "/metrics",
    demo: None,
};

/// The web shop and the public API (`/api/<service>/…`).
pub const STOREFRONT: Service = Service {
    name: "storefront",
    port: 8085,
    calls: &["users", "inventory", "pricing", "payments", "orders"],
    database: false,
    public: true,
    signing_key: false,
    service_client: false,
    session_key: true,
    live_path: "/healthz",
    ready_path: "/readyz",
    metrics_path: "/metrics",
    demo: None,
};

/// The shop eshop ships, in start order (a service after those it calls).
pub const SHOP: &[Service] = &[USERS, INVENTORY, PAYMENTS, PRICING, ORDERS, STOREFRONT];

/// A made-up service for tests: owns a database, not public, the usual
/// probe paths. Tests use it to prove a new entry needs no other change.
#[cfg(test)]
pub(crate) const fn made_up(
    name: &'static str,
    port: u16,
    calls: &'static [&'static str],
) -> Service {
    Service {
        name,
        port,
        calls,
        database: true,
        public: false,
        signing_key: false,
        service_client: false,
        session_key: false,
        live_path: "/healthz",
        ready_path: "/readyz",
        metrics_path: "/metrics",
        demo: None,
    }
}

/// The entry by name.
pub fn find<'a>(shop: &'a [Service], name: &str) -> Option<&'a Service> {
    shop.iter().find(|s| s.name == name)
}

/// The public entry.
pub fn public(shop: &[Service]) -> &Service {
    shop.iter()
        .find(|s| s.public)
        .expect("checked: a catalogue has exactly one public entry")
}

/// The names, for messages ("known: inventory, pricing").
pub fn names(shop: &[Service]) -> Vec<&'static str> {
    shop.iter().map(|s| s.name).collect()
}

/// What makes a catalogue usable: names that are DNS labels and env
/// prefixes, distinct ports, exactly one public entry, and calls only to
/// earlier entries (which also rules out cycles).
pub fn check(shop: &[Service]) -> Result<(), String> {
    let publics = shop.iter().filter(|s| s.public).count();
    if publics != 1 {
        return Err(format!("{publics} public entries; exactly one is needed"));
    }
    for (i, s) in shop.iter().enumerate() {
        let ok = !s.name.is_empty()
            && s.name.len() <= 40
            && s.name.as_bytes()[0].is_ascii_lowercase()
            && s.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!("service name {:?} is not a DNS label", s.name));
        }
        // Names eshop's own objects use: the database's Service and
        // StatefulSet, its superuser's Secret (`db-admin`).
        if ["postgres", "admin", "prometheus", "grafana"].contains(&s.name) {
            return Err(format!("service name {:?} is reserved", s.name));
        }
        if s.port == 0
            || shop[..i]
                .iter()
                .any(|o| o.port == s.port || o.name == s.name)
        {
            return Err(format!(
                "service {}: name or port {} repeats",
                s.name, s.port
            ));
        }
        for c in s.calls {
            if !shop[..i].iter().any(|o| o.name == *c) {
                return Err(format!(
                    "service {} calls {c:?}, which is not an earlier entry",
                    s.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_shop_is_a_valid_catalogue() {
        check(SHOP).unwrap();
        assert_eq!(public(SHOP).name, "storefront");
        assert_eq!(find(SHOP, "inventory").unwrap().url_env(), "INVENTORY_URL");
        let pricing = find(SHOP, "pricing").unwrap();
        assert_eq!(
            names(&pricing.callees(SHOP).copied().collect::<Vec<_>>()),
            ["inventory"]
        );
        let inventory = find(SHOP, "inventory").unwrap();
        assert_eq!(
            names(&inventory.callers(SHOP).copied().collect::<Vec<_>>()),
            ["pricing", "orders", "storefront"]
        );
    }

    #[test]
    fn bad_catalogues_are_refused() {
        // Three entries with pricing as the public one.
        let three = || {
            let mut t = [USERS, INVENTORY, PRICING];
            t[2].public = true;
            t
        };
        check(&three()).unwrap();
        let mut none = three();
        none[2].public = false;
        assert!(check(&none).unwrap_err().contains("0 public"));
        let mut t = three();
        t[2].port = t[1].port;
        assert!(check(&t).unwrap_err().contains("repeats"));
        // Calls must point backwards: pricing before inventory is refused.
        let mut back = [USERS, PRICING, INVENTORY];
        back[1].public = true;
        assert!(check(&back).unwrap_err().contains("not an earlier entry"));
        let mut bad = three();
        bad[1].name = "Inventory";
        assert!(check(&bad).is_err());
        let mut reserved = three();
        reserved[0].name = "postgres";
        assert!(check(&reserved).unwrap_err().contains("reserved"));
    }

    /// The call graph as the README and phases/00-shop.md draw it
    /// (Mermaid), made from the catalogue: callers first.
    fn mermaid(shop: &[Service]) -> String {
        let mut out = String::from("flowchart LR\n");
        out.push_str(&format!(
            "  world((shopper / API client)) --> {}\n",
            public(shop).name
        ));
        for s in shop.iter().rev().filter(|s| !s.calls.is_empty()) {
            let callees: Vec<_> = s.callees(shop).map(|c| c.name).collect();
            out.push_str(&format!("  {} --> {}\n", s.name, callees.join(" & ")));
        }
        let owners: Vec<_> = shop.iter().filter(|s| s.database).map(|s| s.name).collect();
        out.push_str(&format!(
            "  {} --> db[(PostgreSQL<br/>or SQLite each)]\n",
            owners.join(" & ")
        ));
        out
    }

    #[test]
    fn the_call_graph_pictures_are_the_catalogues() {
        let picture = format!("```mermaid\n{}```", mermaid(SHOP));
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for doc in ["README.md", "phases/00-shop.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            assert!(
                text.contains(&picture),
                "{doc} should draw the catalogue's call graph as:\n{picture}"
            );
        }
    }

    #[test]
    fn demo_records_are_json_arrays_of_objects_with_ids() {
        for s in SHOP {
            if let Some(d) = s.demo {
                let v: serde_json::Value = serde_json::from_str(d.records).unwrap();
                let items = v.as_array().unwrap();
                assert!(!items.is_empty());
                assert!(items.iter().all(|i| i["id"].is_string()), "{}", s.name);
            }
        }
    }
}
