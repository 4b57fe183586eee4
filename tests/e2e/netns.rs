//! The end-to-end harness: throwaway network namespaces, veth links, processes inside them,
//! the relay under test and the traffic tool. Everything is removed on `Drop`, also when a test
//! panics.
//!
//! The usual topology (sender, relay, receivers), the relay's configuration and the traffic
//! between them are built in `topology.rs` (re-exported here: `use crate::netns::*` has it all):
//!
//! ```text
//! use crate::netns::*;
//! let t = Topology::new(2); // sender -- relay -- receiver 0, receiver 1 (see `Topology`)
//! let relay = t.start_relay(Config::rx0().multicast("rx1", "out1").group("in0", "239.1.1.1:5000", &["rx0", "rx1"]));
//! let rx = t.receive(0, &["239.1.1.1:5000"]);
//! let sent = t.send(&["239.1.1.1:5000"], &["--rate", "2000", "--count", "4000"]);
//! let report = rx.finish();
//! report.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
//! relay.stop(); // SIGTERM, asserts exit status 0 within one second
//! ```
//!
//! * [`Netns::new`] makes a namespace named `mcr-<pid>-<counter>-<role>` with `lo` up, IPv6
//!   duplicate address detection off and `rp_filter` 0; it first checks that we are root and that
//!   `ip netns` works, and panics loudly otherwise (end-to-end tests never skip).
//! * [`link`] joins two namespaces with a veth pair (interface names are per namespace, so tests
//!   use short fixed names like `in0`), adds addresses, turns UDP segmentation offload off on both
//!   ends (with it on, a sender's GSO burst reaches AF_PACKET over veth as one ~13 KB
//!   super-frame instead of one frame per datagram) and waits until both ends are up
//!   (the kernel drops what is sent earlier).
//! * [`Netns::spawn`] runs a process inside a namespace and captures its output; [`Proc`] kills
//!   it (by PID) on drop.
//! * [`Relay`] writes the config into a temporary directory, adds a `[daemon]` table with a
//!   private control socket (tests must not write `[daemon]` themselves; pass extra daemon keys
//!   with [`Relay::start_with`]), runs `mcrelay run -c` in the namespace and waits until it is
//!   ready: `READY=1` on `NOTIFY_SOCKET`, or a log line containing "ready".
//!   [`Relay::stats`] / [`Relay::stats_when`] read `mcrelay stats --json` from it; [`Relay::stop`]
//!   sends SIGTERM and asserts exit status 0 within one second.
//! * [`Receiver`] / [`send`] run `mcrelay-traffic recv` / `send` and parse their JSON reports;
//!   [`RecvReport::assert_complete`] is the usual verdict (every datagram once, in order, every
//!   byte intact). Anything else (`inject`, two senders at once) goes through [`Netns::spawn`]
//!   with [`TRAFFIC`].
//! * Relay views: [`count`], [`interface_stats`], [`group_stats`], [`destination_stats`] read
//!   `mcrelay stats --json` answers.
//! * Kernel views: [`memberships`] / [`assert_joined`] (IGMP/MLD), [`netstat`] (SNMP counters
//!   such as `TcpExt:IPReversePathFilter`), [`Netns::if_stat`] (interface counters).

// a toolbox: not every test uses every helper
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

// a file of its own, inside this module so that `tests/privilege.rs` (which includes this file)
// gets it too
#[path = "topology.rs"]
mod topology;
pub use topology::*;

pub const MCRELAY: &str = env!("CARGO_BIN_EXE_mcrelay");
pub const TRAFFIC: &str = env!("CARGO_BIN_EXE_mcrelay-traffic");

static COUNTER: AtomicU32 = AtomicU32::new(0);
static PREFLIGHT: Once = Once::new();

/// Runs a command to completion and panics (with its output) unless it succeeds.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (scripts/install-deps installs it)"));
    if !out.status.success() {
        panic!(
            "`{cmd} {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails loudly when the end-to-end tests cannot run here, and removes namespaces left behind by
/// earlier runs of this harness that were killed (their PID is gone).
fn preflight() {
    PREFLIGHT.call_once(|| {
        let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .expect("Uid line in /proc/self/status");
        assert!(
            euid == "0",
            "end-to-end tests need root (network namespaces, AF_PACKET): run `sudo scripts/test` \
             or `sudo cargo test --test e2e -- --test-threads=1`; euid is {euid}"
        );
        let out = Command::new("ip").args(["netns", "list"]).output();
        match out {
            Ok(o) if o.status.success() => {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    let name = line.split_whitespace().next().unwrap_or("");
                    let pid = name.strip_prefix("mcr-").and_then(|r| r.split('-').next());
                    if let Some(pid) = pid
                        && pid.parse::<u32>().is_ok()
                        && !Path::new(&format!("/proc/{pid}")).exists()
                    {
                        let _ = Command::new("ip").args(["netns", "del", name]).status();
                    }
                }
            }
            Ok(o) => panic!(
                "`ip netns list` failed: {}; the end-to-end tests need iproute2 with netns support",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run `ip`: {e}; run scripts/install-deps (iproute2)"),
        }
        for tool in ["ethtool", "sysctl"] {
            assert!(
                Command::new(tool).arg("--version").output().is_ok(),
                "`{tool}` not found: run scripts/install-deps"
            );
        }
    });
}

/// A network namespace that is deleted on drop (after killing whatever still runs in it).
pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace; `role` only makes the name readable (`ip netns list`).
    pub fn new(role: &str) -> Netns {
        preflight();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("mcr-{}-{n}-{role}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
        ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
        ns.sysctl("net.ipv4.conf.default.rp_filter", "0");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs a command inside the namespace to completion, panicking on failure; returns stdout.
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(cmd);
        run("ip", &a)
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// Sets `rp_filter` on one interface (0 off, 1 strict, 2 loose). The kernel uses the maximum
    /// of `all` and the interface's value; `Netns::new` sets `all` to 0.
    pub fn rp_filter(&self, ifname: &str, mode: u8) {
        self.sysctl(
            &format!("net.ipv4.conf.{ifname}.rp_filter"),
            &mode.to_string(),
        );
    }

    /// Starts `cmd` inside the namespace with stdout and stderr captured.
    pub fn spawn(&self, cmd: &[&str]) -> Proc {
        self.spawn_env(cmd, &[])
    }

    pub fn spawn_env(&self, cmd: &[&str], env: &[(&str, &str)]) -> Proc {
        // `ip netns exec` execs the command (no fork), so the child's PID is the command's
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?} in {}: {e}", self.name));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            pump(child.stdout.take().expect("piped"), Arc::clone(&stdout)),
            pump(child.stderr.take().expect("piped"), Arc::clone(&stderr)),
        ];
        Proc {
            what: format!("{} (in {})", cmd.join(" "), self.name),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Whether interface `ifname` exists in this namespace.
    pub fn has_link(&self, ifname: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", ifname])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The kernel's counters of an interface in this namespace (`rx_packets`, `tx_dropped`, …).
    pub fn if_stat(&self, ifname: &str, counter: &str) -> u64 {
        self.exec(&[
            "cat",
            &format!("/sys/class/net/{ifname}/statistics/{counter}"),
        ])
        .trim()
        .parse()
        .expect("a number")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // kill what still runs inside (only processes of this namespace, which we created)
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// Connects `a` and `b` with a veth pair `a_if` <-> `b_if`, adds the addresses (CIDR, IPv4 or
/// IPv6), disables UDP segmentation offload on both ends and waits until both are up.
pub fn link(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    assert!(
        a_if.len() <= 15 && b_if.len() <= 15,
        "interface names are at most 15 bytes"
    );
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            let mut args = vec!["addr", "add", addr, "dev", ifname];
            if addr.contains(':') {
                args.push("nodad");
            }
            ns.ip(&args);
        }
        ns.exec(&["ethtool", "-K", ifname, "tx-udp-segmentation", "off"]);
        // A veth has no queue by default: when the peer's ring is full (its softirq starved on
        // a busy machine) the kernel drops what is sent. A real NIC has a qdisc in front of its
        // ring; so does this link, and since 6.16 a full veth ring then holds the queue back
        // instead of dropping, so the test topology loses nothing the relay did not lose.
        ns.exec(&[
            "tc", "qdisc", "replace", "dev", ifname, "root", "pfifo", "limit", "10000",
        ]);
        ns.ip(&["link", "set", ifname, "up"]);
    }
    // the kernel activates a device's queue only when its carrier comes up (linkwatch, up to a
    // second later); anything sent before is dropped silently
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        wait_until(Duration::from_secs(5), || {
            ns.exec(&["cat", &format!("/sys/class/net/{ifname}/operstate")])
                .trim()
                == "up"
        })
        .unwrap_or_else(|()| panic!("{ifname} in {} did not come up", ns.name));
    }
}

/// Polls `f` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), ()> {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Calls `get` every 100 ms until `done` holds or `timeout` passed; returns the last answer.
fn poll_json(
    timeout: Duration,
    mut get: impl FnMut() -> serde_json::Value,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + timeout;
    loop {
        let v = get();
        if done(&v) || Instant::now() >= end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process started in a namespace. Dropping it kills it (SIGKILL, by PID) if still running.
pub struct Proc {
    what: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn pump(mut r: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .expect("output lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

/// How a process ended.
pub struct Exit {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("output lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("output lock").clone()
    }

    /// Sends a signal by PID (`kill -<sig>`), e.g. "TERM", "HUP", "INT".
    pub fn signal(&self, sig: &str) {
        run("kill", &[&format!("-{sig}"), &self.pid().to_string()]);
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until `pred(stdout + stderr)` holds; panics with the output after `timeout` or if the
    /// process exits first.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut pred: impl FnMut(&str) -> bool) {
        let end = Instant::now() + timeout;
        loop {
            let all = format!("{}{}", self.stdout(), self.stderr());
            if pred(&all) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50)); // let the readers finish
                panic!(
                    "{} exited ({st}) before {what}:\n{}{}",
                    self.what,
                    self.stdout(),
                    self.stderr()
                );
            }
            if Instant::now() >= end {
                panic!(
                    "{} not {what} after {timeout:?}:\n{}{}",
                    self.what,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit (at most `timeout`, then kills it and panics).
    pub fn wait(mut self, timeout: Duration) -> Exit {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} still running after {timeout:?}; killed:\n{}{}",
                    self.what,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Exit {
            code: status.code(),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill(); // SIGKILL to this PID
            let _ = self.child.wait();
        }
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("mcr-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mcrelay run` inside a namespace.
pub struct Relay {
    proc: Proc,
    dir: TempDir,
    _notify: UnixDatagram,
}

impl Relay {
    /// Writes `config` (without a `[daemon]` table) and runs the relay on it; waits until ready.
    pub fn start(ns: &Netns, config: impl std::fmt::Display) -> Relay {
        Relay::start_with(ns, "", config)
    }

    /// Like [`Relay::start`], with extra `[daemon]` keys (TOML lines) such as
    /// `stats_interval = "200ms"`.
    pub fn start_with(ns: &Netns, daemon_keys: &str, config: impl std::fmt::Display) -> Relay {
        let dir = TempDir::new();
        let sock = dir.path().join("control.sock");
        let path = dir.path().join("mcrelay.toml");
        let text = format!(
            "[daemon]\ncontrol_socket = \"{}\"\n{daemon_keys}\n\n{config}",
            sock.display()
        );
        std::fs::write(&path, &text).expect("write config");
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        notify
            .set_nonblocking(true)
            .expect("non-blocking notify socket");
        let mut proc = ns.spawn_env(
            &[MCRELAY, "run", "-c", path.to_str().expect("utf-8 path")],
            &[
                ("NOTIFY_SOCKET", notify_path.to_str().expect("utf-8 path")),
                ("RUST_LOG", "info"),
            ],
        );
        let mut notified = false;
        let mut buf = [0u8; 4096];
        proc.wait_for("ready", Duration::from_secs(10), |out| {
            while let Ok(n) = notify.recv(&mut buf) {
                notified |= String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1");
            }
            notified || out.to_lowercase().contains("ready")
        });
        Relay {
            proc,
            dir,
            _notify: notify,
        }
    }

    /// Path of the control socket (for `mcrelay stats --socket`).
    pub fn control_socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mcrelay.toml")
    }

    /// The relay's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        format!("{}{}", self.proc.stdout(), self.proc.stderr())
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// `mcrelay stats --json` from this relay's control socket.
    pub fn stats(&self) -> serde_json::Value {
        self.control_json("stats")
    }

    /// `mcrelay status --json` from this relay's control socket.
    pub fn status(&self) -> serde_json::Value {
        self.control_json("status")
    }

    /// `mcrelay <what> --json` from this relay's control socket, parsed.
    fn control_json(&self, what: &str) -> serde_json::Value {
        let sock = self.control_socket();
        let out = run(
            MCRELAY,
            &[
                what,
                "--json",
                "--socket",
                sock.to_str().expect("utf-8 path"),
            ],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad {what} JSON ({e}):\n{out}"))
    }

    /// Polls [`Relay::status`] until `done` holds, at most `timeout`; returns the last answer.
    pub fn status_when(
        &self,
        timeout: Duration,
        done: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        poll_json(timeout, || self.status(), done)
    }

    /// Polls [`Relay::stats`] until `done` holds (counters are published every
    /// `stats_interval`), at most `timeout`; returns the last answer either way.
    pub fn stats_when(
        &self,
        timeout: Duration,
        done: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        poll_json(timeout, || self.stats(), done)
    }

    /// SIGTERM; asserts that the relay exits with status 0 within one second. Returns its log.
    pub fn stop(self) -> String {
        self.stop_with("TERM")
    }

    /// Like [`Relay::stop`] with another signal (`"INT"`).
    pub fn stop_with(self, sig: &str) -> String {
        self.proc.signal(sig);
        let started = Instant::now();
        let exit = self.proc.wait(Duration::from_secs(3));
        let took = started.elapsed();
        let log = format!("{}{}", exit.stdout, exit.stderr);
        assert_eq!(
            exit.code,
            Some(0),
            "mcrelay exited with {:?} after SIG{sig}; log:\n{log}",
            exit.code
        );
        assert!(
            took <= Duration::from_secs(1),
            "mcrelay took {took:?} (> 1 s) to exit after SIG{sig}; log:\n{log}"
        );
        drop(self.dir);
        log
    }
}

/// `mcrelay-traffic recv --json …` running in a namespace.
pub struct Receiver {
    proc: Proc,
}

impl Receiver {
    /// Starts a receiver (the arguments of `mcrelay-traffic recv`, without `--json`) and waits
    /// until its sockets have joined. Default stop: 1 s idle after the last datagram, or 15 s.
    pub fn start(ns: &Netns, args: &[&str]) -> Receiver {
        let mut cmd = vec![
            TRAFFIC,
            "recv",
            "--json",
            "--idle",
            "1s",
            "--duration",
            "15s",
        ];
        cmd.extend_from_slice(args);
        let mut proc = ns.spawn(&cmd);
        proc.wait_for("ready", Duration::from_secs(5), |out| {
            out.contains("mcrelay-traffic: ready")
        });
        Receiver { proc }
    }

    /// Waits for the receiver to stop on its own and returns its report.
    pub fn finish(self) -> RecvReport {
        let exit = self.proc.wait(Duration::from_secs(30));
        assert_eq!(
            exit.code,
            Some(0),
            "mcrelay-traffic recv failed:\n{}",
            exit.stderr
        );
        let mut r: RecvReport = serde_json::from_str(&exit.stdout)
            .unwrap_or_else(|e| panic!("bad recv report ({e}):\n{}{}", exit.stdout, exit.stderr));
        r.raw = exit.stdout;
        r
    }

    /// Stops the receiver now (SIGTERM) and returns its report.
    pub fn stop(self) -> RecvReport {
        self.proc.signal("TERM");
        self.finish()
    }
}

/// Runs `mcrelay-traffic send --json ARGS` in `ns` to completion and returns its report.
pub fn send(ns: &Netns, args: &[&str]) -> SendReport {
    let mut cmd = vec![TRAFFIC, "send", "--json"];
    cmd.extend_from_slice(args);
    let exit = ns.spawn(&cmd).wait(Duration::from_secs(60));
    assert_eq!(
        exit.code,
        Some(0),
        "mcrelay-traffic send failed:\n{}",
        exit.stderr
    );
    let r: SendReport = serde_json::from_str(&exit.stdout)
        .unwrap_or_else(|e| panic!("bad send report ({e}):\n{}", exit.stdout));
    assert_eq!(r.errors, 0, "send errors:\n{}", exit.stdout);
    r
}

#[derive(Debug, Deserialize)]
pub struct SendReport {
    pub sent: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub rate_pps: f64,
    pub size: usize,
    pub streams: Vec<SentStream>,
}

#[derive(Debug, Deserialize)]
pub struct SentStream {
    pub stream: u16,
    pub to: String,
    pub sent: u64,
}

impl SendReport {
    /// Packets sent on stream `id`.
    pub fn stream(&self, id: u16) -> u64 {
        self.streams
            .iter()
            .find(|s| s.stream == id)
            .unwrap_or_else(|| panic!("no stream {id} in {self:?}"))
            .sent
    }
}

#[derive(Debug, Deserialize)]
pub struct RecvReport {
    pub elapsed_s: f64,
    pub totals: Totals,
    pub listeners: Vec<ListenerReport>,
    pub streams: Vec<StreamReport>,
    #[serde(skip)]
    pub raw: String,
}

#[derive(Debug, Deserialize)]
pub struct Totals {
    pub received: u64,
    pub unique: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub corrupt: u64,
    pub length_mismatch: u64,
    pub unexpected: u64,
    pub truncated: u64,
}

#[derive(Debug, Deserialize)]
pub struct ListenerReport {
    pub address: String,
    pub received: u64,
    pub unexpected: u64,
    pub truncated: u64,
}

#[derive(Debug, Deserialize)]
pub struct StreamReport {
    pub listener: String,
    pub stream: u16,
    pub received: u64,
    pub unique: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub corrupt: u64,
    pub length_mismatch: u64,
    pub bytes: u64,
    pub highest_seq: Option<u64>,
    pub latency: Option<Latency>,
    pub ttl: BTreeMap<u8, u64>,
    pub tos: BTreeMap<u8, u64>,
    pub sources: Vec<IpAddr>,
    /// UDP source ports seen, in order of first arrival.
    pub source_ports: Vec<u16>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct Latency {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl RecvReport {
    /// The stream `id` as received on `listener` (e.g. "239.1.1.1:5000"), if anything arrived.
    pub fn get(&self, listener: &str, id: u16) -> Option<&StreamReport> {
        self.streams
            .iter()
            .find(|s| s.listener == listener && s.stream == id)
    }

    /// Asserts that all `sent` datagrams of stream `id` arrived on `listener` exactly once, in
    /// order, with every byte and the length intact.
    pub fn assert_complete(&self, listener: &str, id: u16, sent: u64) -> &StreamReport {
        assert!(sent > 0, "nothing was sent on stream {id}");
        let s = self.get(listener, id).unwrap_or_else(|| {
            panic!(
                "stream {id} never arrived on {listener}; report:\n{}",
                self.raw
            )
        });
        let got = (
            s.unique,
            s.received,
            s.duplicates,
            s.reordered,
            s.corrupt,
            s.length_mismatch,
        );
        assert_eq!(
            got,
            (sent, sent, 0, 0, 0, 0),
            "stream {id} on {listener}: (unique, received, duplicates, reordered, corrupt, \
             length mismatches) differ from {sent} sent; report:\n{}",
            self.raw
        );
        assert_eq!(s.highest_seq, Some(sent - 1));
        s
    }

    /// Asserts that nothing at all (ours or not) arrived on `listener`.
    pub fn assert_nothing(&self, listener: &str) {
        let l = self
            .listeners
            .iter()
            .find(|l| l.address == listener)
            .unwrap_or_else(|| panic!("no listener {listener}; report:\n{}", self.raw));
        assert_eq!(
            l.received, 0,
            "{listener} should have received nothing; report:\n{}",
            self.raw
        );
    }

    /// Asserts that no datagram arrived anywhere that is not our payload.
    pub fn assert_no_unexpected(&self) {
        assert_eq!(
            (self.totals.unexpected, self.totals.truncated),
            (0, 0),
            "unexpected or truncated datagrams; report:\n{}",
            self.raw
        );
    }
}

/// Multicast memberships of a namespace as the kernel lists them (`/proc/net/igmp` and
/// `/proc/net/igmp6`): (interface, group).
pub fn memberships(ns: &Netns) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut dev = String::new();
    for line in ns.exec(&["cat", "/proc/net/igmp"]).lines().skip(1) {
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            dev = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(':')
                .to_string();
        } else if let Some(hex) = line.split_whitespace().next()
            && let Ok(v) = u32::from_str_radix(hex, 16)
        {
            // the kernel prints the network-order word as a host-order number
            out.push((dev.clone(), IpAddr::from(v.to_le_bytes())));
        }
    }
    for line in ns.exec(&["cat", "/proc/net/igmp6"]).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3
            && let Ok(v) = u128::from_str_radix(f[2], 16)
        {
            out.push((f[1].to_string(), IpAddr::from(v.to_be_bytes())));
        }
    }
    out
}

/// Asserts that `ns` has joined `group` on `ifname` (the relay's IGMP/MLD membership).
pub fn assert_joined(ns: &Netns, ifname: &str, group: &str) {
    let g: IpAddr = group.parse().expect("a group address");
    let m = memberships(ns);
    assert!(
        m.iter().any(|(d, a)| d == ifname && *a == g),
        "{} has not joined {group} on {ifname}; memberships: {m:?}",
        ns.name()
    );
}

/// A counter of `/proc/net/netstat` or `/proc/net/snmp` in `ns`, e.g. ("TcpExt",
/// "IPReversePathFilter") or ("Udp", "InErrors").
pub fn netstat(ns: &Netns, table: &str, name: &str) -> u64 {
    for file in ["/proc/net/netstat", "/proc/net/snmp"] {
        let text = ns.exec(&["cat", file]);
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [head, vals] = pair else { continue };
            let prefix = format!("{table}:");
            if !head.starts_with(&prefix) || !vals.starts_with(&prefix) {
                continue;
            }
            let names = head.split_whitespace().skip(1);
            let values = vals.split_whitespace().skip(1);
            if let Some((_, v)) = names.zip(values).find(|(n, _)| *n == name) {
                return v.parse().expect("a counter");
            }
        }
    }
    panic!("no counter {table}:{name} in /proc/net/netstat or /proc/net/snmp");
}

/// A counter in a JSON report.
pub fn count(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Interface `name` in a `mcrelay stats --json` answer.
pub fn interface_stats<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no interface {name} in stats: {stats:#}"))
}

/// The group labelled `label` in a `mcrelay stats --json` answer.
pub fn group_stats<'a>(stats: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    stats["groups"]
        .as_array()
        .expect("groups array")
        .iter()
        .find(|g| g["label"] == label)
        .unwrap_or_else(|| panic!("no group {label} in {stats:#}"))
}

/// Destination `dest` of group `label` in a `mcrelay stats --json` answer: (packets, errors,
/// drops).
pub fn destination_stats(stats: &serde_json::Value, label: &str, dest: &str) -> (u64, u64, u64) {
    let d = group_stats(stats, label)["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .find(|d| d["name"] == dest)
        .unwrap_or_else(|| panic!("no destination {dest} in group {label}: {stats:#}"));
    (
        count(&d["packets"]),
        count(&d["errors"]),
        count(&d["drops"]),
    )
}
