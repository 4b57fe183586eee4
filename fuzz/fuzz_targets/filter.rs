//! `filter::program` against `forward::decide`, on tables and frames made of arbitrary bytes.
//!
//! Input: a flags byte (bit 0: IPv6), a route count, 3 bytes per route (group, port, source
//! choices from small pools, so that frames hit them), then the frame. Checks that the program
//! is valid, never filters out a routed datagram, rejects well-formed unrouted ones when exact,
//! and that the fallback accepts whatever the exact program accepts.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use mcrelay::filter::{self, simulate};
use mcrelay::forward;
use mcrelay::packet::{Family, parse};
use mcrelay::table::{DaemonSettings, IfaceId, Route, RouteKey, Table};

fn group(v6: bool, n: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, u16::from(n % 16)))
    } else {
        IpAddr::V4(Ipv4Addr::new(239, 0, 0, n % 16))
    }
}

fn source(v6: bool, n: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, count, rest @ ..] = data else {
        return;
    };
    let v6 = flags & 1 == 1;
    let n = usize::from(count % 32);
    if rest.len() < 3 * n {
        return;
    }
    let (specs, frame) = rest.split_at(3 * n);
    let routes = specs
        .chunks_exact(3)
        .map(|c| Route {
            key: RouteKey {
                interface: IfaceId(0),
                group: group(v6, c[0]),
                port: (c[1] % 4 != 3).then_some(5000 + u16::from(c[1] % 4)),
                source: (c[2] % 4 != 3).then(|| source(v6, c[2] % 4)),
            },
            label: String::new(),
            destinations: vec![],
            rtp: false,
        })
        .collect();
    let table = Table::new(DaemonSettings::default(), vec![], vec![], routes);
    let family = if v6 { Family::V6 } else { Family::V4 };
    let program = filter::program(&table, IfaceId(0), family);
    let fallback = filter::fallback(family);
    let accepted = simulate(program.insns(), frame).expect("generated program is valid") != 0;
    let fallback_accepted = simulate(&fallback, frame).expect("fallback is valid") != 0;
    if forward::decide(&table, IfaceId(0), frame, family).is_ok() {
        assert!(accepted, "a routed datagram was filtered out");
    } else if parse(frame, family).is_ok() && program.is_exact() {
        assert!(
            !accepted,
            "an unrouted well-formed datagram passed the exact filter"
        );
    }
    if accepted {
        assert!(
            fallback_accepted,
            "the fallback rejected what the exact program accepts"
        );
    }
});
