//! `packet::parse` and `forward::decide` on arbitrary bytes.
//!
//! Input: one selector byte (bit 0: 0 = received as `ETH_P_IP`, 1 = `ETH_P_IPV6`), then the
//! frame starting at the IP header. Besides "never panics", checks that a parsed datagram is
//! consistent with the bytes it came from and that `decide` agrees with `parse` (which stops at
//! a unicast destination, where `decide` reads on, for `listen` routes).
#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mcrelay::forward;
use mcrelay::packet::{Family, parse, parse_any};
use mcrelay::stats::DropReason;
use mcrelay::table::{DaemonSettings, IfaceId, Route, RouteKey, Table};

/// Routes for the groups of the seed corpus (`examples/seed.rs`).
static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let route = |group: &str, port: Option<u16>, source: Option<&str>| Route {
        key: RouteKey {
            interface: IfaceId(0),
            group: group.parse().unwrap(),
            port,
            source: source.map(|s| s.parse().unwrap()),
        },
        label: group.into(),
        destinations: vec![],
        rtp: false,
    };
    Table::new(
        DaemonSettings::default(),
        vec![],
        vec![],
        vec![
            route("239.1.2.3", Some(5000), None),
            route("239.1.2.4", None, Some("192.0.2.1")),
            route("ff0e::1:3", Some(5000), None),
        ],
    )
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let family = if selector & 1 == 0 {
        Family::V4
    } else {
        Family::V6
    };
    let parsed = parse(frame, family);
    if let Ok(d) = &parsed {
        assert!(d.group.is_multicast());
        assert_eq!(Family::of(&d.group), family);
        assert_eq!(Family::of(&d.source), family);
        // The payload lies inside the frame, after the headers.
        let start = d.payload.as_ptr() as usize - frame.as_ptr() as usize;
        assert!(start + d.payload.len() <= frame.len());
        let header = match family {
            Family::V4 => 28,
            Family::V6 => 48,
        };
        assert_eq!(start, header);
        match d.group {
            IpAddr::V4(g) => assert_eq!(g.octets(), frame[16..20]),
            IpAddr::V6(g) => assert_eq!(g.octets(), frame[24..40]),
        }
    }
    match (forward::decide(&TABLE, IfaceId(0), frame, family), parsed) {
        (Ok((_, a)), Ok(b)) => assert_eq!(a, b),
        (Err(DropReason::NoRoute), Ok(_)) => {}
        (Err(a), Err(b)) => assert!(
            // decide reads on past a unicast destination (for `listen` routes, none here).
            a == b || (b == DropReason::NotMulticast && parse_any(frame, family) == Err(a)),
            "decide {a:?}, parse {b:?}"
        ),
        (a, b) => panic!("decide {a:?} disagrees with parse {b:?}"),
    }
});
