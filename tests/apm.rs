//! Phase 10 without a cluster: with nothing configured it says so and
//! touches nothing; with an OTLP endpoint, status and apply send an empty
//! export (zero spans) to a real HTTP listener in the test, with the
//! configured headers, and never print them. The Dynatrace half runs
//! against the mock API server in tests/kubernetes_cluster.rs; the
//! services' span export is tested in services/pricing/tests/traces.rs.

mod common;

use common::cli::{text, Project};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// An HTTP listener answering every request with `status`, recording
/// (request line, headers) of each.
type Seen = Arc<Mutex<Vec<(String, Vec<String>)>>>;

fn receiver(status: u16) -> (String, Seen) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end().to_owned();
                if h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                headers.push(h);
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            log.lock()
                .unwrap()
                .push((line.trim_end().to_owned(), headers));
            let mut s = r.into_inner();
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

/// Phase 10 on the local target needs no Docker: prove it.
fn project() -> Project {
    Project::new().env("DOCKER_HOST", "unix:///nonexistent.sock")
}

#[test]
fn without_configuration_apm_says_so_and_does_nothing() {
    let p = project();
    p.write_config("");
    let out = p.ok(&["phase", "apm", "apply"]);
    assert!(out.contains("not configured, nothing to do"));
    let out = p.eshop(&["phase", "apm", "status"]);
    assert!(text(&out).contains("not configured"), "{}", text(&out));
    assert!(out.status.success(), "nothing configured is not a failure");
}

#[test]
fn the_receiver_gets_an_empty_export_with_the_configured_headers_which_are_never_printed() {
    let p = project();
    let (url, seen) = receiver(200);
    p.write_config(&format!("[apm]\notlp_endpoint = \"{url}/\"\n"));
    let headers = [(
        "ESHOP_OTLP_HEADERS",
        "Authorization=Api-Token%20s3cr3t-token,x-tenant=shop",
    )];
    for args in [
        &["phase", "apm", "status"][..],
        &["phase", "apm", "apply"],
        &["phase", "apm", "plan"],
    ] {
        let out = p.ok_with(args, &headers);
        assert!(!out.contains("s3cr3t"), "{out}");
        if args[2] != "plan" {
            assert!(out.contains("accepts traces (HTTP 200)"), "{out}");
        }
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "status and apply probe; plan does not");
    for (line, headers) in seen.iter() {
        assert_eq!(line, "POST /v1/traces HTTP/1.1");
        let has = |h: &str| headers.iter().any(|x| x.eq_ignore_ascii_case(h));
        assert!(has("authorization: Api-Token s3cr3t-token"), "{headers:?}");
        assert!(has("x-tenant: shop"), "{headers:?}");
        assert!(has("content-type: application/x-protobuf"), "{headers:?}");
    }

    // A receiver that refuses (a wrong token) is unhealthy, and says why.
    let (url, _) = receiver(401);
    p.write_config(&format!("[apm]\notlp_endpoint = \"{url}\"\n"));
    let out = p.eshop_with(&["phase", "apm", "status"], &headers);
    assert!(
        text(&out).contains("✘ OTLP receiver") && text(&out).contains("refuses traces: HTTP 401"),
        "{}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(1), "an unhealthy phase fails CI");
    // Apply still succeeds: the receiver may only be reachable in-cluster.
    let out = p.ok_with(&["phase", "apm", "apply"], &headers);
    assert!(out.contains("warning:"), "{out}");
}

/// HTTPS to a real TLS listener (OpenSSL) with a private CA: untrusted,
/// status says why (the whole cause chain, not "error sending request");
/// trusted through SSL_CERT_FILE, the probe gets through with its headers.
#[test]
fn an_https_receiver_is_probed_over_tls_and_an_untrusted_certificate_is_named() {
    let p = project();
    let (url, seen) = receiver(200);
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    let front = kit::testing::TlsFront::start(port);
    p.write_config(&format!("[apm]\notlp_endpoint = \"{}\"\n", front.url));
    let headers = [("ESHOP_OTLP_HEADERS", "Authorization=Api-Token%20s3cr3t")];

    let out = p.eshop_with(&["phase", "apm", "status"], &headers);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("not reachable from here"), "{said}");
    assert!(
        said.contains("UnknownIssuer"),
        "the cause, not just the symptom: {said}"
    );
    assert!(!said.contains("s3cr3t"), "{said}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing crossed an untrusted link"
    );

    let ca = front.ca_file.to_str().unwrap();
    let out = p.ok_with(
        &["phase", "apm", "status"],
        &[headers[0], ("SSL_CERT_FILE", ca)],
    );
    assert!(out.contains("accepts traces (HTTP 200)"), "{out}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .1
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Api-Token s3cr3t")),
        "{:?}",
        seen[0].1
    );
}

#[test]
fn malformed_headers_exit_2_naming_the_variable_not_the_value() {
    let p = project();
    p.write_config("[apm]\notlp_endpoint = \"http://127.0.0.1:4318\"\n");
    let out = p.eshop_with(
        &["phase", "apm", "status"],
        &[("ESHOP_OTLP_HEADERS", "Bearer-s3cr3t")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("ESHOP_OTLP_HEADERS"), "{}", text(&out));
    assert!(!text(&out).contains("s3cr3t"), "{}", text(&out));
}
