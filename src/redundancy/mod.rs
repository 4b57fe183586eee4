//! Redundant inputs: one route fed by several legs carrying the same stream (SMPTE ST 2022-7's
//! "red" and "blue" networks, a market-data feed's A and B lines).
//!
//! Pure and allocation-free per packet, with `now` passed in as an [`std::time::Instant`]:
//!
//! * [`seq`]: reading a packet's sequence number (`sequence = "rtp"` or a payload field) and
//!   extending it to 64 bits;
//! * [`merge`]: hitless merge, the first copy of each number goes out (`redundancy = "merge"`);
//! * [`failover`]: one leg at a time, switching after silence (`redundancy = "failover"`);
//! * [`health`]: per-leg and output counters, UP/DOWN events.
//!
//! The worker that owns every leg of a route owns its [`Route`] state: no lock, no queue.
//! docs/REDUNDANCY.md says how the worker drives it.

pub mod failover;
pub mod health;
pub mod merge;
pub mod seq;

use std::time::{Duration, Instant};

pub use failover::Failover;
pub use health::{Event, LegCounters, OutputCounters};
pub use merge::{Merge, Verdict};
pub use seq::{NoKey, SeqKey};

use crate::table::{Redundancy, RedundancyMode, RouteId, Table};

/// The state of one route with legs, built from its [`Redundancy`] settings.
#[derive(Debug, Clone)]
pub enum Route {
    Merge(Merge),
    Failover(Failover),
}

impl Route {
    /// Fresh state for `r`; in a merge, a leg silent for `down_after` is reported DOWN.
    pub fn new(r: &Redundancy, down_after: Duration) -> Route {
        match r.mode {
            RedundancyMode::Merge { window, sequence } => {
                Route::Merge(Merge::new(sequence, r.legs.len(), window, down_after))
            }
            RedundancyMode::Failover { after, revert } => {
                Route::Failover(Failover::new(r.legs.len(), after, revert))
            }
        }
    }

    /// Whether the packet `payload`, received on `leg` at `now`, goes out.
    #[inline]
    pub fn forward(&mut self, leg: usize, payload: &[u8], now: Instant) -> bool {
        match self {
            Route::Merge(m) => m.on_packet(leg, payload, now).forward(),
            Route::Failover(f) => f.on_packet(leg, now),
        }
    }

    /// Settles what is due and reports state changes once each.
    pub fn poll(&mut self, now: Instant, report: impl FnMut(Event)) {
        match self {
            Route::Merge(m) => m.poll(now, report),
            Route::Failover(f) => f.poll(now, report),
        }
    }
}

/// The routes with legs whose state carries over from `old` to `new` on a reload: same legs
/// and same mode (destinations, name and `rtp` may change; the state is about the inputs).
/// Each pair is (route in `old`, route in `new`); every other route of `new` starts afresh.
pub fn carry_over(old: &Table, new: &Table) -> Vec<(RouteId, RouteId)> {
    let by_first_leg: std::collections::HashMap<_, _> = old
        .redundant_routes()
        .map(|(id, r)| (r.legs[0], (id, r)))
        .collect();
    new.redundant_routes()
        .filter_map(|(id, r)| {
            let &(old_id, old_r) = by_first_leg.get(&r.legs[0])?;
            (old_r == r).then_some((old_id, id))
        })
        .collect()
}

#[cfg(test)]
mod tests;
