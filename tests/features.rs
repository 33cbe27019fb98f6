//! scripts/up.sh compiles the whole workspace once; phase 1 then builds
//! `-p inventory -p pricing`, and `cargo run -- destroy` builds `-p eshop`.
//! Cargo resolves features per selection, so unless every selection asks
//! for feature sets the first build already compiled, each recompiles
//! much of it (services/workspace-hack asks for the union).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Package (name and version) → every feature set it is built with.
fn features(selection: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "--offline", "-e", "normal,build"])
        .args(["--prefix", "none", "-f", "{p}|{f}"])
        .args(selection)
        .output()
        .expect("cargo tree");
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
fn every_selection_builds_what_the_first_workspace_build_compiled() {
    let workspace = features(&["--workspace"]);
    for selection in [&["-p", "inventory", "-p", "pricing"][..], &["-p", "eshop"]] {
        let alone = features(selection);
        assert!(alone.len() > 100, "{selection:?}: {alone:?}");
        let missing: Vec<String> = alone
            .iter()
            .filter(|(pkg, sets)| !workspace.get(*pkg).is_some_and(|w| sets.is_subset(w)))
            .map(|(pkg, sets)| {
                format!(
                    "{pkg}: {sets:?}, the workspace build has {:?}",
                    workspace.get(pkg)
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{selection:?} would compile these again; add their features to services/workspace-hack/Cargo.toml:\n{}",
            missing.join("\n")
        );
    }
}
