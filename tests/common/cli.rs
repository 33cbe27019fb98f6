//! The one way the integration tests run the `eshop` binary: a project of
//! the test's own in a temporary folder (its `eshop.toml`, its `.eshop/`
//! state), stdin closed so nothing can wait for a prompt, and on a wrong
//! exit code everything eshop printed plus the configuration it read.

use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A temporary project folder. eshop runs inside it, with `--config`
/// naming its `eshop.toml` once one is written (without one, eshop runs on
/// its built-in defaults, as in an empty folder).
pub struct Project {
    pub dir: tempfile::TempDir,
    /// Applied in order to every run: `Some` sets, `None` removes.
    env: Vec<(OsString, Option<OsString>)>,
}

impl Project {
    pub fn new() -> Project {
        Project::in_dir(tempfile::tempdir().unwrap())
    }

    /// In a folder the caller made (e.g. one whose name does not start
    /// with a dot).
    pub fn in_dir(dir: tempfile::TempDir) -> Project {
        Project {
            dir,
            env: Vec::new(),
        }
    }

    pub fn with_config(toml: &str) -> Project {
        let p = Project::new();
        p.write_config(toml);
        p
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("eshop.toml")
    }

    /// Writes (or rewrites) `eshop.toml`; the next run reads it.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config(), toml).unwrap();
    }

    /// The state file of `target` (`.eshop/<project>-<target>.json`; the
    /// one file of that target, whatever the project is called), parsed.
    #[allow(dead_code)]
    pub fn state(&self, target: &str) -> Value {
        let files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join(".eshop"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&format!("-{target}.json")))
            })
            .collect();
        assert_eq!(files.len(), 1, "one state file for {target}: {files:?}");
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
    }

    /// An environment variable for every run.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Project {
        self.env
            .push((key.as_ref().into(), Some(value.as_ref().into())));
        self
    }

    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Project {
        vars.into_iter().fold(self, |p, (k, v)| p.env(k, v))
    }

    /// A variable of the test's own environment eshop must not see.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Project {
        self.env.push((key.as_ref().into(), None));
        self
    }

    /// The command, for callers that spawn it themselves (e.g. to kill it).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eshop"));
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        if self.config().exists() {
            c.arg("--config").arg(self.config());
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(args);
        c
    }

    pub fn eshop(&self, args: &[&str]) -> Output {
        self.eshop_with(args, &[])
    }

    /// With extra variables for this run only.
    pub fn eshop_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cmd(args)
            .envs(env.iter().copied())
            .output()
            .expect("run eshop")
    }

    /// Exit 0; returns all eshop printed (stdout, then stderr, where the
    /// progress and info lines go).
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, &[])
    }

    pub fn ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.eshop_with(args, env);
        self.expect_code(args, &out, 0);
        text(&out)
    }

    /// Exit 0; returns stdout only (results, summaries, JSON events).
    pub fn ok_stdout(&self, args: &[&str]) -> String {
        let out = self.eshop(args);
        self.expect_code(args, &out, 0);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Exit 0; stdout read as one JSON object per line (`args` include
    /// `--output json`).
    pub fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        json_lines(&self.ok_stdout(args))
    }

    /// Exit `code`; returns stderr (where errors go).
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        self.fails_with(args, &[], code)
    }

    pub fn fails_with(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
        let out = self.eshop_with(args, env);
        self.expect_code(args, &out, code);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// For each `(body, want)`: with `head` then `body` as eshop.toml, each
    /// of `commands` exits 2 (a configuration error) and says `want`.
    pub fn rejects_configs(&self, head: &str, cases: &[(&str, &str)], commands: &[&[&str]]) {
        for (body, want) in cases {
            self.write_config(&format!("{head}{body}"));
            for args in commands {
                let err = self.fails(args, 2);
                assert!(
                    err.contains(want),
                    "{body} {args:?}\n got: {err}\nwant: {want}"
                );
            }
        }
    }

    fn expect_code(&self, args: &[&str], out: &Output, code: i32) {
        let config = std::fs::read_to_string(self.config()).unwrap_or_default();
        assert_eq!(
            out.status.code(),
            Some(code),
            "eshop {args:?} exited {:?}, not {code}\n--- stdout:\n{}\n--- stderr:\n{}\n--- eshop.toml:\n{config}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

/// For a test's own fixture that holds its [`Project`] in a field `cli`
/// (next to its mock servers, ports, …): the fixture then runs eshop and
/// shows `dir` as the project does. (Unused in test binaries without one.)
#[allow(unused_macros)]
macro_rules! wraps_project {
    ($fixture:ty) => {
        impl std::ops::Deref for $fixture {
            type Target = $crate::common::cli::Project;
            fn deref(&self) -> &Self::Target {
                &self.cli
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use wraps_project;

/// stdout then stderr, as one text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `--output json`: every line one JSON object.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
