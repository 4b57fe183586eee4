//! Merge tests: named cases, then the merge against a model (proptest).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::merge::{DEFAULT_CAPACITY, Merge, Verdict};
use super::seq::{NoKey, SeqKey};
use crate::table::{ByteOrder, FieldSize, SequenceSpec};

const WINDOW: Duration = Duration::from_millis(20);
const DOWN: Duration = Duration::from_millis(500);

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn us(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_micros(n)
}

fn merge(legs: usize) -> Merge {
    Merge::new(SequenceSpec::Rtp, legs, WINDOW, DOWN)
}

#[test]
fn first_copy_goes_out_and_the_second_is_dropped() {
    let t0 = Instant::now();
    let mut m = merge(2);
    assert_eq!(m.on_packet(0, &rtp(10, 1), us(t0, 0)), Verdict::Restart);
    assert_eq!(m.on_packet(1, &rtp(10, 1), us(t0, 5)), Verdict::Duplicate);
    assert_eq!(m.on_packet(1, &rtp(11, 1), us(t0, 10)), Verdict::Forward);
    assert_eq!(m.on_packet(0, &rtp(11, 1), us(t0, 15)), Verdict::Duplicate);
    let o = m.output();
    assert_eq!((o.forwarded, o.duplicates, o.lost), (2, 2, 0));
    assert_eq!((m.leg(0).forwarded, m.leg(1).forwarded), (1, 1));
    // 11 was timed: first on leg 1, 5 µs later on leg 0.
    assert_eq!(m.leg(0).behind, Some(Duration::from_micros(5)));
    assert_eq!(m.leg(1).behind, Some(Duration::ZERO));
}

#[test]
fn a_hole_on_one_leg_is_filled_by_the_other_within_the_window() {
    let t0 = Instant::now();
    let mut m = merge(2);
    // Leg 0 loses 2; leg 1 is 1 ms behind.
    for s in [1u16, 3, 4] {
        assert!(
            m.on_packet(0, &rtp(s, 1), us(t0, u64::from(s) * 100))
                .forward()
        );
    }
    assert_eq!(m.on_packet(1, &rtp(1, 1), us(t0, 1100)), Verdict::Duplicate);
    assert_eq!(m.on_packet(1, &rtp(2, 1), us(t0, 1200)), Verdict::Fill);
    assert_eq!(m.output().reordered, 1);
}

#[test]
fn a_copy_after_the_window_is_late_and_the_hole_counts_as_lost() {
    let t0 = Instant::now();
    let mut m = merge(2);
    // 0..200 from leg 0 without 70, one packet per 100 µs: 70's word (64..127) is passed at
    // 12.8 ms and settled 20 ms later.
    for s in (0u16..200).filter(|&s| s != 70) {
        m.on_packet(0, &rtp(s, 1), us(t0, u64::from(s) * 100));
    }
    m.poll(us(t0, 40_000), |_| {});
    assert_eq!(m.output().lost, 1);
    assert_eq!(m.leg(0).missing, 1);
    assert_eq!(
        m.leg(1).missing,
        192,
        "three settled words that leg 1 never delivered"
    );
    assert_eq!(m.on_packet(1, &rtp(70, 1), us(t0, 40_001)), Verdict::Late);
    assert_eq!(
        m.on_packet(1, &rtp(71, 1), us(t0, 40_002)),
        Verdict::Duplicate
    );
}

#[test]
fn unique_counts_what_only_one_leg_delivered() {
    let t0 = Instant::now();
    let mut m = merge(2);
    for s in 0u16..256 {
        let t = u64::from(s) * 100;
        if s % 10 != 3 {
            m.on_packet(0, &rtp(s, 1), us(t0, t));
        }
        if s % 10 != 7 {
            m.on_packet(1, &rtp(s, 1), us(t0, t + 50));
        }
    }
    m.poll(us(t0, 1_000_000), |_| {});
    // Words 0..=2 settled (192 numbers): 3, 13, ..., 183 only on leg 1; 7, ..., 187 only on 0.
    let only = (0..192).filter(|s| s % 10 == 3).count() as u64;
    assert_eq!(m.leg(1).unique, only);
    assert_eq!(
        m.leg(0).unique,
        (0..192).filter(|s| s % 10 == 7).count() as u64
    );
    assert_eq!(m.leg(0).missing, only);
    assert_eq!(m.output().lost, 0);
    assert_eq!(m.output().duplicates, 256 - 2 * 26 + 1);
}

#[test]
fn rtp_wraps_at_65535_without_loss_or_jump() {
    let t0 = Instant::now();
    let mut m = merge(2);
    let mut out = Vec::new();
    for (i, s) in (65000u32..66000).map(|s| (s % 65536) as u16).enumerate() {
        for leg in 0..2 {
            if m.on_packet(leg, &rtp(s, 9), us(t0, i as u64 * 10 + leg as u64))
                .forward()
            {
                out.push(s);
            }
        }
    }
    let expected: Vec<u16> = (65000u32..66000).map(|s| (s % 65536) as u16).collect();
    assert_eq!(out, expected);
    let o = m.output();
    assert_eq!((o.jumps, o.restarts, o.duplicates), (0, 0, 1000));
}

#[test]
fn eight_byte_big_endian_numbers_at_offset_10() {
    let t0 = Instant::now();
    let spec = SequenceSpec::Field {
        offset: 10,
        size: FieldSize::Eight,
        order: ByteOrder::Big,
    };
    let mut m = Merge::new(spec, 2, WINDOW, DOWN);
    let pkt = |n: u64| {
        let mut p = b"SESSION001".to_vec();
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 4, 1, 2, 3, 4]);
        p
    };
    let mut out = Vec::new();
    for n in 1u64..=300 {
        if n % 7 != 0 && m.on_packet(0, &pkt(n), us(t0, n * 10)).forward() {
            out.push(n);
        }
        if n % 11 != 0 && m.on_packet(1, &pkt(n), us(t0, n * 10 + 3)).forward() {
            out.push(n);
        }
    }
    out.sort_unstable();
    assert_eq!(out, (1..=300).filter(|n| n % 77 != 0).collect::<Vec<_>>());
    assert_eq!(m.output().jumps, 0);
}

#[test]
fn garbage_is_counted_by_reason_and_never_forwarded() {
    let t0 = Instant::now();
    let mut m = merge(2);
    assert!(m.on_packet(0, &rtp(100, 1), us(t0, 0)).forward());
    assert_eq!(
        m.on_packet(1, &[0x80; 5], us(t0, 1)),
        Verdict::NoKey(NoKey::TooShort)
    );
    assert_eq!(
        m.on_packet(1, &[0x40; 40], us(t0, 2)),
        Verdict::NoKey(NoKey::NotRtp)
    );
    // RTP-looking garbage: a far number or another SSRC is a jump, and the stream goes on
    // undisturbed.
    assert_eq!(m.on_packet(1, &rtp(40_000, 1), us(t0, 3)), Verdict::Jump);
    assert_eq!(m.on_packet(1, &rtp(101, 2), us(t0, 4)), Verdict::Jump);
    assert_eq!(m.on_packet(0, &rtp(101, 1), us(t0, 5)), Verdict::Forward);
    assert_eq!(m.leg(1).no_key(NoKey::TooShort), 1);
    assert_eq!(m.leg(1).no_key(NoKey::NotRtp), 1);
    assert_eq!(m.output().no_key, 2);
    assert_eq!(m.output().jumps, 2);
    assert_eq!(m.output().restarts, 0);
}

#[test]
fn a_confirmed_jump_or_a_new_ssrc_restarts_the_stream() {
    let t0 = Instant::now();
    let mut m = merge(2);
    for s in 0u16..50 {
        m.on_packet(0, &rtp(s, 1), us(t0, u64::from(s)));
    }
    // The source restarts far away: the first packet waits for the second.
    assert_eq!(m.on_packet(0, &rtp(30_000, 1), us(t0, 100)), Verdict::Jump);
    assert_eq!(m.on_packet(1, &rtp(30_000, 1), us(t0, 101)), Verdict::Jump);
    assert_eq!(
        m.on_packet(0, &rtp(30_001, 1), us(t0, 102)),
        Verdict::Restart
    );
    assert_eq!(
        m.on_packet(1, &rtp(30_001, 1), us(t0, 103)),
        Verdict::Duplicate
    );
    assert_eq!(
        m.on_packet(0, &rtp(30_002, 1), us(t0, 104)),
        Verdict::Forward
    );
    // A new SSRC with a number in reach: confirmed by the next number too.
    assert_eq!(m.on_packet(0, &rtp(30_003, 2), us(t0, 105)), Verdict::Jump);
    assert_eq!(
        m.on_packet(0, &rtp(30_004, 2), us(t0, 106)),
        Verdict::Restart
    );
    assert_eq!(m.output().restarts, 2);
}

#[test]
fn after_a_window_of_silence_a_far_number_starts_afresh_at_once() {
    let t0 = Instant::now();
    let spec = SequenceSpec::Field {
        offset: 0,
        size: FieldSize::Four,
        order: ByteOrder::Little,
    };
    let mut m = Merge::new(spec, 2, WINDOW, DOWN);
    for n in 1_000_000u32..1_000_100 {
        m.on_packet(0, &n.to_le_bytes(), us(t0, u64::from(n - 1_000_000)));
    }
    // The next session starts at 1, a second later.
    assert_eq!(
        m.on_packet(1, &1u32.to_le_bytes(), us(t0, 1_000_000)),
        Verdict::Restart
    );
    assert_eq!(
        m.on_packet(0, &1u32.to_le_bytes(), us(t0, 1_000_001)),
        Verdict::Duplicate
    );
    assert_eq!(
        m.on_packet(0, &2u32.to_le_bytes(), us(t0, 1_000_002)),
        Verdict::Forward
    );
}

#[test]
fn leg_up_and_down_are_reported_once_per_change() {
    let t0 = Instant::now();
    let mut m = merge(2);
    let mut ev = Vec::new();
    for s in 0u16..10 {
        m.on_packet(0, &rtp(s, 1), us(t0, u64::from(s) * 1000));
        m.on_packet(1, &rtp(s, 1), us(t0, u64::from(s) * 1000 + 1));
        m.poll(us(t0, u64::from(s) * 1000 + 2), |e| ev.push(e));
    }
    for s in 10u16..700 {
        m.on_packet(0, &rtp(s, 1), us(t0, u64::from(s) * 1000));
        m.poll(us(t0, u64::from(s) * 1000 + 2), |e| ev.push(e));
    }
    use super::Event::{LegDown, LegUp};
    assert_eq!(ev, [LegUp { leg: 0 }, LegUp { leg: 1 }, LegDown { leg: 1 }]);
    assert!(m.leg_up(0) && !m.leg_up(1));
    assert_eq!(m.leg(1).lead, -(699 - 9));
}

#[test]
fn memory_is_fixed_and_far_behind_numbers_are_jumps() {
    let t0 = Instant::now();
    let mut m = Merge::with_capacity(SequenceSpec::Rtp, 2, WINDOW, DOWN, 128);
    for s in 0u16..1000 {
        m.on_packet(0, &rtp(s, 1), us(t0, u64::from(s)));
    }
    // 999 is in the newest word (960..1023); the oldest kept word is 896..959.
    assert_eq!(
        m.on_packet(1, &rtp(900, 1), us(t0, 1001)),
        Verdict::Duplicate
    );
    assert_eq!(m.on_packet(1, &rtp(895, 1), us(t0, 1002)), Verdict::Jump);
    assert_eq!(DEFAULT_CAPACITY % 64, 0);
}

/// One leg's copy of number `i` arriving at `at` (µs from the start).
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: u64,
    leg: usize,
    i: u64,
}

/// The legs' arrivals: `n` numbers sent every `period` µs; each leg loses some, is late by a
/// fixed delay plus a jitter per packet.
fn arrivals() -> impl Strategy<Value = (Vec<Arrival>, usize, u64)> {
    (2usize..=3, 1u64..1500, 20u64..1000).prop_flat_map(|(legs, n, period)| {
        let leg = (
            0u64..40_000,                                       // delay, up to 2 windows
            0u64..2_000,                                        // jitter bound
            proptest::collection::vec(0u8..100, n as usize),    // loss draws
            proptest::collection::vec(0u64..1_000, n as usize), // jitter draws (per mille)
            0u8..30,                                            // loss percentage
        );
        proptest::collection::vec(leg, legs).prop_map(move |legs_spec| {
            let mut v = Vec::new();
            for (leg, (delay, jitter, loss, jit, pct)) in legs_spec.iter().enumerate() {
                for i in 0..n {
                    if loss[i as usize] < *pct {
                        continue;
                    }
                    let at = i * period + delay + jitter * jit[i as usize] / 1000;
                    v.push(Arrival { at, leg, i });
                }
            }
            v.sort_by_key(|a| (a.at, a.leg));
            (v, legs_spec.len(), n)
        })
    })
}

/// Feeds the arrivals (number `i` carried as `start + i` in the key's width) and returns the
/// verdict of each.
fn feed(m: &mut Merge, arrivals: &[Arrival], key: impl Fn(u64) -> SeqKey) -> Vec<Verdict> {
    let t0 = Instant::now();
    arrivals
        .iter()
        .map(|a| m.on_key(a.leg, Ok(key(a.i)), us(t0, a.at)))
        .collect()
}

/// The model: every number at most once; at least once when some copy arrived no later than
/// `window` after the first arrival of any higher number (and, with a small capacity, while
/// the highest number so far was less than `reach` ahead of it).
fn check(arrivals: &[Arrival], verdicts: &[Verdict], reach: u64) -> Result<(), TestCaseError> {
    let window = WINDOW.as_micros() as u64;
    let mut sent: BTreeMap<u64, usize> = BTreeMap::new();
    for (a, v) in arrivals.iter().zip(verdicts) {
        prop_assert!(
            !matches!(v, Verdict::Jump | Verdict::NoKey(_)),
            "{a:?}: {v:?}"
        );
        if v.forward() {
            *sent.entry(a.i).or_default() += 1;
        }
    }
    for (i, count) in &sent {
        prop_assert_eq!(*count, 1, "number {} went out {} times", i, count);
    }
    // First arrival of each number, and the earliest first arrival of any higher number.
    let mut first: BTreeMap<u64, u64> = BTreeMap::new();
    for a in arrivals {
        first.entry(a.i).or_insert(a.at);
    }
    let mut passed: BTreeMap<u64, u64> = BTreeMap::new();
    let mut earliest_above = u64::MAX;
    for (&i, &at) in first.iter().rev() {
        passed.insert(i, earliest_above);
        earliest_above = earliest_above.min(at);
    }
    let mut highest: Option<u64> = None;
    for a in arrivals {
        let deadline = passed[&a.i].saturating_add(window);
        let in_reach = highest.is_none_or(|h| h < a.i.saturating_add(reach));
        if a.at <= deadline && in_reach {
            prop_assert!(
                sent.contains_key(&a.i),
                "number {} arrived in time at {} on leg {} but never went out",
                a.i,
                a.at,
                a.leg
            );
        }
        highest = Some(highest.map_or(a.i, |h| h.max(a.i)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// 16-bit RTP numbers from any start (so some runs wrap at 65535).
    #[test]
    fn merge_matches_the_model_with_rtp((arr, legs, _n) in arrivals(), start in any::<u16>()) {
        let mut m = Merge::new(SequenceSpec::Rtp, legs, WINDOW, DOWN);
        let v = feed(&mut m, &arr, |i| SeqKey { stream: 5, value: u64::from(start.wrapping_add(i as u16)), bits: 16 });
        check(&arr, &v, u64::MAX)?;
        let o = m.output();
        let out = v.iter().filter(|v| v.forward()).count() as u64;
        prop_assert_eq!(o.forwarded, out);
        prop_assert_eq!(o.forwarded + o.duplicates + o.late, arr.len() as u64);
        prop_assert_eq!((0..legs).map(|l| m.leg(l).forwarded).sum::<u64>(), out);
        prop_assert_eq!(o.reordered, v.iter().filter(|v| **v == Verdict::Fill).count() as u64);
    }

    /// 64-bit numbers near the top of their range, small bitmaps (the ring is reused often).
    #[test]
    fn merge_matches_the_model_with_small_bitmaps((arr, legs, _n) in arrivals(), start in (u64::MAX - 3000)..=u64::MAX) {
        let mut m = Merge::with_capacity(SequenceSpec::Rtp, legs, WINDOW, DOWN, 256);
        let v = feed(&mut m, &arr, |i| SeqKey { stream: 0, value: start.wrapping_add(i), bits: 64 });
        // Forced settling may begin one word early, and the oldest word is the newest's slot.
        let reach = 256 - 128;
        // A leg more than the bitmaps behind is a jump: the model's promise stops there.
        let behind = arr.iter().scan(0u64, |h, a| { *h = (*h).max(a.i); Some(*h - a.i) }).max().unwrap_or(0);
        prop_assume!(behind < reach);
        check(&arr, &v, reach)?;
    }
}

/// One packet of an arbitrary feed: leg, how far the number is from a walking base, whether the
/// base jumps first, and the time since the previous packet.
fn arbitrary_feed() -> impl Strategy<Value = Vec<(usize, i64, Option<u64>, u64)>> {
    proptest::collection::vec(
        (
            0usize..3,
            -300i64..300,
            proptest::option::weighted(0.02, any::<u64>()),
            prop_oneof![8 => 0u64..200, 1 => 0u64..50_000],
        ),
        1..1500,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever arrives (numbers near a base that now and then jumps anywhere, garbage too,
    /// pauses longer than the window): no number goes out twice between two restarts, and the
    /// counters add up.
    #[test]
    fn no_number_goes_out_twice_between_restarts(feed in arbitrary_feed(), small in any::<bool>()) {
        let capacity = if small { 128 } else { DEFAULT_CAPACITY };
        let spec = SequenceSpec::Field { offset: 0, size: FieldSize::Eight, order: ByteOrder::Big };
        let mut m = Merge::with_capacity(spec, 3, WINDOW, DOWN, capacity);
        let t0 = Instant::now();
        let (mut t, mut base) = (0u64, 1u64 << 40);
        let mut sent = std::collections::BTreeSet::new();
        let mut forwarded = 0u64;
        for (leg, off, jump, dt) in &feed {
            if let Some(j) = jump {
                base = *j;
            }
            t += dt;
            let n = base.wrapping_add(*off as u64);
            // One packet in 50 is too short to carry a key.
            let payload = n.to_be_bytes();
            let payload = if n % 50 == 7 { &payload[..5] } else { &payload[..] };
            let v = m.on_packet(*leg, payload, us(t0, t));
            if v == Verdict::Restart {
                sent.clear();
            }
            if v.forward() {
                forwarded += 1;
                prop_assert!(sent.insert(n), "{} went out twice ({:?})", n, v);
            }
            // The base walks forward as a stream does.
            base = base.wrapping_add(1);
        }
        let o = m.output();
        prop_assert_eq!(o.forwarded, forwarded);
        prop_assert_eq!(
            o.forwarded + o.duplicates + o.late + o.jumps + o.no_key,
            feed.len() as u64
        );
    }
}

/// A step over more numbers than the bitmaps hold counts every skipped number once, as a step
/// within them does.
#[test]
fn skipped_numbers_count_as_lost_once_whatever_the_bitmaps_size() {
    let spec = SequenceSpec::Field {
        offset: 0,
        size: FieldSize::Four,
        order: ByteOrder::Big,
    };
    for capacity in [128, DEFAULT_CAPACITY] {
        let t0 = Instant::now();
        let mut m = Merge::with_capacity(spec, 2, WINDOW, DOWN, capacity);
        let numbers = (0u32..=10).chain(1000..=1200);
        for (i, n) in numbers.enumerate() {
            assert!(m.on_packet(0, &n.to_be_bytes(), us(t0, i as u64)).forward());
        }
        m.poll(us(t0, 10_000_000), |_| {});
        assert_eq!(m.output().lost, 989, "capacity {capacity}");
        assert_eq!(m.leg(0).missing, 989, "capacity {capacity}");
        assert_eq!(m.output().jumps, 0);
    }
}

#[test]
fn a_leg_that_brings_only_packets_without_a_key_is_down() {
    let t0 = Instant::now();
    let mut m = merge(2);
    for s in 0u16..20 {
        m.on_packet(0, &rtp(s, 1), us(t0, u64::from(s) * 100));
        m.on_packet(1, b"not rtp at all", us(t0, u64::from(s) * 100 + 1));
    }
    let mut ev = Vec::new();
    m.poll(us(t0, 2000), |e| ev.push(e));
    assert_eq!(ev, [super::Event::LegUp { leg: 0 }]);
    assert_eq!(m.leg(1).packets, 20);
    assert_eq!(m.leg(1).no_key(NoKey::NotRtp), 20);
}

#[test]
fn state_carries_over_a_reload_only_for_routes_with_the_same_legs_and_mode() {
    use super::carry_over;
    use crate::config::{FakeResolver, compile};
    use crate::table::RouteId;
    let table = |extra: &str, window: &str| {
        let text = format!(
            "[interfaces.a]\n[interfaces.b]\n[destinations.d]\naddress = \"10.0.0.1:9\"\n[destinations.e]\naddress = \"10.0.0.2:9\"\n{extra}\
             [[groups]]\nname = \"x\"\nlegs = [{{ interface = \"a\", group = \"239.0.0.1\" }}, {{ interface = \"b\", group = \"239.0.0.1\" }}]\nredundancy = \"merge\"\nsequence = \"rtp\"\nwindow = \"{window}\"\nto = [\"d\"]\n\
             [[groups]]\nname = \"y\"\nlegs = [{{ interface = \"a\", group = \"239.0.0.2\" }}, {{ interface = \"b\", group = \"239.0.0.2\" }}]\nredundancy = \"failover\"\nto = [\"e\"]\n"
        );
        compile(
            &text,
            std::path::Path::new("t.toml"),
            &FakeResolver::everything(),
        )
        .unwrap()
    };
    let old = table("", "20ms");
    // A plain group in front shifts every route id; `x` changes its window.
    let new = table(
        "[[groups]]\ninterface = \"a\"\ngroup = \"239.0.0.9\"\nto = [\"d\", \"e\"]\n",
        "30ms",
    );
    assert_eq!(carry_over(&old, &new), [(RouteId(1), RouteId(2))]);
    assert_eq!(
        carry_over(&old, &old),
        [(RouteId(0), RouteId(0)), (RouteId(1), RouteId(1))]
    );
}

/// Regression (found by the `merge` fuzz target): a 64-bit number stepping across 2^63, where
/// the offset space wraps, panicked with an arithmetic overflow; it is a jump now, and the
/// stream carries on after it.
#[test]
fn a_64_bit_number_crossing_2_pow_63_is_a_jump_not_an_overflow() {
    let mut m = Merge::with_capacity(SequenceSpec::Rtp, 2, WINDOW, DOWN, 256);
    let t0 = Instant::now();
    let verdicts: Vec<Verdict> = ((1u64 << 63) - 3..(1u64 << 63) + 3)
        .enumerate()
        .map(|(i, value)| {
            m.on_key(
                i % 2,
                Ok(SeqKey {
                    stream: 0,
                    value,
                    bits: 64,
                }),
                t0 + Duration::from_micros(i as u64 * 10),
            )
        })
        .collect();
    assert!(verdicts.contains(&Verdict::Jump), "{verdicts:?}");
    assert!(verdicts[..3].iter().all(|v| v.forward()), "{verdicts:?}");
}
