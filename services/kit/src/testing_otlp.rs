//! A test OTLP/HTTP trace receiver: decodes what the services export with
//! prost (not with the exporter's own code) from opentelemetry-proto's
//! messages, and keeps every span with its service's name and the request
//! headers it came with.

use axum::routing::post;
use std::sync::{Arc, Mutex};

// The OTLP messages the receiver needs, from opentelemetry-proto's
// trace.proto / trace_service.proto / common.proto / resource.proto.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(string, optional, tag = "1")]
    pub string_value: Option<String>,
    #[prost(int64, optional, tag = "3")]
    pub int_value: Option<i64>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<AnyValue> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .clone()
    }
}

/// One export as received.
#[derive(Clone, Debug)]
pub struct Export {
    pub content_type: String,
    pub authorization: Option<String>,
}

/// What the receiver got: (service.name, span) for every span, and the
/// headers of every export.
#[derive(Clone, Default)]
pub struct Received {
    pub spans: Arc<Mutex<Vec<(String, Span)>>>,
    pub exports: Arc<Mutex<Vec<Export>>>,
}

impl Received {
    pub fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

/// Starts the receiver on a loopback port; its base URL (the services'
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) and what it receives.
pub async fn receiver() -> (String, Received) {
    let got = Received::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let text = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    sink.exports.lock().unwrap().push(Export {
                        content_type: text("content-type").unwrap_or_default(),
                        authorization: text("authorization"),
                    });
                    let Ok(req) = <ExportTraceServiceRequest as prost::Message>::decode(body)
                    else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
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
                                sink.spans.lock().unwrap().push((service.clone(), s));
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
