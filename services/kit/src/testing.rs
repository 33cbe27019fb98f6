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
