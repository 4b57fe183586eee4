//! Hitless merge (SMPTE ST 2022-7, market-data A/B arbitration): the first copy of each
//! sequence number is forwarded, later copies are dropped.
//!
//! # Order
//! A packet is forwarded on its first arrival, from whichever leg brings it: no added latency.
//! When one leg loses a packet and the other leg is behind, the late leg's copy fills the hole
//! after higher numbers were already sent, so the output is then out of order by at most the
//! legs' skew ([`OutputCounters::reordered`] counts these). Holding packets to emit them in
//! sequence order is not done here.
//!
//! # State, bounded
//! Numbers are extended to 64 bits ([`super::seq::extend`]) and remembered in fixed bitmaps
//! allocated once: which numbers went out, and which leg delivered which, over the last
//! `capacity` numbers (a power of two, [`DEFAULT_CAPACITY`] by default), in 64-number words.
//! A word is *settled* once the highest number has been past it for `window`: its holes are
//! then final (counted as lost on the output and missing on each leg that lacked them) and a
//! copy arriving for them afterwards is dropped as late. So every number is waited for at least
//! `window` after a higher one went out, and at most `window` plus the time 64 numbers take; the
//! window is also capped by the capacity (a word about to be reused is settled early), so the
//! capacity should exceed the packet rate times the window.
//!
//! # Jumps and restarts
//! A number far ahead (more than 3000 for 16-bit RTP numbers as in RFC 3550 A.1, 65536 for wider
//! fields), far behind (beyond the bitmaps), or of another RTP SSRC is held to be either garbage or
//! a restarted source: it is dropped and counted as a jump, and the stream starts afresh when the
//! next packet confirms it (the number after it, same SSRC), or at once when nothing new has gone
//! out for `window` (a source that restarts after a pause). A number within the bitmaps' reach
//! never restarts the stream: it is a duplicate, a fill or late by what the bitmaps say, so no
//! number in reach goes out twice however late a leg is. A source that restarts with numbers in
//! that reach and the same SSRC is taken for copies until it passes the old numbers (RTP senders
//! choose a new SSRC when they restart, RFC 3550 8.2, which starts afresh at once).
//! The legs must carry the same numbers and SSRC.

use std::time::{Duration, Instant};

use super::health::{Event, LegCounters, Liveness, OutputCounters};
use super::seq::{self, NoKey, SeqKey};
use crate::table::{MAX_LEGS, SequenceSpec};

/// Sequence numbers remembered by default: 2 KiB per bitmap, enough for a 20 ms window up to
/// about 800 000 packets per second.
pub const DEFAULT_CAPACITY: usize = 1 << 14;
/// A forward step larger than this is a jump for 16-bit numbers (RFC 3550 A.1 `MAX_DROPOUT`).
pub const MAX_STEP_16: u64 = 3000;
/// A forward step larger than this is a jump for 32- and 64-bit numbers.
pub const MAX_STEP_WIDE: u64 = 1 << 16;

/// Extended numbers are kept offset by 2^63 so that a stream starting near 0 never wraps the
/// 64-bit space; plain comparisons then hold for every stream that does not run past 2^63.
const OFFSET: u64 = 1 << 63;

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First copy and the highest number so far: forward.
    Forward,
    /// First copy of a number below the highest (a hole filled): forward, out of order.
    Fill,
    /// The stream starts here (the first packet, a confirmed jump, or after silence): forward.
    Restart,
    /// A copy of a number already forwarded: drop.
    Duplicate,
    /// A number whose wait is over (settled as lost): drop.
    Late,
    /// A number far from the stream's, not (yet) confirmed as a restart: drop.
    Jump,
    /// No sequence key: drop.
    NoKey(NoKey),
}

impl Verdict {
    /// Whether the packet goes out.
    #[inline]
    pub fn forward(self) -> bool {
        matches!(self, Verdict::Forward | Verdict::Fill | Verdict::Restart)
    }
}

/// The merge state of one route: owned by the one worker that receives all its legs.
#[derive(Debug, Clone)]
pub struct Merge {
    spec: SequenceSpec,
    window: u64,
    /// Words per bitmap (a power of two).
    words: u64,
    origin: Option<Instant>,
    stream: Option<(u32, u8)>,
    /// Highest number forwarded (offset by `OFFSET`).
    max: u64,
    /// Lowest number forwarded since the stream (re)started.
    base: u64,
    /// Words below this are settled.
    settled: u64,
    /// Last time `max` moved, in nanoseconds since `origin`.
    last_advance: u64,
    /// Numbers forwarded.
    any: Box<[u64]>,
    /// Numbers each leg delivered, leg-major.
    seen: Box<[u64]>,
    /// When `max` moved past each word, in nanoseconds since `origin`.
    left: Box<[u64]>,
    /// A jump waiting for confirmation: (SSRC, width, the number that confirms it).
    candidate: Option<(u32, u8, u64)>,
    probe: Option<Probe>,
    leg_max: Box<[u64]>,
    legs: Box<[LegCounters]>,
    output: OutputCounters,
    live: Liveness,
}

/// One number whose arrival on every leg is timed, for the legs' lead and lag.
#[derive(Debug, Clone, Copy)]
struct Probe {
    n: u64,
    at: u64,
    answered: u8,
}

impl Merge {
    /// A merge of `legs` legs (2 to [`MAX_LEGS`]); a leg silent for `down_after` is DOWN.
    pub fn new(spec: SequenceSpec, legs: usize, window: Duration, down_after: Duration) -> Merge {
        Merge::with_capacity(spec, legs, window, down_after, DEFAULT_CAPACITY)
    }

    /// Like [`Merge::new`], remembering `capacity` numbers (rounded up to a power of two, at
    /// least 128).
    pub fn with_capacity(
        spec: SequenceSpec,
        legs: usize,
        window: Duration,
        down_after: Duration,
        capacity: usize,
    ) -> Merge {
        assert!((1..=MAX_LEGS).contains(&legs), "1 to {MAX_LEGS} legs");
        let words = (capacity.max(128).next_power_of_two() / 64) as u64;
        let w = words as usize;
        Merge {
            spec,
            window: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            words,
            origin: None,
            stream: None,
            max: 0,
            base: 0,
            settled: 0,
            last_advance: 0,
            any: vec![0; w].into(),
            seen: vec![0; w * legs].into(),
            left: vec![0; w].into(),
            candidate: None,
            probe: None,
            leg_max: vec![0; legs].into(),
            legs: vec![LegCounters::default(); legs].into(),
            output: OutputCounters::default(),
            live: Liveness::new(legs, down_after),
        }
    }

    /// Decides on one UDP payload received on `leg` at `now`.
    #[inline]
    pub fn on_packet(&mut self, leg: usize, payload: &[u8], now: Instant) -> Verdict {
        let key = seq::key(&self.spec, payload);
        self.on_key(leg, key, now)
    }

    /// Decides on a packet whose key was already read.
    pub fn on_key(&mut self, leg: usize, key: Result<SeqKey, NoKey>, now: Instant) -> Verdict {
        let t = self.nanos(now);
        self.legs[leg].packets += 1;
        let k = match key {
            Ok(k) => k,
            Err(reason) => {
                // Not a sign of life either: a leg that brings only garbage is DOWN.
                self.legs[leg].no_key[reason as usize] += 1;
                self.output.no_key += 1;
                return Verdict::NoKey(reason);
            }
        };
        self.live.on_packet(leg, now);
        if self.stream.is_none() {
            self.start(leg, k, t);
            return Verdict::Restart;
        }
        self.expire(t);
        if self.stream != Some((k.stream, k.bits)) {
            return self.jump(leg, k, t);
        }
        let n = if k.bits >= 64 {
            k.value ^ OFFSET
        } else {
            seq::extend(k.value, k.bits, self.max)
        };
        let d = n.wrapping_sub(self.max) as i64;
        if d > 0 {
            let limit = if k.bits == 16 {
                MAX_STEP_16
            } else {
                MAX_STEP_WIDE
            };
            // A 64-bit number that wraps the offset space (from 2^63 - 1 to 2^63 before the
            // offset) cannot be kept in order with the bitmaps: it is a jump like a far one.
            if d as u64 > limit || n < self.max {
                return self.jump(leg, k, t);
            }
            self.advance(n, t);
            self.mark(leg, n);
            self.output.forwarded += 1;
            self.legs[leg].forwarded += 1;
            self.candidate = None;
            if self.probe.is_none() {
                self.probe = Some(Probe {
                    n,
                    at: t,
                    answered: 1 << leg,
                });
                self.legs[leg].behind = Some(Duration::ZERO);
            }
            return Verdict::Forward;
        }
        // Beyond the bitmaps' reach (counted in words: the oldest word shares its slot with the
        // newest).
        if (self.max >> 6).wrapping_sub(n >> 6) >= self.words {
            return self.jump(leg, k, t);
        }
        if self.is_set(n) {
            self.mark(leg, n);
            self.legs[leg].duplicates += 1;
            self.output.duplicates += 1;
            self.answer_probe(leg, n, t);
            return Verdict::Duplicate;
        }
        if n >> 6 >= self.settled {
            self.mark(leg, n);
            self.base = self.base.min(n);
            self.output.forwarded += 1;
            self.output.reordered += 1;
            self.legs[leg].forwarded += 1;
            return Verdict::Fill;
        }
        self.legs[leg].late += 1;
        self.output.late += 1;
        Verdict::Late
    }

    /// Settles what is due at `now` and reports each leg's UP/DOWN changes once.
    pub fn poll(&mut self, now: Instant, report: impl FnMut(Event)) {
        if self.origin.is_some() {
            let t = self.nanos(now);
            self.expire(t);
        }
        self.live.poll(now, &mut self.legs, report);
    }

    /// The counters of leg `leg`, with its lead against the merged stream.
    pub fn leg(&self, leg: usize) -> LegCounters {
        let mut c = self.legs[leg];
        if self.stream.is_some() && self.leg_max[leg] != 0 {
            c.lead = self.leg_max[leg].wrapping_sub(self.max) as i64;
        }
        c
    }

    pub fn legs(&self) -> usize {
        self.legs.len()
    }

    pub fn output(&self) -> OutputCounters {
        self.output
    }

    /// Whether `leg` is UP as last reported by [`Merge::poll`].
    pub fn leg_up(&self, leg: usize) -> bool {
        self.live.reported_up(leg)
    }

    fn nanos(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        u64::try_from(now.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn slot(&self, word: u64) -> usize {
        (word & (self.words - 1)) as usize
    }

    #[inline]
    fn is_set(&self, n: u64) -> bool {
        self.any[self.slot(n >> 6)] & (1 << (n & 63)) != 0
    }

    #[inline]
    fn mark(&mut self, leg: usize, n: u64) {
        let slot = self.slot(n >> 6);
        let bit = 1u64 << (n & 63);
        self.any[slot] |= bit;
        self.seen[leg * self.words as usize + slot] |= bit;
        if self.leg_max[leg] == 0 || n.wrapping_sub(self.leg_max[leg]) as i64 > 0 {
            self.leg_max[leg] = n;
        }
    }

    fn answer_probe(&mut self, leg: usize, n: u64, t: u64) {
        let all = (1u16 << self.legs.len()) - 1;
        if let Some(p) = &mut self.probe
            && p.n == n
            && p.answered & (1 << leg) == 0
        {
            p.answered |= 1 << leg;
            self.legs[leg].behind = Some(Duration::from_nanos(t.saturating_sub(p.at)));
            if u16::from(p.answered) == all {
                self.probe = None;
            }
        }
    }

    /// Starts the stream at `k`: the number is forwarded, and numbers below it in the bitmaps'
    /// reach may still be filled within the window (a leg that lags the first one heard).
    fn start(&mut self, leg: usize, k: SeqKey, t: u64) {
        let n = if k.bits >= 64 {
            k.value ^ OFFSET
        } else {
            k.value | OFFSET
        };
        self.stream = Some((k.stream, k.bits));
        self.any.fill(0);
        self.seen.fill(0);
        self.left.fill(t);
        self.leg_max.fill(0);
        self.max = n;
        self.base = n;
        self.settled = (n >> 6).saturating_sub(self.words - 1);
        self.last_advance = t;
        self.candidate = None;
        self.probe = None;
        self.mark(leg, n);
        self.output.forwarded += 1;
        self.legs[leg].forwarded += 1;
    }

    fn restart(&mut self, leg: usize, k: SeqKey, t: u64) -> Verdict {
        // What was still pending is final now.
        let end = (self.max >> 6) + 1;
        self.settle_until(end, self.max);
        self.output.restarts += 1;
        self.start(leg, k, t);
        Verdict::Restart
    }

    fn jump(&mut self, leg: usize, k: SeqKey, t: u64) -> Verdict {
        if t.saturating_sub(self.last_advance) > self.window
            || self.candidate == Some((k.stream, k.bits, k.value))
        {
            return self.restart(leg, k, t);
        }
        let next = if k.bits >= 64 {
            k.value.wrapping_add(1)
        } else {
            (k.value + 1) & ((1u64 << k.bits) - 1)
        };
        self.candidate = Some((k.stream, k.bits, next));
        self.output.jumps += 1;
        Verdict::Jump
    }

    /// Moves the highest number to `n` (ahead of it by at most `MAX_STEP_WIDE`).
    fn advance(&mut self, n: u64, t: u64) {
        let (old_w, new_w) = (self.max >> 6, n >> 6);
        if new_w != old_w {
            // The lowest word the bitmaps keep once `n` is in: older ones are settled now.
            let keep = new_w.saturating_sub(self.words - 1);
            // Numbers up to the new highest (excluded) were due: count the skipped ones too.
            self.settle_until(keep, n - 1);
            for w in (old_w + 1).max(keep)..=new_w {
                let slot = self.slot(w);
                self.any[slot] = 0;
                for leg in 0..self.legs.len() {
                    self.seen[leg * self.words as usize + slot] = 0;
                }
            }
            for w in old_w.max(keep)..new_w {
                let slot = self.slot(w);
                self.left[slot] = t;
            }
        }
        self.max = n;
        self.last_advance = t;
    }

    /// Settles the words below the one `max` is in whose wait is over.
    #[inline]
    fn expire(&mut self, t: u64) {
        let top = self.max >> 6;
        while self.settled < top
            && t.saturating_sub(self.left[self.slot(self.settled)]) > self.window
        {
            self.settle_word(self.settled, self.max);
            self.settled += 1;
        }
    }

    /// Settles every word below `limit`; words past the old `max` that never entered the
    /// bitmaps (a step over more than their reach) are holes throughout.
    fn settle_until(&mut self, limit: u64, upto: u64) {
        let top = self.max >> 6;
        while self.settled < limit && self.settled <= top {
            self.settle_word(self.settled, upto);
            self.settled += 1;
        }
        if self.settled < limit {
            let holes = (limit - self.settled) * 64;
            self.output.lost += holes;
            for l in self.legs.iter_mut() {
                l.missing += holes;
            }
            self.settled = limit;
        }
        if let Some(p) = self.probe
            && p.n >> 6 < self.settled
        {
            self.probe = None;
        }
    }

    /// Counts the holes of word `w` (one in the bitmaps' reach) among the numbers from `base`
    /// to `upto`, and each leg's part in them.
    fn settle_word(&mut self, w: u64, upto: u64) {
        let slot = self.slot(w);
        let first = w << 6;
        let lo = self.base.saturating_sub(first);
        let hi = upto.saturating_sub(first);
        if lo > 63 || upto < first {
            return;
        }
        let upto = if hi >= 63 { u64::MAX } else { (2u64 << hi) - 1 };
        let mask = upto & (u64::MAX << lo);
        let any = self.any[slot] & mask;
        self.output.lost += u64::from((mask & !any).count_ones());
        let (mut once, mut multi) = (0u64, 0u64);
        let stride = self.words as usize;
        for leg in 0..self.legs.len() {
            let s = self.seen[leg * stride + slot] & mask;
            multi |= once & s;
            once |= s;
        }
        let only = once & !multi;
        for leg in 0..self.legs.len() {
            let s = self.seen[leg * stride + slot] & mask;
            self.legs[leg].unique += u64::from((s & only).count_ones());
            self.legs[leg].missing += u64::from((mask & !s).count_ones());
        }
        if let Some(p) = self.probe
            && p.n >> 6 == w
        {
            self.probe = None;
        }
    }
}
