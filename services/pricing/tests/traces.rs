//! OTLP traces: a test OTLP/HTTP receiver (decoding with prost, not with
//! the exporter's own code) gets spans from both services for one
//! calculate_price, sharing one trace id across the hop.

mod common;

use axum::routing::post;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// The OTLP messages the receiver needs, from opentelemetry-proto's
// trace.proto / trace_service.proto / common.proto / resource.proto.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<KeyValue>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Span {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    name: String,
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<KeyValue>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct KeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct AnyValue {
    #[prost(string, optional, tag = "1")]
    string_value: Option<String>,
    #[prost(int64, optional, tag = "3")]
    int_value: Option<i64>,
}

/// (service.name, span) for every span received.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    assert_eq!(headers["authorization"], "Api-Token test token");
                    let req = <ExportTraceServiceRequest as prost::Message>::decode(body).unwrap();
                    for rs in req.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| r.attributes.iter())
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| kv.value.clone()?.string_value)
                            .unwrap_or_default();
                        for ss in rs.scope_spans {
                            for s in ss.spans {
                                sink.lock().unwrap().push((service.clone(), s));
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

fn attr(s: &Span, key: &str) -> Option<AnyValue> {
    s.attributes.iter().find(|kv| kv.key == key)?.value.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_calculate_price_is_one_trace_across_both_services() {
    let (otlp, got) = receiver().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Api-Token%20test%20token",
        ),
    ];
    let inv = common::spawn_inventory_with(&env).await;
    let pricing = common::spawn_pricing(&inv.running.base, &env).await;
    let res = reqwest::get(format!(
        "{}/calculate_price?product_id=SKU-1&quantity=2",
        pricing.base
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 200);

    let mut found = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spans = got.lock().unwrap().clone();
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
        attr(&p, "http.route")
            .and_then(|v| v.string_value)
            .as_deref(),
        Some("/calculate_price")
    );
    assert_eq!(
        attr(&i, "http.response.status_code").and_then(|v| v.int_value),
        Some(200)
    );
    // Probes are not traced.
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .all(|(_, s)| !s.name.contains("/readyz")));
    pricing.stop().await;
    inv.running.stop().await;
}
