//! The worker's state machine against in-memory sources (`memory.rs`): no root, no interfaces.
//! The loop, the io_uring and the egress are the real ones; destinations are unicast UDP on
//! loopback, so every datagram relayed is received and checked here.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::memory::{Feed, Lab};
use super::*;
use crate::config::{self, FakeResolver};
use crate::testkit::frames::Ipv4Udp;

/// A worker on in-memory interfaces, a loopback receiver per destination, and the table.
struct Rig {
    lab: Arc<Lab>,
    tables: Arc<ArcSwap<Table>>,
    handle: Option<WorkerHandle>,
    rx: Vec<UdpSocket>,
    generation: u64,
}

impl Rig {
    /// `config` names destinations `out0`, `out1`, …; `{port0}`, `{port1}` … are replaced by
    /// the ports of loopback receivers.
    fn start(interfaces: &[&str], also: &[&str], config: &str, receivers: usize) -> Rig {
        let rx: Vec<UdpSocket> = (0..receivers)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s
            })
            .collect();
        let lab = Lab::new(interfaces);
        let table = compile(config, &rx, 1);
        let tables = Arc::new(ArcSwap::from_pointee(table));
        let spec = WorkerSpec {
            interface: interfaces.first().copied().unwrap_or("mem0").to_string(),
            also: also.iter().map(|s| s.to_string()).collect(),
            index: 0,
            count: 1,
            cpu: None,
            fanout: None,
            rcvbuf: 1 << 20,
            ingress: IngressMode::Frames,
            tunnel: None,
        };
        let (handle, ready) = spawn_with(
            spec,
            tables.clone(),
            Arc::new(AckSignal::default()),
            lab.opener(),
        )
        .unwrap();
        let first = ready.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(first.is_ok(), "worker did not start: {first:?}");
        let rig = Rig {
            lab,
            tables,
            handle: Some(handle),
            rx,
            generation: 1,
        };
        rig.wait_acked(1);
        rig
    }

    fn shared(&self) -> &WorkerShared {
        &self.handle.as_ref().unwrap().shared
    }

    /// Publishes `config` as the next generation and waits until the worker runs it.
    fn publish(&mut self, config: &str) {
        self.generation += 1;
        self.tables
            .store(Arc::new(compile(config, &self.rx, self.generation)));
        self.shared().wake();
        self.wait_acked(self.generation);
    }

    fn wait_acked(&self, generation: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared().acked().0 < generation {
            assert!(
                Instant::now() < deadline,
                "generation {generation} not acknowledged"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The feed of the source for `interface`'s IPv4, once the worker opened it.
    fn feed(&self, interface: &str) -> Arc<Feed> {
        wait_for("the source to open", || {
            self.lab.feed(interface, Family::V4)
        })
    }

    /// The feed of a source for `interface` other than `old` (a closed source was reopened).
    fn new_feed(&self, interface: &str, old: &Arc<Feed>) -> Arc<Feed> {
        wait_for("a new source", || {
            self.lab
                .feed(interface, Family::V4)
                .filter(|f| !Arc::ptr_eq(f, old))
        })
    }

    /// Pushes datagrams `range` of 239.1.1.1:5000 into `feed` and expects them all, in order,
    /// on receiver 0.
    fn relay(&self, feed: &Feed, range: std::ops::Range<u32>) {
        push(feed, [239, 1, 1, 1], 5000, range.clone());
        self.expect(0, range);
    }

    fn state(&self) -> WorkerState {
        self.shared().snapshot().state
    }

    fn wait_state(&self, state: WorkerState) {
        wait_for(&format!("state {state:?}"), || {
            (self.state() == state).then_some(())
        });
    }

    /// Receives `n` datagrams on receiver `i` and checks each is `payload(k)` for k in
    /// `range`, in order.
    fn expect(&self, i: usize, range: std::ops::Range<u32>) {
        let mut buf = [0u8; 2048];
        for k in range {
            let n = self.rx[i]
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {k} on receiver {i}: {e}"));
            assert_eq!(&buf[..n], &payload(k)[..], "datagram {k} on receiver {i}");
        }
    }

    /// Nothing more arrives on receiver `i` for a while.
    fn expect_silence(&self, i: usize) {
        self.rx[i]
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let got = self.rx[i].recv(&mut buf);
        assert!(
            got.is_err(),
            "unexpected datagram: {:?}",
            got.map(|n| &buf[..n])
        );
        self.rx[i]
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
    }

    fn stop(&mut self) -> WorkerSnapshot {
        let h = self.handle.take().unwrap();
        let started = Instant::now();
        h.shared.stop();
        h.thread.join().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            started.elapsed()
        );
        h.shared.snapshot().as_ref().clone()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shared.stop();
            let _ = h.thread.join();
        }
    }
}

fn compile(config: &str, rx: &[UdpSocket], generation: u64) -> Table {
    let mut text = config.to_string();
    for (i, s) in rx.iter().enumerate() {
        text = text.replace(
            &format!("{{port{i}}}"),
            &s.local_addr().unwrap().port().to_string(),
        );
    }
    config::compile(&text, Path::new("test.toml"), &FakeResolver::everything())
        .unwrap_or_else(|e| panic!("{}", config::render_errors(&e)))
        .with_generation(Generation(generation))
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn payload(k: u32) -> Vec<u8> {
    let mut p = k.to_be_bytes().to_vec();
    p.extend((0..(k % 200) as u8).map(|b| b ^ 0x5a));
    p
}

fn packet(group: [u8; 4], port: u16, k: u32) -> Vec<u8> {
    Ipv4Udp::new(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::from(group),
        4000,
        port,
    )
    .frame(&payload(k))
}

fn push(feed: &Feed, group: [u8; 4], port: u16, range: std::ops::Range<u32>) {
    for k in range {
        feed.push(packet(group, port, k));
    }
}

/// `[destinations.out{i}]` sending to loopback receiver `i`.
fn unicast_dest(i: usize) -> String {
    format!("[destinations.out{i}]\naddress = \"127.0.0.1:{{port{i}}}\"\n")
}

/// A group 239.1.1.1:5000 on `interface` to `out{dest}`.
fn group_on(interface: &str, dest: usize) -> String {
    format!(
        "[[groups]]\ninterface = \"{interface}\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"out{dest}\"]\n"
    )
}

/// One route on mem0 to receiver 0.
fn one_route() -> String {
    format!(
        "[interfaces.mem0]\n{}{}",
        unicast_dest(0),
        group_on("mem0", 0)
    )
}

#[test]
fn relays_every_datagram_in_order_and_gives_every_unit_back() {
    let mut rig = Rig::start(&["mem0"], &[], &one_route(), 1);
    let feed = rig.feed("mem0");
    // In rounds the loopback receiver's default buffer holds.
    for round in 0..30 {
        push(&feed, [239, 1, 1, 1], 5000, round * 100..(round + 1) * 100);
        rig.expect(0, round * 100..(round + 1) * 100);
    }
    // A datagram to a group no route has is counted, not relayed.
    push(&feed, [239, 9, 9, 9], 5000, 0..1);
    rig.expect_silence(0);
    let snap = rig.stop();
    assert_eq!(snap.state, WorkerState::Stopped);
    assert_eq!(snap.frames, 3001);
    assert_eq!(snap.groups[0].packets, 3000);
    assert_eq!(snap.groups[0].destinations[0].packets, 3000);
    assert_eq!(snap.drops[DropReason::NoRoute.index()], 1);
    assert_eq!(
        feed.outstanding.load(Ordering::Acquire),
        0,
        "every unit released"
    );
}

#[test]
fn a_generation_is_acknowledged_and_a_closed_source_is_reopened_with_a_new_epoch() {
    let mut rig = Rig::start(&["mem0"], &[], &one_route(), 1);
    let first = rig.feed("mem0");
    rig.relay(&first, 0..10);
    // No route left on mem0: its source is closed (its armed poll cancelled).
    rig.publish("[interfaces.mem0]\n");
    assert_eq!(rig.shared().acked().0, 2);
    wait_for("the source to close", || {
        first.closed.load(Ordering::Acquire).then_some(())
    });
    // Pushed into the closed source: never read.
    push(&first, [239, 1, 1, 1], 5000, 100..101);
    // The route is back: a new source (a new epoch at the same index) relays; the old poll's
    // completion, if it is still to come, carries the dead epoch and is ignored.
    rig.publish(&one_route());
    let second = rig.new_feed("mem0", &first);
    assert_eq!(rig.lab.opened.load(Ordering::Acquire), 2);
    rig.relay(&second, 10..20);
    rig.expect_silence(0);
    let snap = rig.stop();
    // Counters of the route that came back start again; nothing of the old feed was read.
    assert_eq!(snap.frames, 20);
}

#[test]
fn a_failed_source_is_paused_then_rearmed_by_the_retry_timer() {
    let mut rig = Rig::start(&["mem0"], &[], &one_route(), 1);
    let feed = rig.feed("mem0");
    rig.relay(&feed, 0..5);
    // The interface goes down: the poll reports POLLHUP, the worker pauses the source.
    feed.interrupt(libc::ENETDOWN);
    push(&feed, [239, 1, 1, 1], 5000, 5..10);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(feed.queued(), 5, "nothing is read while the source is down");
    assert_eq!(
        rig.state(),
        WorkerState::Running,
        "a pause is not a state change"
    );
    // Up again: the retry timer (1 s) re-arms it and what was queued is relayed, in order.
    feed.resume();
    rig.expect(0, 5..10);
    assert_eq!(rig.lab.opened.load(Ordering::Acquire), 1, "the same source");
    rig.stop();
}

#[test]
fn an_interface_that_goes_away_makes_the_worker_wait_and_a_new_one_is_opened() {
    let mut rig = Rig::start(&["mem0"], &[], &one_route(), 1);
    let feed = rig.feed("mem0");
    rig.relay(&feed, 0..5);
    rig.lab.remove("mem0");
    rig.wait_state(WorkerState::Waiting);
    assert!(
        rig.shared()
            .snapshot()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("interface mem0 does not exist")),
        "{:?}",
        rig.shared().snapshot().error
    );
    // A reload while waiting is still acknowledged.
    rig.publish(&one_route());
    rig.lab.create("mem0");
    rig.wait_state(WorkerState::Running);
    let fresh = rig.new_feed("mem0", &feed);
    rig.relay(&fresh, 5..10);
    rig.stop();
}

#[test]
fn a_worker_that_starts_before_its_interface_waits_for_it() {
    let mut rig = Rig::start(&[], &[], &one_route(), 1);
    assert_eq!(rig.state(), WorkerState::Waiting);
    rig.lab.create("mem0");
    rig.wait_state(WorkerState::Running);
    push(&rig.feed("mem0"), [239, 1, 1, 1], 5000, 0..5);
    rig.expect(0, 0..5);
    rig.stop();
}

#[test]
fn stop_relays_what_was_handed_over_and_exits_within_a_second() {
    let mut rig = Rig::start(&["mem0"], &[], &one_route(), 1);
    let feed = rig.feed("mem0");
    // Paused (its interface went down), so the loop does not read the source until its retry
    // timer; packets queued meanwhile and the source up again, then stop at once: only the
    // drain on stop reads them (as many as the loopback receiver's default buffer holds).
    feed.interrupt(libc::ENETDOWN);
    std::thread::sleep(Duration::from_millis(200));
    push(&feed, [239, 1, 1, 1], 5000, 0..100);
    feed.resume();
    let snap = rig.stop();
    assert_eq!(feed.queued(), 0);
    assert_eq!(snap.frames, 100);
    rig.expect(0, 0..100);
    assert_eq!(feed.outstanding.load(Ordering::Acquire), 0);
}

#[test]
fn one_worker_drives_sources_on_several_interfaces() {
    // The same group on two interfaces is two routes, each to its own destination.
    let config = format!(
        "[interfaces.red]\n[interfaces.blue]\n{}{}{}{}",
        unicast_dest(0),
        unicast_dest(1),
        group_on("red", 0),
        group_on("blue", 1)
    );
    let mut rig = Rig::start(&["red", "blue"], &["blue"], &config, 2);
    let (red, blue) = (rig.feed("red"), rig.feed("blue"));
    for round in 0..5 {
        push(&red, [239, 1, 1, 1], 5000, round * 100..(round + 1) * 100);
        push(
            &blue,
            [239, 1, 1, 1],
            5000,
            1000 + round * 100..1000 + (round + 1) * 100,
        );
        rig.expect(0, round * 100..(round + 1) * 100);
        rig.expect(1, 1000 + round * 100..1000 + (round + 1) * 100);
    }
    let snap = rig.stop();
    let mut by_iface: Vec<(String, u64)> = snap
        .groups
        .iter()
        .map(|g| (g.interface.to_string(), g.packets))
        .collect();
    by_iface.sort();
    assert_eq!(
        by_iface,
        [("blue".to_string(), 500), ("red".to_string(), 500)]
    );
}

/// Two legs of one merged route on two interfaces: `payload(k)` starts with k as a 4-byte
/// big-endian number, the sequence key.
const MERGED: &str = r#"
[interfaces.red]
[interfaces.blue]
[destinations.out0]
address = "127.0.0.1:{port0}"
[[groups]]
legs = [{ interface = "red", group = "239.1.1.1", port = 5000 }, { interface = "blue", group = "239.2.2.2", port = 5000 }]
redundancy = "merge"
sequence = { offset = 0, size = 4, byte_order = "big" }
window = "20ms"
to = ["out0"]
"#;

/// Receives `n` datagrams on receiver `i`; returns their numbers (checking every byte).
fn receive_numbers(rig: &Rig, i: usize, n: usize) -> Vec<u32> {
    let mut buf = [0u8; 2048];
    (0..n)
        .map(|j| {
            let len = rig.rx[i]
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {j} of {n} on receiver {i}: {e}"));
            let k = u32::from_be_bytes(buf[..4].try_into().unwrap());
            assert_eq!(&buf[..len], &payload(k)[..], "datagram {k}");
            k
        })
        .collect()
}

/// Each leg loses a different share of the numbers; the merged output has every number once,
/// and the per-leg counters say which leg carried what.
#[test]
fn merged_legs_fill_each_others_losses() {
    let mut rig = Rig::start(&["red", "blue"], &["blue"], MERGED, 1);
    let (red, blue) = (rig.feed("red"), rig.feed("blue"));
    let lost_on_red = |k: u32| k % 10 == 3 || k % 13 == 5;
    let lost_on_blue = |k: u32| !lost_on_red(k) && (k % 10 == 7 || k % 11 == 2);
    let (mut on_red, mut on_blue) = (0u64, 0u64);
    for chunk in 0..10u32 {
        for k in chunk * 100..(chunk + 1) * 100 {
            if !lost_on_red(k) {
                red.push(packet([239, 1, 1, 1], 5000, k));
                on_red += 1;
            }
            if !lost_on_blue(k) {
                blue.push(packet([239, 2, 2, 2], 5000, k));
                on_blue += 1;
            }
        }
        let mut got = receive_numbers(&rig, 0, 100);
        got.sort_unstable();
        assert_eq!(got, (chunk * 100..(chunk + 1) * 100).collect::<Vec<_>>());
    }
    rig.expect_silence(0);
    let snap = rig.stop();
    assert_eq!(snap.redundant.len(), 1);
    let r = &snap.redundant[0];
    assert_eq!(r.mode, "merge");
    assert_eq!((r.output.forwarded, r.output.lost), (1000, 0));
    let (l0, l1) = (&r.legs[0].counters, &r.legs[1].counters);
    assert_eq!(
        (&*r.legs[0].interface, &*r.legs[1].interface),
        ("red", "blue")
    );
    assert_eq!((l0.packets, l1.packets), (on_red, on_blue));
    assert_eq!(l0.forwarded + l1.forwarded, 1000);
    // Every second copy was dropped, as a duplicate (or late, once its number settled).
    assert_eq!(
        l0.duplicates + l0.late + l1.duplicates + l1.late,
        on_red + on_blue - 1000
    );
    // The route's own counters count what went out.
    assert_eq!(snap.groups[0].packets, 1000);
    assert_eq!(snap.groups[0].destinations[0].packets, 1000);
}

/// A reload that keeps the legs and mode keeps the merge state: numbers already sent are not
/// sent again after it (a fresh state would forward them).
#[test]
fn a_reload_keeps_the_merge_state_of_an_unchanged_route() {
    let mut rig = Rig::start(&["red", "blue"], &["blue"], MERGED, 2);
    let (red, blue) = (rig.feed("red"), rig.feed("blue"));
    push(&red, [239, 1, 1, 1], 5000, 0..200);
    push(&blue, [239, 2, 2, 2], 5000, 0..200);
    rig.expect(0, 0..200);
    // Another destination and a name: the inputs are unchanged.
    let changed = MERGED
        .replace("to = [\"out0\"]", "name = \"feed\"\nto = [\"out1\"]")
        .replace(
            "[[groups]]",
            "[destinations.out1]\naddress = \"127.0.0.1:{port1}\"\n[[groups]]",
        );
    rig.publish(&changed);
    push(&blue, [239, 2, 2, 2], 5000, 100..300);
    rig.expect(1, 200..300);
    rig.expect_silence(1);
    rig.expect_silence(0);
    let snap = rig.stop();
    let r = &snap.redundant[0];
    assert_eq!(&*r.label, "feed");
    assert_eq!(r.output.forwarded, 300);
}

/// A leg sending garbage (payloads too short to hold the sequence number) costs the merge
/// nothing: those packets are dropped and counted on that leg, the other leg's all go out.
#[test]
fn a_leg_sending_garbage_is_counted_and_dropped() {
    let mut rig = Rig::start(&["red", "blue"], &["blue"], MERGED, 1);
    let (red, blue) = (rig.feed("red"), rig.feed("blue"));
    for k in 0..100 {
        red.push(packet([239, 1, 1, 1], 5000, k));
        blue.push(
            Ipv4Udp::new(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(239, 2, 2, 2),
                4000,
                5000,
            )
            .frame(&[0x5a, 0x5a]),
        );
    }
    rig.expect(0, 0..100);
    rig.expect_silence(0);
    let snap = rig.stop();
    let r = &snap.redundant[0];
    assert_eq!(r.output.forwarded, 100);
    let blue = &r.legs[1].counters;
    assert_eq!(
        (
            blue.packets,
            blue.forwarded,
            blue.no_key(crate::redundancy::NoKey::TooShort)
        ),
        (100, 0, 100)
    );
    assert_eq!(r.legs[0].counters.forwarded, 100);
}

/// Failover between two interfaces: the first leg is forwarded while it delivers; after it
/// has been silent for `failover_after`, the second leg's packets go out.
#[test]
fn failover_switches_to_the_second_leg_after_silence() {
    let config = MERGED
        .replace(
            "redundancy = \"merge\"",
            "redundancy = \"failover\"\nfailover_after = \"50ms\"\nrevert = \"never\"",
        )
        .replace(
            "sequence = { offset = 0, size = 4, byte_order = \"big\" }\n",
            "",
        )
        .replace("window = \"20ms\"\n", "");
    let mut rig = Rig::start(&["red", "blue"], &["blue"], &config, 1);
    let (red, blue) = (rig.feed("red"), rig.feed("blue"));
    push(&red, [239, 1, 1, 1], 5000, 0..50);
    push(&blue, [239, 2, 2, 2], 5000, 0..50);
    rig.expect(0, 0..50);
    rig.expect_silence(0);
    // Red falls silent (the silence check above took 200 ms): blue takes over.
    push(&blue, [239, 2, 2, 2], 5000, 50..100);
    rig.expect(0, 50..100);
    rig.expect_silence(0);
    let snap = rig.stop();
    let r = &snap.redundant[0];
    assert_eq!((r.mode, r.active), ("failover", Some(1)));
    assert_eq!((r.output.forwarded, r.output.switches), (100, 1));
}
