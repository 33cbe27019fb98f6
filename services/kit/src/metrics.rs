//! Prometheus metrics: RED per matched route, in-flight requests, and process
//! memory/CPU, in the OpenMetrics text format.
//!
//! Routes are labelled by their *matched* path (`/products/{id}`), never the
//! raw URI, so label cardinality stays bounded whatever clients send.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets from 0.5 ms to 10 s: in-process handlers sit at the low
/// end, the pricing→inventory hop and timeouts at the high end.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    errors: Family<RouteLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<StatusLabels, Counter>::default();
        let errors = Family::<RouteLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by method, matched route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_errors",
            "HTTP requests that ended in a server error (5xx), by method and matched route",
            errors.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency from first byte in to response head out",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served right now",
            in_flight.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        Self {
            registry,
            requests,
            errors,
            duration,
            in_flight,
        }
    }

    /// For service-specific metrics; call before the service starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    pub fn observe(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let route_labels = RouteLabels {
            method,
            route: route.to_owned(),
        };
        self.duration
            .get_or_create(&route_labels)
            .observe(elapsed.as_secs_f64());
        if status >= 500 {
            self.errors.get_or_create(&route_labels).inc();
        }
        self.requests
            .get_or_create(&StatusLabels {
                method,
                route: route_labels.route,
                status,
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Maps a request method onto a fixed label set; anything exotic is "other"
/// so clients cannot mint label values.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Process metrics read from /proc at scrape time (Linux only; elsewhere
/// they are simply absent).
#[derive(Debug)]
struct ProcessCollector {
    start_time: f64,
}

impl ProcessCollector {
    fn new() -> Self {
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Self { start_time }
    }
}

/// Clock ticks per second for /proc/self/stat; 100 on every Linux
/// architecture eshop targets (USER_HZ is fixed at 100 in the kernel ABI).
const CLK_TCK: f64 = 100.0;

fn read_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// Resident set size in bytes.
pub fn read_rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn read_open_fds() -> Option<i64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = read_cpu_seconds() {
            let c = ConstCounter::new(cpu);
            let e = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?;
            c.encode(e)?;
        }
        if let Some(rss) = read_rss_bytes() {
            let g = ConstGauge::new(rss);
            let e = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                g.metric_type(),
            )?;
            g.encode(e)?;
        }
        if let Some(fds) = read_open_fds() {
            let g = ConstGauge::new(fds);
            let e = encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                g.metric_type(),
            )?;
            g.encode(e)?;
        }
        let g = ConstGauge::new(self.start_time);
        let e = encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            g.metric_type(),
        )?;
        g.encode(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_includes_route_labels_and_process_metrics() {
        let m = Metrics::new();
        m.observe("GET", "/products/{id}", 200, Duration::from_millis(3));
        m.observe("GET", "/products/{id}", 503, Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/products/{id}",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"http_request_errors_total{method="GET",route="/products/{id}"} 1"#)
        );
        assert!(text.contains("http_request_duration_seconds_bucket"));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.contains("process_cpu_seconds_total "));
        assert!(text.ends_with("# EOF\n"));
    }
}
