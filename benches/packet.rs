//! Per-packet cost of the pure core: `packet::parse` and `forward::decide` (parse + lookup) on
//! 64-byte payloads, as the worker runs them once per received frame.
//!
//! `cargo bench --bench packet`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcrelay::forward;
use mcrelay::packet::{Family, parse};
use mcrelay::table::{DaemonSettings, IfaceId, Route, RouteKey, Table};
use mcrelay::testkit::frames as build;

fn table(routes: u32) -> Table {
    let routes = (0..routes)
        .flat_map(|i| {
            let v4 = IpAddr::V4(Ipv4Addr::from(0xef01_0000 + i));
            let v6 = IpAddr::V6(Ipv6Addr::from((0xff0e_u128 << 112) | u128::from(i)));
            [v4, v6].map(|group| Route {
                key: RouteKey {
                    interface: IfaceId(0),
                    group,
                    port: Some(5000),
                    source: None,
                },
                label: group.to_string(),
                destinations: vec![],
                rtp: false,
            })
        })
        .collect();
    Table::new(DaemonSettings::default(), vec![], vec![], routes)
}

fn bench(c: &mut Criterion) {
    let payload = [0x5au8; 64];
    let mut b4 = build::example_v4();
    b4.destination = Ipv4Addr::from(0xef01_0000 + 42);
    let v4 = b4.frame(&payload);
    let mut b6 = build::example_v6();
    b6.destination = Ipv6Addr::from((0xff0e_u128 << 112) | 42);
    let v6 = b6.frame(&payload);
    let t = table(500);

    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_v4", |b| b.iter(|| parse(black_box(&v4), Family::V4)));
    g.bench_function("parse_v6", |b| b.iter(|| parse(black_box(&v6), Family::V6)));
    let bad = build::malformed_v4(&b4, &payload, mcrelay::stats::DropReason::BadChecksum).unwrap();
    g.bench_function("parse_v4_bad_checksum", |b| {
        b.iter(|| parse(black_box(&bad), Family::V4))
    });
    g.bench_function("decide_v4_500_routes", |b| {
        b.iter(|| forward::decide(&t, IfaceId(0), black_box(&v4), Family::V4))
    });
    g.bench_function("decide_v6_500_routes", |b| {
        b.iter(|| forward::decide(&t, IfaceId(0), black_box(&v6), Family::V6))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
