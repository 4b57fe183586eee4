//! The routes with legs a worker receives: one [`redundancy::Route`] state each, owned by the
//! worker thread that receives every leg of the route (the daemon puts interfaces linked by
//! legs into one worker), so the merge needs no lock and no queue.
//!
//! Per packet, [`Redundant::get_mut`] finds the route's state by `RouteId` (one index, no
//! allocation); the worker asks it whether the packet goes out. On the worker's timer,
//! [`Redundant::poll`] settles what is due and logs each UP/DOWN and switch once. A reload
//! keeps the state of a route whose legs (by interface *name*, group, port and source) and mode
//! are unchanged, whatever its new `RouteId`, destinations, name or `rtp`; every other route
//! with legs starts afresh (see docs/REDUNDANCY.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::redundancy::{self, Event};
use crate::stats::{LegSnapshot, RedundantSnapshot};
use crate::table::{IfaceId, RedundancyMode, RouteId, Table};

/// What identifies a route with legs across tables: each leg as (interface name, group, port,
/// source), and the mode.
type StateKey = (
    Vec<(Arc<str>, IpAddr, Option<u16>, Option<IpAddr>)>,
    RedundancyMode,
);

/// The state of one route with legs.
pub struct RouteState {
    key: StateKey,
    label: Arc<str>,
    /// The first leg's group and port: where a destination that keeps the ingress group or
    /// port sends, so that the route leaves as one stream whichever leg a packet came by.
    pub group: IpAddr,
    pub port: Option<u16>,
    pub state: redundancy::Route,
}

impl RouteState {
    /// Whether a packet of this route received on leg `leg` goes out.
    #[inline]
    pub fn forward(&mut self, leg: u8, payload: &[u8], now: Instant) -> bool {
        self.state.forward(usize::from(leg), payload, now)
    }

    fn snapshot(&self) -> RedundantSnapshot {
        let (mode, active) = match &self.state {
            redundancy::Route::Merge(_) => ("merge", None),
            redundancy::Route::Failover(f) => ("failover", Some(f.active() as u8)),
        };
        let legs = self
            .key
            .0
            .iter()
            .enumerate()
            .map(|(i, (iface, group, port, source))| {
                let (up, counters) = match &self.state {
                    redundancy::Route::Merge(m) => (m.leg_up(i), m.leg(i)),
                    redundancy::Route::Failover(f) => (f.leg_up(i), f.leg(i)),
                };
                LegSnapshot {
                    interface: iface.clone(),
                    group: *group,
                    port: *port,
                    source: *source,
                    up,
                    counters,
                }
            })
            .collect();
        let output = match &self.state {
            redundancy::Route::Merge(m) => m.output(),
            redundancy::Route::Failover(f) => f.output(),
        };
        RedundantSnapshot {
            label: self.label.clone(),
            mode,
            active,
            legs,
            output,
        }
    }
}

/// The routes with legs of one worker, indexed by the current table's `RouteId`.
#[derive(Default)]
pub struct Redundant {
    routes: Vec<Option<Box<RouteState>>>,
    /// What the last snapshot carried while there are no routes with legs (shared, so that a
    /// worker without them allocates nothing to publish).
    empty: Option<Arc<[RedundantSnapshot]>>,
}

impl Redundant {
    /// Re-indexes the states for `table`, whose routes on `ifaces` (by their first leg) this
    /// worker receives. Unchanged routes keep their state (see the module documentation).
    pub fn rekey(&mut self, table: &Table, ifaces: &[IfaceId]) {
        let mut old: HashMap<StateKey, Box<RouteState>> = self
            .routes
            .drain(..)
            .flatten()
            .map(|s| (s.key.clone(), s))
            .collect();
        let mut routes: Vec<Option<Box<RouteState>>> = Vec::new();
        for (id, r) in table.redundant_routes() {
            if !ifaces.contains(&r.legs[0].interface) {
                continue;
            }
            let key: StateKey = (
                r.legs
                    .iter()
                    .map(|k| {
                        (
                            Arc::from(table.interface(k.interface).name.as_str()),
                            k.group,
                            k.port,
                            k.source,
                        )
                    })
                    .collect(),
                r.mode,
            );
            let label: Arc<str> = Arc::from(table.route(id).label.as_str());
            let state = match old.remove(&key) {
                Some(mut s) => {
                    s.label = label;
                    s
                }
                None => Box::new(RouteState {
                    label,
                    group: r.legs[0].group,
                    port: r.legs[0].port,
                    state: redundancy::Route::new(r, table.daemon.silence_timeout),
                    key,
                }),
            };
            let i = id.0 as usize;
            if routes.len() <= i {
                routes.resize_with(i + 1, || None);
            }
            routes[i] = Some(state);
        }
        self.routes = routes;
    }

    /// The state of route `id`, if it has legs and this worker receives it.
    #[inline]
    pub fn get_mut(&mut self, id: RouteId) -> Option<&mut RouteState> {
        self.routes.get_mut(id.0 as usize)?.as_deref_mut()
    }

    /// Settles what is due at `now` and logs each state change once: a leg UP or DOWN, a
    /// failover switch.
    pub fn poll(&mut self, now: Instant) {
        for s in self.routes.iter_mut().flatten() {
            let RouteState {
                key, label, state, ..
            } = &mut **s;
            state.poll(now, |e| log_event(label, key, e));
        }
    }

    /// Every route's health, in table order.
    pub fn snapshot(&mut self) -> Arc<[RedundantSnapshot]> {
        if self.routes.iter().all(Option::is_none) {
            return self
                .empty
                .get_or_insert_with(|| Arc::from(Vec::new()))
                .clone();
        }
        self.routes.iter().flatten().map(|s| s.snapshot()).collect()
    }
}

fn log_event(label: &str, key: &StateKey, e: Event) {
    match e {
        Event::LegUp { leg } => {
            tracing::info!(route = %label, leg = %leg_name(key, leg), "redundant leg UP");
        }
        Event::LegDown { leg } => {
            tracing::warn!(route = %label, leg = %leg_name(key, leg), "redundant leg DOWN");
        }
        Event::Switched { from, to } => {
            tracing::warn!(
                route = %label,
                leg = %leg_name(key, to),
                from = %leg_name(key, from),
                "failover: switched to leg"
            );
        }
    }
}

/// A leg as the logs name it: `eth1 239.1.1.1:5004 from 10.0.0.1`.
fn leg_name(key: &StateKey, leg: u8) -> String {
    match key.0.get(usize::from(leg)) {
        Some((iface, group, port, source)) => {
            let mut s = match (group, port) {
                (g, None) => format!("{iface} {g}"),
                (IpAddr::V4(g), Some(p)) => format!("{iface} {g}:{p}"),
                (IpAddr::V6(g), Some(p)) => format!("{iface} [{g}]:{p}"),
            };
            if let Some(src) = source {
                s.push_str(&format!(" from {src}"));
            }
            s
        }
        None => format!("leg {leg}"),
    }
}
