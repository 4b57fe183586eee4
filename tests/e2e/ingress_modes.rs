//! The memory-mapped receive modes, `ingress = "ring"` (TPACKET_V3 blocks) and
//! `ingress = "frames"` (TPACKET_V2 slots): every byte of IPv4 and IPv6 streams relayed, streams
//! interleaved through one destination (which the egress groups into GSO runs per address, so
//! their order must survive), and a burst that fills many slots per wake-up. Also `workers = 2`:
//! one interface's traffic spread over two workers by `PACKET_FANOUT` (flow hash), each stream
//! kept whole and in order on one of them.

use crate::netns::*;

const V4: [&str; 2] = ["239.1.1.1:5000", "239.1.1.2:5000"];
const V6: &str = "[ff3e::1:1]:5000";

/// True when process `pid` has a memory-mapped AF_PACKET ring (shown as `socket:[inode]` in
/// its maps): the mode really is in use, not silently the default.
fn maps_a_socket(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/maps: {e}"))
        .lines()
        .any(|l| l.contains("socket:["))
}

fn relays_every_byte(mode: &str) {
    let t = Topology::new(1);
    let mut relay = t.start_relay(
        Config::rx0()
            .interface("in0", &format!("ingress = \"{mode}\""))
            .route(V4[0])
            .route(V4[1])
            .route(V6),
    );
    let pid = relay.proc().pid();
    assert!(
        maps_a_socket(pid),
        "ingress = \"{mode}\": the relay (pid {pid}) maps no packet ring"
    );
    assert_joined(&t.relay, "in0", "239.1.1.1");
    assert_joined(&t.relay, "in0", "ff3e::1:1");
    let rx = t.receive(0, &[V4[0], V4[1], V6]);
    // Two interleaved IPv4 streams of full-size MPEG-TS payloads, then a burst of small ones
    // (many frames ready per wake-up), then IPv6.
    let big = t.send(
        &V4,
        &["--rate", "4000", "--duration", "2s", "--size", "1316"],
    );
    let small = t.send(
        &V4,
        &[
            "--rate",
            "20000",
            "--duration",
            "1s",
            "--size",
            "64",
            "--first-stream",
            "2",
        ],
    );
    let v6 = t.send(
        &[V6],
        &["--rate", "4000", "--duration", "1s", "--size", "1452"],
    );
    let r = rx.finish();
    let log = relay.stop();
    r.assert_no_unexpected();
    // streams 0 and 1: full size; 2 and 3: the burst (ids are the sender's)
    for (id, listener) in V4.iter().enumerate() {
        let id = id as u16;
        r.assert_complete(listener, id, big.stream(id));
        r.assert_complete(listener, id + 2, small.stream(id + 2));
    }
    r.assert_complete(V6, 0, v6.stream(0));
    assert!(big.stream(0) >= 3_000, "sent only {}", big.stream(0));
    assert!(small.stream(2) >= 8_000, "sent only {}", small.stream(2));
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn ring_mode_relays_every_byte() {
    relays_every_byte("ring");
}

#[test]
fn frames_mode_relays_every_byte() {
    relays_every_byte("frames");
}

/// Sixteen groups (the flow hash covers addresses and ports), `workers = 2` with each memory-mapped mode: every datagram arrives once
/// and in order, and both workers carry some of the streams.
fn two_workers_share_an_interface(mode: &str) {
    // 16 flows over 2 sockets: all on one by chance has a probability of 2 in 65 536 (with 8 it
    // was 2 in 256, and one clean run in a few hundred failed that way).
    const GROUPS: usize = 16;
    let t = Topology::new(1);
    let groups: Vec<String> = (1..=GROUPS).map(|i| format!("239.1.3.{i}:5000")).collect();
    let mut cfg = Config::rx0().interface("in0", &format!("ingress = \"{mode}\"\nworkers = 2"));
    for g in &groups {
        cfg = cfg.route(g);
    }
    let relay = t.start_relay_with(FAST_STATS, cfg);
    let listen: Vec<&str> = groups.iter().map(String::as_str).collect();
    let rx = t.receive(0, &listen);
    let sent = t.send(
        &[listen[0]],
        &[
            "--streams",
            &GROUPS.to_string(),
            "--rate",
            "8000",
            "--duration",
            "2s",
            "--size",
            "200",
        ],
    );
    let r = rx.finish();
    r.assert_no_unexpected();
    for (id, g) in listen.iter().enumerate() {
        r.assert_complete(g, id as u16, sent.stream(id as u16));
    }
    // Both workers received frames (all flows on one socket would mean no fanout).
    let status = relay.status_when(std::time::Duration::from_secs(5), |st| {
        let frames: Vec<u64> = workers_of(st, "in0")
            .iter()
            .map(|w| count(&w["frames"]))
            .collect();
        frames.len() == 2 && frames.iter().sum::<u64>() >= sent.stream(0) * GROUPS as u64
    });
    let workers = workers_of(&status, "in0");
    assert_eq!(workers.len(), 2, "two workers on in0: {status:#}");
    for w in &workers {
        assert!(
            count(&w["frames"]) > 0,
            "ingress = \"{mode}\": worker {} got no frame, so the fanout spread nothing: {status:#}",
            w["index"]
        );
    }
    relay.stop();
}

fn workers_of<'a>(status: &'a serde_json::Value, ifname: &str) -> Vec<&'a serde_json::Value> {
    status["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter(|w| w["interface"] == ifname)
        .collect()
}

#[test]
fn two_workers_frames() {
    two_workers_share_an_interface("frames");
}

#[test]
fn two_workers_ring() {
    two_workers_share_an_interface("ring");
}
