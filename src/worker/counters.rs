//! A worker's counters: plain integers owned by the worker thread, indexed by the current
//! table's ids for the hot path, and carried over a reload by route key and destination name so
//! that unchanged groups keep their counts.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use crate::rtp::RtpTracker;
use crate::stats::{DestinationSnapshot, DropReason, GroupSnapshot, WorkerSnapshot, WorkerState};
use crate::table::{IfaceId, RouteId, RouteKey, Table};

/// Counters of one destination of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestCounters {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
    pub drops: u64,
}

/// Counters of one route received by this worker.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCounters {
    pub key: RouteKey,
    pub label: String,
    pub packets: u64,
    pub bytes: u64,
    pub last_seen: Option<Instant>,
    /// `Some` for routes with `rtp = true`: the RFC 3550 sequence tracker (`crate::rtp`), fed
    /// by [`RouteCounters::observe_payload`].
    pub rtp: Option<RtpTracker>,
    /// In the order of the route's `destinations`.
    pub dests: Vec<DestCounters>,
}

impl RouteCounters {
    /// Called once per relayed datagram of this route, with its UDP payload.
    #[inline]
    pub fn observe_payload(&mut self, payload: &[u8], now: Instant) {
        self.packets += 1;
        self.bytes += payload.len() as u64;
        self.last_seen = Some(now);
        // RTP awareness (issue 5, control work): per packet, pure, no allocation.
        if let Some(rtp) = &mut self.rtp {
            rtp.observe(payload);
        }
    }
}

/// Everything a worker counts.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Indexed by `RouteId` of the current table; `None` for routes of other interfaces.
    pub routes: Vec<Option<RouteCounters>>,
    pub frames: u64,
    pub frame_bytes: u64,
    pub drops: [u64; DropReason::ALL.len()],
    pub kernel_packets: u64,
    pub kernel_drops: u64,
    pub ring_stalls: u64,
}

impl Counters {
    /// Re-indexes the route counters for `table`, whose routes on `iface` this worker receives:
    /// a route whose key existed before keeps its counts, and so does each destination of it
    /// whose name existed before. Counters of routes that went away are dropped.
    pub fn rekey(&mut self, table: &Table, iface: Option<IfaceId>) {
        let mut old: HashMap<RouteKey, RouteCounters> = self
            .routes
            .drain(..)
            .flatten()
            .map(|r| (r.key, r))
            .collect();
        self.routes = table
            .routes
            .iter()
            .map(|route| {
                if Some(route.key.interface) != iface {
                    return None;
                }
                let prev = old.remove(&route.key);
                let mut prev_dests: HashMap<String, DestCounters> = prev
                    .as_ref()
                    .map(|p| {
                        p.dests
                            .iter()
                            .map(|d| (d.name.clone(), d.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let dests = route
                    .destinations
                    .iter()
                    .map(|&d| {
                        let name = &table.destination(d).name;
                        prev_dests.remove(name).unwrap_or_else(|| DestCounters {
                            name: name.clone(),
                            ..DestCounters::default()
                        })
                    })
                    .collect();
                let (packets, bytes, last_seen, rtp) = match prev {
                    Some(p) => (p.packets, p.bytes, p.last_seen, p.rtp),
                    None => (0, 0, None, None),
                };
                Some(RouteCounters {
                    key: route.key,
                    label: route.label.clone(),
                    packets,
                    bytes,
                    last_seen,
                    rtp: if route.rtp {
                        Some(rtp.unwrap_or_default())
                    } else {
                        None
                    },
                    dests,
                })
            })
            .collect();
    }

    #[inline]
    pub fn route_mut(&mut self, id: RouteId) -> Option<&mut RouteCounters> {
        self.routes.get_mut(id.0 as usize)?.as_mut()
    }

    #[inline]
    pub fn drop_frame(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// A snapshot for publication. `now`/`now_wall` convert `last_seen` to wall-clock time.
    #[allow(clippy::too_many_arguments)]
    pub fn snapshot(
        &self,
        interface: &str,
        index: u16,
        state: WorkerState,
        generation: u64,
        now: Instant,
        now_wall: SystemTime,
        error: Option<String>,
    ) -> WorkerSnapshot {
        let groups = self
            .routes
            .iter()
            .flatten()
            .map(|r| GroupSnapshot {
                label: r.label.clone(),
                interface: interface.to_string(),
                group: r.key.group,
                port: r.key.port,
                source: r.key.source,
                packets: r.packets,
                bytes: r.bytes,
                last_seen: r
                    .last_seen
                    .map(|t| now_wall - now.saturating_duration_since(t)),
                rtp: r.rtp.as_ref().map(RtpTracker::counters),
                destinations: r
                    .dests
                    .iter()
                    .map(|d| DestinationSnapshot {
                        name: d.name.clone(),
                        packets: d.packets,
                        bytes: d.bytes,
                        errors: d.errors,
                        drops: d.drops,
                    })
                    .collect(),
            })
            .collect();
        WorkerSnapshot {
            interface: interface.to_string(),
            index,
            state,
            generation,
            at: now_wall,
            frames: self.frames,
            frame_bytes: self.frame_bytes,
            drops: self.drops.to_vec(),
            kernel_packets: self.kernel_packets,
            kernel_drops: self.kernel_drops,
            ring_stalls: self.ring_stalls,
            groups,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{
        DaemonSettings, DestId, DestKind, Destination, IngressMode, Interface, Route,
    };
    use std::net::IpAddr;

    fn iface(name: &str) -> Interface {
        Interface {
            name: name.into(),
            ifindex: Some(1),
            ttl: 1,
            ingress: IngressMode::Recv,
            workers: 1,
            cpus: vec![],
            rcvbuf: 1 << 20,
        }
    }

    fn dest(name: &str) -> Destination {
        Destination {
            name: name.into(),
            kind: DestKind::Unicast {
                address: "192.0.2.1:5000".parse().unwrap(),
            },
            ttl: 64,
            dscp: 0,
        }
    }

    fn route(group: &str, dests: &[u32]) -> Route {
        let g: IpAddr = group.parse().unwrap();
        Route {
            key: RouteKey {
                interface: IfaceId(0),
                group: g,
                port: Some(5000),
                source: None,
            },
            label: group.into(),
            destinations: dests.iter().map(|&d| DestId(d)).collect(),
            rtp: false,
        }
    }

    fn table(routes: Vec<Route>, dests: Vec<Destination>) -> Table {
        Table::new(
            DaemonSettings::default(),
            vec![iface("in0"), iface("in1")],
            dests,
            routes,
        )
    }

    #[test]
    fn reload_keeps_counters_of_unchanged_routes_and_destinations() {
        let t1 = table(
            vec![route("239.1.1.1", &[0, 1]), route("239.1.1.2", &[1])],
            vec![dest("a"), dest("b")],
        );
        let mut c = Counters::default();
        c.rekey(&t1, Some(IfaceId(0)));
        let now = Instant::now();
        for _ in 0..3 {
            let r = c.route_mut(RouteId(0)).unwrap();
            r.observe_payload(&[0; 10], now);
            r.dests[0].packets += 1;
            r.dests[1].packets += 1;
        }
        c.route_mut(RouteId(1))
            .unwrap()
            .observe_payload(&[0; 5], now);

        // Reorder: the old second route is removed, a new one comes first, and the first
        // route loses destination "a" and gains "c".
        let t2 = table(
            vec![route("239.9.9.9", &[0]), route("239.1.1.1", &[1, 2])],
            vec![dest("c"), dest("b"), dest("c2")],
        );
        c.rekey(&t2, Some(IfaceId(0)));
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].as_ref().unwrap().packets, 0);
        let kept = c.routes[1].as_ref().unwrap();
        assert_eq!((kept.packets, kept.bytes), (3, 30));
        assert_eq!(kept.dests[0].name, "b");
        assert_eq!(kept.dests[0].packets, 3);
        assert_eq!(kept.dests[1].name, "c2");
        assert_eq!(kept.dests[1].packets, 0);
    }

    /// RTP routes feed the tracker per packet; its counters reach the snapshot and survive a
    /// reload that keeps the route (control work, issue 5).
    #[test]
    fn rtp_routes_track_sequence_numbers_across_reloads() {
        let mut r = route("239.1.1.1", &[0]);
        r.rtp = true;
        let t = table(vec![r.clone(), route("239.1.1.2", &[0])], vec![dest("a")]);
        let mut c = Counters::default();
        c.rekey(&t, Some(IfaceId(0)));
        let now = Instant::now();
        let rtp = |seq: u16| {
            let mut p = [0u8; 20];
            p[0] = 0x80;
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p
        };
        for seq in [1, 2, 4, 3, 3] {
            c.route_mut(RouteId(0))
                .unwrap()
                .observe_payload(&rtp(seq), now);
        }
        assert!(c.route_mut(RouteId(1)).unwrap().rtp.is_none());
        c.rekey(&table(vec![r], vec![dest("a")]), Some(IfaceId(0)));
        c.route_mut(RouteId(0))
            .unwrap()
            .observe_payload(&rtp(7), now);
        let s = c.snapshot(
            "in0",
            0,
            WorkerState::Running,
            2,
            now,
            SystemTime::now(),
            None,
        );
        let got = s.groups[0].rtp.unwrap();
        assert_eq!(
            (
                got.packets,
                got.gaps,
                got.lost,
                got.reordered,
                got.duplicates
            ),
            (6, 2, 2, 1, 1)
        );
    }

    #[test]
    fn routes_of_other_interfaces_are_not_counted_here() {
        let mut r = route("239.1.1.1", &[0]);
        r.key.interface = IfaceId(1);
        let t = table(vec![r], vec![dest("a")]);
        let mut c = Counters::default();
        c.rekey(&t, Some(IfaceId(0)));
        assert!(c.route_mut(RouteId(0)).is_none());
        let s = c.snapshot(
            "in0",
            0,
            WorkerState::Running,
            1,
            Instant::now(),
            SystemTime::now(),
            None,
        );
        assert!(s.groups.is_empty());
        assert_eq!(s.drops.len(), DropReason::ALL.len());
    }
}
