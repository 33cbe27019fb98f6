//! The stop-at-18:00 Lambda handler (templates/lambda/stop_shop.py, phase
//! 4) against moto's real AWS server: a Python driver seeds tagged and
//! untagged look-alike instances and groups, runs the handler, and checks
//! the effects with its own boto3 clients.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn venv_bin(name: &str) -> std::path::PathBuf {
    let p = kit::testing::venv_tool(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/test-setup.sh",
        p.display()
    );
    p
}

struct Moto(std::process::Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_handler_scales_groups_to_zero_stops_standalone_instances_and_leaves_others_alone() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _moto = Moto(
        Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(venv_bin("python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/lambda/test_stop_shop.py"
        ))
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
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
