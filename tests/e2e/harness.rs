//! Tests of the harness and the traffic tool themselves, without the relay: if these fail, the
//! relay tests cannot be trusted.

use crate::netns::*;

/// Direct sender → receiver over one veth: the traffic tool sees every datagram exactly once,
/// with every byte, for IPv4 and IPv6 multicast and unicast, and the interface counters agree.
#[test]
fn traffic_tool_counts_every_datagram_without_relay() {
    let a = Netns::new("a");
    let b = Netns::new("b");
    link(
        &a,
        "eth0",
        &["10.9.0.1/24", "fd09::1/64"],
        &b,
        "eth0",
        &["10.9.0.2/24", "fd09::2/64"],
    );
    let rx = Receiver::start(
        &b,
        &[
            "-i",
            "eth0",
            "--group",
            "239.9.9.9:5000",
            "--group",
            "[ff3e::9:9]:5000",
            "--unicast",
            "10.9.0.2:6000",
        ],
    );
    let rx_before = b.if_stat("eth0", "rx_packets");
    let sent = send(
        &a,
        &[
            "-i",
            "eth0",
            "--to",
            "239.9.9.9:5000",
            "--to",
            "[ff3e::9:9]:5000",
            "--to",
            "10.9.0.2:6000",
            "--rate",
            "3000",
            "--count",
            "1500",
            "--size",
            "300",
            "--ttl",
            "7",
        ],
    );
    let r = rx.finish();
    r.assert_no_unexpected();
    let m4 = r.assert_complete("239.9.9.9:5000", 0, sent.stream(0));
    assert_eq!(m4.ttl.keys().copied().collect::<Vec<_>>(), vec![7]);
    assert_eq!(
        m4.sources,
        vec!["10.9.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    r.assert_complete("[ff3e::9:9]:5000", 1, sent.stream(1));
    r.assert_complete("10.9.0.2:6000", 2, sent.stream(2));
    let on_wire = b.if_stat("eth0", "rx_packets") - rx_before;
    assert!(
        on_wire >= 4500,
        "interface counted {on_wire} packets, fewer than the 4500 the receiver got"
    );
    // never faster than asked; slower only by what scheduling stalls on a busy machine cost
    assert!(
        (2700.0..=3030.0).contains(&sent.rate_pps),
        "paced rate {} not within -10 %/+1 % of 3000",
        sent.rate_pps
    );
}

/// A receiver sees a sender's stream on a group it did not join only as nothing: groups are
/// kept apart even on one port, so relay tests can tell destinations apart.
#[test]
fn receiver_keeps_groups_on_one_port_apart() {
    let a = Netns::new("a");
    let b = Netns::new("b");
    link(&a, "eth0", &["10.9.0.1/24"], &b, "eth0", &["10.9.0.2/24"]);
    let rx = Receiver::start(
        &b,
        &[
            "-i",
            "eth0",
            "--group",
            "239.9.9.1:5000",
            "--group",
            "239.9.9.2:5000",
        ],
    );
    let sent = send(
        &a,
        &[
            "-i",
            "eth0",
            "--to",
            "239.9.9.2:5000",
            "--rate",
            "2000",
            "--count",
            "500",
        ],
    );
    let r = rx.finish();
    r.assert_nothing("239.9.9.1:5000");
    r.assert_complete("239.9.9.2:5000", 0, sent.stream(0));
}

/// `send --via packet` builds whole frames itself: the receiving kernel accepts every one (a
/// wrong IP or UDP checksum, length or MAC would drop it), with the TTL, TOS and source address
/// a UDP socket would have given it, at odd and even payload lengths. Unicast is refused.
#[test]
fn traffic_tool_prebuilt_frames_arrive_as_datagrams() {
    let a = Netns::new("a");
    let b = Netns::new("b");
    link(&a, "eth0", &["10.9.0.1/24"], &b, "eth0", &["10.9.0.2/24"]);
    for size in ["1317", "64"] {
        let rx = Receiver::start(
            &b,
            &[
                "-i",
                "eth0",
                "--group",
                "239.9.9.1:5000",
                "--group",
                "239.137.1.2:5001",
            ],
        );
        let sent = send(
            &a,
            &[
                "-i",
                "eth0",
                "--via",
                "packet",
                "--to",
                "239.9.9.1:5000",
                "--to",
                "239.137.1.2:5001",
                "--rate",
                "4000",
                "--count",
                "1000",
                "--size",
                size,
                "--ttl",
                "7",
                "--tos",
                "0xb8",
            ],
        );
        let r = rx.finish();
        r.assert_no_unexpected();
        for (listener, id) in [("239.9.9.1:5000", 0), ("239.137.1.2:5001", 1)] {
            let s = r.assert_complete(listener, id, sent.stream(id));
            assert_eq!(
                s.ttl.keys().copied().collect::<Vec<_>>(),
                vec![7],
                "{size} B"
            );
            assert_eq!(
                s.tos.keys().copied().collect::<Vec<_>>(),
                vec![0xb8],
                "{size} B"
            );
            assert_eq!(
                s.sources,
                vec!["10.9.0.1".parse::<std::net::IpAddr>().unwrap()],
                "{size} B"
            );
        }
    }
    let out = a.exec(&[
        "sh",
        "-c",
        &format!(
            "{TRAFFIC} send -i eth0 --via packet --to 10.9.0.2:6000 --count 1 2>&1; echo exit=$?"
        ),
    ]);
    assert!(
        out.contains("IPv4 multicast only") && out.contains("exit=1"),
        "unicast through --via packet was not refused: {out}"
    );
}
