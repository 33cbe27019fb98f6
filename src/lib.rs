//! eshop: the phase engine behind the `eshop` command.

pub mod cli;
pub mod config;
pub mod engines;
pub mod labels;
pub mod phases;
pub mod pins;
pub mod render;
pub mod shop;
pub mod state;
pub mod ui;
pub mod util;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, PhaseAction, TargetArg};
use config::{Config, Overrides, ProcessEnv, Target};
use phases::{Action, Ctx, Runnable};
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;
use ui::Ui;

/// A failure that is the user's input, not the world: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let ui = Ui::new(cli.output, if cli.quiet { -1 } else { cli.verbose as i8 });
    match run(cli, &ui).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let usage = e.is::<UsageError>() || e.is::<config::ConfigError>();
            ui.event(
                "error",
                None,
                &format!("error: {e:#}"),
                json!({"exit_code": if usage { 2 } else { 1 }}),
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn find_phase(key: &str) -> anyhow::Result<&'static dyn Runnable> {
    phases::find(key).ok_or_else(|| {
        let names: Vec<String> = phases::registry()
            .iter()
            .map(|p| format!("{} {}", p.info().number, p.info().name))
            .collect();
        UsageError(format!(
            "unknown phase {key:?}; phases: {}",
            names.join(", ")
        ))
        .into()
    })
}

async fn run(cli: Cli, ui: &Ui) -> anyhow::Result<()> {
    // Commands that need no configuration.
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "eshop", &mut std::io::stdout());
            return Ok(());
        }
        Command::Phases => {
            list_phases(ui);
            return Ok(());
        }
        _ => {}
    }

    // Everything the user wrote is checked before any engine is touched.
    let flags = Overrides {
        target: cli.target.map(|t| match t {
            TargetArg::Local => Target::Local,
            TargetArg::Aws => Target::Aws,
        }),
    };
    let explicit =
        std::env::var_os("ESHOP_CONFIG").is_some() || cli.config.as_os_str() != "eshop.toml";
    let mut config = Config::load(&cli.config, explicit, &ProcessEnv, &flags)?;
    if let Command::Pipeline {
        stage: phases::pipeline::stages::StageCmd::Image,
    } = &cli.command
    {
        // The pipeline's images stage: its tests ran in their own stage.
        config.build_test = false;
    }
    let range = match &cli.command {
        Command::Up { range } | Command::Plan { range } => Range::of(range)?,
        _ => Range::all(),
    };
    let single = match &cli.command {
        Command::Phase { phase, .. } | Command::Render { phase, .. } => Some(find_phase(phase)?),
        _ => None,
    };
    if let Some(url) = &config.pipeline.jenkins_without_credentials {
        // Only what keeps the Jenkins job needs its credentials; the
        // pipeline's own stages run eshop on agents without them.
        let manages_job = match &cli.command {
            Command::Up { .. } | Command::Plan { .. } => {
                config.pipeline.enabled && range.contains(phases::pipeline::NUMBER)
            }
            Command::Destroy { .. } => true,
            Command::Phase { action, .. } => {
                single.is_some_and(|p| p.info().name == phases::pipeline::PHASE)
                    && !matches!(action, PhaseAction::Status)
            }
            _ => false,
        };
        if manages_job {
            return Err(config::pipeline::missing_credentials(url).into());
        }
    }
    if let Command::Destroy { .. } = &cli.command {
        confirm_destroy(&cli, &config)?;
    }

    if let Command::Pipeline {
        stage: phases::pipeline::stages::StageCmd::Run,
    } = &cli.command
    {
        // The push-to-deploy hook: its stages are eshop commands that
        // take the state's lock themselves.
        let config_path = std::path::absolute(&cli.config)?;
        return phases::pipeline::hook::run(&config, &config_path, std::io::stdin().lock());
    }
    let store = state::Store::open(&config.state_dir, &config.project, config.target.as_str())?;
    let purge = matches!(
        cli.command,
        Command::Destroy { purge_data: true }
            | Command::Phase {
                action: PhaseAction::Destroy { purge_data: true },
                ..
            }
    );
    let ctx = Ctx::new(config, ui.clone(), store, purge);

    let (label, result) = match cli.command {
        Command::Up { .. } => ("up", up(&ctx, range).await),
        Command::Plan { .. } => ("plan", plan(&ctx, range).await),
        Command::Destroy { .. } => ("destroy", destroy(&ctx).await),
        Command::Status => ("status", status(&ctx).await),
        Command::Phase { action, .. } => {
            let p = single.expect("resolved above");
            ("phase", one_phase(&ctx, p, action, cli.yes).await)
        }
        Command::Render { out, .. } => {
            let p = single.expect("resolved above");
            ("render", render(&ctx, p, &out))
        }
        Command::Pipeline { stage } => {
            ("pipeline", phases::pipeline::stages::run(&ctx, stage).await)
        }
        Command::Completions { .. } | Command::Phases => unreachable!("handled above"),
    };
    let outcome = match &result {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("failed: {e:#}"),
    };
    if let Ok(mut s) = ctx.store.lock() {
        let _ = s.log(label, &outcome);
    }
    result
}

fn list_phases(ui: &Ui) {
    for p in phases::registry() {
        let i = p.info();
        let targets: Vec<&str> = i.targets.iter().map(|t| t.as_str()).collect();
        ui.event(
            "result",
            None,
            &format!(
                "{:>2}  {:<12} [{}]  {}",
                i.number,
                i.name,
                targets.join(","),
                i.about
            ),
            json!({"number": i.number, "name": i.name, "targets": targets, "about": i.about}),
        );
    }
}

/// `--from` / `--to` as phase numbers.
#[derive(Clone, Copy)]
struct Range {
    lo: u8,
    hi: u8,
}

impl Range {
    fn all() -> Self {
        Range { lo: 0, hi: u8::MAX }
    }
    fn of(r: &cli::Range) -> anyhow::Result<Self> {
        let lo = r.from.as_deref().map(find_phase).transpose()?;
        let hi = r.to.as_deref().map(find_phase).transpose()?;
        let range = Range {
            lo: lo.map_or(0, |p| p.info().number),
            hi: hi.map_or(u8::MAX, |p| p.info().number),
        };
        if range.lo > range.hi {
            return Err(UsageError("--from comes after --to".into()).into());
        }
        Ok(range)
    }
    fn contains(self, n: u8) -> bool {
        (self.lo..=self.hi).contains(&n)
    }
}

/// The phases that run on this target, in order, within `range`.
fn runnable(ctx: &Ctx, range: Range) -> Vec<&'static dyn Runnable> {
    let target = ctx.config.target;
    phases::registry()
        .into_iter()
        .filter(|p| p.info().targets.contains(&target) && range.contains(p.info().number))
        .collect()
}

/// Says why a phase is skipped, once; true when it is.
fn skipped(ctx: &Ctx, p: &dyn Runnable) -> bool {
    match p.skip(&ctx.config) {
        Some(reason) => {
            ctx.ui.info(p.info().name, &format!("skipped: {reason}"));
            true
        }
        None => false,
    }
}

fn phase_context(p: &dyn Runnable, what: &str) -> String {
    format!("{what}phase {} {}", p.info().number, p.info().name)
}

async fn up(ctx: &Ctx, range: Range) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut changed = 0;
    for p in runnable(ctx, range) {
        let i = p.info();
        ctx.ui.event(
            "phase",
            Some(i.name),
            &format!("phase {} {}: apply", i.number, i.name),
            json!({"action": "apply"}),
        );
        if skipped(ctx, p) {
            continue;
        }
        changed += p
            .apply(ctx)
            .await
            .map_err(|e| e.context(phase_context(p, "")))?
            .changed;
    }
    // The last line a newcomer reads says where the shop is.
    let shop = (ctx.config.target == Target::Local && range.contains(2))
        .then(|| phases::local::shop_url(&ctx.config));
    let tail = shop
        .as_deref()
        .map(|u| format!("; the shop: {u}"))
        .unwrap_or_default();
    let secs = started.elapsed().as_secs_f64();
    ctx.ui.event(
        "summary",
        None,
        &format!("up: {changed} change(s) in {secs:.1}s{tail}"),
        json!({"changed": changed, "seconds": secs, "url": shop}),
    );
    Ok(())
}

async fn plan(ctx: &Ctx, range: Range) -> anyhow::Result<()> {
    let mut counts = [0usize; 4];
    for p in runnable(ctx, range) {
        if p.skip(&ctx.config).is_some() {
            continue;
        }
        for c in p.plan(ctx).await? {
            print_change(&ctx.ui, p.info().name, &c);
            counts[c.action as usize] += 1;
        }
    }
    ctx.ui.event(
        "summary",
        None,
        &format!(
            "plan: {} to create, {} to update, {} to delete, {} unchanged",
            counts[0], counts[1], counts[2], counts[3]
        ),
        json!({"create": counts[0], "update": counts[1], "delete": counts[2], "unchanged": counts[3]}),
    );
    Ok(())
}

async fn destroy(ctx: &Ctx) -> anyhow::Result<()> {
    let mut removed = 0;
    for p in runnable(ctx, Range::all()).into_iter().rev() {
        removed += p
            .destroy(ctx)
            .await
            .map_err(|e| e.context(phase_context(p, "destroying ")))?
            .changed;
    }
    ctx.ui.event(
        "summary",
        None,
        &format!("destroy: {removed} object(s) removed"),
        json!({"removed": removed}),
    );
    Ok(())
}

/// One phase's status lines; a skipped phase reports why, as healthy.
async fn phase_status(ctx: &Ctx, p: &dyn Runnable) -> anyhow::Result<bool> {
    let name = p.info().name;
    if let Some(reason) = p.skip(&ctx.config) {
        let s = phases::Status {
            resource: name.to_owned(),
            state: format!("skipped: {reason}"),
            healthy: true,
        };
        print_status(&ctx.ui, name, &s);
        return Ok(true);
    }
    let mut ok = true;
    for s in p.status(ctx).await? {
        ok &= s.healthy;
        print_status(&ctx.ui, name, &s);
    }
    Ok(ok)
}

async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let mut all_ok = true;
    for p in runnable(ctx, Range::all()) {
        all_ok &= phase_status(ctx, p).await?;
    }
    anyhow::ensure!(all_ok, "some resources are absent or unhealthy");
    Ok(())
}

async fn one_phase(
    ctx: &Ctx,
    p: &dyn Runnable,
    action: PhaseAction,
    yes: bool,
) -> anyhow::Result<()> {
    let (ui, name) = (&ctx.ui, p.info().name);
    if !p.info().targets.contains(&ctx.config.target) {
        return Err(UsageError(format!(
            "phase {name} does not run on target {}",
            ctx.config.target.as_str()
        ))
        .into());
    }
    match action {
        PhaseAction::Plan => {
            if p.skip(&ctx.config).is_none() {
                for c in p.plan(ctx).await? {
                    print_change(ui, name, &c);
                }
            }
        }
        PhaseAction::Apply => {
            let changed = if skipped(ctx, p) {
                0
            } else {
                p.apply(ctx).await?.changed
            };
            ui.event(
                "summary",
                Some(name),
                &format!("{changed} change(s)"),
                json!({"changed": changed}),
            );
        }
        PhaseAction::Destroy { .. } => {
            let o = p.destroy(ctx).await?;
            ui.event(
                "summary",
                Some(name),
                &format!("{} object(s) removed", o.changed),
                json!({"removed": o.changed}),
            );
        }
        // Same contract as `eshop status`: CI can gate on one phase.
        PhaseAction::Status => {
            anyhow::ensure!(
                phase_status(ctx, p).await?,
                "phase {name}: some resources are absent or unhealthy"
            );
        }
        PhaseAction::Snapshot { out } => {
            only(name, phases::kubernetes::PHASE, "snapshot")?;
            let (path, r) = phases::kubernetes::etcd::snapshot(ctx, out.as_deref()).await?;
            ui.event(
                "result",
                Some(name),
                &format!(
                    "etcd snapshot {} from {}: revision {}, {} keys, {} bytes, hash {}, sha256 {}",
                    path.display(),
                    r.node,
                    r.status.revision,
                    r.status.total_key,
                    r.status.total_size,
                    r.status.hash,
                    r.sha256
                ),
                json!({"file": path, "snapshot": r}),
            );
        }
        PhaseAction::Restore { file } => {
            only(name, phases::kubernetes::PHASE, "restore")?;
            let ask = |_: &str| {
                confirm(
                    yes,
                    "Replace the cluster's etcd with this snapshot?",
                    "restore",
                )
            };
            let (live, warn) = phases::kubernetes::etcd::restore(ctx, &file, ask).await?;
            ui.event(
                "result",
                Some(name),
                &format!(
                    "etcd restored from {}: revision {}, {} keys{}",
                    file.display(),
                    live.revision,
                    live.keys,
                    if warn.is_some() { " (see the warning above: restart the watchers)" } else { "" }
                ),
                json!({"file": file, "revision": live.revision, "keys": live.keys, "revision_went_back": warn.is_some()}),
            );
        }
        PhaseAction::AddUser {
            name: user,
            days,
            out,
        } => {
            only(name, phases::security::PHASE, "add-user")?;
            let path = phases::security::add_user(ctx, &user, days, out.as_deref()).await?;
            ui.event(
                "result",
                Some(name),
                &format!(
                    "wrote {} for user {user}: pods in namespace {} (try: kubectl --kubeconfig {} get pods)",
                    path.display(),
                    ctx.config.kube.namespace,
                    path.display()
                ),
                json!({"kubeconfig": path, "user": user}),
            );
        }
    }
    Ok(())
}

fn render(ctx: &Ctx, p: &dyn Runnable, out: &std::path::Path) -> anyhow::Result<()> {
    let name = p.info().name;
    let files = p.render(ctx, out)?;
    if files.is_empty() {
        ctx.ui.event(
            "result",
            Some(name),
            "this phase has no templates",
            json!({"files": []}),
        );
    }
    for f in &files {
        ctx.ui.event(
            "result",
            Some(name),
            &format!("wrote {}", f.display()),
            json!({"file": f}),
        );
    }
    Ok(())
}

fn print_change(ui: &Ui, phase: &str, c: &phases::Change) {
    if c.action == Action::NoOp && ui.verbosity < 1 && ui.output == ui::Output::Human {
        return;
    }
    ui.event(
        "change",
        Some(phase),
        &format!("{} {} ({})", c.action.symbol(), c.resource, c.reason),
        json!({"resource": c.resource, "action": c.action, "reason": c.reason}),
    );
}

fn print_status(ui: &Ui, phase: &str, s: &phases::Status) {
    ui.event(
        "result",
        Some(phase),
        &format!(
            "{} {}: {}",
            if s.healthy { "✔" } else { "✘" },
            s.resource,
            s.state
        ),
        json!(s),
    );
}

/// A verb that belongs to one phase.
fn only(name: &str, owner: &str, verb: &str) -> anyhow::Result<()> {
    if name == owner {
        Ok(())
    } else {
        Err(UsageError(format!("{verb} belongs to phase {owner}, not {name}")).into())
    }
}

fn confirm_destroy(cli: &Cli, config: &Config) -> anyhow::Result<()> {
    confirm(
        cli.yes,
        &format!(
            "Destroy everything eshop created for project {:?} on target {}?",
            config.project,
            config.target.as_str()
        ),
        "destroy",
    )
}

/// `--yes`, or a person typing yes; never a guess when nobody can answer.
fn confirm(yes: bool, question: &str, what: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!("{what} needs --yes when not run interactively")).into());
    }
    eprint!("{question} Type 'yes': ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(UsageError(format!("{what} cancelled")).into())
    }
}
