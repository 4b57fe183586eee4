//! Failover: forward one leg at a time.
//!
//! The active leg is the first listed that is alive. At the start the first leg is active and
//! is given `after` from the first packet heard on any leg to show up. When the active leg has
//! been silent for `after`, the route switches to the first listed leg that is alive (heard
//! within `after`), so at most `after` of the stream is lost. With `revert = DURATION`, a leg
//! listed before the active one takes over again once it has been alive without a break for
//! that long; with `revert = "never"` the route stays until the active leg fails in turn.
//! Decisions are taken per packet (a packet of a backup leg after the active one's silence
//! switches at once) and in [`Failover::poll`]; each switch is one [`Event::Switched`].

use std::time::{Duration, Instant};

use super::health::{Event, LegCounters, Liveness, OutputCounters};
use crate::table::Revert;

/// Switches remembered between two polls; more in that time are counted, not reported.
const PENDING: usize = 8;

/// The failover state of one route.
#[derive(Debug, Clone)]
pub struct Failover {
    after: Duration,
    revert: Revert,
    active: usize,
    /// The first packet heard on any leg.
    since: Option<Instant>,
    live: Liveness,
    legs: Box<[LegCounters]>,
    output: OutputCounters,
    pending: Vec<Event>,
}

impl Failover {
    pub fn new(legs: usize, after: Duration, revert: Revert) -> Failover {
        Failover {
            after,
            revert,
            active: 0,
            since: None,
            live: Liveness::new(legs, after),
            legs: vec![LegCounters::default(); legs].into(),
            output: OutputCounters::default(),
            pending: Vec::with_capacity(PENDING),
        }
    }

    /// Whether a packet received on `leg` at `now` goes out.
    #[inline]
    pub fn on_packet(&mut self, leg: usize, now: Instant) -> bool {
        self.live.on_packet(leg, now);
        self.legs[leg].packets += 1;
        self.since.get_or_insert(now);
        if leg != self.active {
            self.decide(now, Some(leg));
        }
        let forward = leg == self.active;
        if forward {
            self.legs[leg].forwarded += 1;
            self.output.forwarded += 1;
        }
        forward
    }

    /// Switches if due and reports UP/DOWN changes and switches once each.
    pub fn poll(&mut self, now: Instant, mut report: impl FnMut(Event)) {
        if self.since.is_some() {
            self.decide(now, None);
        }
        self.live.poll(now, &mut self.legs, &mut report);
        for e in self.pending.drain(..) {
            report(e);
        }
    }

    /// The leg forwarded now.
    pub fn active(&self) -> usize {
        self.active
    }

    pub fn leg(&self, leg: usize) -> LegCounters {
        self.legs[leg]
    }

    pub fn output(&self) -> OutputCounters {
        self.output
    }

    /// Whether `leg` is UP as last reported by [`Failover::poll`].
    pub fn leg_up(&self, leg: usize) -> bool {
        self.live.reported_up(leg)
    }

    /// `heard`: the leg a packet just came from, if any.
    fn decide(&mut self, now: Instant, heard: Option<usize>) {
        let Some(since) = self.since else { return };
        let active_failed = !self.live.alive(self.active, now)
            && now.saturating_duration_since(since) >= self.after;
        if active_failed {
            if let Some(to) =
                (0..self.legs.len()).find(|&i| i != self.active && self.live.alive(i, now))
            {
                self.switch(to);
            }
            return;
        }
        if let Revert::After(hold) = self.revert {
            let candidates = match heard {
                Some(leg) if leg < self.active => leg..leg + 1,
                Some(_) => return,
                None => 0..self.active,
            };
            for i in candidates {
                if self
                    .live
                    .alive_since(i, now)
                    .is_some_and(|t| now.saturating_duration_since(t) >= hold)
                {
                    self.switch(i);
                    return;
                }
            }
        }
    }

    fn switch(&mut self, to: usize) {
        let e = Event::Switched {
            from: self.active as u8,
            to: to as u8,
        };
        self.active = to;
        self.output.switches += 1;
        if self.pending.len() < PENDING {
            self.pending.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn events(f: &mut Failover, now: Instant) -> Vec<Event> {
        let mut v = Vec::new();
        f.poll(now, |e| v.push(e));
        v.retain(|e| matches!(e, Event::Switched { .. }));
        v
    }

    /// Two legs every millisecond; leg 0 dead from 100 ms to 1100 ms.
    fn run(revert: Revert) -> (Failover, Vec<(u64, usize)>, Vec<Event>) {
        let t0 = Instant::now();
        let mut f = Failover::new(2, Duration::from_millis(50), revert);
        let mut out = Vec::new();
        let mut ev = Vec::new();
        for t in 0..3000u64 {
            for leg in 0..2 {
                if leg == 0 && (100..1100).contains(&t) {
                    continue;
                }
                if f.on_packet(leg, ms(t0, t)) {
                    out.push((t, leg));
                }
            }
            ev.extend(events(&mut f, ms(t0, t)));
        }
        (f, out, ev)
    }

    #[test]
    fn switches_after_silence_and_loses_at_most_the_failover_time() {
        let (f, out, ev) = run(Revert::Never);
        // Exactly one packet per millisecond goes out except while leg 0 is silent and not yet
        // given up: its last packet was at 99 ms, so from 100 ms to 149 ms.
        let times: Vec<u64> = out.iter().map(|&(t, _)| t).collect();
        let missing: Vec<u64> = (0..3000).filter(|t| !times.contains(t)).collect();
        assert_eq!(missing, (100..149).collect::<Vec<_>>());
        assert_eq!(times.len(), out.len(), "one leg at a time");
        assert_eq!(ev, [Event::Switched { from: 0, to: 1 }]);
        assert_eq!(f.active(), 1, "never reverts");
        assert_eq!(f.output().switches, 1);
    }

    #[test]
    fn reverts_after_the_first_leg_is_healthy_long_enough() {
        let (f, out, ev) = run(Revert::After(Duration::from_millis(500)));
        assert_eq!(
            ev,
            [
                Event::Switched { from: 0, to: 1 },
                Event::Switched { from: 1, to: 0 }
            ]
        );
        assert_eq!(f.active(), 0);
        // Leg 0 is back at 1100 ms and is used again from 1600 ms, with nothing lost then.
        assert!(out.contains(&(1599, 1)) && out.contains(&(1600, 0)));
        assert_eq!(out.iter().filter(|&&(t, _)| t >= 149).count(), 3000 - 149);
    }

    #[test]
    fn at_start_the_first_leg_gets_the_failover_time_to_show_up() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, Duration::from_millis(50), Revert::Never);
        assert!(!f.on_packet(1, ms(t0, 0)));
        assert!(!f.on_packet(1, ms(t0, 49)));
        assert!(f.on_packet(1, ms(t0, 50)));
        assert_eq!(f.active(), 1);
        // Leg 0 arriving now does not take over without `revert`.
        assert!(!f.on_packet(0, ms(t0, 51)));
    }
}
