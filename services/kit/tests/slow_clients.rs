//! Clients that hold connections without finishing requests (slowloris,
//! issue 13) against `kit::server::serve_with`, over raw TCP on loopback
//! because an HTTP client library always finishes its headers.
//!
//! Every wait is bounded, so a regression fails an assertion instead of
//! hanging; run with `--nocapture` to see the measured times.

use axum::routing::get;
use axum::Router;
use kit::server::{serve_with, App, Limits};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// A service router (the shared endpoints plus `/slow`, which takes
/// 300 ms) served by kit on a loopback port.
async fn start(limits: Limits, drain: Duration) -> Server {
    let routes = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );
    let router = App::new(routes).into_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve_with(listener, router, shutdown, drain, limits));
    Server { addr, stop, task }
}

/// Reads until the server closes the connection (EOF or reset) or `limit`
/// passes: what was read, and when it closed (None: still open).
async fn read_until_closed(
    stream: &mut (impl AsyncReadExt + Unpin),
    limit: Duration,
) -> (Vec<u8>, Option<Instant>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (seen, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, Some(Instant::now())),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// One plain request on a fresh connection; the status line's code.
async fn healthz(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(HEALTHZ).await.ok()?;
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// Opens a connection, sends a request line and one header, then drips a
/// header byte every 100 ms and never ends the head. How long the server
/// kept it open, or None if it was still open after `limit`.
async fn slow_client(
    addr: SocketAddr,
    limit: Duration,
    closed: Arc<AtomicUsize>,
) -> Option<Duration> {
    let opened = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let drip = tokio::spawn(async move {
        wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await?;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wr.write_all(b"a").await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    let (_, closed_at) = read_until_closed(&mut rd, limit).await;
    drip.abort();
    closed.fetch_add(1, Ordering::SeqCst);
    closed_at.map(|t| t - opened)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_are_cut_off_while_others_are_served() {
    const SLOW: usize = 100;
    let timeout = Duration::from_secs(2);
    let margin = Duration::from_millis(1500);
    let server = start(
        Limits {
            header_read_timeout: timeout,
            max_connections: 512,
        },
        Duration::from_secs(1),
    )
    .await;
    let closed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..SLOW)
        .map(|_| tokio::spawn(slow_client(server.addr, timeout + margin, closed.clone())))
        .collect();
    // Let every slow client connect and start dripping, then ask normally.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    assert_eq!(healthz(server.addr).await, Some(200));
    let answered_in = asked.elapsed();
    let open_meanwhile = SLOW - closed.load(Ordering::SeqCst);
    let mut survived = Vec::new();
    for c in clients {
        survived.push(c.await.unwrap());
    }
    let still_open = survived.iter().filter(|s| s.is_none()).count();
    let longest = survived.iter().flatten().max().copied();
    let shortest = survived.iter().flatten().min().copied();
    println!(
        "{SLOW} slow clients, header timeout {timeout:?}: /healthz answered in {answered_in:?} \
         with {open_meanwhile} of them open; cut off after {shortest:?} .. {longest:?}; \
         {still_open} still open after {:?}",
        timeout + margin
    );
    assert_eq!(
        open_meanwhile, SLOW,
        "the slow clients were held while /healthz was served"
    );
    assert_eq!(
        still_open, 0,
        "every slow client is cut off within the timeout plus {margin:?}"
    );
    assert!(
        shortest.is_some_and(|s| s >= timeout),
        "nobody is cut off before the timeout: {shortest:?}"
    );
    // The server is still fine afterwards.
    assert_eq!(healthz(server.addr).await, Some(200));
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let server = start(
        Limits {
            header_read_timeout: timeout,
            max_connections: 8,
        },
        Duration::from_secs(1),
    )
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let sent = Instant::now();
    s.write_all(HEALTHZ).await.unwrap();
    let (seen, closed_at) = read_until_closed(&mut s, timeout * 3).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let idle = closed_at.map(|t| t - sent);
    println!("keep-alive connection closed {idle:?} after its only request");
    assert!(
        idle.is_some_and(|d| d >= timeout && d < timeout * 2),
        "closed after {idle:?}, expected between {timeout:?} and twice that"
    );
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_a_slot_frees() {
    const CAP: usize = 4;
    let server = start(
        Limits {
            // Long, so only the holders going away frees the slots here.
            header_read_timeout: Duration::from_secs(10),
            max_connections: CAP,
        },
        Duration::from_secs(1),
    )
    .await;
    let mut holders = Vec::new();
    for _ in 0..CAP {
        let mut h = TcpStream::connect(server.addr).await.unwrap();
        h.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        holders.push(h);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The kernel completes the handshake, but the server does not take
    // the connection while all slots are held…
    let mut waiting = TcpStream::connect(server.addr).await.unwrap();
    waiting.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 12];
    let early =
        tokio::time::timeout(Duration::from_millis(700), waiting.read_exact(&mut buf)).await;
    assert!(
        early.is_err(),
        "a connection beyond the cap was served: {early:?}"
    );
    // …and serves it as soon as they go.
    let freed = Instant::now();
    drop(holders);
    tokio::time::timeout(Duration::from_secs(2), waiting.read_exact(&mut buf))
        .await
        .expect("served once the holders left")
        .unwrap();
    println!(
        "{CAP} held connections: the next one waited, then was answered {:?} after they closed",
        freed.elapsed()
    );
    assert_eq!(&buf[..12], b"HTTP/1.1 200");
    assert_eq!(healthz(server.addr).await, Some(200));
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_drops_stuck_clients_after_the_drain() {
    let drain = Duration::from_millis(800);
    let server = start(
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 8,
        },
        drain,
    )
    .await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = Instant::now();
    let _ = server.stop.send(());
    // The request already running completes, and its connection closes
    // rather than waiting for another request.
    let (seen, busy_closed) = read_until_closed(&mut busy, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text}"
    );
    assert!(busy_closed.is_some(), "the drained connection closes");
    // The client that never finishes its head does not hold the server
    // past the drain limit, and its connection is dropped with it.
    tokio::time::timeout(drain + Duration::from_secs(1), server.task)
        .await
        .expect("serve returns once the drain limit passes")
        .unwrap()
        .unwrap();
    let returned_after = stopped.elapsed();
    let (_, stuck_closed) = read_until_closed(&mut stuck, Duration::from_secs(1)).await;
    println!("shutdown: serve returned {returned_after:?} after the signal (drain {drain:?})");
    assert!(
        returned_after >= drain,
        "returned before the drain limit: {returned_after:?}"
    );
    assert!(stuck_closed.is_some(), "the stuck connection is dropped");
    // And nothing new is accepted.
    assert_eq!(healthz(server.addr).await, None);
}
