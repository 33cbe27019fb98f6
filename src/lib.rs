//! eshop: the phase engine behind the `eshop` command.

pub mod cli;
pub mod config;
pub mod engines;
pub mod labels;
pub mod phases;
pub mod render;
pub mod shop;
pub mod state;
pub mod ui;
pub mod util;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, PhaseAction, TargetArg};
use config::{Config, Overrides, ProcessEnv, Target};
use phases::{Action, Ctx, Phase};
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

fn find_phase(key: &str) -> anyhow::Result<&'static dyn Phase> {
    phases::find(key).ok_or_else(|| {
        let names: Vec<String> = phases::registry()
            .iter()
            .map(|p| format!("{} {}", p.number(), p.name()))
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
            for p in phases::registry() {
                let targets: Vec<&str> = p.targets().iter().map(|t| t.as_str()).collect();
                ui.event(
                    "result",
                    None,
                    &format!("{:>2}  {:<12} [{}]  {}", p.number(), p.name(), targets.join(","), p.about()),
                    json!({"number": p.number(), "name": p.name(), "targets": targets, "about": p.about()}),
                );
            }
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
    let config = Config::load(&cli.config, explicit, &ProcessEnv, &flags)?;
    let (from, to) = match &cli.command {
        Command::Up { range } | Command::Plan { range } => (
            range.from.as_deref().map(find_phase).transpose()?,
            range.to.as_deref().map(find_phase).transpose()?,
        ),
        _ => (None, None),
    };
    let lo = from.map_or(0, |p| p.number());
    let hi = to.map_or(u8::MAX, |p| p.number());
    if lo > hi {
        return Err(UsageError("--from comes after --to".into()).into());
    }
    let in_range = move |p: &&'static dyn Phase| (lo..=hi).contains(&p.number());
    let single = match &cli.command {
        Command::Phase { phase, .. } | Command::Render { phase, .. } => Some(find_phase(phase)?),
        _ => None,
    };
    if let Command::Destroy { .. } = &cli.command {
        confirm_destroy(&cli, &config)?;
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
    let target = ctx.config.target;
    let runnable = |p: &&'static dyn Phase| p.targets().contains(&target);
    let started = Instant::now();

    let (label, result) = match cli.command {
        Command::Up { .. } => {
            let mut changed = 0;
            let mut res = Ok(());
            for p in phases::registry()
                .into_iter()
                .filter(runnable)
                .filter(in_range)
            {
                ui.event(
                    "phase",
                    Some(p.name()),
                    &format!("phase {} {}: apply", p.number(), p.name()),
                    json!({"action": "apply"}),
                );
                match p.apply(&ctx).await {
                    Ok(o) => changed += o.changed,
                    Err(e) => {
                        res = Err(e.context(format!("phase {} {}", p.number(), p.name())));
                        break;
                    }
                }
            }
            if res.is_ok() {
                // The last line a newcomer reads says where the shop is.
                let shop = (target == Target::Local && lo <= 2 && hi >= 2).then(|| {
                    format!(
                        "http://{}:{}/",
                        phases::images::display_host(&ctx.config),
                        ctx.config.host_port(shop::public(ctx.config.shop))
                    )
                });
                let tail = shop
                    .as_deref()
                    .map(|u| format!("; the shop: {u}"))
                    .unwrap_or_default();
                ui.event(
                    "summary",
                    None,
                    &format!(
                        "up: {changed} change(s) in {:.1}s{tail}",
                        started.elapsed().as_secs_f64()
                    ),
                    json!({"changed": changed, "seconds": started.elapsed().as_secs_f64(), "url": shop}),
                );
            }
            ("up", res)
        }
        Command::Plan { .. } => {
            let mut counts = [0usize; 4];
            for p in phases::registry()
                .into_iter()
                .filter(runnable)
                .filter(in_range)
            {
                for c in p.plan(&ctx).await? {
                    print_change(ui, p.name(), &c);
                    counts[c.action as usize] += 1;
                }
            }
            ui.event(
                "summary",
                None,
                &format!("plan: {} to create, {} to update, {} to delete, {} unchanged", counts[0], counts[1], counts[2], counts[3]),
                json!({"create": counts[0], "update": counts[1], "delete": counts[2], "unchanged": counts[3]}),
            );
            ("plan", Ok(()))
        }
        Command::Destroy { .. } => {
            let mut removed = 0;
            let mut res = Ok(());
            for p in phases::registry().into_iter().filter(runnable).rev() {
                match p.destroy(&ctx).await {
                    Ok(o) => removed += o.changed,
                    Err(e) => {
                        res =
                            Err(e.context(format!("destroying phase {} {}", p.number(), p.name())));
                        break;
                    }
                }
            }
            if res.is_ok() {
                ui.event(
                    "summary",
                    None,
                    &format!("destroy: {removed} object(s) removed"),
                    json!({"removed": removed}),
                );
            }
            ("destroy", res)
        }
        Command::Status => {
            let mut all_ok = true;
            for p in phases::registry().into_iter().filter(runnable) {
                for s in p.status(&ctx).await? {
                    all_ok &= s.healthy;
                    print_status(ui, p.name(), &s);
                }
            }
            (
                "status",
                if all_ok {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("some resources are absent or unhealthy"))
                },
            )
        }
        Command::Phase { action, .. } => {
            let p = single.expect("resolved above");
            if !p.targets().contains(&target) {
                return Err(UsageError(format!(
                    "phase {} does not run on target {}",
                    p.name(),
                    target.as_str()
                ))
                .into());
            }
            let res = match action {
                PhaseAction::Plan => p
                    .plan(&ctx)
                    .await
                    .map(|cs| cs.iter().for_each(|c| print_change(ui, p.name(), c))),
                PhaseAction::Apply => p.apply(&ctx).await.map(|o| {
                    ui.event(
                        "summary",
                        Some(p.name()),
                        &format!("{} change(s)", o.changed),
                        json!({"changed": o.changed}),
                    )
                }),
                PhaseAction::Destroy { .. } => p.destroy(&ctx).await.map(|o| {
                    ui.event(
                        "summary",
                        Some(p.name()),
                        &format!("{} object(s) removed", o.changed),
                        json!({"removed": o.changed}),
                    )
                }),
                // Same contract as `eshop status`: CI can gate on one phase.
                PhaseAction::Status => p.status(&ctx).await.and_then(|ss| {
                    for s in &ss {
                        print_status(ui, p.name(), s);
                    }
                    if ss.iter().all(|s| s.healthy) {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!(
                            "phase {}: some resources are absent or unhealthy",
                            p.name()
                        ))
                    }
                }),
                PhaseAction::AddUser { name, days, out } => {
                    if p.name() != phases::security::PHASE {
                        return Err(UsageError(format!(
                            "add-user belongs to phase security, not {}",
                            p.name()
                        ))
                        .into());
                    }
                    phases::security::add_user(&ctx, &name, days, out.as_deref())
                        .await
                        .map(|path| {
                            ui.event(
                                "result",
                                Some(p.name()),
                                &format!(
                                    "wrote {} for user {name}: pods in namespace {} (try: kubectl --kubeconfig {} get pods)",
                                    path.display(),
                                    ctx.config.kube.namespace,
                                    path.display()
                                ),
                                json!({"kubeconfig": path, "user": name}),
                            )
                        })
                }
            };
            ("phase", res)
        }
        Command::Render { out, .. } => {
            let p = single.expect("resolved above");
            let files = p.render(&ctx, &out)?;
            if files.is_empty() {
                ui.event(
                    "result",
                    Some(p.name()),
                    "this phase has no templates",
                    json!({"files": []}),
                );
            }
            for f in &files {
                ui.event(
                    "result",
                    Some(p.name()),
                    &format!("wrote {}", f.display()),
                    json!({"file": f}),
                );
            }
            ("render", Ok(()))
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

fn confirm_destroy(cli: &Cli, config: &Config) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if cli.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError("destroy needs --yes when not run interactively".into()).into());
    }
    eprint!(
        "Destroy everything eshop created for project {:?} on target {}? Type 'yes': ",
        config.project,
        config.target.as_str()
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(UsageError("destroy cancelled".into()).into())
    }
}
