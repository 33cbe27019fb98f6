//! Reporting: indicatif progress and plain lines for people, or one JSON
//! object per event on stdout for CI (`--output json`).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct Ui {
    pub output: Output,
    /// -1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
    /// Holds every spinner, so several (one per node) share the terminal
    /// and plain lines print above them instead of through them.
    multi: MultiProgress,
}

impl Ui {
    pub fn new(output: Output, verbosity: i8) -> Self {
        Self {
            output,
            verbosity,
            multi: MultiProgress::new(),
        }
    }

    /// One event. `fields` are merged into the JSON object; people see `msg`.
    pub fn event(&self, kind: &str, phase: Option<&str>, msg: &str, fields: Value) {
        match self.output {
            Output::Json => {
                let mut obj = json!({"event": kind, "message": msg});
                if let Some(p) = phase {
                    obj["phase"] = json!(p);
                }
                if let Value::Object(m) = fields {
                    for (k, v) in m {
                        obj[k] = v;
                    }
                }
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{obj}");
            }
            Output::Human => {
                let quiet_ok = matches!(kind, "error" | "summary" | "result");
                if self.verbosity < 0 && !quiet_ok {
                    return;
                }
                if kind == "debug" && self.verbosity < 1 {
                    return;
                }
                let prefix = phase.map(|p| format!("[{p}] ")).unwrap_or_default();
                self.multi.suspend(|| {
                    if kind == "result" || kind == "summary" {
                        println!("{prefix}{msg}");
                    } else {
                        eprintln!("{prefix}{msg}");
                    }
                });
            }
        }
    }

    pub fn info(&self, phase: &str, msg: &str) {
        self.event("info", Some(phase), msg, Value::Null);
    }

    /// Something the user should look at that does not fail the run.
    pub fn warn(&self, phase: &str, msg: &str) {
        self.event(
            "warning",
            Some(phase),
            &format!("warning: {msg}"),
            Value::Null,
        );
    }

    pub fn debug(&self, phase: &str, msg: &str) {
        self.event("debug", Some(phase), msg, Value::Null);
    }

    /// A spinner for a step of unknown length; hidden in JSON mode and when
    /// stderr is not a terminal (indicatif's own check).
    pub fn spinner(&self, phase: &str, msg: &str) -> Progress {
        let pb = (self.output == Output::Human && self.verbosity >= 0).then(|| {
            let pb = self.multi.add(ProgressBar::new_spinner());
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{prefix}] {msg} ({elapsed})")
                    .expect("valid template"),
            );
            pb.set_prefix(phase.to_owned());
            pb.set_message(msg.to_owned());
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        Progress {
            pb,
            ui: self.clone(),
            phase: phase.to_owned(),
        }
    }
}

pub struct Progress {
    pb: Option<ProgressBar>,
    ui: Ui,
    phase: String,
}

impl Progress {
    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        match &self.pb {
            Some(pb) => pb.set_message(msg),
            None => self
                .ui
                .event("progress", Some(&self.phase), &msg, Value::Null),
        }
    }

    pub fn finish(self, msg: &str) {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
        self.ui.info(&self.phase, msg);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
    }
}
