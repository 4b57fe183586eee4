//! The per-packet decision, without I/O: which route a received frame takes (or why it is
//! dropped), and where each destination of that route sends its payload.
//!
//! The worker loads the table once per batch (arc-swap) and calls [`decide`] per frame, then
//! [`target`] per destination of the route. Both are pure: same table and bytes, same answer.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::packet::DropReason;
use crate::packet::{self, Datagram, Family};
use crate::table::{DestKind, Destination, IfaceId, LegId, RouteId, Table};

/// Parses `frame` (received on `iface` with link-layer protocol `family`) and looks up its route.
///
/// A datagram to a unicast address is relayed when a `listen` route claims it.
///
/// Errors: the parser's reason, [`DropReason::NoRoute`] for a valid multicast datagram no route
/// matches (the fallback filter, or a frame received just before a reload), or
/// [`DropReason::NotMulticast`] for a valid unicast datagram no `listen` route matches.
#[inline]
pub fn decide<'a>(
    table: &Table,
    iface: IfaceId,
    frame: &'a [u8],
    family: Family,
) -> Result<(RouteId, Datagram<'a>), DropReason> {
    decide_leg(table, iface, frame, family).map(|(id, _, d)| (id, d))
}

/// Like [`decide`], and which leg of the route the frame arrived on (`LegId(0)` for a route
/// without `legs`).
#[inline]
pub fn decide_leg<'a>(
    table: &Table,
    iface: IfaceId,
    frame: &'a [u8],
    family: Family,
) -> Result<(RouteId, LegId, Datagram<'a>), DropReason> {
    let d = packet::parse_any(frame, family)?;
    match table.lookup_leg(iface, d.source, d.group, d.dst_port) {
        Some((id, leg)) => Ok((id, leg, d)),
        None if d.group.is_multicast() => Err(DropReason::NoRoute),
        None => Err(DropReason::NotMulticast),
    }
}

/// Where `dest` sends the payload of `dgram`.
///
/// Multicast: the destination's group and port, each defaulting to the received one. An IPv6
/// multicast target carries `egress_ifindex` as its scope id (the ifindex of the destination's
/// interface, looked up when the worker opens its egress socket), so `sendto` picks the right link even when the
/// socket has no `IPV6_MULTICAST_IF`; pass 0 to rely on `IPV6_MULTICAST_IF` alone. IPv4 ignores
/// it (`IP_MULTICAST_IF` on the egress socket chooses the interface).
///
/// Unicast: the configured address as it is.
#[inline]
pub fn target(dest: &Destination, dgram: &Datagram<'_>, egress_ifindex: u32) -> SocketAddr {
    match &dest.kind {
        DestKind::Unicast { address } => *address,
        DestKind::Multicast { group, port, .. } => {
            let port = port.unwrap_or(dgram.dst_port);
            match group.unwrap_or(dgram.group) {
                IpAddr::V4(g) => SocketAddr::V4(SocketAddrV4::new(g, port)),
                IpAddr::V6(g) => SocketAddr::V6(SocketAddrV6::new(g, port, 0, egress_ifindex)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{DaemonSettings, DestId, Route, RouteKey};
    use crate::testkit::frames::{example_v4, example_v6, malformed_v4};

    use crate::testkit::interface as iface;

    fn route(interface: u16, group: &str, port: Option<u16>, source: Option<&str>) -> Route {
        Route {
            key: RouteKey {
                interface: IfaceId(interface),
                group: group.parse().unwrap(),
                port,
                source: source.map(|s| s.parse().unwrap()),
            },
            label: group.into(),
            destinations: vec![DestId(0)],
            rtp: false,
        }
    }

    fn table() -> Table {
        let dest = Destination {
            name: "out".into(),
            kind: DestKind::Unicast {
                address: "192.0.2.50:9000".parse().unwrap(),
            },
            ttl: 64,
            dscp: 0,
            source_port: None,
        };
        Table::new(
            DaemonSettings::default(),
            vec![iface("in0"), iface("in1")],
            vec![dest],
            vec![
                route(0, "239.1.2.3", Some(5000), None),
                route(0, "239.1.2.4", None, Some("192.0.2.1")),
                route(0, "ff0e::1:3", Some(5000), None),
            ],
        )
    }

    #[test]
    fn routed_v4_frame_is_decided() {
        let t = table();
        let f = example_v4().frame(b"abc");
        let (id, d) = decide(&t, IfaceId(0), &f, Family::V4).unwrap();
        assert_eq!(id, RouteId(0));
        assert_eq!(d.payload, b"abc");
    }

    #[test]
    fn routed_v6_frame_is_decided() {
        let t = table();
        let f = example_v6().frame(b"abc");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V6).unwrap().0,
            RouteId(2)
        );
    }

    #[test]
    fn source_specific_route_matches_only_its_source() {
        let t = table();
        let mut b = example_v4();
        b.destination = "239.1.2.4".parse().unwrap();
        let f = b.frame(b"x");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V4).unwrap().0,
            RouteId(1)
        );
        b.source = "192.0.2.2".parse().unwrap();
        let f = b.frame(b"x");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V4).err(),
            Some(DropReason::NoRoute)
        );
    }

    #[test]
    fn other_port_interface_or_group_is_no_route() {
        let t = table();
        let mut b = example_v4();
        b.dst_port = 5001;
        let f = b.frame(b"x");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V4).err(),
            Some(DropReason::NoRoute)
        );
        let f = example_v4().frame(b"x");
        assert_eq!(
            decide(&t, IfaceId(1), &f, Family::V4).err(),
            Some(DropReason::NoRoute)
        );
        let mut b = example_v4();
        b.destination = "239.9.9.9".parse().unwrap();
        let f = b.frame(b"x");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V4).err(),
            Some(DropReason::NoRoute)
        );
    }

    #[test]
    fn unicast_is_decided_by_listen_routes_only() {
        let mut t = table();
        let mut b = example_v4();
        b.destination = "10.0.0.5".parse().unwrap();
        let f = b.frame(b"x");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V4).err(),
            Some(DropReason::NotMulticast)
        );
        t = Table::new(
            DaemonSettings::default(),
            t.interfaces.clone(),
            t.destinations.clone(),
            vec![
                route(0, "10.0.0.5", Some(5000), None),
                route(0, "::", Some(5000), None),
            ],
        );
        let (id, d) = decide(&t, IfaceId(0), &f, Family::V4).unwrap();
        assert_eq!((id, d.payload), (RouteId(0), &b"x"[..]));
        b.dst_port = 5001;
        let f = b.frame(b"x");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V4).err(),
            Some(DropReason::NotMulticast)
        );
        let mut b6 = example_v6();
        b6.destination = "2001:db8::5".parse().unwrap();
        let f = b6.frame(b"y");
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V6).unwrap().0,
            RouteId(1)
        );
    }

    #[test]
    fn malformed_frame_reports_parser_reason() {
        let t = table();
        let f = malformed_v4(&example_v4(), b"x", DropReason::Fragment).unwrap();
        assert_eq!(
            decide(&t, IfaceId(0), &f, Family::V4).err(),
            Some(DropReason::Fragment)
        );
    }

    fn mcast(group: Option<&str>, port: Option<u16>) -> Destination {
        Destination {
            name: "m".into(),
            kind: DestKind::Multicast {
                interface: IfaceId(1),
                group: group.map(|g| g.parse().unwrap()),
                port,
            },
            ttl: 4,
            dscp: 46,
            source_port: None,
        }
    }

    #[test]
    fn multicast_target_keeps_or_rewrites_group_and_port() {
        let f = example_v4().frame(b"x");
        let d = packet::parse(&f, Family::V4).unwrap();
        assert_eq!(
            target(&mcast(None, None), &d, 3),
            "239.1.2.3:5000".parse().unwrap()
        );
        assert_eq!(
            target(&mcast(Some("239.7.7.7"), None), &d, 3),
            "239.7.7.7:5000".parse().unwrap()
        );
        assert_eq!(
            target(&mcast(None, Some(6000)), &d, 3),
            "239.1.2.3:6000".parse().unwrap()
        );
        assert_eq!(
            target(&mcast(Some("239.7.7.7"), Some(6000)), &d, 3),
            "239.7.7.7:6000".parse().unwrap()
        );
    }

    #[test]
    fn ipv6_multicast_target_carries_scope() {
        let f = example_v6().frame(b"x");
        let d = packet::parse(&f, Family::V6).unwrap();
        let SocketAddr::V6(a) = target(&mcast(None, Some(7000)), &d, 3) else {
            panic!("expected an IPv6 target");
        };
        assert_eq!(*a.ip(), "ff0e::1:3".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!((a.port(), a.scope_id()), (7000, 3));
    }

    #[test]
    fn unicast_target_is_the_address() {
        let t = table();
        let f = example_v4().frame(b"x");
        let d = packet::parse(&f, Family::V4).unwrap();
        assert_eq!(
            target(&t.destinations[0], &d, 0),
            "192.0.2.50:9000".parse().unwrap()
        );
    }
}
