//! Issue 8, hostile input the malformed-frame test (`malformed.rs`: truncated, claimed lengths
//! beyond the capture, bad versions, header lengths, checksums, IPv4 options, single IPv6
//! extension headers, fragments, non-UDP, bad UDP lengths, non-multicast) does not make:
//! VLAN-tagged frames, zero-length UDP, chains of IPv6 extension headers, the largest datagrams,
//! a flood for groups nobody routes, and a source that changes address mid-stream. Valid traffic
//! for the same groups flows meanwhile and must arrive whole; nothing hostile may come out.
//!
//! Frames `mcrelay-traffic inject` cannot make are written by a short Python script (python3 is
//! installed by `scripts/install-deps`) through an AF_PACKET socket in the sender's namespace.

use std::time::Duration;

use serde_json::Value;

use crate::faults::rss_kib;
use crate::netns::*;

/// Writes hand-made Ethernet frames: `python3 - IFACE KIND COUNT RATE`.
const INJECT: &str = r#"
import socket, struct, sys, time
ifname, kind, count, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def ipv4(src, dst, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 8, 17, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def udp(data, sport=40000, dport=5000):
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data

SRC_MAC = bytes([2, 0, 0, 0, 0, 1])
MAC4 = bytes([1, 0, 0x5E, 1, 2, 3])         # 239.1.2.3
MAC6 = bytes([0x33, 0x33, 0, 1, 0, 3])      # ff3e::1:3
BODY = b"hostile frame, must never come out of the relay".ljust(64, b".")

if kind == "vlan":      # a valid datagram for a routed group, but tagged VLAN 5
    frame = MAC4 + SRC_MAC + struct.pack("!HH", 0x8100, 5) + struct.pack("!H", 0x0800) \
        + ipv4("10.1.0.2", "239.1.2.3", udp(BODY))
elif kind == "zero":    # a valid zero-length UDP datagram for a routed group
    frame = MAC4 + SRC_MAC + struct.pack("!H", 0x0800) + ipv4("10.1.0.2", "239.1.2.3", udp(b""))
elif kind == "chain6":  # hop-by-hop, destination options, routing, then UDP
    src = socket.inet_pton(socket.AF_INET6, "fd01::2")
    dst = socket.inet_pton(socket.AF_INET6, "ff3e::1:3")
    ext = bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([43, 0, 1, 4, 0, 0, 0, 0]) \
        + bytes([17, 0, 0, 0, 0, 0, 0, 0])
    u = udp(BODY)
    pseudo = src + dst + struct.pack("!I3xB", len(u), 17)
    u = u[:6] + struct.pack("!H", csum(pseudo + u) or 0xFFFF) + u[8:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(ext) + len(u), 0, 64) + src + dst
    frame = MAC6 + SRC_MAC + struct.pack("!H", 0x86DD) + ip6 + ext + u
else:
    sys.exit("unknown kind " + kind)

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
for i in range(count):
    s.send(frame)
    time.sleep(1.0 / rate)
print(count)
"#;

/// Sends `count` hand-made frames of `kind` on the sender's eth0.
fn inject(t: &Topology, kind: &str, count: u32) -> Proc {
    t.sender.spawn(&[
        "python3",
        "-c",
        INJECT,
        "eth0",
        kind,
        &count.to_string(),
        "500",
    ])
}

fn in0(s: &Value) -> &Value {
    interface_stats(s, "in0")
}

/// The routed groups, one per IP version.
const V4: &str = "239.1.2.3:5000";
const V6: &str = "[ff3e::1:3]:5000";

/// `v4` and `v6` from in0 to rx0 (out0).
fn routed() -> Config {
    Config::rx0().route(V4).name("v4").route(V6).name("v6")
}

#[test]
fn hostile_vlan_tagged_zero_length_and_extension_chains() {
    const N: u32 = 300;
    let t = Topology::new(1);
    let relay = t.start_relay_with(FAST_STATS, routed());
    let rx = t.receive_with(0, &[V4, V6], &["--idle", "2s"]);
    let valid = t.start_send(&[V4, V6], &["--rate", "3000", "--duration", "3s"]);
    let injectors: Vec<Proc> = ["vlan", "zero", "chain6"]
        .iter()
        .map(|k| inject(&t, k, N))
        .collect();
    for p in injectors {
        let exit = p.wait(Duration::from_secs(30));
        assert_eq!(
            exit.code,
            Some(0),
            "python3 injector failed (scripts/install-deps installs python3):\n{}",
            exit.stderr
        );
        assert_eq!(exit.stdout.trim(), N.to_string());
    }
    let sent = valid.wait(Duration::from_secs(30));
    let r = rx.finish();
    r.assert_complete(V4, 0, sent.stream(0));
    r.assert_complete(V6, 1, sent.stream(1));
    // Zero-length UDP is a valid datagram: relayed as such (the receiver counts it as not one of
    // ours). Nothing tagged for VLAN 5 and no extension-header chain may come out.
    let v4 = r
        .listeners
        .iter()
        .find(|l| l.address == V4)
        .expect("v4 listener");
    let v6 = r
        .listeners
        .iter()
        .find(|l| l.address == V6)
        .expect("v6 listener");
    assert_eq!(
        (v4.unexpected + v4.truncated, v6.unexpected + v6.truncated),
        (u64::from(N), 0),
        "expected exactly the {N} zero-length datagrams as foreign on the IPv4 group and nothing \
         foreign on IPv6 (VLAN-tagged frames or extension-header chains got through?):\n{}",
        r.raw
    );
    let want_v6 = u64::from(N);
    let s = relay.stats_when(Duration::from_secs(3), |s| {
        count(&in0(s)["drops"]["extension_headers"]) >= want_v6
    });
    let drops = &in0(&s)["drops"];
    assert_eq!(
        count(&drops["extension_headers"]),
        want_v6,
        "extension-header chains are not counted as such:\n{s:#}"
    );
    let log = relay.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn hostile_unrouted_flood_and_a_source_changing_mid_stream() {
    let t = Topology::new(1);
    t.sender.ip(&["addr", "add", "10.1.0.3/24", "dev", "eth0"]);
    let mut relay = t.start_relay_with(
        FAST_STATS,
        Config::rx0()
            .route("239.1.1.1:5000")
            .name("any-source")
            .route("239.1.1.4:5000")
            .name("one-source")
            .source("10.1.0.2"),
    );
    let pid = relay.proc().pid();
    let rss_start = rss_kib(pid);
    let routed = t.receive(0, &["239.1.1.1:5000", "239.1.1.4:5000"]);
    let unrouted = t.receive_with(0, &["239.9.0.1:6000"], &["--groups", "200", "--idle", "3s"]);
    // 200 groups nobody routes, as fast as the pacing allows on this machine
    let flood = t.start_send(
        &["239.9.0.1:6000"],
        &[
            "--streams",
            "200",
            "--first-stream",
            "100",
            "--rate",
            "20000",
            "--duration",
            "3s",
        ],
    );
    let from = |source: &str, first: &str| {
        let (any, one) = (
            format!("239.1.1.1:5000@{source}"),
            format!("239.1.1.4:5000@{source}"),
        );
        t.send(
            &[&any, &one],
            &["--first-stream", first, "--rate", "1000", "--count", "500"],
        )
    };
    let before = from("10.1.0.2", "0");
    let after = from("10.1.0.3", "2");
    let flood = flood.wait(Duration::from_secs(60));
    let r = routed.finish();
    let u = unrouted.finish();
    // any source: both halves whole; one source: the first half whole, nothing of the second
    r.assert_complete("239.1.1.1:5000", 0, before.stream(0));
    r.assert_complete("239.1.1.1:5000", 2, after.stream(2));
    r.assert_complete("239.1.1.4:5000", 1, before.stream(1));
    assert!(
        r.get("239.1.1.4:5000", 3).is_none(),
        "the source-specific group relayed another source:\n{}",
        r.raw
    );
    r.assert_no_unexpected();
    assert_eq!(
        u.totals.received, 0,
        "an unrouted group was relayed:\n{}",
        u.raw
    );
    // The flood and the other source never reached user space: the kernel filter rejected them.
    let want = before.stream(0) + before.stream(1) + after.stream(2);
    let s = relay.stats_when(Duration::from_secs(2), |s| count(&in0(s)["frames"]) >= want);
    assert_eq!(
        count(&in0(&s)["frames"]),
        want,
        "the relay received more than the routed frames ({} flood datagrams sent):\n{s:#}",
        flood.sent
    );
    let rss_end = rss_kib(pid);
    assert!(
        rss_end < rss_start + 8 * 1024,
        "RSS grew from {rss_start} to {rss_end} KiB under a flood of unrouted groups"
    );
    let log = relay.stop();
    eprintln!(
        "unrouted flood: {} datagrams to 200 groups, none reached the relay; RSS {rss_start} → \
         {rss_end} KiB",
        flood.sent
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// The largest UDP datagrams: whole at MTU 65535 (IPv4 65507 bytes, IPv6 65487: the most one
/// 65535-byte frame holds), and at MTU 1500, where the sender must fragment them, every fragment
/// counted as `fragment` and nothing relayed (mcrelay does not reassemble).
#[test]
fn hostile_maximum_size_datagrams() {
    let t = Topology::builder().mtu(65535).build();
    let relay = t.start_relay_with(FAST_STATS, routed());
    let rx = t.receive(0, &[V4, V6]);
    let big = |to, size, first| {
        t.send(
            &[to],
            &[
                "--first-stream",
                first,
                "--rate",
                "200",
                "--count",
                "200",
                "--size",
                size,
            ],
        )
    };
    let s4 = big(V4, "65507", "0");
    let s6 = big(V6, "65487", "1");
    let r = rx.finish();
    r.assert_complete(V4, 0, s4.stream(0));
    r.assert_complete(V6, 1, s6.stream(1));
    r.assert_no_unexpected();
    relay.stop();

    // the same datagrams over a 1500-byte path arrive in fragments
    t.set_ingress_mtu(0, 1500);
    let relay = t.start_relay_with(FAST_STATS, routed());
    let rx = t.receive(0, &[V4]);
    let frags = t.send(
        &[V4],
        &["--rate", "100", "--count", "50", "--size", "65507"],
    );
    let small = t.send(
        &[V4],
        &["--first-stream", "1", "--rate", "1000", "--count", "500"],
    );
    let r = rx.finish();
    r.assert_complete(V4, 1, small.stream(1));
    assert!(
        r.get(V4, 0).is_none(),
        "a fragmented datagram came out:\n{}",
        r.raw
    );
    r.assert_no_unexpected();
    // 65515 bytes of UDP in fragments of 1480: 45 per datagram
    let want = frags.stream(0) * 65515_u64.div_ceil(1480);
    let s = relay.stats_when(Duration::from_secs(2), |s| {
        count(&in0(s)["drops"]["fragment"]) >= want
    });
    assert_eq!(count(&in0(&s)["drops"]["fragment"]), want, "{s:#}");
    let log = relay.stop();
    assert!(!log.contains("panicked"), "{log}");
}
