//! Per-leg and merged-output counters, and each leg's UP/DOWN state.
//!
//! Counters are plain integers owned by the one worker that owns the route. State changes are
//! [`Event`]s that the caller drains with `poll` and logs once each.

use std::time::{Duration, Instant};

use super::seq::NoKey;

/// Counters of one leg of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounters {
    /// Packets received on this leg (with or without a key).
    pub packets: u64,
    /// Packets of this leg that were forwarded (the first copy of their number).
    pub forwarded: u64,
    /// Numbers that only this leg delivered (counted when their number is settled).
    pub unique: u64,
    /// Copies of a number another leg (or this one) had already delivered: dropped.
    pub duplicates: u64,
    /// Copies that came after their number was settled (later than the window): dropped.
    pub late: u64,
    /// Numbers of the merged stream that this leg never delivered (counted when settled).
    pub missing: u64,
    /// Packets without a valid sequence key, by [`NoKey`] (in the order of `NoKey::ALL`).
    pub no_key: [u64; 2],
    /// How far behind the leg that delivered a sampled number first this leg was, last sample
    /// (zero when this leg was first); `None` before the first sample.
    pub behind: Option<Duration>,
    /// Highest sequence number this leg delivered minus the merged stream's highest, in
    /// numbers (zero or negative: how many numbers this leg lags).
    pub lead: i64,
    /// Times this leg went DOWN.
    pub downs: u64,
}

impl LegCounters {
    pub fn no_key(&self, reason: NoKey) -> u64 {
        self.no_key[reason as usize]
    }
}

/// Counters of a route's merged output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounters {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Numbers no leg delivered within the window (settled holes).
    pub lost: u64,
    /// Copies dropped because their number had been forwarded.
    pub duplicates: u64,
    /// Packets forwarded after a higher number (a hole filled late): the output's reordering.
    pub reordered: u64,
    /// Packets dropped because they came after their number was settled.
    pub late: u64,
    /// Packets dropped as an unconfirmed jump (a number far from the stream's).
    pub jumps: u64,
    /// Times the stream started afresh (a confirmed jump, a new SSRC, or after silence).
    pub restarts: u64,
    /// Packets dropped for having no sequence key.
    pub no_key: u64,
    /// Failover only: switches from one leg to another.
    pub switches: u64,
}

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The leg delivers packets again (or for the first time).
    LegUp { leg: u8 },
    /// The leg has been silent for the route's down time.
    LegDown { leg: u8 },
    /// Failover: the route now forwards `to` instead of `from`.
    Switched { from: u8, to: u8 },
}

/// Each leg's last packet and UP/DOWN state, with the changes not yet reported.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    down_after: Duration,
    legs: Vec<LegLife>,
}

#[derive(Debug, Clone, Copy, Default)]
struct LegLife {
    last: Option<Instant>,
    /// Since when the leg has delivered without a silence of `down_after`.
    alive_since: Option<Instant>,
    /// UP as last reported.
    reported_up: bool,
    /// Came back from a silence since the last report (which may itself have gone unseen).
    dirty: bool,
}

impl Liveness {
    pub(crate) fn new(legs: usize, down_after: Duration) -> Liveness {
        Liveness {
            down_after,
            legs: vec![LegLife::default(); legs],
        }
    }

    /// Records a packet on `leg`.
    #[inline]
    pub(crate) fn on_packet(&mut self, leg: usize, now: Instant) {
        let l = &mut self.legs[leg];
        let silent = l
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.down_after);
        if silent {
            l.alive_since = Some(now);
            l.dirty = true;
        }
        l.last = Some(now);
    }

    /// Whether `leg` delivered within `down_after` before `now`.
    #[inline]
    pub(crate) fn alive(&self, leg: usize, now: Instant) -> bool {
        self.legs[leg]
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.down_after)
    }

    /// Since when `leg` has been alive without a break, if it is alive.
    pub(crate) fn alive_since(&self, leg: usize, now: Instant) -> Option<Instant> {
        if self.alive(leg, now) {
            self.legs[leg].alive_since
        } else {
            None
        }
    }

    /// Reports each leg whose UP/DOWN state differs from what was last reported.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        counters: &mut [LegCounters],
        mut report: impl FnMut(Event),
    ) {
        let down_after = self.down_after;
        for (i, (l, c)) in self.legs.iter_mut().zip(counters.iter_mut()).enumerate() {
            let up = l
                .last
                .is_some_and(|t| now.saturating_duration_since(t) < down_after);
            let leg = i as u8;
            if l.dirty && l.reported_up {
                // Down and back up between two polls: still one line each.
                c.downs += 1;
                report(Event::LegDown { leg });
                l.reported_up = false;
            }
            if up != l.reported_up {
                if up {
                    report(Event::LegUp { leg });
                } else {
                    c.downs += 1;
                    report(Event::LegDown { leg });
                }
                l.reported_up = up;
            }
            l.dirty = false;
        }
    }

    /// The UP/DOWN state as last reported.
    pub(crate) fn reported_up(&self, leg: usize) -> bool {
        self.legs[leg].reported_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_reported_once() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut l = Liveness::new(2, Duration::from_millis(100));
        let mut c = [LegCounters::default(); 2];
        let mut events = Vec::new();
        l.poll(ms(0), &mut c, |e| events.push(e));
        assert!(events.is_empty(), "nothing heard yet: nothing to report");
        l.on_packet(0, ms(1));
        l.on_packet(0, ms(2));
        l.poll(ms(3), &mut c, |e| events.push(e));
        l.poll(ms(4), &mut c, |e| events.push(e));
        assert_eq!(events, [Event::LegUp { leg: 0 }]);
        events.clear();
        l.poll(ms(150), &mut c, |e| events.push(e));
        l.poll(ms(160), &mut c, |e| events.push(e));
        assert_eq!(events, [Event::LegDown { leg: 0 }]);
        assert_eq!(c[0].downs, 1);
        assert!(!l.reported_up(0));
        events.clear();
        l.on_packet(0, ms(200));
        assert_eq!(l.alive_since(0, ms(250)), Some(ms(200)));
        l.poll(ms(201), &mut c, |e| events.push(e));
        assert_eq!(events, [Event::LegUp { leg: 0 }]);
        events.clear();
        // Silent for longer than the down time between two polls: DOWN and UP, once each.
        l.on_packet(0, ms(400));
        l.poll(ms(401), &mut c, |e| events.push(e));
        l.poll(ms(402), &mut c, |e| events.push(e));
        assert_eq!(events, [Event::LegDown { leg: 0 }, Event::LegUp { leg: 0 }]);
        assert_eq!(c[0].downs, 2);
    }
}
