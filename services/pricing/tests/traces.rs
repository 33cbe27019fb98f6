//! OTLP traces: a test OTLP/HTTP receiver (decoding with prost, not with
//! the exporter's own code) gets spans from both services for one
//! calculate_price, sharing one trace id across the hop.

mod common;

use axum::routing::post;
use kit::testing_otlp::{receiver, Received, Span};
use std::time::Duration;

/// Every span so far, after checking each export carried the configured
/// credentials as protobuf.
fn spans(got: &Received) -> Vec<(String, Span)> {
    for e in got.exports.lock().unwrap().iter() {
        assert_eq!(e.content_type, "application/x-protobuf");
        assert_eq!(e.authorization.as_deref(), Some("Api-Token test token"));
    }
    got.spans()
}

/// The services' settings for exporting to the receiver at `otlp`.
fn exporter_env(otlp: &str) -> [(&'static str, &str); 2] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Api-Token%20test%20token",
        ),
    ]
}

/// Both services exporting to `otlp`, after `n` calculate_price calls.
async fn shop_exporting_to(otlp: &str, n: usize) -> (common::Inventory, common::Running) {
    shop_with(&exporter_env(otlp), n).await
}

/// Both services with the exporter settings `env`, after `n` calls.
async fn shop_with(env: &[(&str, &str)], n: usize) -> (common::Inventory, common::Running) {
    let inv = common::spawn_inventory_with(env).await;
    let pricing = common::spawn_pricing(&inv.running.base, env).await;
    for _ in 0..n {
        let res = reqwest::get(format!(
            "{}/calculate_price?product_id=SKU-1&quantity=2",
            pricing.base
        ))
        .await
        .unwrap();
        assert_eq!(res.status(), 200);
    }
    (inv, pricing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_calculate_price_is_one_trace_across_both_services() {
    let (otlp, got) = receiver().await;
    let (inv, pricing) = shop_exporting_to(&otlp, 1).await;

    let mut found = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spans = spans(&got);
        let p = spans
            .iter()
            .find(|(svc, s)| svc == "pricing" && s.name == "GET /calculate_price");
        let i = spans.iter().find(|(svc, s)| {
            svc == "inventory"
                && s.name == "GET /products/{id}"
                && p.is_some_and(|(_, p)| p.trace_id == s.trace_id)
        });
        if let (Some(p), Some(i)) = (p, i) {
            found = Some((p.1.clone(), i.1.clone()));
            break;
        }
    }
    let (p, i) = found.expect("spans from both services with one trace id");
    assert_eq!(p.trace_id.len(), 16);
    assert_eq!(p.trace_id, i.trace_id, "same trace across the hop");
    assert_eq!(
        i.parent_span_id, p.span_id,
        "inventory's span is a child of pricing's"
    );
    assert!(p.parent_span_id.is_empty(), "pricing started the trace");
    assert_eq!(p.kind, 2, "SERVER");
    assert!(
        p.start_time_unix_nano <= i.start_time_unix_nano
            && i.end_time_unix_nano <= p.end_time_unix_nano
    );
    assert_eq!(
        p.attr("http.route").and_then(|v| v.string_value).as_deref(),
        Some("/calculate_price")
    );
    assert_eq!(
        i.attr("http.response.status_code")
            .and_then(|v| v.int_value),
        Some(200)
    );
    // Probes are not traced.
    assert!(spans(&got).iter().all(|(_, s)| !s.name.contains("/readyz")));
    // The exporter accounts for what it sent.
    assert!(metric(&pricing.base, "otlp_spans_exported_total").await >= 1.0);
    assert_eq!(metric(&pricing.base, "otlp_spans_failed_total").await, 0.0);
    assert_eq!(metric(&pricing.base, "otlp_spans_dropped_total").await, 0.0);
    pricing.stop().await;
    inv.running.stop().await;
}

/// The real binary, as deployed: every JSON log line of a request carries
/// the trace id of the `traceparent` it came with, and the exported spans
/// of both services carry the same id, so a log line leads to its trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_trace_id_that_the_exported_spans_have() {
    use std::io::BufRead;
    let (otlp, got) = receiver().await;
    let env = exporter_env(&otlp);
    let inv = common::spawn_inventory_with(&env).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pricing"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("INVENTORY_URL", &inv.running.base)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info,access=debug")
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let c = reqwest::Client::new();
    let mut answered = false;
    for _ in 0..100 {
        if let Ok(r) = c
            .get(format!(
                "http://127.0.0.1:{port}/calculate_price?product_id=SKU-1&quantity=2"
            ))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .send()
            .await
        {
            assert_eq!(r.status(), 200);
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "pricing did not start");
    let want = hex(trace_id);
    let mut exported = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        exported = spans(&got)
            .iter()
            .filter(|(_, s)| s.trace_id == want)
            .map(|(svc, _)| svc.clone())
            .collect();
        if exported.contains(&"pricing".to_owned()) && exported.contains(&"inventory".to_owned()) {
            break;
        }
    }
    assert!(
        exported.contains(&"pricing".to_owned()) && exported.contains(&"inventory".to_owned()),
        "spans with the log's trace id: {exported:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let access: Vec<serde_json::Value> = out
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|v| v["message"] == "request completed")
        .collect();
    assert!(!access.is_empty(), "no access log line");
    assert!(
        access.iter().all(|v| v["span"]["trace_id"] == trace_id),
        "{access:#?}"
    );
}

/// A sample's value from a service's /metrics (0 when absent).
async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// A receiver that refuses the token: requests still succeed, and the
/// refused spans show on /metrics rather than vanishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_receiver_costs_requests_nothing_and_shows_on_metrics() {
    let app = axum::Router::new().route(
        "/v1/traces",
        post(|| async { axum::http::StatusCode::UNAUTHORIZED }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let (inv, pricing) = shop_exporting_to(&otlp, 3).await;
    let mut failed = 0.0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        failed = metric(&pricing.base, "otlp_spans_failed_total").await;
        if failed >= 3.0 {
            break;
        }
    }
    assert_eq!(failed, 3.0, "three calculate_price spans refused");
    assert_eq!(
        metric(&pricing.base, "otlp_spans_exported_total").await,
        0.0
    );
    assert!(metric(&inv.running.base, "otlp_spans_failed_total").await >= 1.0);
    pricing.stop().await;
    inv.running.stop().await;
}

/// Over HTTPS, against a real TLS listener (OpenSSL) with a private CA:
/// trusted through OTEL_EXPORTER_OTLP_CERTIFICATE, both services' spans
/// arrive; without it the certificate is refused and the spans counted as
/// failed (before rustls was enabled every https:// export failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_receiver_whose_ca_is_configured() {
    let (otlp, got) = receiver().await;
    let port = otlp.rsplit(':').next().unwrap().parse().unwrap();
    let front = kit::testing::TlsFront::start(port);
    let ca = front.ca_file.to_str().unwrap();

    let mut env = exporter_env(&front.url).to_vec();
    env.push(("OTEL_EXPORTER_OTLP_CERTIFICATE", ca));
    let (inv, pricing) = shop_with(&env, 1).await;
    let mut services = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        services = spans(&got).iter().map(|(s, _)| s.clone()).collect();
        if services.iter().any(|s| s == "pricing") && services.iter().any(|s| s == "inventory") {
            break;
        }
    }
    assert!(
        services.iter().any(|s| s == "pricing") && services.iter().any(|s| s == "inventory"),
        "spans over TLS from both services: {services:?}"
    );
    assert_eq!(metric(&pricing.base, "otlp_spans_failed_total").await, 0.0);
    pricing.stop().await;
    inv.running.stop().await;

    // The same receiver, CA not configured: refused, counted, not lost.
    let before = got.spans().len();
    let inv = common::spawn_inventory_with(&exporter_env(&front.url)).await;
    let r = reqwest::get(format!("{}/products/SKU-1", inv.running.base))
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status() == 404);
    let mut failed = 0.0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        failed = metric(&inv.running.base, "otlp_spans_failed_total").await;
        if failed >= 1.0 {
            break;
        }
    }
    assert!(failed >= 1.0, "an untrusted certificate fails the export");
    assert_eq!(got.spans().len(), before, "nothing crossed");
    inv.running.stop().await;
}

/// A CA file that is not PEM is a startup error naming the variable.
#[test]
fn a_broken_otlp_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricing"))
        .env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("INVENTORY_URL", "http://127.0.0.1:9")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://localhost:4318")
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"), "{err}");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
