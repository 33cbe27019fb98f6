//! What several integration test files share: the harness that runs the
//! `eshop` binary in a project of its own (cli.rs), free loopback ports,
//! moto's real AWS server, and the Python tools of the test virtualenv.
#![allow(dead_code)] // each test binary uses a different part

pub mod cli;
pub mod cluster;
pub mod kube_mock;
pub mod ssh_hosts;

use std::process::{Child, Command, Stdio};

/// A real ed25519 public key for phase 3's key pair (public: nothing
/// secret about it; moto never logs in with it).
pub const TEST_PUBKEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq6XQv0m2Cq3wJ7bVfKp0u3cE1nM8yD4kLzR2sT5uVw eshop-test";
use std::time::{Duration, Instant};

pub fn venv_bin(name: &str) -> std::path::PathBuf {
    let p = kit::testing::venv_tool(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/test-setup.sh",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    // The kernel may hand a just-released port out again at once, and a
    // test asks for several (one per service, Prometheus, Grafana), which
    // must differ: never the same one twice in a process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A moto server of the test's own; killed when dropped.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for boto3 and the AWS SDK: fake credentials, moto's URL.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "eu-west-1".into()),
            ("AWS_REGION", "eu-west-1".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
