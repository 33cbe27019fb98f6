//! A TCP proxy between orders and a real service, to make that service
//! look slow, silent or forgetful without touching it:
//!
//! - `Forward`: bytes pass both ways (after `delay` on the way back);
//! - `Blackhole`: requests vanish (the service never sees them);
//! - `Swallow`: requests reach the service, which acts on them, but its
//!   answers never come back (the unknown outcome: "did it charge?");
//! - `Fail`: the proxy answers each request itself with a 500 problem
//!   (the service never sees it), as a service that is up but broken.
//!
//! The mode is read per chunk, so it applies at once to open connections.
//! `on_response` runs as each chunk of an answer passes, before it is
//! passed on (to change another proxy's mode at a precise moment).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Blackhole,
    Swallow,
    Fail,
}

const FAILED: &str = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/problem+json\r\ncontent-length: 48\r\nconnection: close\r\n\r\n{\"status\":500,\"title\":\"Internal Server Error\"}\r\n";

type Hook = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    mode: Mutex<Mode>,
    delay: Mutex<Duration>,
    hook: Mutex<Option<Hook>>,
}

#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Forward),
            delay: Mutex::new(Duration::ZERO),
            hook: Mutex::new(None),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pipe(client, target, s.clone()));
            }
        });
        Proxy { url, shared }
    }

    pub fn set_mode(&self, m: Mode) {
        *self.shared.mode.lock().unwrap() = m;
    }

    pub fn set_delay(&self, d: Duration) {
        *self.shared.delay.lock().unwrap() = d;
    }

    pub fn on_response(&self, f: impl Fn() + Send + Sync + 'static) {
        *self.shared.hook.lock().unwrap() = Some(Arc::new(f));
    }
}

fn mode(s: &Shared) -> Mode {
    *s.mode.lock().unwrap()
}

async fn pipe(client: TcpStream, target: SocketAddr, s: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let (mut cr, cw) = client.into_split();
    let cw = Arc::new(tokio::sync::Mutex::new(cw));
    let (mut ur, mut uw) = upstream.into_split();
    let up_shared = s.clone();
    let fail_w = cw.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match mode(&up_shared) {
                Mode::Blackhole => continue,
                Mode::Fail => {
                    let mut w = fail_w.lock().await;
                    let _ = w.write_all(FAILED.as_bytes()).await;
                    let _ = w.shutdown().await;
                    break;
                }
                _ => {}
            }
            if uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match ur.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = *s.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let hook = s.hook.lock().unwrap().clone();
        if let Some(h) = hook {
            h();
        }
        if mode(&s) == Mode::Swallow {
            continue;
        }
        if cw.lock().await.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
