//! The merge state (`redundancy::Merge`) and the stream-health checks on arbitrary input.
//!
//! Input: a sequence of 4-byte records, each one packet: leg (byte 0, modulo 3), time step in
//! units of 50 µs (byte 1, so steps reach past the 20 ms window), and a signed offset (bytes 2-3,
//! big-endian) from a number that walks forward by one per packet; a record whose offset is
//! i16::MIN makes the walking number jump by the following 8 bytes instead. Besides "never
//! panics", checks that no number goes out twice between two restarts and that the counters add
//! up; the same payloads go through the MPEG-TS continuity checker and the RTP jitter estimate.
#![no_main]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mcrelay::mpegts::ContinuityChecker;
use mcrelay::redundancy::{Merge, Verdict};
use mcrelay::rtp::Jitter;
use mcrelay::table::{ByteOrder, FieldSize, SequenceSpec};

fuzz_target!(|data: &[u8]| {
    let spec = SequenceSpec::Field {
        offset: 0,
        size: FieldSize::Eight,
        order: ByteOrder::Big,
    };
    let capacity = if data.first().is_some_and(|b| b & 1 == 1) { 128 } else { 1 << 14 };
    let mut m = Merge::with_capacity(
        spec,
        3,
        Duration::from_millis(20),
        Duration::from_millis(500),
        capacity,
    );
    let mut cc = ContinuityChecker::new();
    let mut jitter = Jitter::new(90_000);
    let t0 = Instant::now();
    let (mut t, mut base) = (Duration::ZERO, 1u64 << 40);
    let mut sent = BTreeSet::new();
    let (mut packets, mut forwarded) = (0u64, 0u64);
    let mut rest = data.get(1..).unwrap_or_default();
    while let [leg, step, hi, lo, tail @ ..] = rest {
        rest = tail;
        let offset = i16::from_be_bytes([*hi, *lo]);
        if offset == i16::MIN {
            let Some((jump, tail)) = rest.split_first_chunk::<8>() else {
                break;
            };
            base = u64::from_be_bytes(*jump);
            rest = tail;
            continue;
        }
        t += Duration::from_micros(u64::from(*step) * 50);
        let n = base.wrapping_add(offset as u64);
        let now = t0 + t;
        let payload = n.to_be_bytes();
        let v = m.on_packet(usize::from(*leg % 3), &payload, now);
        packets += 1;
        if v == Verdict::Restart {
            sent.clear();
        }
        if v.forward() {
            forwarded += 1;
            assert!(sent.insert(n), "{n} went out twice ({v:?})");
        }
        base = base.wrapping_add(1);
        let _ = cc.observe(rest);
        jitter.observe(rest, now);
    }
    m.poll(t0 + t + Duration::from_secs(1), |_| {});
    let o = m.output();
    assert_eq!(o.forwarded, forwarded);
    assert_eq!(o.forwarded + o.duplicates + o.late + o.jumps + o.no_key, packets);
});
