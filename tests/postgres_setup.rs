//! templates/kubernetes/postgres-setup.sh, the database pod's postStart
//! hook, against the real PostgreSQL of scripts/test-setup.sh (as the
//! superuser the pod runs it as): one role and one closed database per
//! owner, idempotent, the Secret's password the truth.

use std::path::Path;
use std::process::Command;

const ADMIN: &str = "postgres://eshop_test_admin:eshop_test_admin@127.0.0.1:5432/postgres";

fn run_setup(secrets: &Path, services: &Path) -> std::process::Output {
    Command::new("sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/kubernetes/postgres-setup.sh"))
        .envs([
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", "5432"),
            ("PGUSER", "eshop_test_admin"),
            ("PGPASSWORD", "eshop_test_admin"),
            ("PGDATABASE", "postgres"),
        ])
        .env("ESHOP_DB_SECRETS", secrets)
        .env("ESHOP_DB_SERVICES", services)
        .output()
        .expect("sh")
}

fn psql(url: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql (scripts/test-setup.sh installs PostgreSQL)")
}

fn url(role: &str, pw: &str, db: &str) -> String {
    format!("postgres://{role}:{pw}@127.0.0.1:5432/{db}")
}

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for r in &self.0 {
            psql(
                ADMIN,
                &format!("DROP DATABASE IF EXISTS \"{r}\" WITH (FORCE)"),
            );
            psql(ADMIN, &format!("DROP ROLE IF EXISTS \"{r}\""));
        }
    }
}

#[test]
fn every_owner_gets_its_own_role_and_closed_database_and_a_rerun_changes_nothing() {
    let tag = format!("{:08x}", std::process::id() ^ 0x5eed_u32.rotate_left(7));
    let (a, b) = (format!("users-{tag}"), format!("payments-{tag}"));
    let _clean = Cleanup(vec![a.clone(), b.clone()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{a}-password")), "pw-a-1").unwrap();
    // A password with quotes and a backslash stays a value.
    std::fs::write(dir.path().join(format!("{b}-password")), "pw'b\\\"2").unwrap();
    let services = dir.path().join("services");
    std::fs::write(&services, format!("{a}\n{b}\n")).unwrap();

    for round in 0..2 {
        let out = run_setup(dir.path(), &services);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("{a} ready")) && said.contains(&format!("{b} ready")),
            "{said}"
        );
    }
    // Each logs in to its own database, which it owns.
    let owner = psql(
        &url(&a, "pw-a-1", &a),
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
    );
    assert!(
        owner.status.success(),
        "{}",
        String::from_utf8_lossy(&owner.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), a);
    let enc = |s: &str| {
        s.replace('\'', "%27")
            .replace('\\', "%5C")
            .replace('"', "%22")
    };
    assert!(psql(&url(&b, &enc("pw'b\\\"2"), &b), "SELECT 1")
        .status
        .success());
    // And not to the other's.
    let cross = psql(&url(&a, "pw-a-1", &b), "SELECT 1");
    assert!(!cross.status.success());
    assert!(
        String::from_utf8_lossy(&cross.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&cross.stderr)
    );
    // The Secret is the truth: a new password is set at the next start.
    std::fs::write(dir.path().join(format!("{a}-password")), "pw-a-new").unwrap();
    assert!(run_setup(dir.path(), &services).status.success());
    assert!(psql(&url(&a, "pw-a-new", &a), "SELECT 1").status.success());
    assert!(!psql(&url(&a, "pw-a-1", &a), "SELECT 1").status.success());
}
