//! The memory-mapped receive modes, `ingress = "ring"` (TPACKET_V3 blocks) and
//! `ingress = "frames"` (TPACKET_V2 slots): every byte of IPv4 and IPv6 streams relayed, streams
//! interleaved through one destination (which the egress groups into GSO runs per address, so
//! their order must survive), and a burst that fills many slots per wake-up.

use crate::netns::*;

const CONFIG: &str = r#"
        [interfaces.out0]

        [destinations.rx0]
        interface = "out0"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["rx0"]

        [[groups]]
        interface = "in0"
        group = "239.1.1.2"
        port = 5000
        to = ["rx0"]

        [[groups]]
        interface = "in0"
        group = "ff3e::1:1"
        port = 5000
        to = ["rx0"]
        "#;

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
    let mut relay = Relay::start(
        &t.relay,
        format!("[interfaces.in0]\ningress = \"{mode}\"\n{CONFIG}"),
    );
    let pid = relay.proc().pid();
    assert!(
        maps_a_socket(pid),
        "ingress = \"{mode}\": the relay (pid {pid}) maps no packet ring"
    );
    assert_joined(&t.relay, "in0", "239.1.1.1");
    assert_joined(&t.relay, "in0", "ff3e::1:1");
    let rx = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "239.1.1.1:5000",
            "--group",
            "239.1.1.2:5000",
            "--group",
            "[ff3e::1:1]:5000",
        ],
    );
    // Two interleaved IPv4 streams of full-size MPEG-TS payloads, then a burst of small ones
    // (many frames ready per wake-up), then IPv6.
    let big = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.1.1:5000",
            "--to",
            "239.1.1.2:5000",
            "--rate",
            "4000",
            "--duration",
            "2s",
            "--size",
            "1316",
        ],
    );
    let small = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.1.1:5000",
            "--to",
            "239.1.1.2:5000",
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
    let v6 = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "[ff3e::1:1]:5000",
            "--rate",
            "4000",
            "--duration",
            "1s",
            "--size",
            "1452",
        ],
    );
    let r = rx.finish();
    let log = relay.stop();
    r.assert_no_unexpected();
    // streams 0 and 1: full size; 2 and 3: the burst (ids are the sender's)
    for (id, listener) in ["239.1.1.1:5000", "239.1.1.2:5000"].iter().enumerate() {
        let id = id as u16;
        r.assert_complete(listener, id, big.stream(id));
        r.assert_complete(listener, id + 2, small.stream(id + 2));
    }
    r.assert_complete("[ff3e::1:1]:5000", 0, v6.stream(0));
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
