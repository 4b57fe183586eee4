//! Compiling a large configuration and looking packets up in the resulting table.
//!
//! Target (issue 2): compiling 10 000 groups takes well under 100 ms.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use mcrelay::config::{FakeResolver, compile};

const GROUPS: u32 = 10_000;

/// 10 000 groups on 2 ingress interfaces, every fourth one source-specific, every eighth one on
/// every port, each sent to two of 8 destinations (multicast and unicast).
fn config(groups: u32) -> String {
    let mut s = String::from(
        "[daemon]\nstats_interval = \"1s\"\n[interfaces.in0]\n[interfaces.in1]\n[interfaces.out0]\nttl = 8\n[interfaces.out1]\n",
    );
    for d in 0..4 {
        s.push_str(&format!(
            "[destinations.m{d}]\ninterface = \"out{}\"\nport = {}\n",
            d % 2,
            6000 + d
        ));
        s.push_str(&format!(
            "[destinations.u{d}]\naddress = \"10.20.0.{}:7000\"\n",
            d + 1
        ));
    }
    for i in 0..groups {
        let g = Ipv4Addr::from(0xef00_0000 + i + 1);
        s.push_str(&format!(
            "[[groups]]\nname = \"g{i}\"\ninterface = \"in{}\"\ngroup = \"{g}\"\n",
            i % 2
        ));
        if i % 8 != 0 {
            s.push_str("port = 5000\n");
        }
        if i % 4 == 1 {
            s.push_str(&format!("source = \"10.10.{}.{}\"\n", i % 250, i % 200 + 1));
        }
        s.push_str(&format!(
            "to = [\"m{}\", \"u{}\"]\nrtp = true\n",
            i % 4,
            (i + 1) % 4
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = config(GROUPS);
    let resolver = FakeResolver::everything();
    let path = Path::new("bench.toml");
    let table = compile(&text, path, &resolver).expect("the generated config is valid");
    assert_eq!(table.routes.len(), GROUPS as usize);

    c.bench_function("compile 10000 groups", |b| {
        b.iter(|| compile(black_box(&text), path, &resolver).unwrap())
    });

    let in0 = table.interface_id("in0").unwrap();
    let src: IpAddr = "10.99.0.1".parse().unwrap();
    // Group 2 is any-source on port 5000: found by the third probe.
    let hit: IpAddr = IpAddr::V4(Ipv4Addr::from(0xef00_0000 + 3));
    assert!(table.lookup(in0, src, hit, 5000).is_some());
    c.bench_function("lookup hit (any source, one port)", |b| {
        b.iter(|| {
            table.lookup(
                black_box(in0),
                black_box(src),
                black_box(hit),
                black_box(5000),
            )
        })
    });
    // Group 0 is any-source on every port: found by the fourth probe, the worst case.
    let all_ports: IpAddr = IpAddr::V4(Ipv4Addr::from(0xef00_0000 + 1));
    assert!(table.lookup(in0, src, all_ports, 9).is_some());
    c.bench_function("lookup hit (fourth probe)", |b| {
        b.iter(|| {
            table.lookup(
                black_box(in0),
                black_box(src),
                black_box(all_ports),
                black_box(9),
            )
        })
    });
    let miss: IpAddr = "239.200.0.1".parse().unwrap();
    assert!(table.lookup(in0, src, miss, 5000).is_none());
    c.bench_function("lookup miss", |b| {
        b.iter(|| {
            table.lookup(
                black_box(in0),
                black_box(src),
                black_box(miss),
                black_box(5000),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
