//! A real inventory (SQLite in a temp dir) and a pricing in front of it,
//! both on port 0 in this process; optionally a delaying proxy between them
//! to make the real inventory slow.

#![allow(dead_code)]

use kit::config::Map;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Running {
    pub base: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Running {
    /// Graceful stop; returns once the server has drained and exited.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }

    pub fn stop_signal(&mut self) -> Option<oneshot::Sender<()>> {
        self.stop.take()
    }

    pub async fn join(mut self) {
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }
}

pub struct Inventory {
    pub running: Running,
    /// Stands in for the users service: inventory checks tokens with it.
    pub issuer: kit::testing::Issuer,
    _dir: tempfile::TempDir,
}

impl Inventory {
    /// A client sending a token with `roles` on every request.
    pub fn client_with(&self, roles: &[&str]) -> reqwest::Client {
        let mut h = reqwest::header::HeaderMap::new();
        let token = self.issuer.token("test-user", roles);
        h.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(h)
            .build()
            .unwrap()
    }
}

pub async fn spawn_inventory() -> Inventory {
    spawn_inventory_with(&[]).await
}

pub async fn spawn_inventory_with(extra: &[(&str, &str)]) -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display());
    let issuer = kit::testing::Issuer::start().await;
    let mut map = Map::new([
        ("DATABASE_URL", url.as_str()),
        ("USERS_JWKS_URL", issuer.jwks_url.as_str()),
        ("LOG_LEVEL", "warn"),
    ]);
    for (k, v) in extra {
        map.0.insert((*k).into(), (*v).into());
    }
    let config = inventory::Config::from_source(&map).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = inventory::Application::build_with_listener(config, listener)
        .await
        .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    let inv = Inventory {
        running: Running {
            base: format!("http://{addr}"),
            addr,
            stop: Some(tx),
            handle: Some(handle),
        },
        issuer,
        _dir: dir,
    };
    let c = inv.client_with(&["admin"]);
    for (id, name, price, cur, qty) in [
        ("SKU-1", "Green tea", 1999, "EUR", 100),
        ("SKU-2", "Teapot", 4500, "EUR", 3),
        ("SKU-3", "Matcha whisk", 1200, "EUR", 0),
        ("YEN-1", "Sencha", 1500, "JPY", 50),
    ] {
        let res = c
            .post(format!("{}/products", inv.running.base))
            .json(&json!({"id": id, "name": name, "unit_price_minor": price, "currency": cur, "quantity": qty}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    inv
}

pub async fn spawn_pricing(inventory_url: &str, extra: &[(&str, &str)]) -> Running {
    let mut map = Map::new([
        ("INVENTORY_URL", inventory_url),
        ("LOG_LEVEL", "warn"),
        ("TAX_RATE_PERCENT", "20"),
        ("DISCOUNT_TIERS", "10:5,100:10"),
    ]);
    for (k, v) in extra {
        map.0.insert((*k).into(), (*v).into());
    }
    let config = pricing::Config::from_source(&map).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = pricing::Application::build_with_listener(config, listener);
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    Running {
        base: format!("http://{addr}"),
        addr,
        stop: Some(tx),
        handle: Some(handle),
    }
}

/// A TCP proxy that holds every chunk coming back from `target` for
/// `delay` (the real inventory behind a slow network) and keeps a copy of
/// every byte sent to it, so tests can see what crossed the wire.
pub struct Proxy {
    pub url: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

pub async fn slow_proxy(target: SocketAddr, delay: Duration) -> String {
    proxy(target, delay).await.url
}

pub async fn proxy(target: SocketAddr, delay: Duration) -> Proxy {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
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
                    tokio::time::sleep(delay).await;
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    Proxy {
        url: format!("http://{addr}"),
        seen,
    }
}
