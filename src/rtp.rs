//! RTP sequence tracking for groups with `rtp = true`: gaps, lost packets, duplicates and
//! reorders, the way broadcast engineers read a stream's health.
//!
//! Pure and allocation-free, called by the worker once per packet of an RTP route. The algorithm
//! follows RFC 3550 appendix A.1 (`update_seq`): a 16-bit sequence number extended with a cycle
//! count, `MAX_DROPOUT` / `MAX_MISORDER` to tell a forward jump from a late packet, and a resync
//! after two sequential packets following a large jump (a sender restart). On top of A.1, a
//! 128-packet bitmap below the highest sequence number tells a duplicate from a late (reordered)
//! packet, and a late packet gives back the loss counted when its gap appeared, so `lost` is the
//! number of packets still missing (A.3's "expected − received", without duplicates).
//! A change of SSRC starts the tracking afresh without counting loss.

use serde::{Deserialize, Serialize};

/// RTP sequence statistics (RFC 3550 appendix A.1), only for groups with `rtp = true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpCounters {
    pub packets: u64,
    /// Sequence gaps seen (each jump forward by more than one).
    pub gaps: u64,
    /// Packets never received (sum of gap sizes, minus late arrivals).
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Payloads too short or not RTP version 2.
    pub invalid: u64,
}

/// A forward jump larger than this is a restart, not loss (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// A packet at most this far behind the highest sequence number is late, not a restart.
pub const MAX_MISORDER: u16 = 100;
/// Fixed RTP header length.
const HEADER_LEN: usize = 12;
/// How far back duplicates are recognised.
const WINDOW: u16 = 128;

/// Per-route tracker. `Default` is "nothing received yet".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpTracker {
    counters: RtpCounters,
    state: Option<SeqState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeqState {
    ssrc: u32,
    max_seq: u16,
    /// Bit i set: sequence number `max_seq - i` was received.
    seen: u128,
    /// The sequence number that would confirm a restart after a large jump (A.1 `bad_seq`).
    bad_seq: Option<u16>,
}

/// What one packet was, for callers that want more than the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next packet, or the first one.
    InOrder,
    /// Ahead of the next expected one: `missing` packets skipped.
    Gap {
        missing: u16,
    },
    Duplicate,
    /// Arrived after a later packet.
    Late,
    /// A jump too large to be loss: the tracker waits for confirmation (RFC 3550 A.1).
    Jump,
    /// A second sequential packet after a jump, or a new SSRC: tracking starts again here.
    Restart,
    /// Too short or not RTP version 2.
    Invalid,
}

impl RtpTracker {
    pub fn counters(&self) -> RtpCounters {
        self.counters
    }

    /// Accounts for one UDP payload.
    pub fn observe(&mut self, payload: &[u8]) -> Verdict {
        if payload.len() < HEADER_LEN || payload[0] >> 6 != 2 {
            self.counters.invalid += 1;
            return Verdict::Invalid;
        }
        let seq = u16::from_be_bytes([payload[2], payload[3]]);
        let ssrc = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]);
        self.counters.packets += 1;
        let st = match &mut self.state {
            Some(st) if st.ssrc == ssrc => st,
            other => {
                let restart = other.is_some();
                *other = Some(SeqState::start(ssrc, seq));
                return if restart {
                    Verdict::Restart
                } else {
                    Verdict::InOrder
                };
            }
        };
        let delta = seq.wrapping_sub(st.max_seq);
        if delta == 0 {
            self.counters.duplicates += 1;
            Verdict::Duplicate
        } else if delta < MAX_DROPOUT {
            st.advance(delta);
            st.bad_seq = None;
            if delta > 1 {
                self.counters.gaps += 1;
                self.counters.lost += u64::from(delta - 1);
                Verdict::Gap { missing: delta - 1 }
            } else {
                Verdict::InOrder
            }
        } else if delta <= u16::MAX - MAX_MISORDER + 1 {
            // A very large jump: a restarted sender or garbage. Resync on the next in sequence.
            if st.bad_seq == Some(seq) {
                *st = SeqState::start(ssrc, seq);
                Verdict::Restart
            } else {
                st.bad_seq = Some(seq.wrapping_add(1));
                Verdict::Jump
            }
        } else {
            let back = st.max_seq.wrapping_sub(seq);
            if back < WINDOW && st.seen & (1u128 << back) != 0 {
                self.counters.duplicates += 1;
                Verdict::Duplicate
            } else {
                if back < WINDOW {
                    st.seen |= 1u128 << back;
                }
                self.counters.reordered += 1;
                self.counters.lost = self.counters.lost.saturating_sub(1);
                Verdict::Late
            }
        }
    }
}

impl SeqState {
    fn start(ssrc: u32, seq: u16) -> SeqState {
        SeqState {
            ssrc,
            max_seq: seq,
            seen: 1,
            bad_seq: None,
        }
    }

    fn advance(&mut self, delta: u16) {
        self.seen = if delta >= WINDOW {
            0
        } else {
            self.seen << delta
        } | 1;
        self.max_seq = self.max_seq.wrapping_add(delta);
    }
}

/// RFC 3550 interarrival jitter (6.4.1, computed as in A.8): a running mean of how much the
/// spacing of arrivals differs from the spacing of RTP timestamps, in timestamp units, smoothed
/// by 1/16. Arrival times are read in `clock_rate` units (90 000 for video, 48 000 for most
/// audio). Packets of another SSRC than the previous one restart the estimate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jitter {
    clock_rate: u32,
    origin: Option<std::time::Instant>,
    /// SSRC and transit time (arrival − timestamp) of the previous packet.
    last: Option<(u32, u32)>,
    /// The estimate, scaled by 16 (A.8); 64 bits so that no difference can overflow it.
    scaled: u64,
}

impl Jitter {
    /// A fresh estimate for a stream with this RTP clock rate (Hz, at least 1).
    pub fn new(clock_rate: u32) -> Jitter {
        Jitter {
            clock_rate: clock_rate.max(1),
            ..Jitter::default()
        }
    }

    /// Accounts for one RTP packet received at `now`; other payloads are ignored.
    #[inline]
    pub fn observe(&mut self, payload: &[u8], now: std::time::Instant) {
        if payload.len() < HEADER_LEN || payload[0] >> 6 != 2 {
            return;
        }
        let ts = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        let ssrc = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]);
        let origin = *self.origin.get_or_insert(now);
        let nanos = now.saturating_duration_since(origin).as_nanos();
        // Arrival in timestamp units, modulo 2^32 like the timestamps themselves.
        let arrival = (nanos * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(ts);
        match self.last {
            Some((s, prev)) if s == ssrc => {
                let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
                // J += (|D| − J) / 16, with J kept scaled by 16.
                self.scaled = self.scaled + d - ((self.scaled + 8) >> 4);
            }
            Some(_) => self.scaled = 0,
            None => {}
        }
        self.last = Some((ssrc, transit));
    }

    /// The estimate in timestamp units, as an RTCP receiver report carries it.
    pub fn units(&self) -> u32 {
        u32::try_from(self.scaled >> 4).unwrap_or(u32::MAX)
    }

    /// The estimate as a duration.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(
            self.scaled.saturating_mul(1_000_000_000) / 16 / u64::from(self.clock_rate.max(1)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pkt(seq: u16, ssrc: u32) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = 96;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn run(seqs: &[u16]) -> RtpCounters {
        let mut t = RtpTracker::default();
        for &s in seqs {
            t.observe(&pkt(s, 7));
        }
        t.counters()
    }

    #[test]
    fn in_order_stream_counts_nothing_bad() {
        let c = run(&(0..500).collect::<Vec<_>>());
        assert_eq!(c.packets, 500);
        assert_eq!(
            (c.gaps, c.lost, c.duplicates, c.reordered, c.invalid),
            (0, 0, 0, 0, 0)
        );
    }

    #[test]
    fn wraps_without_loss() {
        let seqs: Vec<u16> = (65530u32..65550).map(|s| (s % 65536) as u16).collect();
        let c = run(&seqs);
        assert_eq!((c.packets, c.gaps, c.lost), (20, 0, 0));
    }

    #[test]
    fn gap_across_wrap() {
        let c = run(&[65534, 65535, 2, 3]);
        assert_eq!((c.gaps, c.lost), (1, 2));
    }

    #[test]
    fn duplicate_and_late_are_told_apart() {
        let mut t = RtpTracker::default();
        assert_eq!(t.observe(&pkt(10, 1)), Verdict::InOrder);
        assert_eq!(t.observe(&pkt(12, 1)), Verdict::Gap { missing: 1 });
        assert_eq!(t.observe(&pkt(11, 1)), Verdict::Late);
        assert_eq!(t.observe(&pkt(11, 1)), Verdict::Duplicate);
        assert_eq!(t.observe(&pkt(12, 1)), Verdict::Duplicate);
        let c = t.counters();
        assert_eq!((c.gaps, c.lost, c.reordered, c.duplicates), (1, 0, 1, 2));
    }

    #[test]
    fn invalid_payloads_are_counted_apart() {
        let mut t = RtpTracker::default();
        assert_eq!(t.observe(&[0x80; 11]), Verdict::Invalid);
        let mut v1 = pkt(1, 1);
        v1[0] = 0x40;
        assert_eq!(t.observe(&v1), Verdict::Invalid);
        assert_eq!(t.counters().invalid, 2);
        assert_eq!(t.counters().packets, 0);
    }

    #[test]
    fn large_jump_resyncs_after_two_sequential_packets() {
        let mut t = RtpTracker::default();
        t.observe(&pkt(100, 1));
        assert_eq!(t.observe(&pkt(30000, 1)), Verdict::Jump);
        assert_eq!(t.observe(&pkt(30001, 1)), Verdict::Restart);
        assert_eq!(t.observe(&pkt(30002, 1)), Verdict::InOrder);
        assert_eq!(t.counters().lost, 0);
        assert_eq!(t.counters().gaps, 0);
    }

    #[test]
    fn new_ssrc_restarts_without_loss() {
        let mut t = RtpTracker::default();
        t.observe(&pkt(100, 1));
        assert_eq!(t.observe(&pkt(9, 2)), Verdict::Restart);
        assert_eq!(t.observe(&pkt(10, 2)), Verdict::InOrder);
        assert_eq!(t.counters().lost, 0);
    }

    fn timed(seq: u16, ts: u32) -> [u8; 12] {
        let mut p = pkt(seq, 7);
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_uneven_arrivals() {
        let t0 = std::time::Instant::now();
        let mut j = Jitter::new(90_000);
        // One packet per ms (90 ticks), arriving exactly on time, across the timestamp wrap.
        for i in 0..200u32 {
            let at = t0 + std::time::Duration::from_millis(u64::from(i));
            j.observe(&timed(i as u16, (u32::MAX - 9000).wrapping_add(i * 90)), at);
        }
        assert_eq!(j.units(), 0);
        // Every other packet 1 ms late: |D| = 90 ticks each time, so J tends to 90.
        for i in 200..2000u32 {
            let late = if i % 2 == 0 { 1 } else { 0 };
            let at = t0 + std::time::Duration::from_millis(u64::from(i + late));
            j.observe(&timed(i as u16, (u32::MAX - 9000).wrapping_add(i * 90)), at);
        }
        assert!((85..=90).contains(&j.units()), "{}", j.units());
        let d = j.duration();
        assert!(
            d > std::time::Duration::from_micros(940) && d <= std::time::Duration::from_millis(1),
            "{d:?}"
        );
        // Not RTP: ignored.
        j.observe(&[0u8; 4], t0);
        assert!((85..=90).contains(&j.units()));
    }

    proptest! {
        /// Dropping packets from an in-order stream: `lost` is exactly what was dropped between
        /// the first and the last received, `gaps` the number of runs of drops.
        #[test]
        fn loss_is_exact(start in any::<u16>(), keep in proptest::collection::vec(
            prop_oneof![4 => Just(true), 1 => Just(false)], 1..2000)) {
            let seqs: Vec<u16> = keep.iter().enumerate()
                .filter(|&(_, &k)| k).map(|(i, _)| start.wrapping_add(i as u16)).collect();
            prop_assume!(!seqs.is_empty());
            let first = keep.iter().position(|&k| k).unwrap();
            let last = keep.iter().rposition(|&k| k).unwrap();
            let inner = &keep[first..=last];
            let dropped = inner.iter().filter(|&&k| !k).count() as u64;
            let runs = inner.windows(2).filter(|w| w[0] && !w[1]).count() as u64;
            let c = run(&seqs);
            prop_assert_eq!(c.packets, seqs.len() as u64);
            prop_assert_eq!(c.lost, dropped);
            prop_assert_eq!(c.gaps, runs);
            prop_assert_eq!(c.duplicates + c.reordered, 0);
        }

        /// Repeating a packet soon after it was sent is always a duplicate, never loss.
        #[test]
        fn duplicates_are_exact(start in any::<u16>(), n in 1usize..1000,
            dups in proptest::collection::vec((0usize..1000, 0usize..50), 0..50)) {
            let mut offsets: Vec<usize> = (0..n).collect();
            let mut expected = 0u64;
            for (at, back) in dups {
                let at = at % n;
                if back <= at {
                    let v = offsets[at - back];
                    let max = *offsets[..=at].iter().max().unwrap();
                    // Further back than MAX_MISORDER is a jump per RFC 3550, not a duplicate.
                    if max - v < usize::from(MAX_MISORDER) {
                        offsets.insert(at + 1, v);
                        expected += 1;
                    }
                }
            }
            let seqs: Vec<u16> = offsets.iter().map(|&o| start.wrapping_add(o as u16)).collect();
            let c = run(&seqs);
            prop_assert_eq!(c.duplicates, expected);
            prop_assert_eq!(c.lost + c.gaps + c.reordered, 0);
        }

        /// Swapping neighbours: every swap is one late packet, and no loss remains at the end.
        #[test]
        fn swaps_are_late_not_lost(start in any::<u16>(), n in 2usize..1000,
            swaps in proptest::collection::btree_set(0usize..999, 0..100)) {
            let mut seqs: Vec<u16> = (0..n).map(|i| start.wrapping_add(i as u16)).collect();
            let mut count = 0u64;
            let mut last = None;
            for i in swaps {
                if i + 1 < n && last.is_none_or(|l| i > l + 1) {
                    seqs.swap(i, i + 1);
                    count += 1;
                    last = Some(i);
                }
            }
            let c = run(&seqs);
            prop_assert_eq!(c.reordered, count);
            prop_assert_eq!(c.lost, 0);
            prop_assert_eq!(c.duplicates, 0);
        }
    }
}
