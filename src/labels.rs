//! eshop's ownership marks, the same keys on every engine: Docker labels,
//! Kubernetes labels and AWS tags. Destroy finds what eshop owns by these,
//! so they never change spelling from one engine to another.

use std::collections::BTreeMap;

/// The project (`eshop.toml`'s `project`).
pub const PROJECT: &str = "eshop/project";
/// The target (`local` or `aws`).
pub const TARGET: &str = "eshop/target";
/// The phase that created the object.
pub const PHASE: &str = "eshop/phase";
/// Hash of an object's desired settings: equal hash, nothing to change.
pub const SPEC: &str = "eshop/spec";
/// The catalogue entry a container or image belongs to.
pub const SERVICE: &str = "eshop/service";
/// What an object is for when a phase owns several of one kind (AWS).
pub const ROLE: &str = "eshop/role";
/// Which monitoring component (prometheus, grafana) a container runs.
pub const COMPONENT: &str = "eshop/component";
/// The person an `add-user` certificate request is for.
pub const USER: &str = "eshop/user";

/// The three marks of ownership, as one map.
pub fn owner(project: &str, target: &str, phase: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (PROJECT, project.to_owned()),
        (TARGET, target.to_owned()),
        (PHASE, phase.to_owned()),
    ])
}
