//! A worker's counters: plain integers owned by the worker thread, indexed by the current
//! table's ids for the hot path, and carried over a reload by route key and destination name so
//! that unchanged groups keep their counts.
//!
//! Publication costs what changed, not the table's size: [`Counters::route_mut`] (the only way
//! the hot path reaches a route's counters) records the route as touched, once, in a list
//! reserved at [`Counters::rekey`] (so recording never allocates); [`Counters::snapshot`]
//! rebuilds the snapshot of the touched routes only and shares every other route's previous
//! `Arc<GroupSnapshot>`, and the whole previous list when nothing was touched. Names are
//! `Arc<str>`, shared by the counters and every snapshot. At 10 000 groups × 100 destinations
//! an idle publication is a few small allocations instead of a million entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::mpegts::{ContinuityChecker, ts_packets};
use crate::rtp::{Jitter, RtpTracker};
use crate::stats::{DestinationSnapshot, DropReason, GroupSnapshot, WorkerSnapshot, WorkerState};
use crate::table::{IfaceId, RouteId, RouteKey, Table};

/// Counters of one destination of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestCounters {
    pub name: Arc<str>,
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
    pub drops: u64,
}

impl DestCounters {
    fn new(name: Arc<str>) -> DestCounters {
        DestCounters {
            name,
            packets: 0,
            bytes: 0,
            errors: 0,
            drops: 0,
        }
    }
}

/// Counters of one route received by this worker.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCounters {
    /// The name of the route's ingress interface (a worker may receive on several).
    pub ifname: Arc<str>,
    pub key: RouteKey,
    pub label: Arc<str>,
    pub packets: u64,
    pub bytes: u64,
    pub last_seen: Option<Instant>,
    /// `Some` for routes with `rtp = true`: the RFC 3550 sequence tracker (`crate::rtp`), fed
    /// by [`RouteCounters::observe_payload`].
    pub rtp: Option<RtpTracker>,
    /// `Some` for routes with `rtp = true`: RFC 3550 interarrival jitter, at the 90 kHz clock
    /// of video (there is no key for the clock rate).
    pub jitter: Option<Jitter>,
    /// MPEG-TS continuity counters per PID, from the first payload that is MPEG-TS (raw or in
    /// RTP): allocated once per route that carries TS, never per packet.
    pub ts: Option<Box<ContinuityChecker>>,
    /// In the order of the route's `destinations`.
    pub dests: Vec<DestCounters>,
    /// Reached through [`Counters::route_mut`] since the last snapshot (so listed in
    /// `Counters::touched`): its published part is stale.
    touched: bool,
    /// What the last snapshot carried for this route; `None` when it must be rebuilt.
    published: Option<Arc<GroupSnapshot>>,
    /// Position among this worker's routes, i.e. in [`WorkerSnapshot::groups`].
    slot: u32,
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
        if let Some(j) = &mut self.jitter {
            j.observe(payload, now);
        }
        match &mut self.ts {
            Some(ts) => {
                ts.observe(payload);
            }
            None if ts_packets(payload).is_some() => {
                let mut ts = Box::new(ContinuityChecker::new());
                ts.observe(payload);
                self.ts = Some(ts);
            }
            None => {}
        }
    }

    /// This route's part of a snapshot, built from its counters.
    fn group_snapshot(&self, now: Instant, now_wall: SystemTime) -> GroupSnapshot {
        GroupSnapshot {
            label: self.label.clone(),
            interface: self.ifname.clone(),
            group: self.key.group,
            port: self.key.port,
            source: self.key.source,
            packets: self.packets,
            bytes: self.bytes,
            last_seen: self
                .last_seen
                .map(|t| now_wall - now.saturating_duration_since(t)),
            rtp: self.rtp.as_ref().map(RtpTracker::counters),
            jitter: self.jitter.as_ref().map(Jitter::duration),
            ts: self.ts.as_ref().map(|t| t.counters()),
            destinations: self
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
        }
    }
}

/// What identifies a route across tables: (interface name, group, port, source).
type RouteName = (Arc<str>, IpAddr, Option<u16>, Option<IpAddr>);

/// Everything a worker counts.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Indexed by `RouteId` of the current table; `None` for routes of other interfaces.
    /// Private: every update goes through [`Counters::route_mut`], which is what records a
    /// route as changed for the next snapshot.
    routes: Vec<Option<RouteCounters>>,
    pub frames: u64,
    pub frame_bytes: u64,
    pub drops: [u64; DropReason::ALL.len()],
    pub kernel_packets: u64,
    pub kernel_drops: u64,
    /// Ids of the routes touched since the last snapshot, each once. Its capacity is the
    /// number of routes, so that recording a route never allocates.
    touched: Vec<u32>,
    /// The groups of the last snapshot; `None` after a re-key (the list is rebuilt, sharing
    /// every route's part that is still valid).
    published: Option<Arc<[Arc<GroupSnapshot>]>>,
}

impl Counters {
    /// Re-indexes the route counters for `table`, whose routes on `ifaces` this worker
    /// receives: a route whose key existed before keeps its counts, and so does each
    /// destination of it whose name existed before. Counters of routes that went away are
    /// dropped. A route whose label, destinations and RTP setting are unchanged keeps its
    /// published snapshot.
    pub fn rekey(&mut self, table: &Table, ifaces: &[IfaceId]) {
        // Interfaces keep their names when a reload renumbers them, so (interface name,
        // group, port, source) identifies a route across tables.
        let mut old: HashMap<RouteName, RouteCounters> = self
            .routes
            .drain(..)
            .flatten()
            .map(|r| ((r.ifname.clone(), r.key.group, r.key.port, r.key.source), r))
            .collect();
        // One name per destination of the table, shared by every route sending to it.
        let names: Vec<Arc<str>> = table
            .destinations
            .iter()
            .map(|d| Arc::from(d.name.as_str()))
            .collect();
        let mut slot = 0u32;
        self.routes = table
            .routes
            .iter()
            .map(|route| {
                if !ifaces.contains(&route.key.interface) {
                    return None;
                }
                let ifname = &table.interface(route.key.interface).name;
                let mut rc = match old.remove(&(
                    Arc::from(ifname.as_str()),
                    route.key.group,
                    route.key.port,
                    route.key.source,
                )) {
                    Some(prev) => prev,
                    None => RouteCounters {
                        ifname: Arc::from(ifname.as_str()),
                        key: route.key,
                        label: Arc::from(route.label.as_str()),
                        packets: 0,
                        bytes: 0,
                        last_seen: None,
                        rtp: None,
                        jitter: None,
                        ts: None,
                        dests: Vec::new(),
                        touched: false,
                        published: None,
                        slot: 0,
                    },
                };
                rc.key = route.key;
                if rc.touched {
                    rc.touched = false;
                    rc.published = None;
                }
                if *rc.label != *route.label {
                    rc.label = Arc::from(route.label.as_str());
                    rc.published = None;
                }
                if route.rtp != rc.rtp.is_some() {
                    rc.rtp = route.rtp.then(RtpTracker::default);
                    rc.jitter = route.rtp.then(|| Jitter::new(90_000));
                    rc.published = None;
                }
                let same_dests = rc.dests.len() == route.destinations.len()
                    && rc
                        .dests
                        .iter()
                        .zip(&route.destinations)
                        .all(|(c, &d)| *c.name == *table.destination(d).name);
                if !same_dests {
                    let mut prev: HashMap<Arc<str>, DestCounters> =
                        rc.dests.drain(..).map(|d| (d.name.clone(), d)).collect();
                    rc.dests = route
                        .destinations
                        .iter()
                        .map(|&d| {
                            prev.remove(table.destination(d).name.as_str())
                                .unwrap_or_else(|| DestCounters::new(names[d.0 as usize].clone()))
                        })
                        .collect();
                    rc.published = None;
                }
                rc.slot = slot;
                slot += 1;
                Some(rc)
            })
            .collect();
        self.touched.clear();
        self.touched.reserve(slot as usize);
        self.published = None;
    }

    /// The counters of route `id`, to be updated: the route is recorded as touched, so its
    /// part of the next snapshot is rebuilt. No allocation (see `touched`).
    #[inline]
    pub fn route_mut(&mut self, id: RouteId) -> Option<&mut RouteCounters> {
        let r = self.routes.get_mut(id.0 as usize)?.as_mut()?;
        if !r.touched {
            r.touched = true;
            self.touched.push(id.0);
        }
        Some(r)
    }

    /// Counts what happened to one datagram of route `route` sent to its destination at
    /// `dest_pos` (`len` payload bytes); `None` counts it as an error (no socket). Returns
    /// whether it was sent.
    #[inline]
    pub fn count_send(
        &mut self,
        route: u32,
        dest_pos: u16,
        len: u16,
        outcome: Option<&crate::sys::egress::Outcome>,
    ) -> bool {
        use crate::sys::egress::Outcome;
        let Some(d) = self
            .route_mut(RouteId(route))
            .and_then(|r| r.dests.get_mut(usize::from(dest_pos)))
        else {
            return false;
        };
        match outcome {
            Some(Outcome::Sent) => {
                d.packets += 1;
                d.bytes += u64::from(len);
                return true;
            }
            Some(Outcome::Dropped) => d.drops += 1,
            Some(Outcome::Error(_)) | None => d.errors += 1,
        }
        false
    }

    #[inline]
    pub fn drop_frame(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// A snapshot for publication. `now`/`now_wall` convert `last_seen` to wall-clock time.
    /// Only the routes touched since the previous snapshot are rebuilt; the others are shared
    /// with it.
    #[allow(clippy::too_many_arguments)]
    pub fn snapshot(
        &mut self,
        interface: &str,
        index: u16,
        state: WorkerState,
        generation: u64,
        now: Instant,
        now_wall: SystemTime,
        error: Option<String>,
    ) -> WorkerSnapshot {
        let groups = match &self.published {
            Some(list) if self.touched.is_empty() => list.clone(),
            Some(list) => {
                let mut groups = list.to_vec();
                for id in self.touched.drain(..) {
                    let Some(r) = self.routes.get_mut(id as usize).and_then(Option::as_mut) else {
                        continue;
                    };
                    r.touched = false;
                    let g = Arc::new(r.group_snapshot(now, now_wall));
                    groups[r.slot as usize] = g.clone();
                    r.published = Some(g);
                }
                Arc::from(groups)
            }
            None => {
                for id in self.touched.drain(..) {
                    if let Some(r) = self.routes.get_mut(id as usize).and_then(Option::as_mut) {
                        r.touched = false;
                        r.published = None;
                    }
                }
                self.routes
                    .iter_mut()
                    .flatten()
                    .map(|r| match &r.published {
                        Some(g) => g.clone(),
                        None => {
                            let g = Arc::new(r.group_snapshot(now, now_wall));
                            r.published = Some(g.clone());
                            g
                        }
                    })
                    .collect()
            }
        };
        self.published = Some(groups.clone());
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
            groups,
            error,
            tunnels: Vec::new(),
            listen_suppressed: Vec::new(),
            redundant: Arc::from(Vec::new()),
        }
    }

    /// Drops every published part, so that the next snapshot is built from scratch.
    #[cfg(test)]
    fn forget_published(&mut self) {
        self.published = None;
        for r in self.routes.iter_mut().flatten() {
            r.published = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{DaemonSettings, DestId, DestKind, Destination, Route};
    use std::net::IpAddr;

    use crate::testkit::interface as iface;

    fn dest(name: &str) -> Destination {
        Destination {
            name: name.into(),
            kind: DestKind::Unicast {
                address: "192.0.2.1:5000".parse().unwrap(),
            },
            ttl: 64,
            dscp: 0,
            source_port: None,
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
        c.rekey(&t1, &[IfaceId(0)]);
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
        c.rekey(&t2, &[IfaceId(0)]);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].as_ref().unwrap().packets, 0);
        let kept = c.routes[1].as_ref().unwrap();
        assert_eq!((kept.packets, kept.bytes), (3, 30));
        assert_eq!(&*kept.dests[0].name, "b");
        assert_eq!(kept.dests[0].packets, 3);
        assert_eq!(&*kept.dests[1].name, "c2");
        assert_eq!(kept.dests[1].packets, 0);
    }

    /// An RTP route carrying MPEG-TS gets a jitter estimate and continuity counters; a route
    /// without `rtp` whose payload is raw TS gets the counters only; other payloads neither.
    #[test]
    fn rtp_jitter_and_ts_continuity_reach_the_snapshot() {
        let mut r = route("239.1.1.1", &[0]);
        r.rtp = true;
        let t = table(
            vec![r, route("239.1.1.2", &[0]), route("239.1.1.3", &[0])],
            vec![dest("a")],
        );
        let mut c = Counters::default();
        c.rekey(&t, &[IfaceId(0)]);
        // Seven TS packets of PID 0x100, counters from `cc`, payload only.
        let ts = |cc: u8| {
            let mut p = vec![0u8; 7 * 188];
            for (i, pkt) in p.chunks_mut(188).enumerate() {
                pkt[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10 | ((cc + i as u8) & 0x0f)]);
            }
            p
        };
        let rtp = |seq: u16, stamp: u32, body: &[u8]| {
            let mut p = vec![0x80, 33];
            p.extend(seq.to_be_bytes());
            p.extend(stamp.to_be_bytes());
            p.extend(7u32.to_be_bytes());
            p.extend(body);
            p
        };
        let t0 = Instant::now();
        // 1 ms apart in arrival, 90 ticks apart in timestamps except the third (2 ms late).
        for (k, (arrival_ms, cc)) in [(0u64, 0u8), (1, 7), (4, 14), (4, 9)].iter().enumerate() {
            let now = t0 + std::time::Duration::from_millis(*arrival_ms);
            let p = rtp(k as u16, 90 * k as u32, &ts(*cc));
            c.route_mut(RouteId(0)).unwrap().observe_payload(&p, now);
            c.route_mut(RouteId(1))
                .unwrap()
                .observe_payload(&ts(*cc), now);
            c.route_mut(RouteId(2))
                .unwrap()
                .observe_payload(&[0x47; 100], now);
        }
        let s = c.snapshot(
            "in0",
            0,
            WorkerState::Running,
            1,
            t0,
            SystemTime::now(),
            None,
        );
        let (rtp_ts, raw, other) = (&s.groups[0], &s.groups[1], &s.groups[2]);
        // Counters run on from payload to payload (0..6, 7..13, 14..4 across the wrap), then
        // the last payload starts at 9 instead of 5: one error.
        assert_eq!(rtp_ts.ts.unwrap().packets, 28);
        assert_eq!(raw.ts.unwrap().packets, 28);
        assert_eq!(
            (rtp_ts.ts.unwrap().cc_errors, raw.ts.unwrap().cc_errors),
            (1, 1)
        );
        assert!(rtp_ts.jitter.unwrap() > std::time::Duration::ZERO);
        assert!(raw.jitter.is_none() && other.jitter.is_none() && other.ts.is_none());
    }

    /// RTP routes feed the tracker per packet; its counters reach the snapshot and survive a
    /// reload that keeps the route (control work, issue 5).
    #[test]
    fn rtp_routes_track_sequence_numbers_across_reloads() {
        let mut r = route("239.1.1.1", &[0]);
        r.rtp = true;
        let t = table(vec![r.clone(), route("239.1.1.2", &[0])], vec![dest("a")]);
        let mut c = Counters::default();
        c.rekey(&t, &[IfaceId(0)]);
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
        c.rekey(&table(vec![r], vec![dest("a")]), &[IfaceId(0)]);
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
        c.rekey(&t, &[IfaceId(0)]);
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

    /// A clock for snapshots: `now` and `now_wall` advance together, so a `last_seen` converted
    /// at one publication equals the one converted at a later publication.
    struct Clock {
        base: Instant,
        wall: SystemTime,
    }

    impl Clock {
        fn new() -> Clock {
            Clock {
                base: Instant::now(),
                wall: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            }
        }

        fn at(&self, ms: u64) -> (Instant, SystemTime) {
            let d = std::time::Duration::from_millis(ms);
            (self.base + d, self.wall + d)
        }

        fn snapshot(&self, c: &mut Counters, ms: u64) -> WorkerSnapshot {
            let (now, wall) = self.at(ms);
            c.snapshot("in0", 0, WorkerState::Running, 1, now, wall, None)
        }

        /// What a snapshot built from scratch from the same counters would be.
        fn full_rebuild(&self, c: &Counters, ms: u64) -> WorkerSnapshot {
            let mut fresh = c.clone();
            fresh.forget_published();
            self.snapshot(&mut fresh, ms)
        }
    }

    fn three_routes() -> Table {
        table(
            vec![
                route("239.1.1.1", &[0, 1]),
                route("239.1.1.2", &[1]),
                route("239.1.1.3", &[0, 1]),
            ],
            vec![dest("a"), dest("b")],
        )
    }

    #[test]
    fn a_snapshot_after_no_traffic_shares_everything_with_the_previous_one() {
        let clock = Clock::new();
        let mut c = Counters::default();
        c.rekey(&three_routes(), &[IfaceId(0)]);
        let s1 = clock.snapshot(&mut c, 0);
        let s2 = clock.snapshot(&mut c, 100);
        assert!(Arc::ptr_eq(&s1.groups, &s2.groups));
        assert_eq!(s1.groups.len(), 3);
        assert!(s2.at > s1.at, "the time still advances");
        // The names are shared with the counters, not copied.
        assert!(Arc::ptr_eq(
            &s2.groups[0].destinations[1].name,
            &c.routes[0].as_ref().unwrap().dests[1].name
        ));
        // Every destination of every route sends to "b": one name for all of them.
        assert!(Arc::ptr_eq(
            &s2.groups[0].destinations[1].name,
            &s2.groups[1].destinations[0].name
        ));
    }

    #[test]
    fn after_traffic_on_one_route_only_that_route_is_new() {
        let clock = Clock::new();
        let mut c = Counters::default();
        c.rekey(&three_routes(), &[IfaceId(0)]);
        let s1 = clock.snapshot(&mut c, 0);
        let (now, _) = clock.at(50);
        let r = c.route_mut(RouteId(1)).unwrap();
        r.observe_payload(&[0; 10], now);
        r.dests[0].packets += 1;
        r.dests[0].bytes += 10;
        let s2 = clock.snapshot(&mut c, 100);
        assert!(!Arc::ptr_eq(&s1.groups, &s2.groups));
        assert!(Arc::ptr_eq(&s1.groups[0], &s2.groups[0]));
        assert!(!Arc::ptr_eq(&s1.groups[1], &s2.groups[1]));
        assert!(Arc::ptr_eq(&s1.groups[2], &s2.groups[2]));
        assert_eq!((s2.groups[1].packets, s2.groups[1].bytes), (1, 10));
        assert_eq!(s2.groups[1].destinations[0].packets, 1);
        assert_eq!(s2.groups[1].last_seen, Some(clock.at(50).1));
        assert_eq!(s2, clock.full_rebuild(&c, 100));
        // A destination's counters moving alone (a send error counted at the flush, after the
        // publication that saw the packet) also makes the route new.
        c.route_mut(RouteId(2)).unwrap().dests[1].errors += 1;
        let s3 = clock.snapshot(&mut c, 200);
        assert!(Arc::ptr_eq(&s2.groups[1], &s3.groups[1]));
        assert!(!Arc::ptr_eq(&s2.groups[2], &s3.groups[2]));
        assert_eq!(s3.groups[2].destinations[1].errors, 1);
        // And then nothing moves again.
        let s4 = clock.snapshot(&mut c, 300);
        assert!(Arc::ptr_eq(&s3.groups, &s4.groups));
    }

    #[test]
    fn recording_touched_routes_never_allocates() {
        let mut c = Counters::default();
        c.rekey(&three_routes(), &[IfaceId(0)]);
        let capacity = c.touched.capacity();
        assert!(capacity >= 3);
        for _ in 0..2 {
            for id in 0..3 {
                c.route_mut(RouteId(id)).unwrap().packets += 1;
            }
        }
        assert_eq!(c.touched.len(), 3, "each route is recorded once");
        assert_eq!(c.touched.capacity(), capacity);
    }

    #[test]
    fn a_reload_keeps_the_published_part_of_unchanged_routes() {
        let clock = Clock::new();
        let mut c = Counters::default();
        c.rekey(&three_routes(), &[IfaceId(0)]);
        c.route_mut(RouteId(0))
            .unwrap()
            .observe_payload(&[0; 4], clock.at(10).0);
        let s1 = clock.snapshot(&mut c, 100);
        // Same table again but the interfaces renumbered ("in0" is now id 1), the third route
        // now sends to "a" only, and a route is added in front.
        let mut routes = vec![route("239.9.9.9", &[0]), route("239.1.1.1", &[0, 1])];
        routes.push(route("239.1.1.2", &[1]));
        routes.push(route("239.1.1.3", &[0]));
        for r in &mut routes {
            r.key.interface = IfaceId(1);
        }
        let t2 = Table::new(
            DaemonSettings::default(),
            vec![iface("aaa"), iface("in0"), iface("in1")],
            vec![dest("a"), dest("b")],
            routes,
        );
        c.rekey(&t2, &[IfaceId(1)]);
        let s2 = clock.snapshot(&mut c, 200);
        assert_eq!(s2.groups.len(), 4);
        assert_eq!(s2.groups[0].packets, 0);
        assert!(Arc::ptr_eq(&s1.groups[0], &s2.groups[1]), "counts kept");
        assert_eq!(s2.groups[1].packets, 1);
        assert!(Arc::ptr_eq(&s1.groups[1], &s2.groups[2]));
        assert!(!Arc::ptr_eq(&s1.groups[2], &s2.groups[3]));
        assert_eq!(s2.groups[3].destinations.len(), 1);
        assert_eq!(&*s2.groups[3].destinations[0].name, "a");
        assert_eq!(s2, clock.full_rebuild(&c, 200));
    }

    /// Random traffic, send outcomes and reloads: every snapshot equals one built from scratch.
    #[test]
    fn shared_snapshots_equal_a_full_rebuild() {
        let clock = Clock::new();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let tables: Vec<Table> = (0..4)
            .map(|variant| {
                let mut routes: Vec<Route> = (0..12)
                    .filter(|i| (i + variant) % 5 != 0)
                    .map(|i| {
                        let dests: Vec<u32> =
                            (0..3).filter(|d| (i + d + variant) % 4 != 0).collect();
                        let mut r = route(&format!("239.1.1.{i}"), &dests);
                        r.rtp = (i + variant) % 3 == 0;
                        if i % 4 == 1 {
                            r.key.interface = IfaceId(1);
                        }
                        r
                    })
                    .collect();
                routes.rotate_left(variant as usize);
                table(routes, vec![dest("a"), dest("b"), dest("c")])
            })
            .collect();
        let mut c = Counters::default();
        c.rekey(&tables[0], &[IfaceId(0)]);
        let mut prev = clock.snapshot(&mut c, 0);
        let mut rebuilt = 0;
        for step in 1..=300u64 {
            let ms = step * 100;
            let mut touched = std::collections::HashSet::new();
            let mut reloaded = false;
            // Traffic, sometimes a reload in the middle of it (routes touched before it), more
            // traffic, then the publication.
            for phase in 0..2 {
                if phase == 1 && next(15) == 0 {
                    c.rekey(&tables[next(4) as usize], &[IfaceId(0)]);
                    reloaded = true;
                }
                for _ in 0..next(3) {
                    let id = next(12) as u32;
                    let (now, _) = clock.at(ms - next(100));
                    let Some(r) = c.route_mut(RouteId(id)) else {
                        continue;
                    };
                    touched.insert(id);
                    if next(2) == 0 {
                        let mut p = [0u8; 20];
                        p[0] = 0x80;
                        p[3] = next(256) as u8;
                        r.observe_payload(&p, now);
                    }
                    if !r.dests.is_empty() {
                        let d = next(r.dests.len() as u64) as usize;
                        match next(3) {
                            0 => r.dests[d].packets += 1,
                            1 => r.dests[d].drops += 1,
                            _ => r.dests[d].errors += 1,
                        }
                    }
                }
            }
            let s = clock.snapshot(&mut c, ms);
            assert_eq!(s, clock.full_rebuild(&c, ms), "step {step}");
            if !reloaded {
                // Only the touched routes are new; every other part is shared.
                let ids = c
                    .routes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| r.as_ref().map(|_| i as u32));
                for (j, id) in ids.enumerate() {
                    if touched.contains(&id) {
                        rebuilt += 1;
                    } else {
                        assert!(Arc::ptr_eq(&s.groups[j], &prev.groups[j]), "step {step}");
                    }
                }
            }
            prev = s;
        }
        assert!(rebuilt > 100, "the traffic touched {rebuilt} routes");
    }
}
