//! Tests of the pure core's kernel-facing promises against the real kernel: IGMP/MLD
//! memberships (`membership`) and the generated socket filters on real AF_PACKET traffic
//! (`filter`).
//!
//! Needs root: each test creates its own network namespace (`ip netns`, a veth pair `m0`/`m1`
//! with addresses) and runs its body there by running this test binary again under
//! `ip netns exec`, so no `unsafe` `setns` is needed here. The namespace is deleted on drop,
//! also when the test fails. Without root or `ip`, the tests fail with a message saying so.

mod filter;
mod membership;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Set in the environment of the run inside the namespace.
const INNER: &str = "MCRELAY_KERNEL_TEST_INNER";

/// Runs `body` inside a fresh namespace. `test` is the test's libtest name (`module::name`).
pub fn in_netns(test: &str, body: impl FnOnce()) {
    if std::env::var_os(INNER).is_some() {
        body();
        return;
    }
    let ns = Netns::new();
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .expect("cannot run `ip netns exec`");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside namespace {}:\n{log}", ns.name);
    assert!(
        log.contains("1 passed"),
        "the inner test {test} did not run:\n{log}"
    );
}

/// A network namespace with a veth pair: `m0` (10.1.0.1/24, fd00:1::1/64) and `m1` (10.1.0.2/24,
/// fd00:1::2/64), both up, and `lo` up; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mcrk{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        let n = ns.name.as_str();
        ip(&[
            "-n", n, "link", "add", "m0", "type", "veth", "peer", "name", "m1",
        ]);
        for (dev, v4, v6) in [
            ("m0", "10.1.0.1/24", "fd00:1::1/64"),
            ("m1", "10.1.0.2/24", "fd00:1::2/64"),
        ] {
            ip(&["-n", n, "addr", "add", v4, "dev", dev]);
            ip(&["-n", n, "addr", "add", v6, "dev", dev, "nodad"]);
        }
        for dev in ["m0", "m1", "lo"] {
            ip(&["-n", n, "link", "set", dev, "up"]);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip ARGS`, panicking with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed (these tests need root and veth support): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The index of `iface` in the current namespace.
pub fn ifindex(iface: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/ifindex"))
        .unwrap_or_else(|e| panic!("no interface {iface}: {e}"))
        .trim()
        .parse()
        .unwrap()
}
