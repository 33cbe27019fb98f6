//! One checkout is one trace: every service of the shop exports its spans
//! over OTLP to a test receiver (decoding with prost), and the shopper's
//! "Check out" click on the storefront leads to spans in orders,
//! inventory, pricing and payments that all carry the storefront span's
//! trace id.

mod common;

use common::Browser;
use kit::testing_otlp::receiver;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_one_trace_through_every_service() {
    let (otlp, got) = receiver().await;
    let shop = common::start_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)]).await;
    let mut b = Browser::new(&shop.storefront.base);
    b.sign_up("tia@example.com").await;
    let w = b.get("/wallet").await;
    let top_up = [
        ("csrf", w.csrf()),
        ("key", w.field("key")),
        ("amount", "100".into()),
    ];
    let done = b
        .post(
            "/wallet/top-up",
            &top_up
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(done.status, 303);
    let home = b.get("/").await;
    let add = b
        .post(
            "/cart/add",
            &[
                ("csrf", &home.csrf()),
                ("product_id", "SKU-1"),
                ("quantity", "2"),
            ],
        )
        .await;
    assert_eq!(add.location.as_deref(), Some("/cart?m=added"));
    let cart = b.get("/cart").await;
    let out = b
        .post(
            "/checkout",
            &[("csrf", &cart.csrf()), ("key", &cart.field("key"))],
        )
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(out
        .location
        .as_deref()
        .unwrap_or_default()
        .ends_with("?m=ordered"));

    // The checkout's span on the storefront, and every span of its trace.
    let mut services = BTreeSet::new();
    let mut names = BTreeSet::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spans = got.spans();
        let Some((_, root)) = spans
            .iter()
            .find(|(svc, s)| svc == "storefront" && s.name == "POST /checkout")
        else {
            continue;
        };
        assert!(
            root.parent_span_id.is_empty(),
            "the storefront starts the trace"
        );
        let trace: Vec<_> = spans
            .iter()
            .filter(|(_, s)| s.trace_id == root.trace_id)
            .collect();
        services = trace.iter().map(|(svc, _)| svc.clone()).collect();
        names = trace
            .iter()
            .map(|(svc, s)| format!("{svc} {}", s.name))
            .collect();
        if services.len() == 5 {
            // Every span but the root has its parent in the trace.
            let ids: BTreeSet<_> = trace.iter().map(|(_, s)| s.span_id.clone()).collect();
            for (svc, s) in &trace {
                assert!(
                    s.parent_span_id.is_empty() || ids.contains(&s.parent_span_id),
                    "{svc} {}: its parent is not in the trace",
                    s.name
                );
            }
            break;
        }
    }
    let want: BTreeSet<String> = ["inventory", "orders", "payments", "pricing", "storefront"]
        .map(String::from)
        .into();
    assert_eq!(services, want, "spans of the checkout's trace: {names:?}");
    assert!(names.contains("orders POST /checkouts"), "{names:?}");
    assert!(names.contains("inventory POST /reservations"), "{names:?}");
    assert!(names.contains("pricing POST /quote"), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("payments POST /wallets/")),
        "{names:?}"
    );
    shop.stop().await;
}
