//! Least privilege outside systemd (issue 6, point 3), as root on the real kernel:
//!
//! * `privilege::drop_to_user` leaves exactly the capabilities asked for, in every set, under the
//!   new uid and gid, with no supplementary groups and `no_new_privs`, and they work (an AF_PACKET
//!   socket; `SO_RCVBUFFORCE` only with `CAP_NET_ADMIN`);
//! * without `CAP_NET_RAW`, `check_capabilities` refuses and names it;
//! * switching user is refused when not root;
//! * `mcrelay check` runs as an unprivileged user holding only `CAP_NET_RAW` (setpriv).
//!
//! Capabilities belong to a thread and a uid change is for the whole process, so each scenario
//! runs in a fresh single-threaded process: this binary runs itself with `MCRELAY_PRIVILEGE_CHILD`
//! naming the scenario. That is also why it has its own `main` (`harness = false` in Cargo.toml):
//! the libtest harness runs tests on extra threads.
//!
//! Needs root and setpriv(1) (util-linux); fails loudly without them, never skips.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::time::Duration;

use mcrelay::sys::privilege::{self, Cap};
use socket2::{Domain, Protocol, Socket, Type};

#[path = "e2e/netns.rs"]
mod netns;

const CHILD_ENV: &str = "MCRELAY_PRIVILEGE_CHILD";
const CAP_NET_ADMIN_BIT: u64 = 1 << 12;
const CAP_NET_RAW_BIT: u64 = 1 << 13;

fn main() {
    if let Ok(scenario) = std::env::var(CHILD_ENV) {
        run_child(&scenario);
        return;
    }
    let tests: &[(&str, fn())] = &[
        (
            "drop_to_user_keeps_only_net_raw",
            drop_to_user_keeps_only_net_raw,
        ),
        (
            "drop_to_user_keeps_net_raw_and_net_admin",
            drop_to_user_keeps_net_raw_and_net_admin,
        ),
        (
            "without_net_raw_the_refusal_names_it",
            without_net_raw_the_refusal_names_it,
        ),
        ("switching_user_needs_root", switching_user_needs_root),
        (
            "mcrelay_check_runs_with_only_net_raw",
            mcrelay_check_runs_with_only_net_raw,
        ),
        (
            "least_privilege_switches_and_warns_without_net_admin",
            least_privilege_switches_and_warns_without_net_admin,
        ),
        (
            "run_without_net_raw_refuses_and_names_it",
            run_without_net_raw_refuses_and_names_it,
        ),
        (
            "run_as_nobody_with_only_net_raw_relays",
            run_as_nobody_with_only_net_raw_relays,
        ),
        (
            "run_as_root_with_user_drops_in_every_thread",
            run_as_root_with_user_drops_in_every_thread,
        ),
    ];
    // Like libtest: arguments that are not options filter tests by substring.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&(&str, fn())> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let mut failed = Vec::new();
    for (name, test) in selected.iter().copied() {
        let result = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if result.is_ok() { "ok" } else { "FAILED" }
        );
        if result.is_err() {
            failed.push(*name);
        }
    }
    println!();
    println!(
        "privilege: {} passed, {} failed",
        selected.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}

// ---- the tests (parent side) ----------------------------------------------------------------

fn drop_to_user_keeps_only_net_raw() {
    require_root();
    expect_child_ok("drop-net-raw", None);
}

fn drop_to_user_keeps_net_raw_and_net_admin() {
    require_root();
    expect_child_ok("drop-net-raw-net-admin", None);
}

fn without_net_raw_the_refusal_names_it() {
    require_root();
    expect_child_ok("drop-nothing", None);
}

fn switching_user_needs_root() {
    require_root();
    // The child starts as nobody (with CAP_NET_RAW, to show that capabilities are not enough).
    expect_child_ok("switch-as-nobody", Some(&setpriv_nobody_with(&["net_raw"])));
}

fn mcrelay_check_runs_with_only_net_raw() {
    require_root();
    let dir = TempDir::new("check");
    let config = dir.path.join("mcrelay.toml");
    std::fs::write(
        &config,
        "[interfaces.lo]\n\n[destinations.local]\naddress = \"127.0.0.1:7000\"\n\n\
         [[groups]]\ninterface = \"lo\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"local\"]\n",
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args(setpriv_nobody_with(&["net_raw"]))
        .arg(env!("CARGO_BIN_EXE_mcrelay"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| {
            panic!("SETPRIV IS MISSING: cannot run setpriv ({e}): apt-get install util-linux")
        });
    assert!(
        out.status.success(),
        "mcrelay check as nobody with only CAP_NET_RAW failed: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configuration OK"),
        "{}",
        describe(&out)
    );
}

fn least_privilege_switches_and_warns_without_net_admin() {
    require_root();
    // The control socket's directory does not exist: least_privilege creates it for the user.
    let dir = TempDir::new("least");
    let socket_dir = dir.path.join("run").join("mcrelay");
    let socket = socket_dir.join("control.sock");
    expect_child_ok_env(
        "least-privilege",
        None,
        &[("MCRELAY_PRIVILEGE_SOCKET", socket.to_str().unwrap())],
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta =
        std::fs::metadata(&socket_dir).expect("least_privilege created the socket's directory");
    let nobody = privilege::lookup_user("nobody").unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (nobody.uid, nobody.gid),
        "owner of {}",
        socket_dir.display()
    );
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
}

// ---- the daemon: `mcrelay run` with least privilege, in namespaces, with real traffic -------------

const RELAYED: &str = r#"
[interfaces.in0]
[interfaces.out0]

[destinations.rx0]
interface = "out0"

[[groups]]
interface = "in0"
group = "239.1.2.3"
port = 5000
to = ["rx0"]
"#;

fn run_without_net_raw_refuses_and_names_it() {
    require_root();
    let t = netns::Topology::new(1);
    let dir = RelayDir::new("nocap");
    let mut cmd: Vec<String> = setpriv_nobody_with(&[]);
    cmd.extend(dir.run_args());
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut full = vec!["setpriv"];
    full.extend(cmd);
    let exit = t.relay.spawn(&full).wait(Duration::from_secs(10));
    assert_eq!(
        exit.code,
        Some(mcrelay::exit::NOPERM),
        "mcrelay run without CAP_NET_RAW must exit 77:\n{}{}",
        exit.stdout,
        exit.stderr
    );
    assert!(
        exit.stderr.contains("CAP_NET_RAW"),
        "the refusal must name CAP_NET_RAW:\n{}",
        exit.stderr
    );
}

fn run_as_nobody_with_only_net_raw_relays() {
    require_root();
    let t = netns::Topology::new(1);
    let dir = RelayDir::new("netraw");
    let mut cmd: Vec<String> = vec!["setpriv".into()];
    cmd.extend(setpriv_nobody_with(&["net_raw"]));
    cmd.extend(dir.run_args());
    let relay = dir.start(&t.relay, &cmd);
    let nobody = privilege::lookup_user("nobody").unwrap();
    // setpriv hands CAP_NET_RAW over as an ambient capability; nothing else is there.
    assert_threads(relay.pid(), nobody.uid, CAP_NET_RAW_BIT, CAP_NET_RAW_BIT);
    relays_every_packet(&t);
    stop(relay);
}

fn run_as_root_with_user_drops_in_every_thread() {
    require_root();
    let t = netns::Topology::new(1);
    let dir = RelayDir::new_like_run("user");
    let mut cmd: Vec<String> = dir.run_args();
    cmd.extend(["--user".into(), "nobody".into()]);
    let relay = dir.start(&t.relay, &cmd);
    let nobody = privilege::lookup_user("nobody").unwrap();
    // The control socket's directory was created, as root, for the user.
    let socket = dir
        .dir
        .path
        .join("run")
        .join("mcrelay")
        .join("control.sock");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (nobody.uid, nobody.gid));
    let status = Command::new(env!("CARGO_BIN_EXE_mcrelay"))
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "mcrelay status: {}",
        describe(&status)
    );
    // rcvbuf defaults to 32 MiB: CAP_NET_ADMIN is kept only when that exceeds rmem_max.
    let rmem_max = privilege::rmem_max().unwrap();
    let expected = if 32 << 20 > rmem_max {
        CAP_NET_RAW_BIT | CAP_NET_ADMIN_BIT
    } else {
        CAP_NET_RAW_BIT
    };
    assert_threads(relay.pid(), nobody.uid, expected, 0);
    relays_every_packet(&t);
    stop(relay);
}

/// 2000 datagrams from the sender arrive at the receiver, every byte checked by the tool.
fn relays_every_packet(t: &netns::Topology) {
    let rx = netns::Receiver::start(&t.rx[0], &["--group", "239.1.2.3:5000", "-i", "eth0"]);
    let sent = netns::send(
        &t.sender,
        &[
            "--to",
            "239.1.2.3:5000",
            "-i",
            "eth0",
            "--rate",
            "2000",
            "--count",
            "2000",
        ],
    );
    let report = rx.finish();
    report.assert_complete("239.1.2.3:5000", 0, sent.stream(0));
}

/// Every thread of `pid` runs as `uid` with exactly `bits` as permitted, effective and bounding
/// capabilities, and `ambient` as ambient ones.
fn assert_threads(pid: u32, uid: u32, bits: u64, ambient: u64) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut n = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let name = field(&status, "Name").trim().to_owned();
        let set = |key: &str| u64::from_str_radix(field(&status, key).trim(), 16).unwrap();
        let uids: Vec<u32> = field(&status, "Uid")
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            uids,
            vec![uid; 4],
            "thread {name} of mcrelay runs as {uids:?}"
        );
        assert_eq!(
            set("CapEff"),
            bits,
            "effective capabilities of thread {name}"
        );
        assert_eq!(
            set("CapPrm"),
            bits,
            "permitted capabilities of thread {name}"
        );
        assert_eq!(set("CapBnd"), bits, "bounding set of thread {name}");
        assert_eq!(
            set("CapAmb"),
            ambient,
            "ambient capabilities of thread {name}"
        );
        n += 1;
    }
    assert!(
        n > 1,
        "expected the relay to run worker threads, found {n} thread(s)"
    );
}

fn stop(relay: netns::Proc) {
    relay.signal("TERM");
    let exit = relay.wait(Duration::from_secs(5));
    assert_eq!(
        exit.code,
        Some(0),
        "mcrelay run did not exit cleanly:\n{}{}",
        exit.stdout,
        exit.stderr
    );
}

/// A configuration and control-socket directory that user nobody can use: the relay runs as
/// nobody in these tests, so it must read the file, create the control socket and notify.
struct RelayDir {
    dir: TempDir,
}

impl RelayDir {
    /// A directory owned by nobody, the control socket directly in it.
    fn new(what: &str) -> RelayDir {
        let dir = TempDir::new(what);
        let nobody = privilege::lookup_user("nobody").unwrap();
        std::os::unix::fs::chown(&dir.path, Some(nobody.uid), Some(nobody.gid)).unwrap();
        let socket = dir.path.join("control.sock");
        RelayDir::with_socket(dir, &socket)
    }

    /// A directory owned by root, the control socket in `run/mcrelay/` beneath it, which does not
    /// exist: as `/run/mcrelay` when mcrelay is started by hand as root with `--user`.
    fn new_like_run(what: &str) -> RelayDir {
        let dir = TempDir::new(what);
        let socket = dir.path.join("run").join("mcrelay").join("control.sock");
        RelayDir::with_socket(dir, &socket)
    }

    fn with_socket(dir: TempDir, socket: &Path) -> RelayDir {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            "[daemon]\ncontrol_socket = \"{}\"\n{RELAYED}",
            socket.display()
        );
        std::fs::write(dir.path.join("mcrelay.toml"), text).unwrap();
        RelayDir { dir }
    }

    fn run_args(&self) -> Vec<String> {
        vec![
            env!("CARGO_BIN_EXE_mcrelay").into(),
            "run".into(),
            "-c".into(),
            self.dir.path.join("mcrelay.toml").display().to_string(),
        ]
    }

    /// Starts `cmd` in `ns` and waits for READY=1 on a notify socket anyone may send to.
    fn start(&self, ns: &netns::Netns, cmd: &[String]) -> netns::Proc {
        use std::os::unix::fs::PermissionsExt;
        let notify_path = self.dir.path.join("notify.sock");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
        std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).unwrap();
        notify.set_nonblocking(true).unwrap();
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let mut proc = ns.spawn_env(
            &cmd,
            &[
                ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
                ("RUST_LOG", "info"),
            ],
        );
        let mut ready = false;
        let mut buf = [0u8; 4096];
        proc.wait_for("ready (READY=1)", Duration::from_secs(10), |_| {
            while let Ok(n) = notify.recv(&mut buf) {
                ready |= String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1");
            }
            ready
        });
        proc
    }
}

// ---- the scenarios (child side, one fresh single-threaded process each) -----------------------

fn run_child(scenario: &str) {
    match scenario {
        "drop-net-raw" => {
            let nobody = privilege::lookup_user("nobody").expect("user nobody");
            privilege::drop_to_user("nobody", &[Cap::NetRaw]).expect("drop_to_user");
            assert_identity(nobody.uid, nobody.gid);
            assert_capability_sets(CAP_NET_RAW_BIT);
            privilege::check_capabilities(&[Cap::NetRaw]).expect("CAP_NET_RAW is kept");
            let err = privilege::check_capabilities(&[Cap::NetAdmin]).unwrap_err();
            assert!(err.contains("CAP_NET_ADMIN"), "{err}");
            let sock = packet_socket().expect("an AF_PACKET socket with CAP_NET_RAW");
            let e =
                force_rcvbuf(&sock, 32 << 20).expect_err("SO_RCVBUFFORCE without CAP_NET_ADMIN");
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        }
        "drop-net-raw-net-admin" => {
            let nobody = privilege::lookup_user("nobody").expect("user nobody");
            privilege::drop_to_user("nobody", &[Cap::NetRaw, Cap::NetAdmin]).expect("drop_to_user");
            assert_identity(nobody.uid, nobody.gid);
            assert_capability_sets(CAP_NET_RAW_BIT | CAP_NET_ADMIN_BIT);
            privilege::check_capabilities(&[Cap::NetRaw, Cap::NetAdmin]).expect("both kept");
            let sock = packet_socket().expect("an AF_PACKET socket with CAP_NET_RAW");
            force_rcvbuf(&sock, 32 << 20).expect("SO_RCVBUFFORCE with CAP_NET_ADMIN");
            // The kernel doubles the value for its bookkeeping.
            let got = sock.recv_buffer_size().unwrap();
            assert!(
                got >= 32 << 20,
                "receive buffer {got} < 32 MiB after SO_RCVBUFFORCE"
            );
        }
        "drop-nothing" => {
            privilege::drop_to_user("nobody", &[]).expect("drop_to_user");
            assert_capability_sets(0);
            let err = privilege::check_capabilities(&[Cap::NetRaw]).unwrap_err();
            assert!(
                err.contains("CAP_NET_RAW"),
                "the refusal must name CAP_NET_RAW: {err}"
            );
            assert!(
                err.contains("AF_PACKET"),
                "the refusal must say what it is for: {err}"
            );
            let e = packet_socket().expect_err("an AF_PACKET socket without CAP_NET_RAW");
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        }
        "switch-as-nobody" => {
            let err = privilege::drop_to_user("daemon", &[Cap::NetRaw]).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
            assert!(err.to_string().contains("needs root"), "{err}");
            // Asking for the user it already is only checks the capabilities.
            privilege::drop_to_user("nobody", &[Cap::NetRaw])
                .expect("already nobody, has CAP_NET_RAW");
            let err = privilege::drop_to_user("nobody", &[Cap::NetAdmin]).unwrap_err();
            assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
        }
        "least-privilege" => {
            // A table whose interface wants 1 GiB of receive buffer: more than rmem_max.
            let socket = std::env::var("MCRELAY_PRIVILEGE_SOCKET").unwrap();
            let text = format!(
                "[daemon]\ncontrol_socket = \"{socket}\"\n[interfaces.lo]\nrcvbuf = \"1GiB\"\n"
            );
            let table = mcrelay::config::compile(
                &text,
                std::path::Path::new("test.toml"),
                &mcrelay::config::FakeResolver::everything(),
            )
            .expect("a valid table");
            assert!(
                1 << 30 > privilege::rmem_max().unwrap(),
                "this test needs net.core.rmem_max below 1 GiB"
            );
            assert_eq!(
                privilege::needed_for(&table),
                vec![Cap::NetRaw, Cap::NetAdmin]
            );
            // As root with a user: switches, keeps both, no warning.
            let warning = privilege::least_privilege(Some("nobody"), &table).expect("switch");
            assert_eq!(warning, None);
            assert_capability_sets(CAP_NET_RAW_BIT | CAP_NET_ADMIN_BIT);
            // Giving up CAP_NET_ADMIN afterwards: a warning naming it, not a refusal.
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_NET_ADMIN,
            )
            .unwrap();
            caps::drop(
                None,
                caps::CapSet::Permitted,
                caps::Capability::CAP_NET_ADMIN,
            )
            .unwrap();
            let warning = privilege::least_privilege(None, &table).expect("NET_RAW is enough");
            let warning = warning.expect("a warning about CAP_NET_ADMIN");
            assert!(
                warning.contains("CAP_NET_ADMIN") && warning.contains("rmem_max"),
                "{warning}"
            );
            // And without CAP_NET_RAW: the refusal names it.
            caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_NET_RAW).unwrap();
            caps::drop(None, caps::CapSet::Permitted, caps::Capability::CAP_NET_RAW).unwrap();
            let refusal = privilege::least_privilege(None, &table).unwrap_err();
            assert!(refusal.contains("CAP_NET_RAW"), "{refusal}");
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn assert_identity(uid: u32, gid: u32) {
    let status = proc_status();
    let ids = |key: &str| {
        field(&status, key)
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect::<Vec<u32>>()
    };
    assert_eq!(
        ids("Uid"),
        vec![uid; 4],
        "real, effective, saved and fs uid"
    );
    assert_eq!(
        ids("Gid"),
        vec![gid; 4],
        "real, effective, saved and fs gid"
    );
    assert_eq!(
        field(&status, "Groups").trim(),
        "",
        "supplementary groups must be cleared"
    );
    assert_eq!(field(&status, "NoNewPrivs").trim(), "1", "no_new_privs");
}

/// Permitted, effective and bounding are exactly `bits`; inheritable and ambient are empty.
fn assert_capability_sets(bits: u64) {
    let status = proc_status();
    let set = |key: &str| u64::from_str_radix(field(&status, key).trim(), 16).unwrap();
    assert_eq!(set("CapPrm"), bits, "permitted set");
    assert_eq!(set("CapEff"), bits, "effective set");
    assert_eq!(set("CapBnd"), bits, "bounding set");
    assert_eq!(set("CapInh"), 0, "inheritable set");
    assert_eq!(set("CapAmb"), 0, "ambient set");
}

fn proc_status() -> String {
    // thread-self: capabilities are per thread, and this is the thread that dropped them.
    std::fs::read_to_string("/proc/thread-self/status").unwrap()
}

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/thread-self/status"))
}

fn packet_socket() -> std::io::Result<Socket> {
    let eth_p_ip = (libc::ETH_P_IP as u16).to_be() as i32;
    Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(eth_p_ip)))
}

fn force_rcvbuf(sock: &Socket, bytes: i32) -> std::io::Result<()> {
    // SAFETY: `sock` is an open socket; the option value is a valid c_int whose size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

// ---- helpers ----------------------------------------------------------------------------------

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tests/privilege.rs needs root (it switches users and grants capabilities): run as root"
    );
}

/// setpriv arguments that make the command run as nobody:nogroup with only `caps`.
fn setpriv_nobody_with(caps: &[&str]) -> Vec<String> {
    let plus: String = caps.iter().map(|c| format!(",+{c}")).collect();
    vec![
        "--reuid=nobody".into(),
        "--regid=nogroup".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all{plus}"),
        format!("--ambient-caps=-all{plus}"),
        format!("--bounding-set=-all{plus}"),
    ]
}

/// Runs this binary in scenario mode, optionally under setpriv with `setpriv_args`, and fails
/// with the child's output unless it exits 0.
fn expect_child_ok(scenario: &str, setpriv_args: Option<&[String]>) {
    expect_child_ok_env(scenario, setpriv_args, &[]);
}

fn expect_child_ok_env(scenario: &str, setpriv_args: Option<&[String]>, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match setpriv_args {
        Some(args) => {
            let mut c = Command::new("setpriv");
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = cmd
        .env(CHILD_ENV, scenario)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot start the {scenario} child: {e} (setpriv comes with util-linux)")
        });
    assert!(
        out.status.success(),
        "scenario {scenario} failed: {}",
        describe(&out)
    );
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A directory under /tmp that user nobody can read, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(what: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let path =
            std::env::temp_dir().join(format!("mcrelay-privilege-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
