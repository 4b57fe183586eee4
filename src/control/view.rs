//! The statistics math: from worker snapshots to what `status`, `stats` and `/metrics` show.
//!
//! Pure: every function takes `now` and the snapshots as arguments. Rates come from the server,
//! which keeps the previous snapshot of each worker ([`Sampler`]): a rate is the difference of
//! two consecutive snapshots of one worker divided by the time between them (one
//! `daemon.stats_interval`), so every client sees the same rate without sampling twice, and a
//! one-shot `mcrelay stats` shows rates at once. A counter that went backwards (a worker restarted)
//! yields no rate rather than a negative or huge one. A group is UP when its last packet is at most
//! `daemon.silence_timeout` old, DOWN otherwise (including never seen).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::redundancy::NoKey;
use crate::reload::{ReloadStatus, unix_seconds};
use crate::stats::{
    DropReason, GroupSnapshot, RedundantSnapshot, RtpCounters, TsCounters, TunnelSnapshot,
    WorkerSnapshot, WorkerState,
};
use crate::table::Table;

/// `mcrelay status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub version: String,
    /// Unix seconds.
    pub started_at: f64,
    pub uptime_seconds: f64,
    pub control_socket: String,
    pub metrics_listen: Option<String>,
    /// Configuration file, digest, generation, last reload and reload counts.
    pub config: ReloadStatus,
    pub workers: Vec<WorkerStatus>,
    pub totals: Totals,
    /// Tunnels and their peers (never their keys).
    #[serde(default)]
    pub tunnels: Vec<TunnelSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub interface: String,
    pub index: u16,
    pub state: WorkerState,
    pub generation: u64,
    pub frames: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub interfaces: usize,
    pub workers: usize,
    pub groups: usize,
    pub groups_up: usize,
    pub destinations: usize,
    /// Frames received from the kernel.
    pub frames: u64,
    pub frame_bytes: u64,
    /// Datagrams sent, summed over destinations.
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub send_errors: u64,
    pub send_drops: u64,
    /// Frames the relay dropped (every reason).
    pub relay_drops: u64,
    pub kernel_drops: u64,
}

/// `mcrelay stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Unix seconds.
    pub at: f64,
    pub generation: u64,
    pub silence_timeout_seconds: f64,
    pub groups: Vec<GroupStats>,
    pub interfaces: Vec<InterfaceStats>,
    /// Tunnels and their peers (never their keys).
    #[serde(default)]
    pub tunnels: Vec<TunnelSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub label: String,
    pub interface: String,
    pub group: IpAddr,
    pub port: Option<u16>,
    pub source: Option<IpAddr>,
    pub packets: u64,
    pub bytes: u64,
    pub packets_per_second: Option<f64>,
    /// UDP payload bits per second.
    pub bits_per_second: Option<f64>,
    /// Unix seconds of the last packet.
    pub last_seen: Option<f64>,
    pub last_seen_ago_seconds: Option<f64>,
    pub up: bool,
    pub rtp: Option<RtpCounters>,
    /// RFC 3550 interarrival jitter (groups with `rtp = true`; the largest over workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp_jitter_seconds: Option<f64>,
    /// MPEG-TS continuity counters, for a group whose payload is MPEG-TS (raw or in RTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<TsCounters>,
    pub destinations: Vec<DestinationStats>,
    /// `listen` routes: datagrams the host did not answer with ICMP port-unreachable (they
    /// also count in the host's `Udp InErrors`); `None` for groups.
    #[serde(default)]
    pub icmp_suppressed: Option<u64>,
    /// For a group with `legs`: each leg's health and the output stream's; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<RedundancyStats>,
}

/// A group with `legs`: how its inputs became one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedundancyStats {
    /// `"merge"` or `"failover"`.
    pub mode: String,
    /// Failover: the index of the leg being forwarded.
    pub active_leg: Option<u8>,
    pub legs: Vec<LegStats>,
    pub output: RedundancyOutputStats,
}

/// One leg of a group with `legs` (see docs/REDUNDANCY.md for each counter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegStats {
    pub interface: String,
    pub group: IpAddr,
    pub port: Option<u16>,
    pub source: Option<IpAddr>,
    pub up: bool,
    /// Packets received on this leg.
    pub packets: u64,
    /// Packets of this leg that went out (it was first).
    pub forwarded: u64,
    /// Numbers only this leg delivered.
    pub unique: u64,
    /// Copies dropped because another leg was first.
    pub duplicates: u64,
    /// Copies arriving after their number was settled.
    pub late: u64,
    /// Numbers this leg never delivered (settled without it).
    pub missing: u64,
    /// Packets without a sequence key, by reason (`too_short`, `not_rtp`).
    pub no_key: BTreeMap<String, u64>,
    /// How long after the first copy this leg's copy arrives (0 for the leg that is first).
    pub behind_seconds: Option<f64>,
    /// This leg's highest number minus the output's.
    pub lead: i64,
    /// Times the leg went DOWN.
    pub downs: u64,
}

/// The stream a group with `legs` sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedundancyOutputStats {
    pub forwarded: u64,
    /// Numbers no leg delivered in time.
    pub lost: u64,
    pub duplicates: u64,
    /// Packets sent after a higher number (a hole filled late).
    pub reordered: u64,
    pub late: u64,
    pub jumps: u64,
    pub restarts: u64,
    pub no_key: u64,
    /// Failover: switches from one leg to another.
    pub switches: u64,
}

impl RedundancyStats {
    fn of(r: &RedundantSnapshot) -> RedundancyStats {
        let o = &r.output;
        RedundancyStats {
            mode: r.mode.to_string(),
            active_leg: r.active,
            legs: r
                .legs
                .iter()
                .map(|l| {
                    let c = &l.counters;
                    LegStats {
                        interface: l.interface.to_string(),
                        group: l.group,
                        port: l.port,
                        source: l.source,
                        up: l.up,
                        packets: c.packets,
                        forwarded: c.forwarded,
                        unique: c.unique,
                        duplicates: c.duplicates,
                        late: c.late,
                        missing: c.missing,
                        no_key: NoKey::ALL
                            .iter()
                            .map(|k| (k.as_str().to_string(), c.no_key(*k)))
                            .collect(),
                        behind_seconds: c.behind.map(|d| d.as_secs_f64()),
                        lead: c.lead,
                        downs: c.downs,
                    }
                })
                .collect(),
            output: RedundancyOutputStats {
                forwarded: o.forwarded,
                lost: o.lost,
                duplicates: o.duplicates,
                reordered: o.reordered,
                late: o.late,
                jumps: o.jumps,
                restarts: o.restarts,
                no_key: o.no_key,
                switches: o.switches,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationStats {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
    pub drops: u64,
    pub packets_per_second: Option<f64>,
    pub bits_per_second: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStats {
    pub name: String,
    pub workers: usize,
    pub frames: u64,
    pub frame_bytes: u64,
    pub frames_per_second: Option<f64>,
    pub kernel_packets: u64,
    pub kernel_drops: u64,
    /// Relay drops by reason ([`DropReason::as_str`]), every reason present.
    pub drops: BTreeMap<String, u64>,
}

/// Two snapshots of one worker, about `daemon.stats_interval` apart (or fewer when it has just
/// started): the rates are computed between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    pub prev: Option<&'a WorkerSnapshot>,
    pub cur: &'a WorkerSnapshot,
}

/// Keeps a short history of each worker's snapshots so that rates are computed over a window of
/// `daemon.stats_interval`, whatever the period at which the workers publish (they publish often
/// so that `last seen` is fresh; rates over such short periods would flicker).
#[derive(Debug, Clone)]
pub struct Sampler {
    window: Duration,
    workers: BTreeMap<(String, u16), VecDeque<WorkerSnapshot>>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new(Duration::from_secs(1))
    }
}

impl Sampler {
    /// Rates over `window` (at least that old a previous snapshot, when there is one).
    pub fn new(window: Duration) -> Sampler {
        Sampler {
            window,
            workers: BTreeMap::new(),
        }
    }

    /// Takes the workers' latest snapshots; workers no longer reported are forgotten. At most
    /// about six snapshots per worker are kept (spaced by a quarter of the window).
    pub fn update(&mut self, snapshots: Vec<WorkerSnapshot>) {
        let mut next = BTreeMap::new();
        for snap in snapshots {
            let key = (snap.interface.clone(), snap.index);
            let mut hist = self.workers.remove(&key).unwrap_or_default();
            let n = hist.len();
            match hist.back() {
                Some(last) if last.at == snap.at => {}
                // Time went backwards (clock step) or the worker restarted: start again.
                Some(last) if snap.at < last.at => {
                    hist.clear();
                    hist.push_back(snap);
                }
                // The newest is too close to the one before it to be worth keeping: replace it.
                // So the kept ones (all but the newest) are a quarter of a window apart.
                Some(last) if n >= 2 && last.at < hist[n - 2].at + self.window / 4 => {
                    hist[n - 1] = snap;
                }
                _ => hist.push_back(snap),
            }
            let newest = hist.back().map(|s| s.at).unwrap_or(SystemTime::UNIX_EPOCH);
            while hist.len() > 2 && hist[1].at + self.window <= newest {
                hist.pop_front();
            }
            next.insert(key, hist);
        }
        self.workers = next;
    }

    /// One sample per worker: its newest snapshot and the oldest kept (at least a window old
    /// once the worker has run that long).
    pub fn samples(&self) -> Vec<Sample<'_>> {
        self.workers
            .values()
            .filter_map(|h| {
                let cur = h.back()?;
                let prev = h.front().filter(|p| p.at < cur.at);
                Some(Sample { prev, cur })
            })
            .collect()
    }
}

/// Whether a group whose last packet was at `last_seen` counts as flowing at `now`.
pub fn is_up(last_seen: Option<SystemTime>, now: SystemTime, silence_timeout: Duration) -> bool {
    match last_seen {
        Some(t) => now.duration_since(t).unwrap_or(Duration::ZERO) <= silence_timeout,
        None => false,
    }
}

/// `(cur - prev) / dt`, or `None` without a previous value, a positive interval, or when the
/// counter went backwards.
pub fn rate(prev: Option<u64>, cur: u64, dt: Option<f64>) -> Option<f64> {
    let (p, dt) = (prev?, dt?);
    if dt <= 0.0 || cur < p {
        return None;
    }
    Some((cur - p) as f64 / dt)
}

fn add_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) | (None, x) => x,
    }
}

type GroupKey<'a> = (&'a str, IpAddr, Option<u16>, Option<IpAddr>);

fn group_key(g: &GroupSnapshot) -> GroupKey<'_> {
    (&g.interface, g.group, g.port, g.source)
}

/// Position of the item named `name` in `items`, looked for at `hint` first (where it is when
/// both lists come from the same route), then everywhere: with a hundred destinations per group
/// a search from the start would make a report quadratic in them.
fn position_by_name<T>(
    items: &[T],
    hint: usize,
    name: &str,
    name_of: impl Fn(&T) -> &str,
) -> Option<usize> {
    match items.get(hint) {
        Some(x) if name_of(x) == name => Some(hint),
        _ => items.iter().position(|x| name_of(x) == name),
    }
}

/// Builds the `stats` report: one entry per route of `table` (in table order) with counters
/// summed over the workers of its interface, and one entry per ingress interface.
pub fn stats_report(
    table: &Table,
    samples: &[Sample<'_>],
    now: SystemTime,
    silence_timeout: Duration,
) -> StatsReport {
    let mut groups: Vec<GroupStats> = Vec::with_capacity(table.routes.len());
    let mut index: HashMap<GroupKey<'_>, usize> = HashMap::with_capacity(table.routes.len());
    for r in &table.routes {
        let interface = &table.interface(r.key.interface).name;
        index.insert(
            (interface, r.key.group, r.key.port, r.key.source),
            groups.len(),
        );
        groups.push(GroupStats {
            label: r.label.clone(),
            interface: interface.clone(),
            group: r.key.group,
            port: r.key.port,
            source: r.key.source,
            packets: 0,
            bytes: 0,
            packets_per_second: None,
            bits_per_second: None,
            last_seen: None,
            last_seen_ago_seconds: None,
            up: false,
            rtp: r.rtp.then(RtpCounters::default),
            icmp_suppressed: r.key.is_listen().then_some(0),
            rtp_jitter_seconds: None,
            ts: None,
            destinations: r
                .destinations
                .iter()
                .map(|&d| DestinationStats {
                    name: table.destination(d).name.clone(),
                    packets: 0,
                    bytes: 0,
                    errors: 0,
                    drops: 0,
                    packets_per_second: None,
                    bits_per_second: None,
                })
                .collect(),
            redundancy: None,
        });
    }
    let mut last_seen: Vec<Option<SystemTime>> = vec![None; groups.len()];
    let mut interfaces: BTreeMap<String, InterfaceStats> = BTreeMap::new();
    for s in samples {
        let cur = s.cur;
        let prev = s.prev;
        let dt = prev.and_then(|p| cur.at.duration_since(p.at).ok().map(|d| d.as_secs_f64()));
        let ifs = interfaces
            .entry(cur.interface.clone())
            .or_insert_with(|| InterfaceStats {
                name: cur.interface.clone(),
                workers: 0,
                frames: 0,
                frame_bytes: 0,
                frames_per_second: None,
                kernel_packets: 0,
                kernel_drops: 0,
                drops: DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), 0))
                    .collect(),
            });
        for (label, n) in &cur.listen_suppressed {
            if let Some(g) = groups
                .iter_mut()
                .find(|g| g.label == *label && g.interface == cur.interface)
            {
                g.icmp_suppressed = Some(g.icmp_suppressed.unwrap_or(0) + n);
            }
        }
        ifs.workers += 1;
        ifs.frames += cur.frames;
        ifs.frame_bytes += cur.frame_bytes;
        ifs.frames_per_second = add_opt(
            ifs.frames_per_second,
            rate(prev.map(|p| p.frames), cur.frames, dt),
        );
        ifs.kernel_packets += cur.kernel_packets;
        ifs.kernel_drops += cur.kernel_drops;
        for (reason, n) in DropReason::ALL.iter().zip(&cur.drops) {
            *ifs.drops.entry(reason.as_str().to_string()).or_default() += n;
        }
        // The previous snapshot's groups by key, built only when a group is not where it was
        // (a reload in between): a linear search per group would make a report quadratic in
        // the number of groups.
        // A group with legs is received by one worker: its health is that worker's.
        for r in cur.redundant.iter() {
            let Some(first) = r.legs.first() else {
                continue;
            };
            let key = (&*first.interface, first.group, first.port, first.source);
            if let Some(&i) = index.get(&key) {
                groups[i].redundancy = Some(RedundancyStats::of(r));
            }
        }
        let mut prev_groups: Option<HashMap<GroupKey<'_>, &GroupSnapshot>> = None;
        for (j, g) in cur.groups.iter().enumerate() {
            let key = group_key(g);
            let Some(&i) = index.get(&key) else {
                continue;
            };
            let pg = prev.and_then(|p| match p.groups.get(j) {
                Some(x) if Arc::ptr_eq(x, g) || group_key(x) == key => Some(&**x),
                _ => prev_groups
                    .get_or_insert_with(|| p.groups.iter().map(|x| (group_key(x), &**x)).collect())
                    .get(&key)
                    .copied(),
            });
            // A group (or destination) absent from the previous snapshot started counting
            // after it (added by a reload): it had 0 then.
            let since = |v: Option<u64>| if prev.is_some() { v.or(Some(0)) } else { None };
            let out = &mut groups[i];
            out.packets += g.packets;
            out.bytes += g.bytes;
            out.packets_per_second = add_opt(
                out.packets_per_second,
                rate(since(pg.map(|p| p.packets)), g.packets, dt),
            );
            out.bits_per_second = add_opt(
                out.bits_per_second,
                rate(since(pg.map(|p| p.bytes)), g.bytes, dt).map(|b| b * 8.0),
            );
            last_seen[i] = last_seen[i].max(g.last_seen);
            if let Some(j) = g.jitter {
                let j = j.as_secs_f64();
                out.rtp_jitter_seconds = Some(out.rtp_jitter_seconds.map_or(j, |o| o.max(j)));
            }
            if let Some(t) = g.ts {
                let acc = out.ts.get_or_insert_with(TsCounters::default);
                acc.packets += t.packets;
                acc.cc_errors += t.cc_errors;
                acc.not_ts += t.not_ts;
            }
            if let (Some(acc), Some(r)) = (&mut out.rtp, &g.rtp) {
                acc.packets += r.packets;
                acc.gaps += r.gaps;
                acc.lost += r.lost;
                acc.duplicates += r.duplicates;
                acc.reordered += r.reordered;
                acc.invalid += r.invalid;
            }
            for (k, d) in g.destinations.iter().enumerate() {
                let Some(o) = position_by_name(&out.destinations, k, &d.name, |x| &x.name) else {
                    continue;
                };
                let od = &mut out.destinations[o];
                let pd = pg.and_then(|p| {
                    let at = position_by_name(&p.destinations, k, &d.name, |x| &x.name)?;
                    p.destinations.get(at)
                });
                od.packets += d.packets;
                od.bytes += d.bytes;
                od.errors += d.errors;
                od.drops += d.drops;
                od.packets_per_second = add_opt(
                    od.packets_per_second,
                    rate(since(pd.map(|p| p.packets)), d.packets, dt),
                );
                od.bits_per_second = add_opt(
                    od.bits_per_second,
                    rate(since(pd.map(|p| p.bytes)), d.bytes, dt).map(|b| b * 8.0),
                );
            }
        }
    }
    for (g, seen) in groups.iter_mut().zip(last_seen) {
        g.last_seen = seen.map(unix_seconds);
        g.last_seen_ago_seconds = seen.map(|t| {
            now.duration_since(t)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
        });
        g.up = is_up(seen, now, silence_timeout);
    }
    StatsReport {
        at: unix_seconds(now),
        generation: table.generation.0,
        silence_timeout_seconds: silence_timeout.as_secs_f64(),
        groups,
        interfaces: interfaces.into_values().collect(),
        tunnels: tunnels(samples),
    }
}

/// The tunnels, as their workers last published them.
pub fn tunnels(samples: &[Sample<'_>]) -> Vec<TunnelSnapshot> {
    let mut t: Vec<TunnelSnapshot> = samples
        .iter()
        .flat_map(|s| s.cur.tunnels.iter().cloned())
        .collect();
    t.sort_by(|a, b| a.interface.cmp(&b.interface));
    t
}

/// Totals for `status`, straight from the snapshots (no per-group report is built: status must
/// stay cheap with thousands of groups).
pub fn totals(
    table: &Table,
    samples: &[Sample<'_>],
    now: SystemTime,
    silence_timeout: Duration,
) -> Totals {
    let mut up: HashSet<(&str, &str)> = HashSet::new();
    let mut t = Totals {
        interfaces: table.ingress_interfaces().len(),
        workers: samples.len(),
        groups: table.routes.len(),
        destinations: table.destinations.len(),
        ..Totals::default()
    };
    for s in samples {
        let c = s.cur;
        t.frames += c.frames;
        t.frame_bytes += c.frame_bytes;
        t.kernel_drops += c.kernel_drops;
        t.relay_drops += c.drops.iter().sum::<u64>();
        for g in c.groups.iter() {
            if is_up(g.last_seen, now, silence_timeout) {
                up.insert((&g.interface, &g.label));
            }
            for d in &g.destinations {
                t.sent_packets += d.packets;
                t.sent_bytes += d.bytes;
                t.send_errors += d.errors;
                t.send_drops += d.drops;
            }
        }
    }
    t.groups_up = up.len();
    t
}

/// The workers as they report themselves, for `status`.
pub fn worker_status(samples: &[Sample<'_>]) -> Vec<WorkerStatus> {
    samples
        .iter()
        .map(|s| WorkerStatus {
            interface: s.cur.interface.clone(),
            index: s.cur.index,
            state: s.cur.state,
            generation: s.cur.generation,
            frames: s.cur.frames,
            error: s.cur.error.clone(),
        })
        .collect()
}

/// A group changing between UP and DOWN, for the log (once per change, never per packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub group: String,
    pub up: bool,
}

/// Groups' UP/DOWN state as last logged, to log each change once. Runs on every sampler tick,
/// so it works from the snapshots directly and allocates nothing per group once a group is
/// known. A group first seen UP is logged; one first seen DOWN is not (it has not started).
#[derive(Debug, Default)]
pub struct HealthLog {
    /// interface → label → state.
    known: HashMap<String, HashMap<String, Health>>,
    tick: u64,
}

#[derive(Debug, Clone, Copy)]
struct Health {
    logged: Option<bool>,
    up: bool,
    tick: u64,
}

impl HealthLog {
    /// The changes since the last update; groups no longer reported are forgotten.
    pub fn update(
        &mut self,
        samples: &[Sample<'_>],
        now: SystemTime,
        silence_timeout: Duration,
    ) -> Vec<Transition> {
        self.tick += 1;
        let tick = self.tick;
        for s in samples {
            for g in s.cur.groups.iter() {
                let up = is_up(g.last_seen, now, silence_timeout);
                if !self.known.contains_key(&*g.interface) {
                    self.known.insert(g.interface.to_string(), HashMap::new());
                }
                let Some(labels) = self.known.get_mut(&*g.interface) else {
                    continue;
                };
                match labels.get_mut(&*g.label) {
                    // Several workers of one interface: UP when any of them saw it.
                    Some(h) if h.tick == tick => h.up |= up,
                    Some(h) => {
                        h.tick = tick;
                        h.up = up;
                    }
                    None => {
                        let h = Health {
                            logged: None,
                            up,
                            tick,
                        };
                        labels.insert(g.label.to_string(), h);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (iface, labels) in &mut self.known {
            labels.retain(|label, h| {
                if h.tick != tick {
                    return false;
                }
                let changed = match h.logged {
                    Some(was) => was != h.up,
                    None => h.up,
                };
                if changed {
                    out.push(Transition {
                        group: format!("{label} on {iface}"),
                        up: h.up,
                    });
                }
                h.logged = Some(h.up);
                true
            });
        }
        self.known.retain(|_, labels| !labels.is_empty());
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::reload::diff::tests::{iface, mdest, route};
    use crate::stats::{DestinationSnapshot, GroupSnapshot};
    use crate::table::{DaemonSettings, Generation};

    pub(crate) fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    pub(crate) fn table() -> Table {
        let mut r2 = route(0, 2, "cam2", &[1]);
        r2.rtp = true;
        Table::new(
            DaemonSettings::default(),
            vec![iface("in0"), iface("out0")],
            vec![mdest("a", 1), mdest("b", 1)],
            vec![route(0, 1, "cam1", &[0, 1]), r2],
        )
        .with_generation(Generation(3))
    }

    /// A snapshot of worker `index` on in0 at `t0 + secs`, cam1 having carried `pkts` packets of
    /// 1000 bytes to both destinations, last seen at `seen` seconds.
    pub(crate) fn snap(index: u16, secs: f64, pkts: u64, seen: Option<f64>) -> WorkerSnapshot {
        let at = t0() + Duration::from_secs_f64(secs);
        let dest = |name: &str| DestinationSnapshot {
            name: name.into(),
            packets: pkts,
            bytes: pkts * 1000,
            errors: 1,
            drops: 2,
        };
        let mut drops = vec![0; DropReason::ALL.len()];
        drops[DropReason::NoRoute.index()] = 5;
        WorkerSnapshot {
            interface: "in0".into(),
            index,
            state: WorkerState::Running,
            generation: 3,
            at,
            frames: pkts + 5,
            frame_bytes: pkts * 1028,
            drops,
            kernel_packets: pkts + 5,
            kernel_drops: 7,
            groups: Arc::from([Arc::new(GroupSnapshot {
                label: "cam1".into(),
                interface: "in0".into(),
                group: "239.1.1.1".parse().unwrap(),
                port: Some(5000),
                source: None,
                packets: pkts,
                bytes: pkts * 1000,
                last_seen: seen.map(|s| t0() + Duration::from_secs_f64(s)),
                rtp: None,
                jitter: None,
                ts: None,
                destinations: vec![dest("a"), dest("b")],
            })]),
            error: None,
            tunnels: Vec::new(),
            listen_suppressed: Vec::new(),
            redundant: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn up_until_the_silence_timeout_then_down() {
        let t = t0();
        let s = Duration::from_secs(2);
        assert!(!is_up(None, t, s));
        assert!(is_up(Some(t), t + Duration::from_millis(1999), s));
        assert!(is_up(Some(t), t + s, s));
        assert!(!is_up(Some(t), t + Duration::from_millis(2001), s));
        // A last-seen in the future (clock step) counts as now.
        assert!(is_up(Some(t + s), t, s));
    }

    #[test]
    fn rates_need_two_samples_and_forward_counters() {
        assert_eq!(rate(None, 10, Some(1.0)), None);
        assert_eq!(rate(Some(10), 30, Some(2.0)), Some(10.0));
        assert_eq!(rate(Some(10), 5, Some(1.0)), None);
        assert_eq!(rate(Some(10), 20, Some(0.0)), None);
        assert_eq!(rate(Some(10), 20, None), None);
    }

    #[test]
    fn sampler_computes_rates_over_the_window() {
        let mut s = Sampler::new(Duration::from_secs(1));
        s.update(vec![snap(0, 0.0, 0, None)]);
        assert!(s.samples()[0].prev.is_none());
        s.update(vec![snap(0, 0.0, 0, None)]); // same snapshot again: nothing moves
        assert!(s.samples()[0].prev.is_none());
        // Published every 100 ms: the previous one stays the oldest until a window has passed.
        for i in 1..=25u64 {
            s.update(vec![snap(0, i as f64 / 10.0, i * 10, Some(0.0))]);
            let sm = s.samples()[0];
            let age = sm.cur.at.duration_since(sm.prev.unwrap().at).unwrap();
            assert!(age <= Duration::from_millis(1300), "{age:?} at {i}");
            if i >= 10 {
                assert!(age >= Duration::from_secs(1), "{age:?} at {i}");
            }
            assert!(s.workers[&("in0".to_string(), 0)].len() <= 6);
        }
        // A restarted worker (time goes back) starts again.
        s.update(vec![snap(0, 1.0, 0, None)]);
        assert!(s.samples()[0].prev.is_none());
        s.update(vec![]);
        assert!(s.samples().is_empty());
    }

    #[test]
    fn report_sums_workers_and_computes_rates() {
        let table = table();
        let (pa, ca, cb) = (
            snap(0, 0.0, 1000, Some(0.0)),
            snap(0, 2.0, 3000, Some(1.9)),
            snap(1, 2.0, 10, Some(1.5)),
        );
        let a = Sample {
            prev: Some(&pa),
            cur: &ca,
        };
        // A worker whose previous snapshot predates the group: counted from 0.
        let mut empty = snap(2, 0.0, 0, None);
        empty.groups = Vec::new().into();
        let cc = snap(2, 2.0, 500, Some(1.0));
        let c = Sample {
            prev: Some(&empty),
            cur: &cc,
        };
        let r = stats_report(
            &table,
            &[c],
            t0() + Duration::from_secs(2),
            Duration::from_secs(2),
        );
        assert_eq!(r.groups[0].packets_per_second, Some(250.0));
        assert_eq!(r.groups[0].destinations[0].packets_per_second, Some(250.0));
        let b = Sample {
            prev: None,
            cur: &cb,
        };
        let now = t0() + Duration::from_secs_f64(2.1);
        let r = stats_report(&table, &[a, b], now, Duration::from_secs(2));
        assert_eq!(r.generation, 3);
        assert_eq!(r.groups.len(), 2);
        let g = &r.groups[0];
        assert_eq!(
            (g.label.as_str(), g.packets, g.bytes),
            ("cam1", 3010, 3_010_000)
        );
        // Only worker 0 has two samples: 2000 packets in 2 s.
        assert_eq!(g.packets_per_second, Some(1000.0));
        assert_eq!(g.bits_per_second, Some(8_000_000.0));
        assert!(g.up);
        assert!((g.last_seen_ago_seconds.unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(g.destinations.len(), 2);
        assert_eq!(g.destinations[1].name, "b");
        assert_eq!(g.destinations[1].packets, 3010);
        assert_eq!((g.destinations[1].errors, g.destinations[1].drops), (2, 4));
        assert_eq!(g.destinations[1].packets_per_second, Some(1000.0));
        // cam2 never seen: zero counters, DOWN, RTP counters present because rtp = true.
        let g2 = &r.groups[1];
        assert_eq!((g2.packets, g2.up, g2.last_seen), (0, false, None));
        assert_eq!(g2.rtp, Some(RtpCounters::default()));
        assert_eq!(g2.destinations[0].name, "b");
        let i = &r.interfaces[0];
        assert_eq!((i.name.as_str(), i.workers, i.frames), ("in0", 2, 3020));
        assert_eq!(i.kernel_drops, 14);
        assert_eq!(i.drops["no_route"], 10);
        assert_eq!(i.drops.len(), DropReason::ALL.len());
        assert_eq!(i.frames_per_second, Some(1000.0));
        let t = totals(&table, &[a, b], now, Duration::from_secs(2));
        assert_eq!((t.groups, t.groups_up, t.destinations), (2, 1, 2));
        assert_eq!(t.sent_packets, 3010 * 2);
        assert_eq!(t.relay_drops, 10);
    }

    #[test]
    fn a_silent_group_goes_down_and_comes_back() {
        let mut log = HealthLog::default();
        let mut step = |seen: f64, now: f64| {
            let c = snap(0, now, 1, Some(seen));
            // A second worker of the same interface that never saw the group.
            let other = snap(1, now, 0, None);
            let samples = [
                Sample {
                    prev: None,
                    cur: &c,
                },
                Sample {
                    prev: None,
                    cur: &other,
                },
            ];
            log.update(
                &samples,
                t0() + Duration::from_secs_f64(now),
                Duration::from_secs(2),
            )
            .into_iter()
            .map(|x| (x.group, x.up))
            .collect::<Vec<_>>()
        };
        let cam1 = |up| vec![("cam1 on in0".to_string(), up)];
        assert_eq!(step(0.0, 0.5), cam1(true));
        assert!(step(0.0, 1.5).is_empty());
        assert_eq!(step(0.0, 2.5), cam1(false));
        assert!(step(0.0, 9.0).is_empty());
        assert_eq!(step(9.5, 10.0), cam1(true));
    }
}
