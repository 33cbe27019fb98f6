//! Phase 1 builds `-p inventory -p pricing`; scripts/up.sh builds them
//! with the CLI. Cargo resolves features per selection, so unless the two
//! agree on every package the services use, phase 1 recompiles what the
//! CLI build just compiled (services/workspace-hack asks for the union).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Package (name and version) → every feature set it is built with.
fn features(packages: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "tree",
        "--locked",
        "--offline",
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "-f",
        "{p}|{f}",
    ]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((pkg, feats)) = line.split_once('|') else {
            continue;
        };
        // "name vX.Y.Z (path)" → "name vX.Y.Z"
        let pkg: Vec<&str> = pkg.split(' ').take(2).collect();
        map.entry(pkg.join(" "))
            .or_default()
            .insert(feats.to_owned());
    }
    map
}

#[test]
fn the_services_build_alone_with_the_features_the_cli_build_gives_them() {
    let alone = features(&["inventory", "pricing"]);
    let with_cli = features(&["eshop", "inventory", "pricing"]);
    assert!(alone.len() > 100, "{alone:?}");
    let differ: Vec<String> = alone
        .iter()
        .filter(|(pkg, feats)| with_cli.get(*pkg) != Some(*feats))
        .map(|(pkg, feats)| {
            format!(
                "{pkg}: alone {feats:?}, with the CLI {:?}",
                with_cli.get(pkg)
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "add these features to services/workspace-hack/Cargo.toml:\n{}",
        differ.join("\n")
    );
}
