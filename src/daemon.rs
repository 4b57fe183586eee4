//! `mcrelay run`: start-up, one worker per ingress interface, signals, clean shutdown.
//!
//! A [`Daemon`] holds the current table (arc-swap) and the workers that run it, one per
//! (ingress interface, worker index). [`Daemon::publish`] is the one way a table reaches the
//! workers, used by start-up and by the one reload path, [`crate::reload::Reloader`], which
//! SIGHUP, the file watch and the control socket share:
//!
//! 1. join the IGMP/MLD groups of the new table (while keeping the old ones), so traffic for a
//!    new group is already flowing when a worker starts relaying it;
//! 2. store the table (one atomic swap) and wake the workers; start workers for new ingress
//!    interfaces, stop those no longer used;
//! 3. wait until every worker acknowledges the generation (each applies it at its next batch:
//!    filter re-attached, egress sockets reconciled, counters re-keyed);
//! 4. leave the groups the new table no longer routes.
//!
//! Interfaces that do not exist are reported (worker state Waiting) and retried once a second,
//! memberships included.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::reload::{Dataplane, PublishReport};
use crate::stats::{WorkerSnapshot, WorkerState};
use crate::sys::{self, SetupError};
use crate::table::{Generation, IfaceId, Table};
use crate::worker::{self, AckSignal, WorkerHandle, WorkerShared, WorkerSpec};

/// How long start-up waits for each worker to report.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The running relay: the current table (arc-swap) and the workers that run it.
pub struct Daemon {
    core: Arc<Core>,
    housekeeping: Mutex<Option<JoinHandle<()>>>,
}

/// What the daemon and its housekeeping thread share.
struct Core {
    tables: Arc<ArcSwap<Table>>,
    acks: Arc<AckSignal>,
    /// Serialises publications; owns the workers and memberships.
    inner: Mutex<Inner>,
    /// The workers, for readers that must not wait behind a publication.
    view: ArcSwap<Vec<Arc<WorkerShared>>>,
    /// What each interface's `listen` sockets swallowed, by route label: refreshed by the
    /// housekeeping thread, read by [`Core::snapshots`] without waiting for `inner`.
    suppressed: ArcSwap<BTreeMap<String, Vec<(String, u64)>>>,
    config_path: PathBuf,
    stop: AtomicBool,
}

struct Inner {
    workers: BTreeMap<(String, u16), WorkerHandle>,
    memberships: Memberships,
    /// The drop-all sockets of `listen` routes (no ICMP port-unreachable).
    sinks: ListenSinks,
    /// Fanout group ids (IPv4, IPv6) per interface with several workers.
    fanout: BTreeMap<String, (u16, u16)>,
    next_fanout: u16,
}

/// Why the daemon could not start.
#[derive(Debug)]
pub enum StartError {
    /// A worker could not be set up (io_uring, permission, sockets).
    Worker {
        interface: String,
        error: SetupError,
    },
    /// A thread or eventfd could not be created.
    Os(io::Error),
    /// A worker did not report within the start-up timeout.
    Timeout { interface: String },
}

impl StartError {
    /// The process exit code (sysexits) for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Worker { error, .. } => error.exit_code(),
            StartError::Os(_) => crate::exit::OSERR,
            StartError::Timeout { .. } => crate::exit::SOFTWARE,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Worker { interface, error } => write!(f, "{interface}: {error}"),
            StartError::Os(e) => write!(f, "cannot start a worker: {e}"),
            StartError::Timeout { interface } => {
                write!(
                    f,
                    "the worker for {interface} did not start within {START_TIMEOUT:?}"
                )
            }
        }
    }
}

impl std::error::Error for StartError {}

impl Daemon {
    /// Starts the workers for `table` (published as generation 1). `config_path` is the file
    /// the table was compiled from (reloads read it through [`crate::reload::Reloader`]). Fails when a worker cannot start for a reason a
    /// retry will not fix (io_uring unavailable, missing capability); a missing interface is
    /// not an error (its worker waits for it).
    pub fn start(table: Table, config_path: &Path) -> Result<Daemon, StartError> {
        let table = table.with_generation(Generation(1));
        let daemon = Core {
            tables: Arc::new(ArcSwap::from_pointee(table.clone())),
            acks: Arc::new(AckSignal::default()),
            inner: Mutex::new(Inner {
                workers: BTreeMap::new(),
                memberships: Memberships::default(),
                sinks: ListenSinks::default(),
                fanout: BTreeMap::new(),
                next_fanout: (std::process::id() as u16).wrapping_mul(8) | 1,
            }),
            view: ArcSwap::from_pointee(Vec::new()),
            suppressed: ArcSwap::from_pointee(BTreeMap::new()),
            config_path: config_path.to_path_buf(),
            stop: AtomicBool::new(false),
        };
        daemon.start_workers()?;
        let core = Arc::new(daemon);
        let hk = {
            let core = core.clone();
            std::thread::Builder::new()
                .name("mcrelay-house".into())
                .spawn(move || housekeeping(&core))
                .map_err(StartError::Os)?
        };
        Ok(Daemon {
            core,
            housekeeping: Mutex::new(Some(hk)),
        })
    }

    /// The table the workers run now.
    pub fn current(&self) -> Arc<Table> {
        self.core.current()
    }

    /// The configuration file this daemon reloads from.
    pub fn config_path(&self) -> &Path {
        &self.core.config_path
    }

    /// Publishes `table` as the next generation: joins new groups, swaps the table in (one atomic
    /// store), starts/stops workers for interfaces that appear/disappear, waits up to `timeout`
    /// for every worker to acknowledge, then leaves groups no longer routed.
    pub fn publish(&self, table: Table, timeout: Duration) -> PublishReport {
        self.core.publish(table, timeout)
    }

    /// The latest snapshot of every worker.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        self.core.snapshots()
    }

    /// Stops every worker (each stops receiving, sends what it holds and exits), leaves every
    /// group, and returns when all threads have ended.
    pub fn shutdown(self) {
        self.stop_all();
    }

    fn stop_all(&self) {
        self.core.shutdown();
        if let Some(hk) = self
            .housekeeping
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            hk.thread().unpark();
            let _ = hk.join();
        }
    }
}

impl Dataplane for Daemon {
    fn current(&self) -> Arc<Table> {
        Daemon::current(self)
    }
    fn publish(&self, table: Table, timeout: Duration) -> PublishReport {
        Daemon::publish(self, table, timeout)
    }
    fn snapshots(&self) -> Vec<WorkerSnapshot> {
        Daemon::snapshots(self)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl Core {
    /// Starts the workers for the first table; on failure stops those already started.
    fn start_workers(&self) -> Result<(), StartError> {
        let table = self.current();
        let mut inner = self.lock();
        inner.memberships.sync(&wanted_memberships(&[&table]));
        inner.sinks.sync(&table);
        let specs = inner.specs(&table);
        let pending = self
            .spawn_workers(&mut inner, specs)
            .map_err(|(_, e)| StartError::Os(e))?;
        self.refresh_view(&inner);
        let failure = wait_ready(pending, Instant::now() + START_TIMEOUT)
            .into_iter()
            .next()
            .map(|((interface, _), error)| match error {
                Some(error) => StartError::Worker { interface, error },
                None => StartError::Timeout { interface },
            });
        match failure {
            None => Ok(()),
            Some(f) => {
                drop(inner);
                self.shutdown();
                Err(f)
            }
        }
    }

    fn current(&self) -> Arc<Table> {
        self.tables.load_full()
    }

    /// Starts a worker per spec and records it; returns what each will report when ready. On
    /// a failure to start a thread, returns those started so far with the error.
    fn spawn_workers(
        &self,
        inner: &mut Inner,
        specs: Vec<WorkerSpec>,
    ) -> Result<Pending, (Pending, io::Error)> {
        let mut pending = Vec::new();
        for spec in specs {
            let key = (spec.interface.clone(), spec.index);
            match worker::spawn(spec, self.tables.clone(), self.acks.clone()) {
                Ok((handle, ready)) => {
                    inner.workers.insert(key.clone(), handle);
                    pending.push((key, ready));
                }
                Err(e) => return Err((pending, e)),
            }
        }
        Ok(pending)
    }

    /// Publishes `table` as the next generation: joins new groups, swaps the table in (one atomic
    /// store), starts/stops workers for interfaces that appear/disappear, waits up to `timeout`
    /// for every worker to acknowledge, then leaves groups no longer routed.
    fn publish(&self, table: Table, timeout: Duration) -> PublishReport {
        let mut inner = self.lock();
        let old = self.tables.load_full();
        let generation = Generation(old.generation.0 + 1);
        let table = Arc::new(table.with_generation(generation));

        // 1. Joins first: the union of old and new, so nothing routed is left meanwhile.
        inner.memberships.sync(&wanted_memberships(&[&old, &table]));

        // 2. Swap, then bring the set of workers in line.
        self.tables.store(table.clone());
        inner.sinks.sync(&table);
        self.suppressed.store(Arc::new(inner.sinks.counts()));
        let specs: BTreeMap<(String, u16), WorkerSpec> = inner
            .specs(&table)
            .into_iter()
            .map(|s| ((s.interface.clone(), s.index), s))
            .collect();
        let mut report = PublishReport {
            generation,
            ..PublishReport::default()
        };
        let stale: Vec<(String, u16)> = inner
            .workers
            .iter()
            .filter(|(k, h)| specs.get(*k) != Some(&h.shared.spec))
            .map(|(k, _)| k.clone())
            .collect();
        let mut stopping = Vec::new();
        for k in stale {
            if let Some(h) = inner.workers.remove(&k) {
                h.shared.stop();
                if !report.workers_stopped.contains(&k.0) {
                    report.workers_stopped.push(k.0.clone());
                }
                stopping.push(h);
            }
        }
        for h in inner.workers.values() {
            h.shared.wake();
        }
        let new: Vec<WorkerSpec> = specs
            .into_iter()
            .filter(|(k, _)| !inner.workers.contains_key(k))
            .map(|(_, spec)| spec)
            .collect();
        let pending = match self.spawn_workers(&mut inner, new) {
            Ok(p) => p,
            Err((p, e)) => {
                tracing::error!("cannot start a worker: {e}");
                p
            }
        };
        for ((iface, _), _) in &pending {
            if !report.workers_started.contains(iface) {
                report.workers_started.push(iface.clone());
            }
        }
        self.refresh_view(&inner);
        for h in stopping {
            let _ = h.thread.join();
        }
        let deadline = Instant::now() + timeout;
        for ((iface, index), error) in wait_ready(pending, deadline) {
            match error {
                Some(e) => tracing::error!("worker {iface}/{index} failed to start: {e}"),
                None => tracing::warn!("worker {iface}/{index} did not report within {timeout:?}"),
            }
        }

        // 3. Wait for every live worker to run the new generation.
        let live: Vec<Arc<WorkerShared>> = inner
            .workers
            .values()
            .filter(|h| !h.thread.is_finished())
            .map(|h| h.shared.clone())
            .collect();
        report.acknowledged = self
            .acks
            .wait_until(deadline, || live.iter().all(|w| w.acked() >= generation));
        if !report.acknowledged {
            let late: Vec<String> = live
                .iter()
                .filter(|w| w.acked() < generation)
                .map(|w| format!("{}/{}", w.spec.interface, w.spec.index))
                .collect();
            tracing::warn!(
                "generation {generation}: workers {} did not acknowledge within {timeout:?}",
                late.join(", ")
            );
        }

        // 4. Leave what the new table no longer routes.
        inner.memberships.sync(&wanted_memberships(&[&table]));
        report
    }

    /// The latest snapshot of every worker.
    fn snapshots(&self) -> Vec<WorkerSnapshot> {
        let suppressed = self.suppressed.load();
        self.view
            .load()
            .iter()
            .map(|w| {
                let mut s = (*w.snapshot()).clone();
                if s.index == 0
                    && let Some(l) = suppressed.get(&s.interface)
                {
                    s.listen_suppressed = l.clone();
                }
                s
            })
            .collect()
    }

    /// Stops every worker and leaves every group; returns when all worker threads ended.
    fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let mut inner = self.lock();
        for h in inner.workers.values() {
            h.shared.stop();
        }
        let workers = std::mem::take(&mut inner.workers);
        for (_, h) in workers {
            let _ = h.thread.join();
        }
        inner.memberships.clear();
        inner.sinks = ListenSinks::default();
        self.refresh_view(&inner);
    }

    /// Re-checks memberships against the interfaces as they are now (an interface that
    /// appeared, or was re-created with a new index). Called by the housekeeping thread.
    fn refresh_memberships(&self) {
        let table = self.current();
        let mut inner = self.lock();
        inner.memberships.sync(&wanted_memberships(&[&table]));
        if !inner.sinks.failed.is_empty() {
            inner.sinks.sync(&table);
        }
        self.suppressed.store(Arc::new(inner.sinks.counts()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_view(&self, inner: &Inner) {
        self.view.store(Arc::new(
            inner.workers.values().map(|h| h.shared.clone()).collect(),
        ));
    }
}

impl Inner {
    /// The workers `table` needs, one per (ingress interface, index).
    fn specs(&mut self, table: &Table) -> Vec<WorkerSpec> {
        let mut out = Vec::new();
        // Interfaces linked by legs share one worker; every tunnel has a worker, routed or not:
        // it reads the tunnel's socket (keepalives, counters) and sends the keepalives that
        // show this end UP to its peers.
        let mut groups = ingress_groups(table);
        for t in &table.tunnels {
            if !groups
                .iter()
                .any(|(id, also)| *id == t.interface || also.contains(&t.interface))
            {
                groups.push((t.interface, Vec::new()));
            }
        }
        for (id, also) in groups {
            let iface = table.interface(id);
            // The compiler allows `workers > 1` only on interfaces without legs.
            let count = if also.is_empty() {
                iface.workers.max(1)
            } else {
                1
            };
            let fanout = if count > 1 {
                let next = &mut self.next_fanout;
                Some(*self.fanout.entry(iface.name.clone()).or_insert_with(|| {
                    let ids = (*next, next.wrapping_add(1));
                    *next = next.wrapping_add(2);
                    ids
                }))
            } else {
                None
            };
            for index in 0..count {
                out.push(WorkerSpec {
                    interface: iface.name.clone(),
                    index,
                    count,
                    cpu: worker_cpu(&iface.cpus, index, count),
                    fanout,
                    rcvbuf: iface.rcvbuf,
                    ingress: iface.ingress,
                    also: also
                        .iter()
                        .map(|a| table.interface(*a).name.clone())
                        .collect(),
                    tunnel: table.tunnel(id).map(|t| t.local),
                });
            }
        }
        out
    }
}

/// The workers' interfaces: every ingress interface, and the further interfaces whose sources
/// the same worker drives. Interfaces linked by the legs of a route (directly or through other
/// routes with legs) are received by one worker, so that each route's merge state has one
/// owner; it is named after the first of them in table order. Every other ingress interface
/// has workers of its own (`also` empty).
fn ingress_groups(table: &Table) -> Vec<(IfaceId, Vec<IfaceId>)> {
    // Union-find over interface ids, each set rooted at its lowest id.
    let mut parent: BTreeMap<IfaceId, IfaceId> = BTreeMap::new();
    for k in table.ingress_keys() {
        parent.entry(k.interface).or_insert(k.interface);
    }
    fn root(parent: &BTreeMap<IfaceId, IfaceId>, mut i: IfaceId) -> IfaceId {
        while parent[&i] != i {
            i = parent[&i];
        }
        i
    }
    for (_, r) in table.redundant_routes() {
        for leg in &r.legs[1..] {
            let (a, b) = (
                root(&parent, r.legs[0].interface),
                root(&parent, leg.interface),
            );
            if a != b {
                parent.insert(a.max(b), a.min(b));
            }
        }
    }
    let mut groups: BTreeMap<IfaceId, Vec<IfaceId>> = BTreeMap::new();
    for &i in parent.keys() {
        let r = root(&parent, i);
        let members = groups.entry(r).or_default();
        if r != i {
            members.push(i);
        }
    }
    groups.into_iter().collect()
}

/// The CPU a worker is pinned to: the interface's `cpus` in turn when given; otherwise, for
/// an interface with several workers, one CPU each in turn (so that fanout spreads the load);
/// a single worker is left to the scheduler.
fn worker_cpu(cpus: &[usize], index: u16, count: u16) -> Option<usize> {
    if !cpus.is_empty() {
        return Some(cpus[usize::from(index) % cpus.len()]);
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (count > 1).then(|| usize::from(index) % n)
}

/// A worker: its interface and index.
type WorkerKey = (String, u16);
/// Workers started and what each will report first.
type Pending = Vec<(WorkerKey, worker::Ready)>;

/// Waits until `deadline` for each started worker's first report; returns those that failed
/// (with the error) or did not report in time (`None`).
fn wait_ready(pending: Pending, deadline: Instant) -> Vec<(WorkerKey, Option<SetupError>)> {
    let mut failed = Vec::new();
    for (key, ready) in pending {
        match ready.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failed.push((key, Some(e))),
            Err(_) => failed.push((key, None)),
        }
    }
    failed
}

type MembershipKey = (IpAddr, Option<IpAddr>);

/// Memberships each table wants, by ingress interface name (the union over `tables`).
fn wanted_memberships(tables: &[&Table]) -> BTreeMap<String, BTreeSet<MembershipKey>> {
    let mut m: BTreeMap<String, BTreeSet<MembershipKey>> = BTreeMap::new();
    for t in tables {
        // A `listen` route receives unicast (a join of a unicast address fails), and a tunnel
        // is no kernel interface: neither has memberships.
        for k in t
            .ingress_keys()
            .filter(|k| !k.is_listen() && t.tunnel(k.interface).is_none())
        {
            m.entry(t.interface(k.interface).name.clone())
                .or_default()
                .insert((k.group, k.source));
        }
    }
    m
}

/// The drop-all UDP sockets of the `listen` routes, one per (interface, address, port), so that
/// the kernel answers none of the datagrams they relay with ICMP port-unreachable
/// ([`sys::listen`]). Reconciled on every publication: kept while a route still wants them.
#[derive(Default)]
struct ListenSinks {
    /// Each socket with the label of the route it serves.
    by_key: BTreeMap<(String, std::net::SocketAddr), (sys::listen::SinkSocket, String)>,
    /// Keys that failed to bind, with the error, so that a retry does not log it again.
    failed: BTreeMap<(String, std::net::SocketAddr), String>,
}

impl ListenSinks {
    fn sync(&mut self, table: &Table) {
        let mut wanted: BTreeMap<(String, std::net::SocketAddr), &str> = BTreeMap::new();
        for r in table.routes.iter().filter(|r| r.key.is_listen()) {
            let Some(port) = r.key.port else { continue };
            let iface = table.interface(r.key.interface);
            if table.tunnel(r.key.interface).is_some() {
                continue;
            }
            wanted.insert(
                (
                    iface.name.clone(),
                    std::net::SocketAddr::new(r.key.group, port),
                ),
                &r.label,
            );
        }
        self.by_key.retain(|k, _| wanted.contains_key(k));
        self.failed.retain(|k, _| wanted.contains_key(k));
        for ((ifname, addr), label) in wanted {
            let key = (ifname, addr);
            if let Some((_, l)) = self.by_key.get_mut(&key) {
                label.clone_into(l);
                continue;
            }
            match sys::listen::SinkSocket::open(addr, &key.0) {
                Ok(s) => {
                    self.failed.remove(&key);
                    self.by_key.insert(key, (s, label.to_string()));
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.failed.get(&key) != Some(&msg) {
                        tracing::warn!(
                            "route {label}: cannot hold {addr} on {} against ICMP \
                             port-unreachable ({msg}); the route relays, but the host answers \
                             its sender with port-unreachable unless another program holds the port",
                            key.0
                        );
                    }
                    self.failed.insert(key, msg);
                }
            }
        }
    }
}

impl ListenSinks {
    /// What each socket swallowed, by interface and route label.
    fn counts(&self) -> BTreeMap<String, Vec<(String, u64)>> {
        let mut m: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for ((ifname, _), (sock, label)) in &self.by_key {
            m.entry(ifname.clone())
                .or_default()
                .push((label.clone(), sock.drops()));
        }
        m
    }
}

/// The IGMP/MLD memberships of every ingress interface (helper sockets per interface).
#[derive(Default)]
struct Memberships {
    by_iface: BTreeMap<String, sys::membership::Memberships>,
}

impl Memberships {
    /// Makes the memberships equal to `wanted`, on each interface's current index. Interfaces
    /// that do not exist are skipped (retried by the housekeeping thread).
    fn sync(&mut self, wanted: &BTreeMap<String, BTreeSet<MembershipKey>>) {
        self.by_iface.retain(|name, _| wanted.contains_key(name));
        for (name, keys) in wanted {
            let Some(ifindex) = sys::ifindex(name) else {
                // Gone: its memberships went with it.
                self.by_iface.remove(name);
                continue;
            };
            let m = self
                .by_iface
                .entry(name.clone())
                .or_insert_with(|| sys::membership::Memberships::new(ifindex));
            let mut errors = Vec::new();
            if m.ifindex() != ifindex {
                errors.extend(m.set_ifindex(ifindex));
            }
            errors.extend(m.reconcile(keys));
            for ((group, source), e) in errors {
                match source {
                    Some(s) => tracing::warn!("{name}: membership of ({s}, {group}): {e}"),
                    None => tracing::warn!("{name}: membership of {group}: {e}"),
                }
            }
        }
    }

    fn clear(&mut self) {
        for m in self.by_iface.values_mut() {
            m.clear();
        }
        self.by_iface.clear();
    }
}

/// Once a second: memberships for interfaces that appeared or were re-created; every
/// `stats_interval`: a one-line summary per worker in the log.
fn housekeeping(core: &Core) {
    let mut last_summary = Instant::now();
    while !core.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(Duration::from_secs(1));
        if core.stop.load(Ordering::Acquire) {
            break;
        }
        core.refresh_memberships();
        let interval = core.current().daemon.stats_interval;
        if last_summary.elapsed() >= interval {
            last_summary = Instant::now();
            for s in core.snapshots() {
                tracing::info!("{}", summary_line(&s));
            }
        }
    }
}

/// One line about a worker: state, generation, frames, relayed, drops.
pub fn summary_line(s: &WorkerSnapshot) -> String {
    let sum = |f: fn(&crate::stats::DestinationSnapshot) -> u64| -> u64 {
        s.groups.iter().flat_map(|g| &g.destinations).map(f).sum()
    };
    let (relayed, send_drops, send_errors) =
        (sum(|d| d.packets), sum(|d| d.drops), sum(|d| d.errors));
    let dropped: u64 = s.drops.iter().sum();
    let state = match s.state {
        WorkerState::Starting => "starting",
        WorkerState::Running => "running",
        WorkerState::Waiting => "waiting",
        WorkerState::Stopping => "stopping",
        WorkerState::Stopped => "stopped",
        WorkerState::Failed => "failed",
    };
    let mut line = format!(
        "{}/{} {state} gen {}: frames {} relayed {} dropped {} send_drops {} send_errors {} \
         kernel_drops {}",
        s.interface,
        s.index,
        s.generation,
        s.frames,
        relayed,
        dropped,
        send_drops,
        send_errors,
        s.kernel_drops
    );
    if let Some(e) = &s.error {
        line.push_str(": ");
        line.push_str(e);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::{ReloadResult, Reloader, Trigger};
    use std::net::UdpSocket;
    use std::process::Command;

    /// A private network namespace with a multicast-capable loopback, for this test's thread
    /// and the workers it starts. Panics (loudly) without root.
    fn private_loopback() {
        if let Err(e) = sys::enter_private_netns() {
            panic!("this test needs root (CAP_SYS_ADMIN) to create a network namespace: {e}");
        }
        for cmd in [
            "ip link set lo up",
            "ip link set lo multicast on",
            "ip route add 224.0.0.0/4 dev lo",
        ] {
            let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
            assert!(st.success(), "`{cmd}` failed");
        }
    }

    fn config(dir: &Path, text: &str) -> (PathBuf, Table) {
        let path = dir.join("mcrelay.toml");
        std::fs::write(&path, text).unwrap();
        let table = match crate::config::load(&path, &crate::config::SystemResolver) {
            Ok(l) => l.table,
            Err(e) => panic!("{e}"),
        };
        (path, table)
    }

    fn text(extra: &str, p1: u16, p2: u16) -> String {
        text_with("", extra, p1, p2)
    }

    fn text_with(lo: &str, extra: &str, p1: u16, p2: u16) -> String {
        format!(
            "[interfaces.lo]\n{lo}\n\
             [destinations.one]\naddress = \"127.0.0.1:{p1}\"\n\
             [destinations.two]\naddress = \"127.0.0.1:{p2}\"\n\
             [[groups]]\ninterface = \"lo\"\ngroup = \"239.77.0.1\"\nport = 5000\nto = [\"one\"]\n{extra}"
        )
    }

    fn sender() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_multicast_ttl_v4(1).unwrap();
        s
    }

    fn receive(rx: &UdpSocket, n: usize, tag: u8) {
        let mut buf = [0u8; 2048];
        for i in 0..n {
            let len = rx
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} of {n} (tag {tag}) not relayed: {e}"));
            assert_eq!(&buf[..len], payload(tag, i).as_slice());
        }
    }

    fn payload(tag: u8, i: usize) -> Vec<u8> {
        let mut p = vec![tag; 100 + i % 7];
        p[..8].copy_from_slice(&(i as u64).to_be_bytes());
        p
    }

    /// Interfaces linked by legs (here b-d directly and d-e through a second route) are one
    /// worker's, named after the first; the others keep workers of their own.
    #[test]
    fn interfaces_linked_by_legs_share_one_worker() {
        let text = "[interfaces.a]\nworkers = 2\n[interfaces.b]\n[interfaces.c]\n[interfaces.d]\n[interfaces.e]\n\
             [destinations.out]\naddress = \"192.0.2.1:9000\"\n\
             [[groups]]\ninterface = \"a\"\ngroup = \"239.1.1.1\"\nto = [\"out\"]\n\
             [[groups]]\ninterface = \"c\"\ngroup = \"239.1.1.2\"\nto = [\"out\"]\n\
             [[groups]]\nlegs = [{ interface = \"d\", group = \"239.2.2.2\" }, { interface = \"b\", group = \"239.2.2.3\" }]\nredundancy = \"failover\"\nto = [\"out\"]\n\
             [[groups]]\nlegs = [{ interface = \"e\", group = \"239.3.3.3\" }, { interface = \"d\", group = \"239.3.3.4\" }]\nredundancy = \"failover\"\nto = [\"out\"]\n";
        let table = crate::config::compile(
            text,
            Path::new("t.toml"),
            &crate::config::FakeResolver::everything(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let mut inner = Inner {
            workers: BTreeMap::new(),
            memberships: Memberships::default(),
            sinks: ListenSinks::default(),
            fanout: BTreeMap::new(),
            next_fanout: 1,
        };
        let specs: Vec<(String, Vec<String>, u16, u16)> = inner
            .specs(&table)
            .into_iter()
            .map(|s| (s.interface, s.also, s.index, s.count))
            .collect();
        let s = |i: &str, also: &[&str], index, count| {
            (
                i.to_string(),
                also.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                index,
                count,
            )
        };
        assert_eq!(
            specs,
            vec![
                s("a", &[], 0, 2),
                s("a", &[], 1, 2),
                s("b", &["d", "e"], 0, 1),
                s("c", &[], 0, 1),
            ]
        );
        // Every leg's group is joined on its own interface.
        let m = wanted_memberships(&[&table]);
        let groups = |i: &str| -> Vec<String> { m[i].iter().map(|(g, _)| g.to_string()).collect() };
        assert_eq!(groups("b"), ["239.2.2.3"]);
        assert_eq!(groups("d"), ["239.2.2.2", "239.3.3.4"]);
        assert_eq!(groups("e"), ["239.3.3.3"]);
    }

    #[test]
    fn relays_publishes_and_keeps_counters_of_unchanged_groups() {
        private_loopback();
        let dir = std::env::temp_dir().join(format!("mcrelay-daemon-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rx1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        for r in [&rx1, &rx2] {
            r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let (p1, p2) = (
            rx1.local_addr().unwrap().port(),
            rx2.local_addr().unwrap().port(),
        );
        let (path, table) = config(&dir, &text("", p1, p2));
        let daemon = Arc::new(Daemon::start(table, &path).expect("daemon starts"));
        assert_eq!(daemon.current().generation, Generation(1));
        // Reloads go through the one reload path `mcrelay run` uses.
        let reloader = Reloader::new(
            path.clone(),
            daemon.clone(),
            Box::new(|text: &str, path: &Path| {
                crate::config::compile(text, path, &crate::config::SystemResolver)
            }),
            crate::config::sha256_hex(&std::fs::read(&path).unwrap()),
        );
        let tx = sender();
        for i in 0..100 {
            tx.send_to(&payload(1, i), "239.77.0.1:5000").unwrap();
        }
        receive(&rx1, 100, 1);

        // A second group, by the file and the one reload path.
        let extra = "[[groups]]\ninterface = \"lo\"\ngroup = \"239.77.0.2\"\nto = [\"two\"]\n";
        config(&dir, &text(extra, p1, p2));
        let outcome = reloader.reload(Trigger::Control);
        assert_eq!(outcome.result, ReloadResult::Applied, "{outcome:?}");
        assert!(outcome.acknowledged);
        assert_eq!(outcome.generation, 2);
        let diff = outcome.diff.expect("an applied reload has a diff");
        assert!(diff.workers_started.is_empty() && diff.workers_stopped.is_empty());
        // The same content again is a no-op.
        let again = reloader.reload(Trigger::Control);
        assert_eq!(
            (again.result, again.generation),
            (ReloadResult::Unchanged, 2)
        );
        for i in 0..50 {
            tx.send_to(&payload(1, i), "239.77.0.1:5000").unwrap();
            tx.send_to(&payload(2, i), "239.77.0.2:6000").unwrap();
        }
        receive(&rx1, 50, 1);
        receive(&rx2, 50, 2);

        // Counters: published within ~100 ms; the unchanged group kept its first 100.
        std::thread::sleep(worker::PUBLISH_PERIOD * 3);
        let snaps = daemon.snapshots();
        assert_eq!(snaps.len(), 1);
        let s = &snaps[0];
        assert_eq!(s.generation, 2);
        assert_eq!(s.state, WorkerState::Running);
        let g1 = s.groups.iter().find(|g| g.port == Some(5000)).unwrap();
        assert_eq!(g1.packets, 150);
        assert_eq!(g1.destinations[0].packets, 150);
        assert_eq!(g1.destinations[0].errors + g1.destinations[0].drops, 0);
        let g2 = s.groups.iter().find(|g| g.port.is_none()).unwrap();
        assert_eq!((g2.packets, g2.destinations[0].packets), (50, 50));
        // The relay's own unicast egress (also seen on lo) never reaches user space as a frame
        // to drop: the socket filter keeps it out.
        assert_eq!(s.frames, 200);

        // An invalid file keeps the running table.
        std::fs::write(&path, "garbage =").unwrap();
        let rejected = reloader.reload(Trigger::Control);
        assert_eq!(rejected.result, ReloadResult::Rejected, "{rejected:?}");
        assert!(!rejected.errors.is_empty());
        assert_eq!(daemon.current().generation, Generation(2));
        drop(reloader);
        let daemon = Arc::into_inner(daemon).expect("the reloader held the only other reference");

        let t0 = Instant::now();
        daemon.shutdown();
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "shutdown took {:?}",
            t0.elapsed()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A join of a unicast address fails with EINVAL, and a tunnel is no kernel interface:
    /// `listen` routes and routes on tunnels want no membership.
    #[test]
    fn listen_routes_and_tunnels_want_no_membership() {
        let text = "[interfaces.eth0]\n\
             [interfaces.far]\ntunnel = { local = \"0.0.0.0:9510\", peers = [\"192.0.2.1:9510\"] }\n\
             [destinations.d]\naddress = \"192.0.2.9:9\"\n\
             [destinations.d6]\naddress = \"[2001:db8::9]:9\"\n\
             [[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"d\"]\n\
             [[groups]]\ninterface = \"eth0\"\nlisten = \"0.0.0.0:6000\"\nto = [\"d\"]\n\
             [[groups]]\ninterface = \"eth0\"\nlisten = \"[::]:6000\"\nto = [\"d6\"]\n\
             [[groups]]\ninterface = \"far\"\ngroup = \"239.1.1.2\"\nport = 5000\nto = [\"d\"]\n";
        let table = crate::config::compile(
            text,
            Path::new("test.toml"),
            &crate::config::FakeResolver::new(&[("eth0", 2)]),
        )
        .unwrap();
        let m = wanted_memberships(&[&table]);
        let want: BTreeMap<String, BTreeSet<MembershipKey>> = [(
            "eth0".to_string(),
            [("239.1.1.1".parse().unwrap(), None)].into_iter().collect(),
        )]
        .into_iter()
        .collect();
        assert_eq!(m, want);
    }

    #[test]
    fn ring_mode_relays_every_datagram() {
        private_loopback();
        let dir = std::env::temp_dir().join(format!("mcrelay-ring-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let p1 = rx.local_addr().unwrap().port();
        let (path, table) = config(&dir, &text_with("ingress = \"ring\"", "", p1, p1));
        let daemon = Daemon::start(table, &path).expect("daemon starts");
        let tx = sender();
        // In rounds: a ring block hands over everything at once, and the receiving socket's
        // default buffer holds only about 250 of these datagrams.
        for _ in 0..3 {
            for i in 0..100 {
                tx.send_to(&payload(3, i), "239.77.0.1:5000").unwrap();
            }
            receive(&rx, 100, 3);
        }
        std::thread::sleep(worker::PUBLISH_PERIOD * 3);
        let s = &daemon.snapshots()[0];
        assert_eq!((s.frames, s.groups[0].destinations[0].packets), (300, 300));
        daemon.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
