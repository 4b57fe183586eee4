//! The generated socket filters on real traffic: an AF_PACKET `SOCK_DGRAM` socket with the
//! exact program receives what the table routes (including fragments of routed groups, left
//! for user space to count) and nothing else, while a socket without a filter shows that the
//! rejected datagrams were on the wire.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use mcrelay::filter::{self, Program};
use mcrelay::packet::{self, Family};
use mcrelay::stats::DropReason;
use mcrelay::table::{DaemonSettings, IfaceId, Route, RouteKey, Table};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{ifindex, in_netns};

#[test]
fn the_kernel_filter_passes_routed_traffic_only() {
    in_netns(
        "filter::the_kernel_filter_passes_routed_traffic_only",
        inner,
    );
}

fn route(group: &str, port: Option<u16>, source: Option<&str>) -> Route {
    Route {
        key: RouteKey {
            interface: IfaceId(0),
            group: group.parse().unwrap(),
            port,
            source: source.map(|s| s.parse().unwrap()),
        },
        label: group.into(),
        destinations: vec![],
        rtp: false,
    }
}

/// What a socket received: payloads of datagrams that parse, and a count per drop reason.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    payloads: Vec<String>,
    drops: BTreeMap<&'static str, usize>,
}

fn inner() {
    let table = Table::new(
        DaemonSettings::default(),
        vec![],
        vec![],
        vec![
            route("239.1.1.1", Some(5000), None),
            route("239.1.1.2", None, Some("10.1.0.1")),
            route("239.1.1.3", Some(6000), Some("10.9.9.9")),
            route("ff0e::1:1", Some(5000), None),
        ],
    );
    let p4 = filter::program(&table, IfaceId(0), Family::V4);
    let p6 = filter::program(&table, IfaceId(0), Family::V6);
    assert!(p4.is_exact() && p6.is_exact());
    let rx4 = packet_socket(Family::V4, Some(&p4));
    let rx6 = packet_socket(Family::V6, Some(&p6));
    let all4 = packet_socket(Family::V4, None);
    let all6 = packet_socket(Family::V6, None);

    let tx4 = UdpSocket::bind("10.1.0.1:0").unwrap();
    let s4 = socket2::SockRef::from(&tx4);
    s4.set_multicast_if_v4(&Ipv4Addr::new(10, 1, 0, 1)).unwrap();
    s4.set_multicast_loop_v4(false).unwrap();
    let tx6 = UdpSocket::bind("[fd00:1::1]:0").unwrap();
    let s6 = socket2::SockRef::from(&tx6);
    s6.set_multicast_if_v6(ifindex("m0")).unwrap();
    s6.set_multicast_loop_v6(false).unwrap();

    let sends: [(&UdpSocket, &str, &str); 9] = [
        (&tx4, "routed", "239.1.1.1:5000"),
        (&tx4, "other-port", "239.1.1.1:5001"),
        (&tx4, "ssm-any-port", "239.1.1.2:7"),
        (&tx4, "other-source", "239.1.1.3:6000"),
        (&tx4, "other-group", "239.9.9.9:5000"),
        (&tx6, "routed6", "[ff0e::1:1]:5000"),
        (&tx6, "other-port6", "[ff0e::1:1]:5001"),
        (&tx6, "other-group6", "[ff0e::1:2]:5000"),
        (&tx6, "unrouted-big6", "[ff0e::1:2]:5000"),
    ];
    for (tx, payload, to) in sends {
        let to: SocketAddr = to.parse().unwrap();
        let bytes = if payload.ends_with("big6") {
            vec![b'x'; 3000]
        } else {
            payload.as_bytes().to_vec()
        };
        tx.send_to(&bytes, to).unwrap();
    }
    // Larger than the 1500-byte MTU: the kernel sends fragments.
    tx4.send_to(&[b'f'; 3000], "239.1.1.1:5000").unwrap();
    tx6.send_to(&[b'f'; 3000], "[ff0e::1:1]:5000").unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let seen4 = drain(&rx4, Family::V4);
    let seen6 = drain(&rx6, Family::V6);
    let everything4 = drain(&all4, Family::V4);
    let everything6 = drain(&all6, Family::V6);

    assert_eq!(seen4.payloads, ["routed", "ssm-any-port"], "{seen4:?}");
    assert_eq!(
        seen4.drops.get(DropReason::Fragment.as_str()),
        Some(&3),
        "{seen4:?}"
    );
    assert_eq!(seen6.payloads, ["routed6"], "{seen6:?}");
    assert_eq!(
        seen6.drops.get(DropReason::Fragment.as_str()),
        Some(&3),
        "{seen6:?}"
    );
    // Nothing else got through: no other drop reason (IGMP/MLD reports are filtered out).
    assert_eq!(seen4.drops.len(), 1, "{seen4:?}");
    assert_eq!(seen6.drops.len(), 1, "{seen6:?}");

    // Without a filter, every datagram was there.
    for p in [
        "routed",
        "other-port",
        "ssm-any-port",
        "other-source",
        "other-group",
    ] {
        assert!(
            everything4.payloads.iter().any(|x| x == p),
            "{p}: {everything4:?}"
        );
    }
    for p in ["routed6", "other-port6", "other-group6"] {
        assert!(
            everything6.payloads.iter().any(|x| x == p),
            "{p}: {everything6:?}"
        );
    }
    // The unrouted group's fragments, and the routed ones: 6 fragments in all.
    assert_eq!(
        everything6.drops.get(DropReason::Fragment.as_str()),
        Some(&6),
        "{everything6:?}"
    );
}

/// An AF_PACKET `SOCK_DGRAM` socket for `family` on every interface of the namespace, with the
/// program attached, non-blocking, emptied of what arrived before the filter.
fn packet_socket(family: Family, program: Option<&Program>) -> Socket {
    let proto = i32::from(family.ethertype().to_be());
    let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(proto)))
        .unwrap_or_else(|e| panic!("cannot open an AF_PACKET socket (needs root): {e}"));
    if let Some(p) = program {
        s.attach_filter(&p.sock_filters()).unwrap();
    }
    s.set_nonblocking(true).unwrap();
    let _ = drain(&s, family);
    s
}

fn drain(mut s: &Socket, family: Family) -> Seen {
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(n) => match packet::parse(&buf[..n], family) {
                Ok(d) => seen.payloads.push(
                    String::from_utf8_lossy(d.payload)
                        .chars()
                        .take(20)
                        .collect(),
                ),
                Err(r) => *seen.drops.entry(r.as_str()).or_default() += 1,
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => return seen,
            Err(e) => panic!("recv: {e}"),
        }
    }
}
