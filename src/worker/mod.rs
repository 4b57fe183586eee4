//! The worker: one thread, one io_uring (the "unified loop"), any number of ingress sources.
//!
//! Everything a worker waits for is a completion on its ring: the readability poll of each of
//! its [`Source`](source::Source)s (the ingress seam, [`source`]), a multishot timer (stats publication,
//! kernel statistics, retries) and a multishot poll on an eventfd that the daemon writes to
//! announce a new table or a stop. No queues between threads: the table is read through
//! arc-swap once per batch, counters are plain integers owned by the thread and published as a
//! [`WorkerSnapshot`] on the timer.
//!
//! One batch: wait for completions; if the table's generation changed, apply it (sources
//! opened, closed and re-filtered, egress sockets reconciled, counters re-keyed) and
//! acknowledge it; note what the polls reported; read every ready unit of every source in
//! place, decide each frame and queue its payload per destination (never copied); send each
//! destination's queue in one `sendmmsg` (UDP GSO runs where possible) after every
//! [`Source::units_per_flush`](source::Source::units_per_flush) units; give the units back; re-arm the polls that ended.
//!
//! Kernel features: io_uring with DEFER_TASKRUN (6.1), multishot timeout (6.4), `min_wait`
//! batching (6.12, optional).

pub mod af_packet;
pub mod counters;
pub mod egress;
pub mod redundant;
pub mod source;
pub mod sources;
pub mod token;
pub mod tunnel;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::forward;
use crate::packet::Family;
use crate::stats::{DropReason, WorkerSnapshot, WorkerState};
use crate::sys::uring::{Completion, Ring};
use crate::sys::{self, EventFd, SetupError};
use crate::table::{Generation, IfaceId, IngressMode, Table};

use counters::Counters;
use egress::{EgressSet, Item, dest_family};
use redundant::Redundant;
use source::{Opener, Region};
use sources::SourceSet;
use token::Token;

/// How often a worker publishes its snapshot.
pub const PUBLISH_PERIOD: Duration = Duration::from_millis(100);
/// Completions a worker waits for before it runs a batch, unless the coalescing wait passed.
const BATCH_WANT: usize = 64;
/// How often a worker retries what is missing (an interface, an egress socket).
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);

/// Adaptive coalescing: after a batch of at least [`COALESCE_MIN`] frames (the worker is
/// behind the traffic, so the frames would have waited anyway), the next wait lasts up to
/// [`COALESCE_WAIT`] past the first completion, so that the next batch is larger: fewer sends
/// and fewer wake-ups of the receiving side per datagram. After a smaller batch (light
/// traffic) the worker wakes at the next frame: no added latency.
const COALESCE_MIN: usize = 8;
const COALESCE_WAIT: Duration = Duration::from_micros(30);

/// What a worker is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The interface the worker is named after and receives on.
    pub interface: String,
    /// Further interfaces whose sources the same thread drives (the legs of a redundant
    /// route); empty for the usual one worker per interface.
    pub also: Vec<String>,
    /// Index among the interface's workers, and their number.
    pub index: u16,
    pub count: u16,
    pub cpu: Option<usize>,
    /// Fanout group ids (IPv4, IPv6) shared by the interface's workers when `count > 1`.
    pub fanout: Option<(u16, u16)>,
    /// Requested AF_PACKET receive buffer (and ring size) in bytes.
    pub rcvbuf: usize,
    /// Which memory-mapped ring the AF_PACKET sources use.
    pub ingress: IngressMode,
    /// The interface is a tunnel bound to this local address: the worker reads the tunnel's
    /// socket instead of AF_PACKET rings.
    pub tunnel: Option<std::net::SocketAddr>,
}

impl WorkerSpec {
    /// Every interface the worker receives on.
    pub fn interfaces(&self) -> Vec<String> {
        std::iter::once(self.interface.clone())
            .chain(self.also.iter().cloned())
            .collect()
    }
}

/// Wakes whoever waits for acknowledgements when a worker acknowledges a generation.
#[derive(Debug, Default)]
pub struct AckSignal {
    lock: Mutex<()>,
    cv: Condvar,
}

impl AckSignal {
    pub fn notify(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    /// Waits until `done()` holds or `deadline` passes; returns `done()`.
    pub fn wait_until(&self, deadline: Instant, done: impl Fn() -> bool) -> bool {
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Short waits: an acknowledgement between `done()` and the wait is not missed for
            // long even if its notification raced ahead of us.
            let t = (deadline - now).min(Duration::from_millis(5));
            g = self
                .cv
                .wait_timeout(g, t)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The part of a worker other threads see.
pub struct WorkerShared {
    pub spec: WorkerSpec,
    wake: EventFd,
    stop: AtomicBool,
    acked: AtomicU64,
    snapshot: ArcSwap<WorkerSnapshot>,
    acks: Arc<AckSignal>,
}

impl WorkerShared {
    /// Generation of the table the worker runs (0 before the first).
    pub fn acked(&self) -> Generation {
        Generation(self.acked.load(Ordering::Acquire))
    }

    pub fn snapshot(&self) -> Arc<WorkerSnapshot> {
        self.snapshot.load_full()
    }

    /// Tells the worker a new table is published.
    pub fn wake(&self) {
        self.wake.wake();
    }

    /// Asks the worker to stop (it drains and exits; join its thread to wait).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.wake();
    }
}

/// A running worker thread.
pub struct WorkerHandle {
    pub shared: Arc<WorkerShared>,
    pub thread: JoinHandle<()>,
}

/// What a starting worker reports first: Running or Waiting, or the error that stopped it
/// (io_uring unavailable, missing permission).
pub type Ready = mpsc::Receiver<Result<WorkerState, SetupError>>;

/// Starts a worker receiving through AF_PACKET sources (or a tunnel's socket, for a tunnel).
pub fn spawn(
    spec: WorkerSpec,
    tables: Arc<ArcSwap<Table>>,
    acks: Arc<AckSignal>,
) -> io::Result<(WorkerHandle, Ready)> {
    if spec.tunnel.is_some() {
        let opener = tunnel::TunnelOpener {
            rcvbuf: spec.rcvbuf,
        };
        return spawn_with(spec, tables, acks, Box::new(opener));
    }
    let opener = af_packet::PacketOpener {
        ingress: spec.ingress,
        rcvbuf: spec.rcvbuf,
        fanout: spec.fanout,
    };
    spawn_with(spec, tables, acks, Box::new(opener))
}

/// Starts a worker whose sources `opener` opens.
pub fn spawn_with(
    spec: WorkerSpec,
    tables: Arc<ArcSwap<Table>>,
    acks: Arc<AckSignal>,
    opener: Box<dyn Opener>,
) -> io::Result<(WorkerHandle, Ready)> {
    let shared = Arc::new(WorkerShared {
        wake: EventFd::new()?,
        stop: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        snapshot: ArcSwap::from_pointee(Counters::default().snapshot(
            &spec.interface,
            spec.index,
            WorkerState::Starting,
            0,
            Instant::now(),
            SystemTime::now(),
            None,
        )),
        acks,
        spec,
    });
    let (tx, rx) = mpsc::channel();
    let s = shared.clone();
    let name = format!("mcrelay-{}-{}", s.spec.interface, s.spec.index);
    let thread = std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || thread_main(s, tables, opener, tx))?;
    Ok((WorkerHandle { shared, thread }, rx))
}

fn thread_main(
    shared: Arc<WorkerShared>,
    tables: Arc<ArcSwap<Table>>,
    opener: Box<dyn Opener>,
    ready: mpsc::Sender<Result<WorkerState, SetupError>>,
) {
    let spec = shared.spec.clone();
    if let Some(cpu) = spec.cpu {
        match sys::pin_current_thread(cpu) {
            Ok(()) => tracing::debug!(interface = %spec.interface, cpu, "worker pinned"),
            Err(e) => tracing::warn!(
                "worker {}/{}: cannot pin to cpu {cpu}: {e}",
                spec.interface,
                spec.index
            ),
        }
    }
    let mut w = Worker {
        interfaces: spec.interfaces(),
        shared: shared.clone(),
        tables,
        opener,
        counters: Counters::default(),
        redundant: Redundant::default(),
        egress: EgressSet::new(true),
        generation: Generation(u64::MAX),
        ifaces: Vec::new(),
        state: WorkerState::Starting,
        error: None,
        ready: Some(ready),
        last_warn: None,
    };
    while !shared.stop.load(Ordering::Acquire) {
        let mut lp = match Loop::new(&w) {
            Ok(lp) => lp,
            Err(e) => {
                w.fail(e);
                return;
            }
        };
        match lp.run(&mut w) {
            Exit::Stop => break,
            Exit::Refused(e) => {
                w.fail(e);
                return;
            }
            Exit::Failed(msg) => {
                tracing::error!("worker {}/{}: {msg}", spec.interface, spec.index);
                w.set_state(WorkerState::Failed, Some(msg));
                drop(lp);
                w.idle(RETRY_PERIOD * 5);
            }
        }
    }
    w.set_state(WorkerState::Stopped, None);
}

/// A worker's state that outlives its ring (a failed ring is replaced).
struct Worker {
    shared: Arc<WorkerShared>,
    interfaces: Vec<String>,
    tables: Arc<ArcSwap<Table>>,
    opener: Box<dyn Opener>,
    counters: Counters,
    /// The state of each route with legs this worker receives.
    redundant: Redundant,
    egress: EgressSet,
    generation: Generation,
    /// Ids of `interfaces` in the current table.
    ifaces: Vec<IfaceId>,
    state: WorkerState,
    error: Option<String>,
    ready: Option<mpsc::Sender<Result<WorkerState, SetupError>>>,
    /// The last warning about opening sources, so that a retry does not repeat it.
    last_warn: Option<String>,
}

impl Worker {
    /// Applies a new table to what outlives the ring (counters re-keyed, egress sockets
    /// reconciled); the loop's sources are reconciled after this, and only then is the
    /// generation acknowledged ([`Worker::acknowledge`]).
    fn apply_table(&mut self, table: &Table) {
        self.ifaces = self
            .interfaces
            .iter()
            .filter_map(|n| table.interface_id(n))
            .collect();
        self.counters.rekey(table, &self.ifaces);
        self.redundant.rekey(table, &self.ifaces);
        for e in self.egress.reconcile(table, &self.ifaces) {
            tracing::warn!("{e}");
        }
        self.generation = table.generation;
    }

    /// Tells the daemon the worker runs `generation` in full (filters attached, sockets open).
    fn acknowledge(&mut self, generation: Generation) {
        if self.shared.acked.load(Ordering::Acquire) == generation.0 {
            return;
        }
        self.shared.acked.store(generation.0, Ordering::Release);
        self.shared.acks.notify();
        tracing::debug!(
            interface = %self.shared.spec.interface,
            index = self.shared.spec.index,
            generation = generation.0,
            "worker runs generation"
        );
    }

    fn set_state(&mut self, state: WorkerState, error: Option<String>) {
        self.state = state;
        self.error = error;
        // Published before the first report, so whoever waits for it reads this state.
        self.publish(Instant::now());
        if let Some(tx) = self.ready.take() {
            if matches!(state, WorkerState::Running | WorkerState::Waiting) {
                let _ = tx.send(Ok(state));
            } else {
                self.ready = Some(tx);
            }
        }
    }

    fn fail(&mut self, e: SetupError) {
        let msg = e.to_string();
        tracing::error!(
            "worker {}/{}: {msg}",
            self.shared.spec.interface,
            self.shared.spec.index
        );
        self.state = WorkerState::Failed;
        self.error = Some(msg);
        self.publish(Instant::now());
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(Err(e));
        }
    }

    fn publish(&mut self, now: Instant) {
        let error = self.error.clone().or_else(|| self.egress.error());
        let snap = self.counters.snapshot(
            &self.shared.spec.interface,
            self.shared.spec.index,
            self.state,
            self.shared.acked.load(Ordering::Acquire),
            now,
            SystemTime::now(),
            error,
        );
        let mut snap = crate::stats::WorkerSnapshot {
            tunnels: tunnel::snapshots(&self.interfaces, now),
            ..snap
        };
        snap.redundant = self.redundant.snapshot();
        self.shared.snapshot.store(Arc::new(snap));
    }

    /// Waits (acknowledging new tables) until `period` passes or a stop is requested.
    fn idle(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let woken = self.shared.wake.wait(deadline - now);
            let table = self.tables.load_full();
            if table.generation != self.generation {
                self.apply_table(&table);
                self.acknowledge(table.generation);
            }
            if woken {
                self.publish(Instant::now());
            }
        }
    }

    /// One received frame: decide, count, queue its payload for every destination.
    /// `region`/`base`: the unit the frame lies in and the frame's offset in it, so that the
    /// payload is sent from there without a copy.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn on_frame(
        &mut self,
        table: &Table,
        iface: IfaceId,
        family: Family,
        frame: &[u8],
        region: Region,
        base: u32,
        now: Instant,
    ) {
        self.counters.frames += 1;
        self.counters.frame_bytes += frame.len() as u64;
        let (rid, leg, mut dg) = match forward::decide_leg(table, iface, frame, family) {
            Ok(d) => d,
            Err(reason) => {
                self.counters.drop_frame(reason);
                return;
            }
        };
        // A route with legs: only what its merge or failover lets through goes out, as one
        // stream (a destination keeping the ingress group or port uses the first leg's). The
        // state counts what it drops.
        if let Some(red) = self.redundant.get_mut(rid) {
            if !red.forward(leg.0, dg.payload, now) {
                return;
            }
            dg.group = red.group;
            if let Some(port) = red.port {
                dg.dst_port = port;
            }
        }
        let Some(rc) = self.counters.route_mut(rid) else {
            self.counters.drop_frame(DropReason::NoRoute);
            return;
        };
        rc.observe_payload(dg.payload, now);
        let off = dg.payload.as_ptr() as usize - frame.as_ptr() as usize;
        let len = dg.payload.len();
        let route = table.route(rid);
        for (pos, &did) in route.destinations.iter().enumerate() {
            let dest = table.destination(did);
            match self.egress.slot_for(did, dest_family(dest, &dg.group)) {
                Some(slot) => {
                    let target = forward::target(dest, &dg, self.egress.ifindex(slot));
                    self.egress.push(
                        slot,
                        Item {
                            region,
                            off: base + off as u32,
                            len: len as u16,
                            route: rid.0,
                            dest_pos: pos as u16,
                            target,
                            seq: 0,
                        },
                        dest,
                        &dg,
                    );
                }
                None => {
                    if let Some(d) = rc.dests.get_mut(pos) {
                        d.errors += 1;
                    }
                }
            }
        }
    }
}

/// Why the loop ended.
enum Exit {
    Stop,
    /// At start-up, a source could not be opened for a reason a retry would not fix (the
    /// daemon exits with it).
    Refused(SetupError),
    /// The ring failed: a new one is tried after a pause.
    Failed(String),
}

/// The ring and the sources: what one run of the loop owns.
struct Loop {
    ring: Ring,
    sources: SourceSet,
    cqes: Vec<Completion>,
    last_retry: Instant,
}

impl Loop {
    fn new(w: &Worker) -> Result<Loop, SetupError> {
        let mut ring = Ring::new()?;
        ring.timeout_multi(PUBLISH_PERIOD, Token::Tick.encode())
            .map_err(|e| SetupError::os("cannot arm the stats timer", e))?;
        ring.poll_multi(w.shared.wake.as_raw_fd(), Token::Wake.encode())
            .map_err(|e| SetupError::os("cannot arm the wake-up", e))?;
        Ok(Loop {
            ring,
            sources: SourceSet::default(),
            cqes: Vec::with_capacity(sys::uring::CQ_ENTRIES as usize),
            last_retry: Instant::now(),
        })
    }

    /// Applies `table` (if new) to the worker and the sources, then opens what is missing
    /// and sets the worker's state from the outcome.
    fn apply(&mut self, w: &mut Worker, table: &Table) -> Result<(), SetupError> {
        if table.generation != w.generation {
            w.apply_table(table);
        }
        let out = self
            .sources
            .reconcile(&mut self.ring, &mut *w.opener, table, &w.interfaces);
        w.acknowledge(table.generation);
        let (state, msg) = if let Some(e) = out.errors.into_iter().next() {
            let retryable = !matches!(
                e,
                SetupError::NoPermission { .. } | SetupError::IoUringUnavailable { .. }
            );
            // At start-up every refusal is reported at once (the daemon exits with it);
            // later, those a retry may fix are retried.
            if w.ready.is_some() || !retryable {
                return Err(e);
            }
            (WorkerState::Failed, Some(e.to_string()))
        } else if let Some(waiting) = out.waiting {
            (WorkerState::Waiting, Some(waiting))
        } else {
            (WorkerState::Running, None)
        };
        match &msg {
            Some(m) if w.last_warn.as_ref() != Some(m) => {
                if state == WorkerState::Waiting {
                    tracing::warn!("{m}; waiting for it");
                } else {
                    tracing::error!(
                        "worker {}/{}: {m}",
                        w.shared.spec.interface,
                        w.shared.spec.index
                    );
                }
            }
            None if w.state == WorkerState::Waiting => tracing::info!(
                "worker {}/{} receiving on {}",
                w.shared.spec.interface,
                w.shared.spec.index,
                w.interfaces.join(", ")
            ),
            _ => {}
        }
        w.last_warn = msg.clone();
        if state != w.state || msg != w.error {
            w.set_state(state, msg);
        }
        Ok(())
    }

    fn run(&mut self, w: &mut Worker) -> Exit {
        let table = w.tables.load_full();
        if let Err(e) = self.apply(w, &table) {
            return Exit::Refused(e);
        }
        // Frames read in the previous batch (drives the adaptive coalescing).
        let mut frames = 0usize;
        loop {
            let wait = if frames >= COALESCE_MIN {
                COALESCE_WAIT
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.ring.submit_and_wait_batch(BATCH_WANT, wait) {
                return Exit::Failed(format!("io_uring_enter failed: {e}"));
            }
            self.cqes.clear();
            self.ring.completions(&mut self.cqes);
            let table = w.tables.load();
            if table.generation != w.generation
                && let Err(e) = self.apply(w, &table)
            {
                return Exit::Refused(e);
            }
            let mut tick = false;
            let mut wake = false;
            for c in &self.cqes {
                match Token::decode(c.user_data) {
                    Some(Token::Poll { source, epoch }) => {
                        self.sources.on_poll(source, epoch, c.result, c.more());
                    }
                    Some(Token::Tick) => {
                        tick = true;
                        if !c.more() {
                            let _ = self
                                .ring
                                .timeout_multi(PUBLISH_PERIOD, Token::Tick.encode());
                        }
                    }
                    Some(Token::Wake) => {
                        wake = true;
                        if !c.more() {
                            let _ = self
                                .ring
                                .poll_multi(w.shared.wake.as_raw_fd(), Token::Wake.encode());
                        }
                    }
                    Some(Token::Cancel) | None => {}
                }
            }
            let now = Instant::now();
            frames = self.read(w, &table, now);
            self.sources.arm(&mut self.ring);
            drop(table);
            if wake {
                w.shared.wake.drain();
                if w.shared.stop.load(Ordering::Acquire) {
                    self.drain_for_stop(w);
                    return Exit::Stop;
                }
                // Usually applied already at the top of this batch: re-filtering every source
                // again would rebuild each socket filter once more per reload.
                let table = w.tables.load_full();
                if table.generation != w.generation
                    && let Err(e) = self.apply(w, &table)
                {
                    return Exit::Refused(e);
                }
            }
            if tick {
                self.on_tick(w, now);
            }
        }
    }

    /// Reads every ready unit of every source, sending after each source's
    /// [`Source::units_per_flush`](source::Source::units_per_flush) units so that a burst does not overrun the egress socket
    /// buffers while sends still go out in batches. Returns the frames read.
    fn read(&mut self, w: &mut Worker, table: &Table, now: Instant) -> usize {
        let mut read = 0;
        for i in 0..self.sources.slots() {
            let per_flush = self.sources.units_per_flush(i);
            let mut pending = 0usize;
            while let Some((region, entry)) = self.sources.take(i) {
                let iface = entry.iface;
                let family = (entry.source.unit_family(region.unit)).unwrap_or(entry.key.family);
                entry.source.frames(region.unit, &mut |base, frame| {
                    w.on_frame(table, iface, family, frame, region, base, now);
                    read += 1;
                });
                pending += 1;
                if pending >= per_flush {
                    self.flush(w);
                    pending = 0;
                }
            }
            if pending > 0 {
                self.flush(w);
            }
        }
        read
    }

    /// Sends what is queued, then gives the units back.
    fn flush(&mut self, w: &mut Worker) {
        w.egress.flush(&self.sources, &mut w.counters);
        self.sources.release_held();
    }

    fn on_tick(&mut self, w: &mut Worker, now: Instant) {
        self.sources.tick(now);
        w.redundant.poll(now);
        let (packets, drops) = self.sources.statistics();
        w.counters.kernel_packets += packets;
        w.counters.kernel_drops += drops;
        let retry = now.duration_since(self.last_retry) >= RETRY_PERIOD;
        for m in w.egress.maintain(retry) {
            tracing::info!("{m}");
        }
        if retry {
            self.last_retry = now;
            for name in self.sources.retry(&mut self.ring) {
                tracing::warn!(
                    "interface {name} went away; worker {} waits for it",
                    w.shared.spec.index
                );
            }
            if w.state != WorkerState::Running || self.sources.open_count() < wanted_len(w) {
                let table = w.tables.load_full();
                // Not at start-up: every error here is retried.
                let _ = self.apply(w, &table);
            }
        }
        w.publish(now);
    }

    /// Stop: relay what the sources already handed over, then cancel the polls and wait
    /// (briefly) for their last completions, so that the kernel holds no request of a ring
    /// about to close.
    fn drain_for_stop(&mut self, w: &mut Worker) {
        w.state = WorkerState::Stopping;
        let table = w.tables.load_full();
        self.read(w, &table, Instant::now());
        self.sources.cancel_all(&mut self.ring);
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.sources.any_armed() && Instant::now() < deadline {
            if self
                .ring
                .submit_and_wait(1, Some(Duration::from_millis(20)))
                .is_err()
            {
                break;
            }
            self.cqes.clear();
            self.ring.completions(&mut self.cqes);
            for c in &self.cqes {
                if let Some(Token::Poll { source, epoch }) = Token::decode(c.user_data) {
                    self.sources.on_poll(source, epoch, c.result, c.more());
                }
            }
        }
    }
}

/// How many sources the worker's table wants (to notice one that could not be opened).
fn wanted_len(w: &Worker) -> usize {
    source::wanted(&w.tables.load(), &w.interfaces).len()
}
