//! Issue 8, faults: each test keeps traffic flowing through the relay while something goes
//! wrong around it, checks every datagram of the streams the fault must not touch (sequence,
//! bytes, length), and checks that the relay recovers on its own and counts what it lost.
//!
//! Related cases elsewhere: `interface_later.rs` (ingress down/up without traffic, interface
//! created after start), `reload.rs` (ingress created later and re-created),
//! `unreachable_unicast.rs` (dead unicast destinations at a low rate), `control.rs` (garbage on
//! the control socket). The matrix with results is in `docs/RELIABILITY.md`.
//!
//! Rates are modest (1-10 k pps) and buffers generous, so that "zero loss" holds on a loaded
//! two-core machine without weakening any assertion.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::control::{json, one_group};
use crate::netns::*;

/// Starts a paced stream out of the sender's `ifname`: `rate` datagrams/s to `to` for `secs`
/// seconds, stream id `first`. Its report ([`Sending::wait`]) allows send errors: the fault
/// may make the sender's own interface vanish.
fn paced(t: &Topology, ifname: &str, to: &str, first: u16, rate: u32, secs: u32) -> Sending {
    let (first, rate, secs) = (first.to_string(), rate.to_string(), format!("{secs}s"));
    t.start_send_via(
        ifname,
        &[to],
        &[
            "--first-stream",
            &first,
            "--rate",
            &rate,
            "--duration",
            &secs,
        ],
    )
}

/// Sends `count` datagrams at 1000/s to `to` out of the sender's eth0 as stream `first`, to
/// completion.
fn counted(t: &Topology, to: &str, first: u16, count: u32) -> SendReport {
    let (first, count) = (first.to_string(), count.to_string());
    t.send(
        &[to],
        &[
            "--first-stream",
            &first,
            "--rate",
            "1000",
            "--count",
            &count,
        ],
    )
}

/// How long a background sender may take at the most.
const SENDING: Duration = Duration::from_secs(60);

/// Resident set size of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Open file descriptors of a process.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// The state of the worker on `ifname` in `mcrelay status`, if there is one.
fn worker_state(relay: &Relay, ifname: &str) -> Option<String> {
    json(relay, "status")["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .find(|w| w["interface"] == ifname)
        .and_then(|w| w["state"].as_str().map(str::to_string))
}

/// Asserts that `stream` on `listener` lost datagrams to the fault but recovered while it was
/// still being sent: its last datagram arrived, nothing duplicated, reordered or damaged.
/// Returns how many were lost.
fn assert_recovered(r: &RecvReport, listener: &str, stream: u16, sent: u64) -> u64 {
    let s = r
        .get(listener, stream)
        .unwrap_or_else(|| panic!("stream {stream} never arrived on {listener}:\n{}", r.raw));
    assert_eq!(
        (s.duplicates, s.reordered, s.corrupt, s.length_mismatch),
        (0, 0, 0, 0),
        "stream {stream} on {listener} damaged:\n{}",
        r.raw
    );
    assert_eq!(
        s.highest_seq,
        Some(sent - 1),
        "the last datagram of stream {stream} ({sent} sent) never arrived on {listener}: \
         the relay did not recover while it was sent:\n{}",
        r.raw
    );
    sent - s.unique
}

/// in0 and in1 both lead from the sender to the relay; `a` arrives on in0, `b` on in1, both go
/// to rx0 (out0).
fn two_ingress() -> (Topology, Config) {
    let t = Topology::builder().ingress(2).build();
    let config = Config::rx0()
        .interface("in1", "")
        .route("239.1.1.1:5000")
        .name("a")
        .group("in1", "239.1.1.2:5000", &["rx0"])
        .name("b");
    (t, config)
}

/// A receiver in `rx[i]` that waits `idle` after the last datagram (40 s at most in all): the
/// faults leave gaps in the streams.
fn patient(t: &Topology, i: usize, listen: &[&str], idle: &str) -> Receiver {
    t.receive_with(i, listen, &["--idle", idle, "--duration", "40s"])
}

/// The stream on in1 that must not notice anything: 1000 pps for `secs` seconds, stream 1.
fn steady_on_in1(t: &Topology, secs: u32) -> Sending {
    paced(t, "eth1", "239.1.1.2:5000", 1, 1000, secs)
}

#[test]
fn fault_ingress_down_and_up_under_traffic() {
    let (t, config) = two_ingress();
    let relay = t.start_relay_with(FAST_STATS, config);
    let rx = patient(&t, 0, &["239.1.1.1:5000", "239.1.1.2:5000"], "2s");
    let steady = steady_on_in1(&t, 7);
    let flapped = paced(&t, "eth0", "239.1.1.1:5000", 0, 1000, 7);
    std::thread::sleep(Duration::from_millis(1500));
    t.relay.ip(&["link", "set", "in0", "down"]);
    std::thread::sleep(Duration::from_secs(1));
    t.relay.ip(&["link", "set", "in0", "up"]);
    let flapped = flapped.wait(SENDING);
    let steady = steady.wait(SENDING);
    assert_eq!(steady.errors, 0);
    // and a whole stream once the link is back: nothing of it may be missing
    let after = counted(&t, "239.1.1.1:5000", 2, 1000);
    let r = rx.finish();
    r.assert_complete("239.1.1.2:5000", 1, steady.stream(1));
    let lost = assert_recovered(&r, "239.1.1.1:5000", 0, flapped.stream(0));
    assert!(
        lost > 0,
        "in0 went down for a second and nothing was lost: the fault did not happen"
    );
    r.assert_complete("239.1.1.1:5000", 2, after.stream(2));
    r.assert_no_unexpected();
    assert_joined(&t.relay, "in0", "239.1.1.1");
    let log = relay.stop();
    eprintln!("ingress down 1 s: {lost} datagrams lost at 1000 pps (outage {lost} ms)");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fault_ingress_deleted_and_recreated_under_traffic() {
    let (t, config) = two_ingress();
    let relay = t.start_relay_with(FAST_STATS, config);
    let rx = patient(&t, 0, &["239.1.1.1:5000", "239.1.1.2:5000"], "2s");
    let steady = steady_on_in1(&t, 8);
    let eth0_stream = |first: u16| counted(&t, "239.1.1.1:5000", first, 800);
    let before = eth0_stream(0);
    // deleting the relay's end deletes the sender's end too (a veth pair)
    t.relay.ip(&["link", "del", "in0"]);
    wait_until(Duration::from_secs(5), || {
        worker_state(&relay, "in0").as_deref() != Some("running")
    })
    .unwrap_or_else(|()| {
        panic!(
            "worker in0 still running after in0 was deleted:\n{}",
            relay.log()
        )
    });
    t.link_ingress(0);
    let recreated = Instant::now();
    wait_until(Duration::from_secs(5), || {
        worker_state(&relay, "in0").as_deref() == Some("running")
            && memberships(&t.relay)
                .iter()
                .any(|(d, g)| d == "in0" && g.to_string() == "239.1.1.1")
    })
    .unwrap_or_else(|()| {
        panic!(
            "in0 re-created, but the relay did not re-join on it within 5 s:\n{}",
            relay.log()
        )
    });
    let rejoined = recreated.elapsed();
    let after = eth0_stream(2);
    let steady = steady.wait(SENDING);
    let r = rx.finish();
    r.assert_complete("239.1.1.2:5000", 1, steady.stream(1));
    r.assert_complete("239.1.1.1:5000", 0, before.stream(0));
    r.assert_complete("239.1.1.1:5000", 2, after.stream(2));
    r.assert_no_unexpected();
    let log = relay.stop();
    eprintln!("ingress re-created: running and joined again after {rejoined:?}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fault_egress_interface_disappears_and_comes_back() {
    let t = Topology::new(2);
    let relay = t.start_relay_with(
        FAST_STATS,
        Config::rx0()
            .interface("out1", "")
            .multicast("rx1", "out1")
            .group("in0", "239.1.1.1:5000", &["rx0", "rx1"])
            .name("a"),
    );
    let rx0 = patient(&t, 0, &["239.1.1.1:5000"], "2s");
    let stream = paced(&t, "eth0", "239.1.1.1:5000", 0, 1000, 8);
    std::thread::sleep(Duration::from_millis(1500));
    t.relay.ip(&["link", "del", "out1"]);
    let gone = relay.stats_when(Duration::from_secs(3), |s| {
        let (_, errors, drops) = destination_stats(s, "a", "rx1");
        errors + drops > 0
    });
    let (p1, e1, d1) = destination_stats(&gone, "a", "rx1");
    assert!(
        e1 + d1 > 0,
        "out1 is gone but destination rx1 counts no errors or drops:\n{gone:#}\nlog:\n{}",
        relay.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    t.link_egress(1);
    let rx1 = patient(&t, 1, &["239.1.1.1:5000"], "2s");
    let back = Instant::now();
    let resumed = relay.stats_when(Duration::from_secs(5), |s| {
        destination_stats(s, "a", "rx1").0 > p1 + 100
    });
    assert!(
        destination_stats(&resumed, "a", "rx1").0 > p1 + 100,
        "out1 is back but rx1 sends nothing again:\n{resumed:#}\nlog:\n{}",
        relay.log()
    );
    let resumed_after = back.elapsed();
    let sent = stream.wait(SENDING);
    // a whole stream once out1 is back: nothing of it may be missing on either side
    let after = counted(&t, "239.1.1.1:5000", 1, 800);
    let r0 = rx0.finish();
    let r1 = rx1.finish();
    r0.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    r0.assert_complete("239.1.1.1:5000", 1, after.stream(1));
    assert_recovered(&r1, "239.1.1.1:5000", 0, sent.stream(0));
    r1.assert_complete("239.1.1.1:5000", 1, after.stream(1));
    r0.assert_no_unexpected();
    r1.assert_no_unexpected();
    let log = relay.stop();
    eprintln!(
        "egress out1 gone: rx1 counted {e1} errors and {d1} drops; sending resumed {resumed_after:?} \
         after it came back"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fault_icmp_unreachable_destination_next_to_a_live_one_at_10k_pps() {
    let t = Topology::new(1);
    // datagrams to the closed port get ICMP port unreachables, not rate-limited per host (an
    // error makes the socket's next send fail, so about one in four sent draws one)
    t.rx[0].sysctl("net.ipv4.icmp_ratelimit", "0");
    t.rx[0].sysctl("net.ipv4.icmp_msgs_per_sec", "1000000");
    let relay = t.start_relay_with(
        FAST_STATS,
        Config::new(&["in0", "out0"])
            .unicast("closed", "10.2.0.2:7999")
            .unicast("live", "10.2.0.2:7000")
            .group("in0", "239.1.1.1:5000", &["closed", "live"])
            .name("a"),
    );
    let rx = t.receive(0, &["10.2.0.2:7000"]);
    let icmp_before = netstat(&t.rx[0], "Icmp", "OutDestUnreachs");
    let sent = t.send(
        &["239.1.1.1:5000"],
        &["--rate", "10000", "--duration", "2s"],
    );
    let r = rx.finish();
    r.assert_complete("10.2.0.2:7000", 0, sent.stream(0));
    r.assert_no_unexpected();
    let icmp = netstat(&t.rx[0], "Icmp", "OutDestUnreachs") - icmp_before;
    assert!(
        icmp > sent.sent / 10,
        "only {icmp} ICMP unreachables for {} datagrams: the fault did not happen",
        sent.sent
    );
    let s = relay.stats_when(Duration::from_secs(2), |s| {
        destination_stats(s, "a", "live").0 == sent.sent
    });
    let (live, live_err, live_drop) = destination_stats(&s, "a", "live");
    let (closed, closed_err, closed_drop) = destination_stats(&s, "a", "closed");
    assert_eq!((live, live_err, live_drop), (sent.sent, 0, 0), "{s:#}");
    assert_eq!(
        closed + closed_err + closed_drop,
        sent.sent,
        "every datagram for the closed port is sent, an error or a drop:\n{s:#}"
    );
    let log = relay.stop();
    eprintln!(
        "10 k pps: {icmp} ICMP unreachables; closed: {closed} sent, {closed_err} errors, \
         {closed_drop} drops; live lost nothing"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fault_egress_slower_than_ingress_drops_are_counted_and_memory_is_bounded() {
    let t = Topology::new(2);
    // out0 drains 2 Mbit/s; the stream brings 16 Mbit/s
    t.relay.exec(&[
        "tc", "qdisc", "replace", "dev", "out0", "root", "tbf", "rate", "2mbit", "burst", "16kb",
        "latency", "20ms",
    ]);
    let mut relay = t.start_relay_with(
        FAST_STATS,
        Config::new(&["in0", "out0", "out1"])
            .multicast("slow", "out0")
            .multicast("fast", "out1")
            .group("in0", "239.1.1.1:5000", &["slow", "fast"])
            .name("a"),
    );
    let pid = relay.proc().pid();
    let fast = t.receive(1, &["239.1.1.1:5000"]);
    let slow = t.receive(0, &["239.1.1.1:5000"]);
    let rss_start = rss_kib(pid);
    let sent = t.send(
        &["239.1.1.1:5000"],
        &["--rate", "4000", "--duration", "3s", "--size", "500"],
    );
    let rss_end = rss_kib(pid);
    let rf = fast.finish();
    let rs = slow.finish();
    rf.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    rf.assert_no_unexpected();
    let s = relay.stats_when(Duration::from_secs(2), |s| {
        let (p, e, d) = destination_stats(s, "a", "slow");
        p + e + d == sent.sent
    });
    let (p, e, d) = destination_stats(&s, "a", "slow");
    let delivered = rs.get("239.1.1.1:5000", 0).map_or(0, |x| x.unique);
    assert!(
        d + e > 0,
        "out0 carries an eighth of the stream and the relay counts no drops:\n{s:#}"
    );
    assert_eq!(
        p + e + d,
        sent.sent,
        "every datagram is sent, an error or a drop:\n{s:#}"
    );
    assert!(
        delivered <= p,
        "rx0 got {delivered} but the relay sent only {p}"
    );
    assert_eq!(
        count(&interface_stats(&s, "in0")["kernel_drops"]),
        0,
        "ingress dropped in the kernel: the slow egress blocked it:\n{s:#}"
    );
    assert!(
        rss_end < rss_start + 8 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB under a slow egress"
    );
    let log = relay.stop();
    eprintln!(
        "slow egress: {} sent, slow destination {p} sent / {d} drops / {e} errors, rx0 got \
         {delivered}; RSS {rss_start} → {rss_end} KiB",
        sent.sent
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fault_sigterm_under_full_load_exits_within_a_second() {
    let t = Topology::new(1);
    let relay = t.start_relay_with(FAST_STATS, one_group());
    let load = t.start_send(
        &["239.1.1.1:5000"],
        &["--streams", "4", "--rate", "0", "--duration", "3s"],
    );
    let busy = relay.stats_when(Duration::from_secs(3), |s| {
        count(&interface_stats(s, "in0")["frames"]) > 20_000
    });
    assert!(
        count(&interface_stats(&busy, "in0")["frames"]) > 20_000,
        "the relay never got under load:\n{busy:#}"
    );
    // Relay::stop asserts exit status 0 within one second of SIGTERM
    let log = relay.stop();
    load.wait(SENDING);
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fault_sigkill_and_restart_resumes_forwarding_within_a_second() {
    let t = Topology::new(1);
    let mut relay = t.start_relay(one_group());
    let rx = patient(&t, 0, &["239.1.1.1:5000"], "3s");
    let stream = paced(&t, "eth0", "239.1.1.1:5000", 0, 1000, 6);
    std::thread::sleep(Duration::from_millis(1500));
    relay.proc().signal("KILL");
    wait_until(Duration::from_secs(2), || relay.proc().exited()).expect("SIGKILL kills");
    // The same file again: the control socket left behind is stale and must be replaced.
    let config = relay.config_path();
    let restarted = Instant::now();
    let mut again = t.relay.spawn_env(
        &[MCRELAY, "run", "-c", config.to_str().expect("utf-8")],
        &[("RUST_LOG", "info")],
    );
    again.wait_for("ready", Duration::from_secs(10), |out| {
        out.contains("mcrelay ready")
    });
    let ready = restarted.elapsed();
    // forwarding from the moment it says ready: a whole stream must arrive
    let after = counted(&t, "239.1.1.1:5000", 1, 500);
    let sent = stream.wait(SENDING);
    let r = rx.finish();
    assert_recovered(&r, "239.1.1.1:5000", 0, sent.stream(0));
    r.assert_complete("239.1.1.1:5000", 1, after.stream(1));
    r.assert_no_unexpected();
    assert!(
        ready <= Duration::from_secs(1),
        "restart after SIGKILL took {ready:?} (> 1 s) to be ready"
    );
    again.signal("TERM");
    let exit = again.wait(Duration::from_secs(3));
    assert_eq!(exit.code, Some(0), "{}{}", exit.stdout, exit.stderr);
    eprintln!("restart after SIGKILL: ready in {ready:?}");
}

#[test]
fn fault_sigstop_for_three_seconds_resumes_and_reports_kernel_drops() {
    let t = Topology::new(1);
    // a small receive buffer, so that three seconds of traffic overflow it
    let mut relay = t.start_relay_with(
        FAST_STATS,
        one_group().interface("in0", "rcvbuf = \"256KiB\""),
    );
    let pid = relay.proc().pid().to_string();
    let rx = patient(&t, 0, &["239.1.1.1:5000"], "3s");
    let stream = paced(&t, "eth0", "239.1.1.1:5000", 0, 3000, 6);
    std::thread::sleep(Duration::from_secs(1));
    run("kill", &["-STOP", &pid]);
    std::thread::sleep(Duration::from_secs(3));
    run("kill", &["-CONT", &pid]);
    let sent = stream.wait(SENDING);
    let after = counted(&t, "239.1.1.1:5000", 1, 800);
    let r = rx.finish();
    let lost = assert_recovered(&r, "239.1.1.1:5000", 0, sent.stream(0));
    r.assert_complete("239.1.1.1:5000", 1, after.stream(1));
    r.assert_no_unexpected();
    let s = relay.stats_when(Duration::from_secs(2), |s| {
        count(&interface_stats(s, "in0")["kernel_drops"]) > 0
    });
    let kernel = count(&interface_stats(&s, "in0")["kernel_drops"]);
    let (_, e, d) = destination_stats(&s, "cam1", "rx0");
    assert!(
        kernel > 0,
        "stopped for 3 s with a 256 KiB buffer, no kernel drops reported:\n{s:#}"
    );
    assert!(
        lost >= kernel && lost <= kernel + e + d,
        "lost {lost}, the relay reports {kernel} kernel drops, {d} send drops, {e} errors:\n{s:#}"
    );
    assert!(!relay.proc().exited(), "the relay died");
    let log = relay.stop();
    eprintln!(
        "SIGSTOP 3 s at 3000 pps: {lost} lost, {kernel} kernel drops reported, {d} send drops"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fault_control_socket_flood_costs_no_packet_fd_or_memory() {
    let t = Topology::new(1);
    let mut relay = t.start_relay_with(FAST_STATS, one_group());
    let pid = relay.proc().pid();
    let sock = relay.control_socket();
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    // warm up what the control side allocates once (sampler, first reports)
    for _ in 0..3 {
        json(&relay, "stats");
    }
    std::thread::sleep(Duration::from_millis(300));
    let (fd_start, rss_start) = (fds(pid), rss_kib(pid));
    let stream = paced(&t, "eth0", "239.1.1.1:5000", 0, 2000, 5);
    let until = Instant::now() + Duration::from_secs(4);
    let flooders: Vec<_> = (0..6u8)
        .map(|k| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut conns = 0u64;
                let mut seed = u32::from(k) * 7919 + 1;
                while Instant::now() < until {
                    let Ok(mut s) = UnixStream::connect(&sock) else {
                        continue;
                    };
                    conns += 1;
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let junk: Vec<u8> = match seed % 5 {
                        0 => b"{\"version\":1,\"request\":\"status\"}\n".to_vec(),
                        1 => (0..2000u32)
                            .map(|i| (i.wrapping_mul(seed) >> 7) as u8)
                            .collect(),
                        2 => vec![b'{'; 100_000],
                        3 => b"{\"version\":1,\"request\":\"stats\"}\nnot json\n[1]\n".to_vec(),
                        _ => Vec::new(), // connect and hang up
                    };
                    let _ = s.write_all(&junk);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let mut sink = Vec::new();
                    let _ = s.read_to_end(&mut sink);
                    // a flood, but one that leaves the two shared cores some room for the
                    // kernel's own packet processing (its backlog drops are not the relay's)
                    std::thread::sleep(Duration::from_millis(2));
                }
                conns
            })
        })
        .collect();
    // and silent clients holding connections open meanwhile
    let mut idle = Vec::new();
    for _ in 0..40 {
        if let Ok(s) = UnixStream::connect(&sock) {
            idle.push(s);
        }
    }
    let conns: u64 = flooders
        .into_iter()
        .map(|h| h.join().expect("flooder"))
        .sum();
    drop(idle);
    let sent = stream.wait(SENDING);
    let r = rx.finish();
    // where a loss would have happened (shown when the test fails)
    let st = relay.stats();
    eprintln!(
        "relay after the flood: in0 {:#}; cam1 → rx0 {:?}; receiver UDP RcvbufErrors {}",
        interface_stats(&st, "in0"),
        destination_stats(&st, "cam1", "rx0"),
        netstat(&t.rx[0], "Udp", "RcvbufErrors")
    );
    r.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    r.assert_no_unexpected();
    // every client thread gone: the descriptors come back to where they were
    let settled = wait_until(Duration::from_secs(5), || fds(pid) <= fd_start);
    let (fd_end, rss_end) = (fds(pid), rss_kib(pid));
    assert!(
        settled.is_ok(),
        "open descriptors {fd_start} before the flood, {fd_end} after it"
    );
    assert!(
        rss_end < rss_start + 8 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB over {conns} connections"
    );
    let started = Instant::now();
    let st = json(&relay, "status");
    let answer = started.elapsed();
    assert_eq!(count(&st["config"]["generation"]), 1);
    assert!(conns > 1000, "only {conns} connections in 4 s");
    assert!(!relay.proc().exited());
    let log = relay.stop();
    eprintln!(
        "control flood: {conns} connections + 40 idle; fds {fd_start} → {fd_end}, RSS \
         {rss_start} → {rss_end} KiB; status answered in {answer:?} afterwards"
    );
    assert!(!log.contains("panicked"), "{log}");
}
