//! Per-packet cost of the redundancy core: the merge decision for two legs carrying the same
//! RTP stream (every number arrives twice: one forward, one duplicate), the same with 5 % loss
//! on each leg, a 64-bit payload field, the failover decision, and the per-packet stream-health
//! checks (RTP sequence tracking, jitter, MPEG-TS continuity over 7 TS packets).
//!
//! `cargo bench --bench redundancy`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcrelay::mpegts::ContinuityChecker;
use mcrelay::redundancy::{Failover, Merge};
use mcrelay::rtp::{Jitter, RtpTracker};
use mcrelay::table::{ByteOrder, FieldSize, Revert, SequenceSpec};

/// Packets per iteration: 1000 numbers on two legs.
const NUMBERS: u16 = 1000;

fn rtp(seq: u16) -> [u8; 1328] {
    let mut p = [0u8; 1328];
    p[0] = 0x80;
    p[1] = 33;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 90).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, ts) in p[12..].chunks_exact_mut(188).enumerate() {
        ts[0] = 0x47;
        ts[1] = 0x01;
        ts[2] = i as u8;
        ts[3] = 0x10 | (seq as u8 & 0x0f);
    }
    p
}

/// Two legs, leg 1 lagging by a few packets; `lost(leg, n)` drops a copy.
fn two_legs(lost: impl Fn(usize, u16) -> bool) -> Vec<(usize, u16)> {
    let mut order = Vec::new();
    for n in 0..NUMBERS + 3 {
        if n < NUMBERS && !lost(0, n) {
            order.push((0, n));
        }
        if n >= 3 && !lost(1, n - 3) {
            order.push((1, n - 3));
        }
    }
    order
}

fn bench(c: &mut Criterion) {
    let packets: Vec<[u8; 1328]> = (0..NUMBERS).map(rtp).collect();
    let t0 = Instant::now();
    let at = |i: usize| t0 + Duration::from_micros(i as u64 * 10);

    let mut g = c.benchmark_group("merge");
    for (name, order) in [
        ("rtp_2_legs", two_legs(|_, _| false)),
        (
            "rtp_2_legs_5pct_loss_each",
            two_legs(|leg, n| (u32::from(n) * 7 + leg as u32 * 13).is_multiple_of(20)),
        ),
    ] {
        g.throughput(Throughput::Elements(order.len() as u64));
        g.bench_function(name, |b| {
            let mut m = Merge::new(
                SequenceSpec::Rtp,
                2,
                Duration::from_millis(20),
                Duration::from_secs(1),
            );
            let mut base = 0u16;
            let mut round = 0usize;
            b.iter(|| {
                // Each round continues the sequence, so the state moves on as in a real stream.
                let mut out = 0;
                let mut p = [0u8; 16];
                p.copy_from_slice(&packets[0][..16]);
                for (i, &(leg, n)) in order.iter().enumerate() {
                    p[2..4].copy_from_slice(&base.wrapping_add(n).to_be_bytes());
                    out += usize::from(
                        m.on_packet(leg, black_box(&p), at(round * 4000 + i))
                            .forward(),
                    );
                }
                base = base.wrapping_add(NUMBERS);
                round += 1;
                out
            });
        });
    }
    let order = two_legs(|_, _| false);
    g.throughput(Throughput::Elements(order.len() as u64));
    g.bench_function("field_8_bytes_2_legs", |b| {
        let spec = SequenceSpec::Field {
            offset: 10,
            size: FieldSize::Eight,
            order: ByteOrder::Big,
        };
        let mut m = Merge::new(spec, 2, Duration::from_millis(20), Duration::from_secs(1));
        let mut base = 1u64;
        let mut round = 0usize;
        b.iter(|| {
            let mut out = 0;
            let mut p = [0u8; 20];
            for (i, &(leg, n)) in order.iter().enumerate() {
                p[10..18].copy_from_slice(&(base + u64::from(n)).to_be_bytes());
                out += usize::from(
                    m.on_packet(leg, black_box(&p), at(round * 4000 + i))
                        .forward(),
                );
            }
            base += u64::from(NUMBERS);
            round += 1;
            out
        });
    });
    g.bench_function("failover_2_legs", |b| {
        let mut f = Failover::new(2, Duration::from_millis(200), Revert::Never);
        let mut round = 0usize;
        b.iter(|| {
            let mut out = 0;
            for (i, &(leg, _)) in order.iter().enumerate() {
                out += usize::from(f.on_packet(black_box(leg), at(round * 4000 + i)));
            }
            round += 1;
            out
        });
    });
    g.finish();

    let mut g = c.benchmark_group("health");
    g.throughput(Throughput::Elements(u64::from(NUMBERS)));
    g.bench_function("rtp_sequence", |b| {
        let mut t = RtpTracker::default();
        b.iter(|| {
            for p in &packets {
                black_box(t.observe(black_box(&p[..])));
            }
        });
    });
    g.bench_function("rtp_jitter", |b| {
        let mut j = Jitter::new(90_000);
        b.iter(|| {
            for (i, p) in packets.iter().enumerate() {
                j.observe(black_box(&p[..]), at(i));
            }
            j.units()
        });
    });
    g.bench_function("mpegts_continuity_7_ts_packets", |b| {
        let mut cc = ContinuityChecker::new();
        b.iter(|| {
            for p in &packets {
                black_box(cc.observe(black_box(&p[..])));
            }
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
