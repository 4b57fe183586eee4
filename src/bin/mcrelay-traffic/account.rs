//! Sequence accounting per stream: what arrived, what is missing, what came twice or out of order,
//! and how late. Pure: the caller passes the receive time.

use std::collections::BTreeMap;

use serde::Serialize;

/// Sequence numbers further than this beyond the highest one seen are treated as corrupt rather
/// than growing the bitmap (a flipped bit in the header must not allocate gigabytes).
const MAX_JUMP: u64 = 1 << 26;

/// What one stream's datagrams looked like on arrival.
#[derive(Debug, Default, Clone)]
pub struct StreamAccount {
    seen: Vec<u64>,
    /// Every datagram of this stream, duplicates included.
    pub received: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    pub duplicates: u64,
    /// Datagrams that arrived after a higher sequence number (late, not duplicated).
    pub reordered: u64,
    /// Filler bytes differed, or the sequence number was out of any plausible range.
    pub corrupt: u64,
    /// Arrived with another length than the sender wrote in the header.
    pub length_mismatch: u64,
    pub bytes: u64,
    pub highest: Option<u64>,
    pub latency: Histogram,
    /// IP TTL / hop limit seen, by value.
    pub ttl: BTreeMap<u8, u64>,
    /// IP TOS / traffic class byte seen, by value.
    pub tos: BTreeMap<u8, u64>,
}

/// One received datagram of a stream, as the receiver saw it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub seq: u64,
    pub len: usize,
    pub sent_ns: u64,
    pub recv_ns: u64,
    pub length_ok: bool,
    pub corrupt: bool,
    pub ttl: Option<u8>,
    pub tos: Option<u8>,
}

impl StreamAccount {
    pub fn record(&mut self, a: Arrival) {
        self.received += 1;
        self.bytes += a.len as u64;
        if !a.length_ok {
            self.length_mismatch += 1;
        }
        if let Some(t) = a.ttl {
            *self.ttl.entry(t).or_default() += 1;
        }
        if let Some(t) = a.tos {
            *self.tos.entry(t).or_default() += 1;
        }
        let limit = self
            .highest
            .map_or(MAX_JUMP, |h| h.saturating_add(MAX_JUMP));
        if a.corrupt || a.seq > limit {
            self.corrupt += 1;
            return;
        }
        let (word, bit) = ((a.seq / 64) as usize, a.seq % 64);
        if word >= self.seen.len() {
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        self.unique += 1;
        match self.highest {
            Some(h) if a.seq < h => self.reordered += 1,
            _ => self.highest = Some(a.seq),
        }
        self.latency.record(a.recv_ns.saturating_sub(a.sent_ns));
    }

    /// Sequence numbers never received: out of `expected` when the sender's count is known,
    /// else out of 0..=highest (loss at the tail is then invisible).
    pub fn lost(&self, expected: Option<u64>) -> u64 {
        let span = expected.unwrap_or(self.highest.map_or(0, |h| h + 1));
        let within = match expected {
            // count only sequence numbers inside the expected range
            Some(n) => self.count_below(n),
            None => self.unique,
        };
        span.saturating_sub(within)
    }

    fn count_below(&self, n: u64) -> u64 {
        let full = (n / 64) as usize;
        let mut c: u64 = self
            .seen
            .iter()
            .take(full)
            .map(|w| w.count_ones() as u64)
            .sum();
        if let Some(w) = self.seen.get(full) {
            let rem = n % 64;
            if rem > 0 {
                c += (w & ((1u64 << rem) - 1)).count_ones() as u64;
            }
        }
        c
    }
}

/// Log-linear latency histogram: exact below 128 ns, then 64 buckets per power of two (≤ 1.6 %
/// error), 0 .. 2^64 ns.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    pub count: u64,
    pub max: u64,
}

const SUB: u32 = 6; // 2^6 buckets per power of two
const LINEAR: u64 = 1 << (SUB + 1);

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; LINEAR as usize + (64 - SUB as usize - 1) * (1 << SUB)],
            count: 0,
            max: 0,
        }
    }
}

/// Percentiles in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Latency {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0..=1): the upper bound of its bucket, never above the max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut acc = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Option<Latency> {
        (self.count > 0).then(|| Latency {
            p50_ns: self.quantile(0.50),
            p99_ns: self.quantile(0.99),
            max_ns: self.max,
        })
    }

    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB + 1
        let sub = (v >> (exp - SUB)) & ((1 << SUB) - 1);
        (LINEAR + (exp as u64 - SUB as u64 - 1) * (1 << SUB) + sub) as usize
    }

    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let exp = (i - LINEAR) / (1 << SUB) + SUB as u64 + 1;
        let sub = (i - LINEAR) % (1 << SUB);
        let low = (1u64 << exp) + (sub << (exp - SUB as u64));
        low.saturating_add((1u64 << (exp - SUB as u64)) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrive(acc: &mut StreamAccount, seq: u64) {
        acc.record(Arrival {
            seq,
            len: 64,
            sent_ns: 1_000,
            recv_ns: 1_000 + seq.wrapping_mul(10) % 1_000_000,
            length_ok: true,
            corrupt: false,
            ttl: Some(8),
            tos: Some(0x88),
        });
    }

    fn run(seqs: &[u64]) -> StreamAccount {
        let mut a = StreamAccount::default();
        for &s in seqs {
            arrive(&mut a, s);
        }
        a
    }

    #[test]
    fn in_order_without_loss() {
        let a = run(&(0..1000).collect::<Vec<_>>());
        assert_eq!(
            (a.received, a.unique, a.duplicates, a.reordered),
            (1000, 1000, 0, 0)
        );
        assert_eq!(a.lost(None), 0);
        assert_eq!(a.lost(Some(1000)), 0);
        assert_eq!(a.ttl[&8], 1000);
        assert_eq!(a.tos[&0x88], 1000);
    }

    #[test]
    fn gaps_are_losses_head_and_tail_only_with_an_expected_count() {
        let a = run(&[1, 2, 5, 6, 9]);
        assert_eq!(a.lost(None), 5); // 0, 3, 4, 7, 8
        assert_eq!(a.lost(Some(12)), 7); // and 10, 11
        assert_eq!(a.reordered, 0);
    }

    #[test]
    fn duplicates_are_counted_once_and_not_as_reorders() {
        let a = run(&[0, 1, 1, 2, 0, 2, 3]);
        assert_eq!(
            (a.received, a.unique, a.duplicates, a.reordered),
            (7, 4, 3, 0)
        );
        assert_eq!(a.lost(Some(4)), 0);
    }

    #[test]
    fn late_arrivals_are_reorders_and_fill_their_gap() {
        let a = run(&[0, 2, 3, 1, 4, 6, 5]);
        assert_eq!((a.unique, a.duplicates, a.reordered), (7, 0, 2));
        assert_eq!(a.lost(Some(7)), 0);
    }

    #[test]
    fn sequence_numbers_beyond_the_expected_count_do_not_hide_loss() {
        let a = run(&[0, 1, 5, 6]);
        assert_eq!(a.lost(Some(3)), 1);
    }

    #[test]
    fn corrupt_and_implausible_sequences_do_not_allocate_or_count_as_delivered() {
        let mut a = run(&[0, 1]);
        arrive(&mut a, u64::MAX - 3);
        a.record(Arrival {
            seq: 2,
            len: 64,
            sent_ns: 0,
            recv_ns: 0,
            length_ok: false,
            corrupt: true,
            ttl: None,
            tos: None,
        });
        assert_eq!(
            (a.received, a.unique, a.corrupt, a.length_mismatch),
            (4, 2, 2, 1)
        );
        assert!(a.seen.len() < 16);
        assert_eq!(a.lost(Some(3)), 1);
    }

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.02, "p50 {p50}");
        assert!((p99 / 99_000_000.0 - 1.0).abs() < 0.02, "p99 {p99}");
        assert_eq!(h.max, 100_000_000);
        let s = h.summary().unwrap();
        assert!(s.p50_ns <= s.p99_ns && s.p99_ns <= s.max_ns);
    }

    #[test]
    fn histogram_small_values_are_exact_and_buckets_cover_everything() {
        let mut h = Histogram::default();
        for v in [0, 1, 5, 127] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.25), 0);
        assert_eq!(h.quantile(1.0), 127);
        for v in [128, 1 << 20, u64::MAX] {
            let i = Histogram::index(v);
            assert!(i < h.counts.len());
            assert!(Histogram::upper(i) >= v, "{v}");
        }
    }
}
