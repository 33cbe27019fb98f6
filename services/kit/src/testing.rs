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
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--seed", "20261121"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "too_slow,filter_too_much"])
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run schemathesis at {} ({e}); run scripts/test-setup.sh",
                bin.display()
            )
        });
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Guard against a run that silently tested nothing.
    assert!(
        report.contains("Tested:") && !report.contains("Tested: 0"),
        "schemathesis ran no operation:\n{report}"
    );
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
