//! Real OpenSSH servers ("hosts") for the tests of eshop's kubeadm bootstrap
//! over SSH. Each host is an `sshd` in a network namespace of its own (a veth
//! pair to the root namespace, a /30 out of 10.213.0.0/16 claimed for the
//! test run), a mount namespace of its own (overlays over /etc, /var/lib and
//! /root, so whatever a node script writes there stays in that host's view
//! and leaves the machine's untouched) and a UTS namespace (its hostname is
//! its name). Inside, the host's stand-in bin dir is bind-mounted over
//! /usr/local/sbin, the first directory of the node scripts' PATH: there, the
//! commands that would change this machine or need the internet (apt-get,
//! systemctl, kubeadm, kubectl, ...) are recording stand-ins from
//! tests/ssh/standins. They append one line per call to the host's calls log
//! ([`Hosts::calls`]) and emulate just enough state (packages, units, a fake
//! cluster shared by the hosts of one [`Hosts`]) in the harness directory on
//! the real filesystem. For Ansible's modules (phase 9) a python3-apt
//! stand-in sits in root's user site-packages of each host's /root.
//!
//! Needs root, iproute2, util-linux and openssh-server (scripts/test-setup.sh).
//! Everything is torn down when the [`Hosts`] is dropped, panics included;
//! namespaces left by a test process that was killed are removed by the next
//! [`Hosts::start`].

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Every network namespace of the harness is named
/// `eshop-ssh-<pid of the test process>-<subnet index>`.
pub const NETNS_PREFIX: &str = "eshop-ssh-";

/// The remote command eshop runs every node script with (the script on stdin).
pub const REMOTE_WRAPPER: &str = r#"sh -c '[ "$(id -u)" = 0 ] && exec timeout -k 10 900 bash -s || exec sudo -n timeout -k 10 900 bash -s'"#;

/// /30 subnets in 10.213.0.0/16.
const SUBNETS: u32 = 1 << 14;
/// The root-namespace end of a host's veth pair is `eshs<subnet index>`.
const VETH_PREFIX: &str = "eshs";
/// Directories each host sees through an overlay of its own.
const OVERLAID: [(&str, &str); 3] = [("/etc", "etc"), ("/var/lib", "var-lib"), ("/root", "root")];
const STANDIN_BIN: &str = "/usr/local/sbin";
const SSHD: &str = "/usr/sbin/sshd";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the stand-in scripts are kept in the repository.
pub fn standins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ssh/standins")
}

/// eshop's kubeadm node script templates.
pub fn kubeadm_templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/kubeadm")
}

/// Replaces every `{{key}}` of `text` by its value; panics when a
/// placeholder is left.
pub fn render(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(at) = out.find("{{") {
        let end = out[at..].find("}}").map_or(out.len(), |e| at + e + 2);
        panic!("placeholder {} left unfilled", &out[at..end]);
    }
    out
}

/// A node script as eshop sends it: templates/kubeadm/lib.sh, then the
/// template `name` (e.g. "prepare-node.sh") with its placeholders filled.
pub fn kubeadm_script(name: &str, vars: &[(&str, &str)]) -> String {
    let dir = kubeadm_templates_dir();
    let read = |f: &str| {
        fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
    };
    let lib = read("lib.sh");
    format!("{lib}\n{}", render(&read(name), vars))
}

/// One call of a stand-in, from a host's calls log.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// When, in seconds since the epoch (nanosecond resolution).
    pub t: f64,
    pub host: String,
    pub cmd: String,
    pub args: Vec<String>,
}

impl Call {
    /// The command line, arguments joined by single spaces.
    pub fn line(&self) -> String {
        std::iter::once(self.cmd.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// True when the call was `cmd` with `args` at its start.
    pub fn is(&self, cmd: &str, args: &[&str]) -> bool {
        self.cmd == cmd
            && self.args.len() >= args.len()
            && self.args.iter().zip(args).all(|(a, b)| a == b)
    }

    fn parse(line: &str) -> Option<Call> {
        let mut fields = line.split(' ');
        let t = fields.next()?.parse().ok()?;
        let host = fields.next()?.to_owned();
        let cmd = fields.next()?.to_owned();
        let args = fields.map(unescape).collect();
        Some(Call { t, host, cmd, args })
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.9} {} {}", self.t, self.host, self.line())
    }
}

/// Undoes the stand-ins' escaping of an argument: \\ \s \t \n.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// One host: an sshd in its own network, mount and UTS namespaces.
pub struct Host {
    pub name: String,
    /// The host's address, inside its network namespace.
    pub addr: Ipv4Addr,
    /// sshd's port on `addr`.
    pub port: u16,
    /// The root namespace's end of the veth pair.
    pub gateway: Ipv4Addr,
    /// The host's directory: bin/ (stand-ins), state/, overlay/, ssh/, logs.
    pub root: PathBuf,
    pub netns: String,
    /// The veth interface in the root namespace.
    pub veth: String,
    /// The public host key, "ssh-ed25519 AAAA...".
    pub host_key: String,
    /// Keeps the mount namespace (and so the host's /etc view) while sshd is stopped.
    holder: Mutex<Option<Child>>,
    sshd: Mutex<Option<Child>>,
}

impl Host {
    /// The stand-ins' log of this host's calls.
    pub fn calls_log(&self) -> PathBuf {
        self.root.join("calls.log")
    }

    /// The stand-ins' state of this host (packages, units, swap...), on
    /// the real filesystem.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The directory mounted over /usr/local/sbin in the host's view.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// What sshd wrote to stderr.
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.root.join("sshd.log")).unwrap_or_default()
    }

    fn holder_pid(&self) -> u32 {
        self.holder
            .lock()
            .unwrap()
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("host {} has no namespaces", self.name))
    }

    fn teardown(&self) {
        kill_netns_processes(&self.netns, None);
        for child in [&self.sshd, &self.holder] {
            if let Some(mut c) = child.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = run("ip", &["netns", "del", &self.netns]);
        let _ = run("ip", &["link", "del", &self.veth]);
    }
}

/// N hosts, torn down on drop.
pub struct Hosts {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<Host>,
    client_key: PathBuf,
    known_hosts: PathBuf,
    ssh_config: PathBuf,
    configs: AtomicUsize,
}

impl Hosts {
    /// Starts one host per name (e.g. "node-1", "node-2"), each with sshd
    /// on `<addr>:22` accepting the harness's client key for root; returns
    /// once every sshd accepts connections.
    pub fn start(names: &[&str]) -> Hosts {
        preconditions();
        static REAP: Once = Once::new();
        REAP.call_once(reap_stale);
        assert!(!names.is_empty(), "no host names");
        for (i, n) in names.iter().enumerate() {
            assert!(
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    && !names[..i].contains(n),
                "host names must be unique [A-Za-z0-9.-]+: {names:?}"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{NETNS_PREFIX}{}-", std::process::id()))
            .tempdir_in(temp_base())
            .expect("temp dir");
        let base = dir.path().to_owned();
        fs::create_dir_all(base.join("cluster")).unwrap();
        fs::create_dir_all(base.join("hosts")).unwrap();
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").unwrap();
        let client_key = base.join("client_key");
        keygen(&client_key, "eshop-test-client");
        let mut hosts = Hosts {
            known_hosts: base.join("known_hosts"),
            ssh_config: base.join("ssh_config"),
            dir,
            hosts: Vec::new(),
            client_key,
            configs: AtomicUsize::new(0),
        };
        // A panic from here on drops `hosts`, which removes what exists so far.
        for name in names {
            hosts.add(name);
        }
        for h in &hosts.hosts {
            wait_for_sshd(h);
        }
        let known: String = hosts
            .hosts
            .iter()
            .map(|h| format!("{} {}\n", h.addr, h.host_key))
            .collect();
        fs::write(&hosts.known_hosts, known).unwrap();
        hosts.write_config(&hosts.ssh_config, &hosts.known_hosts, "yes");
        hosts
    }

    fn add(&mut self, name: &str) {
        let (idx, veth) = claim_subnet();
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + idx * 4;
        let netns = format!("{NETNS_PREFIX}{}-{idx}", std::process::id());
        let root = self.dir.path().join("hosts").join(name);
        let (gateway, addr) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        self.hosts.push(Host {
            name: name.to_owned(),
            addr,
            port: 22,
            gateway,
            root: root.clone(),
            netns: netns.clone(),
            veth: veth.clone(),
            host_key: String::new(),
            holder: Mutex::new(None),
            sshd: Mutex::new(None),
        });

        // Network: the peer goes into the namespace as eth0.
        {
            // `ip netns add` of two threads at once can race on /run/netns.
            static NETNS_ADD: Mutex<()> = Mutex::new(());
            let _g = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
            must("ip", &["netns", "add", &netns]);
        }
        let peer = format!("{veth}p");
        must("ip", &["link", "set", &peer, "netns", &netns]);
        must("ip", &["-n", &netns, "link", "set", &peer, "name", "eth0"]);
        must(
            "ip",
            &["addr", "add", &format!("{gateway}/30"), "dev", &veth],
        );
        must("ip", &["link", "set", &veth, "up"]);
        must(
            "ip",
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                "eth0",
            ],
        );
        must("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
        must("ip", &["-n", &netns, "link", "set", "lo", "up"]);

        // Files: sshd's, the stand-ins and their state, the overlay dirs.
        for d in ["ssh", "bin", "state"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for (_, o) in OVERLAID {
            fs::create_dir_all(root.join("overlay").join(o).join("upper")).unwrap();
            fs::create_dir_all(root.join("overlay").join(o).join("work")).unwrap();
        }
        let key = root.join("ssh/ssh_host_ed25519_key");
        keygen(&key, &format!("eshop-test-host-{name}"));
        let host_key = pubkey(&key.with_extension("pub"));
        fs::copy(
            self.client_key.with_extension("pub"),
            root.join("ssh/authorized_keys"),
        )
        .unwrap();
        let p = |rel: &str| root.join(rel).display().to_string();
        fs::write(
            root.join("ssh/sshd_config"),
            format!(
                "# sshd of the eshop test host {name} (tests/common/ssh_hosts.rs)\n\
                 ListenAddress {addr}:22\n\
                 HostKey {}\n\
                 PidFile {}\n\
                 AuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 MaxStartups 100\n\
                 MaxSessions 100\n\
                 Subsystem sftp internal-sftp\n\
                 LogLevel INFO\n",
                p("ssh/ssh_host_ed25519_key"),
                p("ssh/sshd.pid"),
                p("ssh/authorized_keys"),
            ),
        )
        .unwrap();
        install_standins(&root.join("bin"));
        let env = [
            ("STANDIN_HOST", name.to_owned()),
            ("STANDIN_ADDR", addr.to_string()),
            ("STANDIN_LOG", p("calls.log")),
            ("STANDIN_STATE", p("state")),
            (
                "STANDIN_CLUSTER",
                self.dir.path().join("cluster").display().to_string(),
            ),
        ];
        let mut text = format!(
            "# Written by tests/common/ssh_hosts.rs for the test host {name}: where the\n\
             # test stand-ins in this directory record calls and keep their state.\n"
        );
        for (k, v) in env {
            assert!(!v.contains('\''), "{v}");
            text.push_str(&format!("{k}='{v}'\n"));
        }
        fs::write(root.join("bin/standin-env"), text).unwrap();
        fs::write(root.join("calls.log"), "").unwrap();
        // Hosts start with swap on, as a fresh cloud VM may.
        fs::write(root.join("state/swap-on"), "").unwrap();
        self.hosts.last_mut().unwrap().host_key = host_key;

        // A host runs sshd (the ssh unit, as systemctl's stand-in sees it).
        fs::create_dir_all(root.join("state/units")).unwrap();
        for f in ["ssh.enabled", "ssh.active"] {
            fs::write(root.join("state/units").join(f), "").unwrap();
        }
        install_python_standins(&root.join("overlay/root/upper"));

        // Mount and UTS namespaces, kept by a holder process.
        let holder_log = fs::File::create(root.join("holder.log")).unwrap();
        let mut holder = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
            ])
            .args(["bash", "-c", HOLDER_SCRIPT, "holder"])
            .arg(&root)
            .arg(name)
            .arg(STANDIN_BIN)
            .args(OVERLAID.iter().map(|(dir, o)| format!("{dir}:{o}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(holder_log)
            .spawn()
            .expect("ip netns exec");
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        let ready = line.trim() == "ready";
        *self.hosts.last().unwrap().holder.lock().unwrap() = Some(holder);
        assert!(
            ready,
            "namespaces of host {name} not set up: {}",
            fs::read_to_string(root.join("holder.log")).unwrap_or_default()
        );
        self.spawn_sshd(self.hosts.last().unwrap());
    }

    fn spawn_sshd(&self, h: &Host) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(h.root.join("sshd.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .args([
                "-t",
                &h.holder_pid().to_string(),
                "-m",
                "-u",
                "-n",
                SSHD,
                "-D",
                "-e",
                "-f",
            ])
            .arg(h.root.join("ssh/sshd_config"))
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nsenter sshd");
        *h.sshd.lock().unwrap() = Some(child);
    }

    /// The host called `name`; panics for an unknown one.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} (hosts: {:?})", self.names()))
    }

    pub fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// The private key that every host accepts for root.
    pub fn client_key(&self) -> PathBuf {
        self.client_key.clone()
    }

    /// An ssh client config (`ssh -F`) with a `Host <name>` entry per host:
    /// its address, port 22, user root, the client key only, the harness's
    /// known_hosts with strict checking, batch mode.
    pub fn ssh_config(&self) -> PathBuf {
        self.ssh_config.clone()
    }

    /// A known_hosts file with every host's real host key (`<addr> <key>`).
    pub fn known_hosts(&self) -> PathBuf {
        self.known_hosts.clone()
    }

    /// Another ssh client config, like [`Hosts::ssh_config`] but with
    /// `UserKnownHostsFile known_hosts` and `StrictHostKeyChecking strict`
    /// ("yes", "accept-new", "no").
    pub fn ssh_config_with_known_hosts(&self, known_hosts: &Path, strict: &str) -> PathBuf {
        let n = self.configs.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("ssh_config.{n}"));
        self.write_config(&path, known_hosts, strict);
        path
    }

    fn write_config(&self, path: &Path, known_hosts: &Path, strict: &str) {
        let mut text = String::from(
            "# ssh client config for the eshop test hosts (tests/common/ssh_hosts.rs)\n",
        );
        for h in &self.hosts {
            text.push_str(&format!(
                "Host {}\n  HostName {}\n  Port {}\n  User root\n  IdentityFile \"{}\"\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile \"{}\"\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking {strict}\n  \
                 UpdateHostKeys no\n  BatchMode yes\n  LogLevel ERROR\n  ConnectTimeout 5\n  ControlMaster no\n  \
                 ControlPath none\n",
                h.name,
                h.addr,
                h.port,
                self.client_key.display(),
                known_hosts.display(),
            ));
        }
        fs::write(path, text).unwrap();
    }

    /// The API server URL that the kubeadm stand-in writes into admin.conf
    /// at init (default `https://<address of the init host>:6443`). Set it
    /// before the init script runs.
    pub fn set_api_server(&self, url: &str) {
        fs::write(
            self.dir.path().join("cluster/api-server"),
            format!("{url}\n"),
        )
        .unwrap();
    }

    /// The fake cluster's state shared by the stand-ins of all hosts.
    pub fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// The stand-in calls of one host, in order.
    pub fn calls(&self, host: &str) -> Vec<Call> {
        let h = self.host(host);
        let text = fs::read_to_string(h.calls_log()).unwrap_or_default();
        text.lines()
            .map(|l| {
                Call::parse(l)
                    .unwrap_or_else(|| panic!("bad line in {}: {l:?}", h.calls_log().display()))
            })
            .collect()
    }

    /// The stand-in calls of all hosts, by time.
    pub fn all_calls(&self) -> Vec<Call> {
        let mut all: Vec<Call> = self
            .hosts
            .iter()
            .flat_map(|h| self.calls(&h.name))
            .collect();
        all.sort_by(|a, b| a.t.total_cmp(&b.t));
        all
    }

    /// Stops the host's sshd and ends its sessions: new connections are
    /// refused. The host's view of its files stays (see [`Hosts::file`]).
    pub fn stop(&self, host: &str) {
        let h = self.host(host);
        if let Some(mut c) = h.sshd.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_netns_processes(&h.netns, Some(h.holder_pid()));
    }

    /// Starts a stopped host's sshd again, with the same host key.
    pub fn restart(&self, host: &str) {
        let h = self.host(host);
        if h.sshd.lock().unwrap().is_none() {
            self.spawn_sshd(h);
        }
        wait_for_sshd(h);
    }

    /// A file's content as the host sees it (e.g. "/etc/kubernetes/admin.conf"),
    /// or None when it does not exist there.
    pub fn file(&self, host: &str, path: &str) -> Option<String> {
        let out = self.exec_args(host, &["cat", "--", path], None);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `bash -c script` inside the host's namespaces (as root, not over
    /// ssh): to set up or inspect a host.
    pub fn exec(&self, host: &str, script: &str) -> Output {
        self.exec_args(host, &["bash", "-c", script], None)
    }

    fn exec_args(&self, host: &str, args: &[&str], stdin: Option<&str>) -> Output {
        self.exec_command(host).args(args, stdin)
    }

    /// [`Hosts::exec`] for another thread (a load, a stand-in daemon): it
    /// holds the host's namespaces by pid, valid while the [`Hosts`] lives.
    pub fn exec_command(&self, host: &str) -> HostExec {
        HostExec {
            pid: self.host(host).holder_pid(),
        }
    }

    /// `ssh -F <ssh_config> <host> <remote>` with `stdin`.
    pub fn ssh(&self, host: &str, remote: &str, stdin: &str) -> Output {
        self.ssh_with_config(&self.ssh_config, host, remote, stdin)
    }

    pub fn ssh_with_config(&self, config: &Path, host: &str, remote: &str, stdin: &str) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(config).arg(host).arg(remote);
        output_with_stdin(cmd, Some(stdin))
    }

    /// Runs a node script on the host the way eshop does: over ssh,
    /// [`REMOTE_WRAPPER`] as the remote command, the script on stdin.
    pub fn run_script(&self, host: &str, script: &str) -> Output {
        self.ssh(host, REMOTE_WRAPPER, script)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &self.hosts {
            h.teardown();
        }
    }
}

/// Run by `unshare` in the new mount and UTS namespaces: HOST-DIR NAME
/// BIN-MOUNTPOINT DIR:OVERLAY-NAME...
const HOLDER_SCRIPT: &str = r#"
set -euo pipefail
root="$1" name="$2" bin="$3"
shift 3
for pair in "$@"; do
  dir="${pair%%:*}" o="$root/overlay/${pair#*:}"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$o/upper,workdir=$o/work" "$dir"
done
mount --bind "$root/bin" "$bin"
hostname "$name"
echo ready
exec sleep infinity </dev/null >/dev/null
"#;

fn preconditions() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the ssh test hosts need root (network and mount namespaces)"
    );
    for tool in [SSHD, "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} missing: run scripts/test-setup.sh (openssh-server)"
        );
    }
}

/// A temp dir base that none of the hosts' overlays hides.
fn temp_base() -> PathBuf {
    let t = std::env::temp_dir();
    let hidden = OVERLAID
        .iter()
        .map(|(d, _)| *d)
        .chain([STANDIN_BIN])
        .any(|d| t.starts_with(d));
    if hidden {
        PathBuf::from("/tmp")
    } else {
        t
    }
}

fn install_standins(bin: &Path) {
    let src = standins_dir();
    for entry in fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            // fs::copy keeps the executable bits.
            fs::copy(entry.path(), bin.join(entry.file_name())).unwrap();
        }
    }
}

/// The python3-apt STAND-IN (tests/ssh/python: `apt` and
/// `apt_pkg` over the apt-get stand-in's package state) in root's user
/// site-packages of the host's overlaid /root, where the real python3
/// that Ansible's apt module runs on finds it. `upper` is the host's
/// upper dir of /root, written before the overlay is mounted.
fn install_python_standins(upper: &Path) {
    static SITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let site = SITE.get_or_init(|| {
        let out = Command::new("/usr/bin/python3")
            .args(["-c", "import site; print(site.getusersitepackages())"])
            .env("HOME", "/root")
            .output()
            .expect("/usr/bin/python3");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    });
    let rel = site
        .strip_prefix("/root/")
        .unwrap_or_else(|| panic!("python3's user site {site:?} is not under /root"));
    copy_tree(&standins_dir().with_file_name("python"), &upper.join(rel));
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn must(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs commands inside one host's namespaces (see [`Hosts::exec_command`]).
#[derive(Clone, Copy)]
pub struct HostExec {
    pid: u32,
}

impl HostExec {
    /// `bash -c script` inside the host's namespaces, as root.
    pub fn run(&self, script: &str) -> Output {
        self.args(&["bash", "-c", script], None)
    }

    fn args(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-m", "-u", "-n", "--"])
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8");
        output_with_stdin(cmd, stdin)
    }
}

fn output_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let writer = stdin.map(|s| {
        let mut pipe = child.stdin.take().unwrap();
        let s = s.to_owned();
        // A writer thread, so a chatty command cannot block on a full stdout.
        std::thread::spawn(move || {
            let _ = pipe.write_all(s.as_bytes());
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(w) = writer {
        let _ = w.join();
    }
    out
}

fn keygen(path: &Path, comment: &str) {
    must(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            &path.display().to_string(),
        ],
    );
}

/// "type base64" of a public key file.
fn pubkey(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Claims a /30 of 10.213.0.0/16 for one host by creating its veth pair,
/// whose name carries the subnet's index: creating an interface that exists
/// fails, so two tests (threads or processes) never get the same subnet.
fn claim_subnet() -> (u32, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let in_use: Vec<u32> = must("ip", &["-o", "-4", "addr", "show"])
        .split_whitespace()
        .filter_map(|w| {
            w.split_once('/')
                .and_then(|(a, _)| a.parse::<Ipv4Addr>().ok())
        })
        .map(u32::from)
        .collect();
    let start = std::process::id().wrapping_mul(7919) % SUBNETS;
    for _ in 0..SUBNETS {
        let idx = (start + NEXT.fetch_add(1, Ordering::SeqCst)) % SUBNETS;
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + idx * 4;
        if in_use.iter().any(|a| (base..base + 4).contains(a)) {
            continue;
        }
        let veth = format!("{VETH_PREFIX}{idx}");
        let out = run(
            "ip",
            &[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{veth}p"),
            ],
        );
        if out.status.success() {
            return (idx, veth);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("File exists"), "ip link add {veth}: {err}");
    }
    panic!("no free /30 left in 10.213.0.0/16");
}

/// Kills every process in the network namespace except `keep` (processes
/// the harness started there: the holder, sshd and its sessions).
fn kill_netns_processes(netns: &str, keep: Option<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<String> =
            String::from_utf8_lossy(&run("ip", &["netns", "pids", netns]).stdout)
                .split_whitespace()
                .filter(|p| Some(p.parse::<u32>().unwrap_or(0)) != keep)
                .map(str::to_owned)
                .collect();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        let mut args = vec!["-KILL"];
        args.extend(pids.iter().map(String::as_str));
        let _ = run("kill", &args);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the namespaces, veths and directories of harness runs whose test
/// process is gone (killed before its Drop ran).
fn reap_stale() {
    let list = run("ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((pid, idx)) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|r| r.split_once('-'))
        else {
            continue;
        };
        let (Ok(pid), Ok(idx)) = (pid.parse::<u32>(), idx.parse::<u32>()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_netns_processes(name, None);
        let _ = run("ip", &["netns", "del", name]);
        let _ = run("ip", &["link", "del", &format!("{VETH_PREFIX}{idx}")]);
    }
    // The directories are named like the namespaces: eshop-ssh-<pid>-<random>.
    // Their overlays went with the namespaces' processes above.
    let Ok(entries) = fs::read_dir(temp_base()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|r| r.split_once('-'))
            .map(|(p, _)| p)
        else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .map_or(true, |p| Path::new(&format!("/proc/{p}")).exists());
        if !alive && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Waits until the host's sshd accepts TCP connections.
fn wait_for_sshd(h: &Host) {
    let addr = SocketAddr::from((h.addr, h.port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(c) = h.sshd.lock().unwrap().as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("sshd of {} exited ({status}): {}", h.name, h.sshd_log());
            }
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sshd of {} does not accept connections on {addr}; its stderr: {}",
            h.name,
            h.sshd_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
