//! `config::compile` on arbitrary text.
//!
//! Besides "never panics", checks that every error points inside the text, and that a table it
//! accepts is consistent: ids in range, and each route found again by `Table::lookup` for a packet
//! it claims. Seed corpus: `fuzz/corpus/config` (the shipped examples and default file).
//!
//! Only eth0 and eth1 exist for the resolver (other interfaces are warnings), so that tunnels,
//! which must not have the name of an existing interface, can compile too.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mcrelay::config::{FakeResolver, canonical, compile};
use mcrelay::table::{DestKind, RouteId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let resolver = FakeResolver::new(&[("eth0", 2), ("eth1", 3)]);
    match compile(text, Path::new("fuzz.toml"), &resolver) {
        Err(errors) => {
            assert!(!errors.is_empty());
            let lines = text.split('\n').count();
            for e in &errors {
                assert!(e.line >= 1 && e.line <= lines, "{e:?}");
                assert!(e.col >= 1 && e.width >= 1, "{e:?}");
                let _ = e.to_string();
            }
        }
        Ok(table) => {
            for d in &table.destinations {
                if let DestKind::Multicast { interface, .. } = d.kind {
                    assert!((interface.0 as usize) < table.interfaces.len());
                }
                assert!(d.ttl >= 1 && d.dscp <= 63);
            }
            for (i, r) in table.routes.iter().enumerate() {
                assert!((r.key.interface.0 as usize) < table.interfaces.len());
                // A group, or a `listen` address (unicast or unspecified) with its port.
                assert!(r.key.group.is_multicast() || r.key.port.is_some());
                assert!(!r.destinations.is_empty());
                for d in &r.destinations {
                    assert!((d.0 as usize) < table.destinations.len());
                }
                let any_source = match r.key.group {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                };
                let source = r.key.source.unwrap_or(any_source);
                let port = r.key.port.unwrap_or(1);
                assert_eq!(
                    table.lookup(r.key.interface, source, r.key.group, port),
                    Some(RouteId(i as u32)),
                    "route {i} is not found for a packet it claims"
                );
            }
            for t in &table.tunnels {
                let i = &table.interfaces[t.interface.0 as usize];
                assert!(!t.peers.is_empty());
                assert!(t.peers.iter().all(|p| p.is_ipv4() == t.local.is_ipv4()));
                assert_eq!(table.tunnel(t.interface), Some(t));
            }
            let _ = canonical(&table);
        }
    }
});
