//! The stop-the-shop Lambda handler (templates/lambda/stop_shop.py, phase
//! 4, run every evening at `schedule.stop_at`) against moto's real AWS
//! server: a Python driver seeds tagged and untagged look-alike instances
//! and groups, runs the handler, and checks the effects with its own boto3
//! clients.

mod common;

use common::{venv_bin, Moto};
use std::process::Command;

#[test]
fn the_handler_scales_groups_to_zero_stops_standalone_instances_and_leaves_others_alone() {
    let moto = Moto::start();
    let out = Command::new(venv_bin("python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/lambda/test_stop_shop.py"
        ))
        .envs(moto.env())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
