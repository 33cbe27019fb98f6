//! Test helpers shared by the services' integration tests.

use std::path::{Path, PathBuf};

/// Where the test setup script put a tool: `$VAR`, else the default path.
pub fn tool(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(default.replace('~', &home.to_string_lossy()))
        }
    }
}

/// A tool in the test virtualenv that scripts/test-setup.sh fills, under
/// `$ESHOP_TOOLS_DIR` (default `~/.cache/eshop-test-tools`).
pub fn venv_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("ESHOP_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/eshop-test-tools")
        });
    dir.join("venv/bin").join(name)
}

/// Runs schemathesis against a running service's /openapi.json and panics
/// with its report unless it passes. Every check is on by default; the
/// service's `schemathesis.toml` lists (with reasons) the few exceptions.
/// `--checks all` is deliberately not passed: CLI flags outrank the file.
pub async fn schemathesis(base: &str, config: &Path, max_examples: u32) {
    schemathesis_as(base, config, max_examples, None).await
}

/// The Python behind schemathesis here (3.11.7) has a CPython bug: two
/// threads parsing source at once may fail with this (hypothesis parses a
/// module to describe a lambda, and both of schemathesis's workers may do
/// it at once). Found by the payments tests: two runs at once made it
/// happen every time, one alone never. So runs take turns (tests of one
/// binary run in parallel), and a run failing with exactly this is the
/// tool's fault and is run once more.
const CPYTHON_AST_RACE: &str = "AST constructor recursion depth mismatch";
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// [`schemathesis`] sending `Authorization: Bearer TOKEN` (a test token),
/// so the operations behind a login are exercised too.
pub async fn schemathesis_as(base: &str, config: &Path, max_examples: u32, bearer: Option<&str>) {
    let _turn = ONE_AT_A_TIME.lock().await;
    for attempt in 1..=2 {
        match schemathesis_once(base, config, max_examples, bearer).await {
            Ok(()) => return,
            Err(report) if attempt == 1 && report.contains(CPYTHON_AST_RACE) => {
                eprintln!("schemathesis hit the CPython AST race; running it again");
            }
            Err(report) => panic!("{report}"),
        }
    }
}

async fn schemathesis_once(
    base: &str,
    config: &Path,
    max_examples: u32,
    bearer: Option<&str>,
) -> Result<(), String> {
    let bin = std::env::var_os("ESHOP_TEST_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv_tool("schemathesis"));
    // schemathesis keeps a crash cache in its working directory; keep it
    // out of the source tree.
    let scratch = std::env::temp_dir().join("eshop-schemathesis");
    let _ = std::fs::create_dir_all(&scratch);
    let out = tokio::process::Command::new(&bin)
        .current_dir(&scratch)
        .arg("--config-file")
        .arg(config)
        .arg("--no-color")
        .args(["run", &format!("{base}/openapi.json")])
        // The document's paths are under `base` (which may itself have a
        // path: a service behind the storefront's /api/<service>).
        .args(["--url", base])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--seed", "20261121"])
        // One worker: the CPython race below happens between two worker
        // threads of one run too (CI hit it twice in a row on payments).
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "too_slow,filter_too_much"])
        .args(
            bearer
                .map(|t| vec!["-H".to_owned(), format!("Authorization: Bearer {t}")])
                .unwrap_or_default(),
        )
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run schemathesis at {} ({e}); run scripts/test-setup.sh",
                bin.display()
            )
        });
    let report = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "schemathesis found problems:\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Guard against a run that silently tested nothing.
    assert!(
        report.contains("Tested:") && !report.contains("Tested: 0"),
        "schemathesis ran no operation:\n{report}"
    );
    Ok(())
}

/// A real TLS listener (OpenSSL, through `testing/tls_front.py`) in front
/// of a plain test server on 127.0.0.1:`backend_port`, with a throw-away
/// CA: `url` is `https://localhost:<port>`, `ca_file` the CA's PEM.
/// Stopped when dropped.
pub struct TlsFront {
    pub url: String,
    pub ca_file: PathBuf,
    child: std::process::Child,
    dir: PathBuf,
}

impl TlsFront {
    pub fn start(backend_port: u16) -> Self {
        use std::io::BufRead;
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "eshop-tls-front-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testing/tls_front.py");
        let mut child = std::process::Command::new("python3")
            .arg(&script)
            .arg(&dir)
            .arg(backend_port.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs testing/tls_front.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("tls_front.py did not start (needs openssl): {line:?}"));
        TlsFront {
            url: format!("https://localhost:{port}"),
            ca_file: dir.join("ca.pem"),
            child,
            dir,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server scripts/test-setup.sh starts (ESHOP_TEST_PG_URL).
pub fn pg_admin_url() -> String {
    std::env::var("ESHOP_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://eshop_test:eshop_test@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database for one test: SQLite in a temp dir, or a new
/// PostgreSQL database dropped (with its connections) when this goes.
pub struct TestDb {
    pub url: String,
    sqlite_dir: Option<tempfile_dir::Dir>,
    postgres: Option<(String, String)>,
}

mod tempfile_dir {
    /// A directory removed on drop (kit has no tempfile dependency).
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestDb {
    pub async fn new(backend: Backend, service: &str) -> TestDb {
        let name = format!("eshop_test_{:016x}", rand::random::<u64>());
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&dir).unwrap();
                TestDb {
                    url: format!("sqlite://{}/{service}.db?mode=rwc", dir.display()),
                    sqlite_dir: Some(tempfile_dir::Dir(dir)),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = pg_admin_url();
                let mut c = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at ESHOP_TEST_PG_URL is not reachable ({e}); run scripts/test-setup.sh")
                });
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let (base, _) = admin.rsplit_once('/').unwrap();
                TestDb {
                    url: format!("{base}/{name}"),
                    sqlite_dir: None,
                    postgres: Some((admin, name)),
                }
            }
        }
    }

    /// The SQLite database's folder (DATA_DIR), if on SQLite.
    pub fn dir(&self) -> Option<&Path> {
        self.sqlite_dir.as_ref().map(|d| d.0.as_path())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside async context (or during a panic): a private
        // runtime on a plain thread, so cleanup always happens.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                }
            });
        })
        .join();
    }
}

/// Runs each listed `async fn(Backend)` once on SQLite and once on
/// PostgreSQL, so both backends pass the very same suite.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::testing::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::testing::Backend::Postgres).await }
            )*
        }
    };
}

/// A service running inside the test on port 0 until [`Running::stop`].
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// `run(shutdown)` is the service's `Application::run`.
    pub fn start<F>(port: u16, run: impl FnOnce(ShutdownSignal) -> F) -> Running
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(run(Box::pin(async {
            let _ = rx.await;
        })));
        Running {
            base: format!("http://127.0.0.1:{port}"),
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

pub type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A stand-in for the users service's token side in other services'
/// tests: a real Ed25519 key, its JWKS served on a loopback port, and
/// tokens for any subject and roles (`Issuer::token`).
pub struct Issuer {
    signer: crate::auth::Signer,
    pub jwks_url: String,
}

impl Issuer {
    pub async fn start() -> Issuer {
        let signer =
            crate::auth::Signer::from_pkcs8(&crate::auth::Signer::generate_pkcs8().unwrap())
                .unwrap();
        let jwks = serde_json::json!({"keys": [signer.jwk()]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let j = jwks.clone();
                async move { axum::Json(j) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer { signer, jwks_url }
    }

    /// A token for `sub` with `roles`, audience "eshop", valid 10 minutes.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        self.signer
            .sign(sub, "eshop", &roles, std::time::Duration::from_secs(600))
            .unwrap()
    }
}

/// A client that sends `Authorization: Bearer TOKEN` with every request.
pub fn client_as(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is header-safe"),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .expect("a client builds")
}
