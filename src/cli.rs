//! Command-line definitions (clap). Exit codes: 0 done, 1 failed,
//! 2 usage or configuration error.

use crate::ui::Output;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "eshop",
    version,
    about = "The eshop shop from source to a running deployment, phase by phase, and back to nothing"
)]
pub struct Cli {
    /// Configuration file; a missing default file means built-in defaults.
    #[arg(
        long,
        global = true,
        env = "ESHOP_CONFIG",
        default_value = "eshop.toml"
    )]
    pub config: PathBuf,
    /// Where to deploy: local (Docker on this machine) or aws.
    #[arg(long, global = true, value_enum)]
    pub target: Option<TargetArg>,
    /// human (progress and summaries) or json (one JSON object per event).
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub output: Output,
    /// More detail (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors and results.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Do not ask for confirmation (needed for destroy when not interactive).
    #[arg(long, global = true)]
    pub yes: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TargetArg {
    Local,
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the phases in order (converges; safe to re-run).
    Up {
        #[command(flatten)]
        range: Range,
    },
    /// Show what `up` would change, touching nothing.
    Plan {
        #[command(flatten)]
        range: Range,
    },
    /// Remove everything eshop created for this project and target.
    Destroy {
        /// Also delete data volumes (the services' databases).
        #[arg(long)]
        purge_data: bool,
    },
    /// What exists, healthy or not.
    Status,
    /// Run one phase: for CI pipelines and one-phase demos.
    Phase {
        /// Number or name, e.g. 2 or images.
        phase: String,
        #[command(subcommand)]
        action: PhaseAction,
    },
    /// List the phases and the targets they run on.
    Phases,
    /// Phase 8's stage bodies, as the rendered pipelines call them.
    Pipeline {
        #[command(subcommand)]
        stage: crate::phases::pipeline::stages::StageCmd,
    },
    /// Write a phase's rendered templates for review.
    Render {
        phase: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

/// Which phases `up` and `plan` cover; both ends included.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Range {
    /// First phase (number or name).
    #[arg(long)]
    pub from: Option<String>,
    /// Last phase (number or name).
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PhaseAction {
    /// What apply would change, touching nothing.
    Plan,
    /// Converge the phase (safe to re-run).
    Apply,
    /// Remove what the phase owns.
    Destroy {
        /// Also delete the phase's data (database, metrics).
        #[arg(long)]
        purge_data: bool,
    },
    /// What exists, healthy or not.
    Status,
    /// Phase 5 only (bootstrapped clusters): an etcd snapshot taken on the
    /// control plane, copied back (0600), checked and recorded beside it
    /// (FILE.json); without --out it goes to .eshop/<project>-etcd-snapshots/,
    /// which keeps the newest kubernetes.snapshot_keep.
    Snapshot {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Phase 5 only: replaces the cluster's etcd with a snapshot, after
    /// checking it against its recorded sha256, showing what it replaces
    /// and asking (--yes when not interactive).
    Restore { file: PathBuf },
    /// Phase 6 only: a key, a certificate signed by the cluster and a
    /// kubeconfig for a user who may create, list, get, update and delete
    /// pods in the shop's namespace.
    AddUser {
        /// The user's name (the certificate's common name).
        name: String,
        /// How long the certificate is valid (Kubernetes cannot revoke
        /// one: keep it short).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=365))]
        days: u32,
        /// Where to write the kubeconfig (default .eshop/users/NAME.kubeconfig).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}
