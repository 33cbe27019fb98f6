//! Phase 9 config (scratch).

mod common;

use common::ssh_hosts::Hosts;

/// Scratch: keeps three hosts up for manual ansible runs until
/// /tmp/cfg-hold is removed.
#[test]
#[ignore]
fn hold_hosts() {
    let hosts = Hosts::start(&["cp", "w1", "w2"]);
    let mut text = String::new();
    for h in &hosts.hosts {
        text.push_str(&format!("{} {} {}\n", h.name, h.addr, h.root.display()));
    }
    text.push_str(&format!("dir {}\nssh_config {}\nkey {}\nknown {}\n", hosts.dir.path().display(), hosts.ssh_config().display(), hosts.client_key().display(), hosts.known_hosts().display()));
    std::fs::write("/tmp/cfg-hold", text).unwrap();
    while std::path::Path::new("/tmp/cfg-hold").exists() {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
