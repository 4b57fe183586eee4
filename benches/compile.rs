//! Compiling a large configuration and looking packets up in the resulting table.
//!
//! Target (issue 2): compiling 10 000 groups takes well under 100 ms.
//!
//! Each benchmark runs twice: by wall time (criterion's default) and by the thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), which stays meaningful on a shared machine where wall time
//! includes waiting for a core.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

fn bench_wall(c: &mut Criterion) {
    bench(c, "wall");
}

fn bench_cpu(c: &mut Criterion<ThreadCpu>) {
    bench(c, "cpu");
}

fn bench<M: Measurement + 'static>(c: &mut Criterion<M>, clock: &str) {
    let text = config(GROUPS);
    let resolver = FakeResolver::everything();
    let path = Path::new("bench.toml");
    let table = compile(&text, path, &resolver).expect("the generated config is valid");
    assert_eq!(table.routes.len(), GROUPS as usize);

    c.bench_function(&format!("compile 10000 groups ({clock})"), |b| {
        b.iter(|| compile(black_box(&text), path, &resolver).unwrap())
    });

    let in0 = table.interface_id("in0").unwrap();
    let src: IpAddr = "10.99.0.1".parse().unwrap();
    // Group 2 is any-source on port 5000: found by the third probe.
    let hit: IpAddr = IpAddr::V4(Ipv4Addr::from(0xef00_0000 + 3));
    assert!(table.lookup(in0, src, hit, 5000).is_some());
    c.bench_function(
        &format!("lookup hit (any source, one port) ({clock})"),
        |b| {
            b.iter(|| {
                table.lookup(
                    black_box(in0),
                    black_box(src),
                    black_box(hit),
                    black_box(5000),
                )
            })
        },
    );
    // Group 0 is any-source on every port: found by the fourth probe, the worst case.
    let all_ports: IpAddr = IpAddr::V4(Ipv4Addr::from(0xef00_0000 + 1));
    assert!(table.lookup(in0, src, all_ports, 9).is_some());
    c.bench_function(&format!("lookup hit (fourth probe) ({clock})"), |b| {
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
    c.bench_function(&format!("lookup miss ({clock})"), |b| {
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

/// CPU time consumed by the benchmarking thread, in nanoseconds.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match ns {
            n if n < 1e3 => (1.0, "ns cpu"),
            n if n < 1e6 => (1e-3, "µs cpu"),
            n if n < 1e9 => (1e-6, "ms cpu"),
            _ => (1e-9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        // No benchmark here sets a throughput; show per-iteration values unscaled.
        self.scale_values(values.first().copied().unwrap_or(0.0), values)
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
