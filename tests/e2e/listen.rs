//! Unicast ingress (`listen` routes): unicast in, multicast or unicast out, IPv4 and IPv6, from a
//! source the relay cannot route back to, and without the host answering the relayed datagrams
//! with ICMP port-unreachable (a sender that gets those may stop).

use crate::netns::*;

/// ICMP and ICMPv6 destination-unreachable messages the relay's host sent so far.
fn unreachables(t: &Topology) -> (u64, u64) {
    (
        netstat(&t.relay, "Icmp", "OutDestUnreachs"),
        snmp6(&t.relay, "Icmp6OutDestUnreachs"),
    )
}

/// A counter of `/proc/net/snmp6` (one `name value` per line).
fn snmp6(ns: &Netns, name: &str) -> u64 {
    let text = ns.exec(&["cat", "/proc/net/snmp6"]);
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(name)).then(|| it.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name} in /proc/net/snmp6"))
}

#[test]
fn listen_unicast_to_multicast_and_unicast_without_icmp_port_unreachable() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::new(&["in0", "out0"])
            .dest(
                "mc4",
                "interface = \"out0\"\ngroup = \"239.3.3.3\"\nport = 5000",
            )
            .dest(
                "mc6",
                "interface = \"out0\"\ngroup = \"ff3e::3:3\"\nport = 5000",
            )
            .unicast("host4", "10.2.0.2:7000")
            .unicast("host6", "[fd02::2]:7006")
            .listen("in0", "10.1.0.1:6000", &["mc4", "host4"])
            .listen("in0", "[::]:6006", &["mc6", "host6"]),
    );
    let (icmp4_before, icmp6_before) = unreachables(&t);
    let rx = t.receive(
        0,
        &[
            "239.3.3.3:5000",
            "[ff3e::3:3]:5000",
            "10.2.0.2:7000",
            "[fd02::2]:7006",
        ],
    );
    let sent = t.send(
        &["10.1.0.1:6000", "[fd01:0::1]:6006"],
        &["--rate", "4000", "--duration", "2s", "--size", "700"],
    );
    let r = rx.finish();
    r.assert_no_unexpected();
    r.assert_complete("239.3.3.3:5000", 0, sent.stream(0));
    r.assert_complete("10.2.0.2:7000", 0, sent.stream(0));
    r.assert_complete("[ff3e::3:3]:5000", 1, sent.stream(1));
    r.assert_complete("[fd02::2]:7006", 1, sent.stream(1));
    let (icmp4, icmp6) = unreachables(&t);
    assert_eq!(
        (icmp4 - icmp4_before, icmp6 - icmp6_before),
        (0, 0),
        "the relay's host answered relayed datagrams with port-unreachable"
    );
    // The counters do count: a port no route listens on draws the usual answers.
    t.send(
        &["10.1.0.1:6999", "[fd01:0::1]:6999"],
        &["--rate", "1000", "--count", "20"],
    );
    let (icmp4_after, icmp6_after) = unreachables(&t);
    assert!(
        icmp4_after > icmp4 && icmp6_after > icmp6,
        "no port-unreachable for a closed port either ({icmp4} -> {icmp4_after}, {icmp6} -> {icmp6_after}): the check above proves nothing"
    );
    // Each relayed datagram shows as one port-unreachable not sent (the closed port's are not
    // the route's).
    let stats = relay.stats_when(std::time::Duration::from_secs(3), |s| {
        count(&group_stats(s, "10.1.0.1:6000")["icmp_suppressed"]) >= sent.stream(0)
    });
    let g = group_stats(&stats, "10.1.0.1:6000");
    assert_eq!(count(&g["packets"]), sent.stream(0), "{g}");
    assert_eq!(count(&g["icmp_suppressed"]), sent.stream(0), "{g}");
    let g6 = group_stats(&stats, "[::]:6006");
    assert_eq!(count(&g6["icmp_suppressed"]), sent.stream(1), "{g6}");
    relay.stop();
}

#[test]
fn listen_relays_a_source_the_relay_cannot_route_back_to() {
    let t = Topology::new(1);
    t.sender
        .ip(&["addr", "add", "192.0.2.10/32", "dev", "eth0"]);
    // Unicast needs the relay's MAC: the sender asks for it from its own address on the link
    // (the relay's reverse-path check would drop an ARP request from 192.0.2.10).
    t.sender.sysctl("net.ipv4.conf.all.arp_announce", "2");
    t.sender.sysctl("net.ipv4.conf.eth0.arp_announce", "2");
    t.relay.sysctl("net.ipv4.conf.all.rp_filter", "1");
    t.relay.rp_filter("in0", 1);
    let relay = t.start_relay(
        Config::new(&["in0", "out0"])
            .dest(
                "mc4",
                "interface = \"out0\"\ngroup = \"239.3.3.4\"\nport = 5000",
            )
            .unicast("host4", "10.2.0.2:7000")
            .listen("in0", "0.0.0.0:6000", &["mc4", "host4"]),
    );
    let rx = t.receive(0, &["239.3.3.4:5000", "10.2.0.2:7000"]);
    let sent = t.send(
        &["10.1.0.1:6000"],
        &["--bind", "192.0.2.10", "--rate", "3000", "--duration", "2s"],
    );
    let r = rx.finish();
    relay.stop();
    r.assert_no_unexpected();
    r.assert_complete("239.3.3.4:5000", 0, sent.stream(0));
    r.assert_complete("10.2.0.2:7000", 0, sent.stream(0));
    let rp_drops = netstat(&t.relay, "TcpExt", "IPReversePathFilter");
    assert!(
        rp_drops >= sent.stream(0),
        "the kernel counted {rp_drops} reverse-path drops of {} datagrams: the premise failed",
        sent.stream(0)
    );
}
