//! scripts/up.sh compiles the whole workspace once; phase 1 then builds
//! `-p inventory -p pricing`, and `cargo run -- destroy` builds `-p eshop`.
//! Cargo resolves features per selection, so unless every selection asks
//! for feature sets the first build already compiled, each recompiles
//! much of it (services/workspace-hack asks for the union).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Package (name and version) → every feature set it is built with.
fn features(selection: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    features_of("normal,build", selection)
}

/// The same, for the dependency kinds `edges` (`normal,build,dev`: what
/// `cargo test` compiles).
fn features_of(edges: &str, selection: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "--offline", "-e", edges])
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

/// `cargo test --workspace` (these tests, CI) and `cargo build
/// --workspace` (a pipeline's build stage, phase 1 with build.profile =
/// "dev") must compile every dependency with the same features, or each
/// compiles much of the other's work again: dev-dependencies must not
/// turn on a feature of a shared dependency that the workspace-hack does
/// not already ask for. Only the workspace's own crates may differ (kit's
/// `testing` helpers exist for tests alone).
#[test]
fn tests_and_builds_compile_the_same_dependencies() {
    let build = features(&["--workspace"]);
    let test = features_of("normal,build,dev", &["--workspace"]);
    let own = [
        "eshop",
        "kit",
        "inventory",
        "pricing",
        "users",
        "payments",
        "orders",
        "storefront",
        "workspace-hack",
    ];
    let differ: Vec<String> = build
        .iter()
        .filter(|(pkg, _)| !own.iter().any(|o| pkg.split(' ').next() == Some(*o)))
        .filter(|(pkg, sets)| test.get(*pkg).is_some_and(|t| t != *sets))
        .map(|(pkg, sets)| format!("{pkg}: build {sets:?}, test {:?}", test[pkg]))
        .collect();
    assert!(
        differ.is_empty(),
        "tests compile these with other features; add the tests' features to services/workspace-hack/Cargo.toml:\n{}",
        differ.join("\n")
    );
}
