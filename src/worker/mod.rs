//! The per-interface worker: one thread, one io_uring (the "unified loop").
//!
//! Everything a worker waits for is a completion on its ring: multishot receives on its AF_PACKET
//! sockets (one per IP version the table routes on the interface) into a provided-buffer ring, a
//! multishot timer for the stats publication, and a multishot poll on an eventfd that the daemon
//! writes to announce a new table or a stop. No queues between threads: the table is read
//! through arc-swap (once per batch), counters are plain integers owned by the thread and
//! published as a [`WorkerSnapshot`] on the timer.
//!
//! One batch: wait for at least one completion; copy the completions out; if the table's
//! generation changed, apply it (filter re-attached, sockets opened/closed, counters re-keyed)
//! and acknowledge it; decide every received frame and queue its payload per destination (the
//! payload stays in the receive buffer, no copy); send each destination's queue in one
//! `sendmmsg` (UDP GSO runs where possible); give the buffers back and publish the ring tail;
//! re-arm any multishot receive that ended (after the buffers are back, see FACTS.md).
//!
//! Kernel features: io_uring with provided-buffer rings (5.19), multishot receive (6.0),
//! DEFER_TASKRUN (6.1), multishot timeout (6.4).

pub mod counters;
pub mod egress;
pub mod token;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::filter;
use crate::forward;
use crate::packet::Family;
use crate::stats::{DropReason, WorkerSnapshot, WorkerState};
use crate::sys::packet_ring::{RingKind, RingSpec};
use crate::sys::packet_socket::{PacketSocket, RcvbufOutcome};
use crate::sys::uring::{Completion, Ring};
use crate::sys::{self, EventFd, SetupError};
use crate::table::{Generation, IfaceId, IngressMode, Table};

use counters::Counters;
use egress::{EgressSet, FrameStore, Item, dest_family, ring_region};
use token::Token;

/// How often a worker publishes its snapshot.
pub const PUBLISH_PERIOD: Duration = Duration::from_millis(100);
/// Completions a worker waits for before it runs a batch, unless `min_wait` passed first.
pub const BATCH_WANT: usize = 64;

/// Poll results that mean the socket has an error rather than frames.
const POLL_ERRORS: i32 = (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) as i32;

/// TPACKET_V2 slots read before their datagrams are sent (one GSO run's worth).
const FRAMES_PER_FLUSH: usize = 64;

/// Adaptive coalescing: after a batch of at least [`COALESCE_MIN`] frames (the worker is
/// behind the traffic, so the frames would have waited anyway), the next wait lasts up to
/// [`COALESCE_WAIT`] (`MCRELAY_COALESCE_US`) past the first completion, so that the next batch
/// is larger: fewer sends and fewer wake-ups of the receiving side per datagram. A batch
/// smaller than that (light traffic) is followed by an immediate wake-up at the next frame: no
/// added latency.
const COALESCE_MIN: usize = 8;
pub const COALESCE_WAIT: Duration = Duration::from_micros(30);

/// How often a worker retries what is missing (its interface, an egress socket).
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);

/// What a worker is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    pub interface: String,
    /// Index among the interface's workers, and their number.
    pub index: u16,
    pub count: u16,
    pub cpu: Option<usize>,
    /// Fanout group ids (IPv4, IPv6) shared by the interface's workers when `count > 1`.
    pub fanout: Option<(u16, u16)>,
    /// Requested AF_PACKET receive buffer in bytes.
    pub rcvbuf: usize,
    /// Use UDP GSO on egress where the device allows it.
    pub gso: bool,
    /// Multishot receive into provided buffers, or a memory-mapped ring (blocks or slots).
    pub ingress: IngressMode,
    /// Batching: after this long with at least one completion, run the batch (0 = at once).
    pub min_wait: Duration,
    /// Adaptive coalescing: the wait after a large batch ([`COALESCE_WAIT`]; 0 = off).
    pub coalesce: Duration,
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

/// Starts a worker. `ready` receives its first state (Running or Waiting) or the error that
/// stopped it from starting (io_uring unavailable, missing permission).
pub fn spawn(
    spec: WorkerSpec,
    tables: Arc<ArcSwap<Table>>,
    acks: Arc<AckSignal>,
) -> io::Result<(
    WorkerHandle,
    mpsc::Receiver<Result<WorkerState, SetupError>>,
)> {
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
        .spawn(move || thread_main(s, tables, tx))?;
    Ok((WorkerHandle { shared, thread }, rx))
}

fn thread_main(
    shared: Arc<WorkerShared>,
    tables: Arc<ArcSwap<Table>>,
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
        shared: shared.clone(),
        tables,
        counters: Counters::default(),
        egress: EgressSet::new(spec.gso),
        generation: Generation(u64::MAX),
        iface: None,
        state: WorkerState::Starting,
        error: None,
        ready: Some(ready),
    };
    // Probe io_uring once so that a sandbox forbidding it is reported at start, even for an
    // interface that does not exist yet.
    if let Err(e) = sys::uring::new_ring() {
        w.fail(e);
        return;
    }
    let mut last_warn: Option<String> = None;
    while !shared.stop.load(Ordering::Acquire) {
        let table = w.tables.load_full();
        w.apply_table(&table, None);
        match Session::open(&mut w, &table) {
            Ok(mut session) => {
                last_warn = None;
                w.set_state(WorkerState::Running, None);
                tracing::info!(
                    "worker {}/{} receiving on {} (ifindex {})",
                    spec.interface,
                    spec.index,
                    spec.interface,
                    session.ifindex
                );
                let exit = session.run(&mut w);
                drop(session);
                match exit {
                    Exit::Stop => break,
                    Exit::Gone => {
                        tracing::warn!(
                            "interface {} went away; worker {} waits for it",
                            spec.interface,
                            spec.index
                        );
                        continue;
                    }
                    Exit::Failed(msg) => {
                        tracing::error!("worker {}/{}: {msg}", spec.interface, spec.index);
                        w.set_state(WorkerState::Failed, Some(msg));
                        w.idle(RETRY_PERIOD * 5);
                    }
                }
            }
            Err(SetupError::NoInterface { name }) => {
                let msg = format!("interface {name} does not exist");
                if last_warn.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("{msg}; waiting for it");
                    last_warn = Some(msg.clone());
                }
                w.set_state(WorkerState::Waiting, Some(msg));
                w.idle(RETRY_PERIOD);
            }
            Err(e) => {
                let retryable = !matches!(
                    e,
                    SetupError::NoPermission { .. } | SetupError::IoUringUnavailable { .. }
                );
                // At start-up every refusal is reported at once (the daemon exits with it);
                // later, those a retry may fix are retried.
                if w.ready.is_some() || !retryable {
                    w.fail(e);
                    return;
                }
                let msg = e.to_string();
                if last_warn.as_deref() != Some(msg.as_str()) {
                    tracing::error!("worker {}/{}: {msg}", spec.interface, spec.index);
                    last_warn = Some(msg.clone());
                }
                w.set_state(WorkerState::Failed, Some(msg));
                w.idle(RETRY_PERIOD * 5);
            }
        }
    }
    w.set_state(WorkerState::Stopped, None);
}

/// A worker's state that outlives its sessions (an interface may come and go).
struct Worker {
    shared: Arc<WorkerShared>,
    tables: Arc<ArcSwap<Table>>,
    counters: Counters,
    egress: EgressSet,
    generation: Generation,
    iface: Option<IfaceId>,
    state: WorkerState,
    error: Option<String>,
    ready: Option<mpsc::Sender<Result<WorkerState, SetupError>>>,
}

impl Worker {
    /// Applies a new table: counters re-keyed, egress sockets reconciled, ingress sockets (in
    /// a session) opened, closed and re-filtered; then acknowledges its generation.
    fn apply_table(&mut self, table: &Table, session: Option<&mut Session>) {
        if table.generation == self.generation {
            return;
        }
        self.iface = table.interface_id(&self.shared.spec.interface);
        self.counters.rekey(table, self.iface);
        for e in self.egress.reconcile(table, self.iface) {
            tracing::warn!("{e}");
        }
        if let Some(s) = session {
            s.apply(table, self);
        }
        self.generation = table.generation;
        self.shared
            .acked
            .store(table.generation.0, Ordering::Release);
        self.shared.acks.notify();
        tracing::debug!(
            interface = %self.shared.spec.interface,
            index = self.shared.spec.index,
            generation = table.generation.0,
            "worker runs generation"
        );
    }

    fn set_state(&mut self, state: WorkerState, error: Option<String>) {
        self.state = state;
        self.error = error;
        if let Some(tx) = self.ready.take() {
            if matches!(state, WorkerState::Running | WorkerState::Waiting) {
                let _ = tx.send(Ok(state));
            } else {
                self.ready = Some(tx);
            }
        }
        self.publish(Instant::now());
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
            self.apply_table(&table, None);
            if woken {
                self.publish(Instant::now());
            }
        }
    }

    /// One received frame: decide, count, queue its payload for every destination.
    #[inline]
    /// `region`/`base`: where the frame lies (buffer id or ring block, and the frame's offset
    /// in it) so the payload can be sent from there without a copy.
    fn on_frame(
        &mut self,
        table: &Table,
        family: Family,
        frame: &[u8],
        region: u32,
        base: u32,
        now: Instant,
    ) {
        self.counters.frames += 1;
        self.counters.frame_bytes += frame.len() as u64;
        let Some(iface) = self.iface else {
            self.counters.drop_frame(DropReason::NoRoute);
            return;
        };
        let (rid, dg) = match forward::decide(table, iface, frame, family) {
            Ok(d) => d,
            Err(reason) => {
                self.counters.drop_frame(reason);
                return;
            }
        };
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

/// Why a session ended.
enum Exit {
    Stop,
    /// The interface disappeared (or was re-created): wait for it and open a new session.
    Gone,
    Failed(String),
}

/// An ingress socket of a session.
struct Ingress {
    sock: PacketSocket,
    family: Family,
    epoch: u32,
    armed: bool,
    /// Set after an error such as ENETDOWN: re-armed by the retry timer, not at once.
    paused: bool,
}

impl Ingress {
    /// A receive (or ring poll) failed with `err`: clear the socket's error and leave it
    /// unarmed until the retry timer.
    fn pause(&mut self, interface: &str, err: &io::Error) {
        tracing::warn!(
            "{interface}: receive ({:?}) failed: {err}; retrying",
            self.family
        );
        let _ = self.sock.take_error();
        self.paused = true;
    }
}

/// The ring and ingress sockets of one interface incarnation.
struct Session {
    ring: Ring,
    ifindex: u32,
    ingress: [Option<Ingress>; 2],
    next_epoch: u32,
    cqes: Vec<Completion>,
    held: Vec<u16>,
    /// Ring blocks (ingress slot, block) read in this batch, released after the flush.
    held_blocks: Vec<(usize, u32)>,
    last_retry: Instant,
}

fn slot_of(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// Buffer size for an MTU: the largest IP packet (SOCK_DGRAM has no link header), rounded up
/// to 1 KiB, at least 2 KiB (1500-byte Ethernet fits, and buffers stay cache-aligned).
pub fn buffer_size(mtu: u32) -> u32 {
    mtu.div_ceil(1024).max(2) * 1024
}

/// Buffers in the ring: about 4 MiB worth, a power of two between 256 and 2048 (2048 × 2 KiB
/// holds a burst longer than one CQ drain; jumbo frames get fewer, larger buffers).
pub fn buffer_count(buf_size: u32) -> u16 {
    let n = (4u32 << 20) / buf_size.max(1);
    let p = if n.is_power_of_two() {
        n
    } else {
        n.next_power_of_two() / 2
    };
    p.clamp(256, 2048) as u16
}

impl Session {
    fn open(w: &mut Worker, table: &Table) -> Result<Session, SetupError> {
        let name = &w.shared.spec.interface;
        let ifindex =
            sys::ifindex(name).ok_or_else(|| SetupError::NoInterface { name: name.clone() })?;
        let buf_size = buffer_size(sys::mtu(name).unwrap_or(1500));
        let mut ring = Ring::new(buffer_count(buf_size), buf_size)?;
        ring.timeout_multi(PUBLISH_PERIOD, Token::Tick.encode())
            .map_err(|e| SetupError::os("cannot arm the stats timer", e))?;
        ring.poll_multi(w.shared.wake.as_raw_fd(), Token::Wake.encode())
            .map_err(|e| SetupError::os("cannot arm the wake-up", e))?;
        let mut s = Session {
            ring,
            ifindex,
            ingress: [None, None],
            next_epoch: 1,
            cqes: Vec::with_capacity(sys::uring::CQ_ENTRIES as usize),
            held: Vec::with_capacity(usize::from(buffer_count(buf_size))),
            held_blocks: Vec::new(),
            last_retry: Instant::now(),
        };
        s.open_ingress(w, table)?;
        Ok(s)
    }

    /// Opens, re-filters or closes the ingress sockets for `table`.
    fn open_ingress(&mut self, w: &Worker, table: &Table) -> Result<(), SetupError> {
        let spec = &w.shared.spec;
        for fam in FAMILIES {
            let slot = slot_of(fam);
            let wanted = w.iface.is_some_and(|i| {
                table
                    .routes
                    .iter()
                    .any(|r| r.key.interface == i && Family::of(&r.key.group) == fam)
            });
            if !wanted {
                if let Some(ing) = self.ingress[slot].take() {
                    if ing.armed {
                        self.cancel_recv(slot, ing.epoch);
                    }
                    tracing::info!("{}: no {fam:?} routes left, socket closed", spec.interface);
                }
                continue;
            }
            let iface = w.iface.expect("wanted implies an interface id");
            let program = filter::program(table, iface, fam);
            if !program.is_exact() {
                tracing::info!(
                    "{}: too many {fam:?} routes for an exact socket filter; accepting all \
                     multicast and matching in user space",
                    spec.interface
                );
            }
            match &self.ingress[slot] {
                Some(ing) => {
                    if let Err(e) = ing.sock.attach_filter(program.insns()) {
                        tracing::error!(
                            "{}: cannot re-attach the {fam:?} filter (the previous one stays): {e}",
                            spec.interface
                        );
                    }
                }
                None => {
                    let fanout = spec.fanout.map(|(v4, v6)| match fam {
                        Family::V4 => v4,
                        Family::V6 => v6,
                    });
                    let ring = match spec.ingress {
                        IngressMode::Recv => None,
                        IngressMode::Ring => Some(RingSpec::for_bytes(spec.rcvbuf)),
                        IngressMode::Frames => Some(RingSpec::frames_for(
                            spec.rcvbuf,
                            sys::mtu(&spec.interface).unwrap_or(1500),
                        )),
                    };
                    let (sock, rcv) = PacketSocket::open(
                        &spec.interface,
                        self.ifindex,
                        fam.ethertype(),
                        program.insns(),
                        spec.rcvbuf,
                        ring,
                        fanout,
                    )?;
                    if rcv == RcvbufOutcome::Capped {
                        tracing::warn!(
                            "{}: no CAP_NET_ADMIN, so the receive buffer is capped by \
                             net.core.rmem_max instead of {} bytes; bursts may be dropped",
                            spec.interface,
                            spec.rcvbuf
                        );
                    }
                    let epoch = self.next_epoch;
                    self.next_epoch = self.next_epoch.wrapping_add(1);
                    self.ingress[slot] = Some(Ingress {
                        sock,
                        family: fam,
                        epoch,
                        armed: false,
                        paused: false,
                    });
                }
            }
        }
        self.arm();
        Ok(())
    }

    fn apply(&mut self, table: &Table, w: &Worker) {
        if let Err(e) = self.open_ingress(w, table) {
            tracing::error!("{}: {e}", w.shared.spec.interface);
        }
    }

    /// Arms the multishot receive of every socket that is not armed (nor paused).
    fn arm(&mut self) {
        for (slot, ing) in self.ingress.iter_mut().enumerate() {
            let Some(ing) = ing else { continue };
            if ing.armed || ing.paused {
                continue;
            }
            let token = Token::Recv {
                slot: slot as u8,
                epoch: ing.epoch,
            };
            let mask = (libc::POLLIN | libc::POLLRDNORM) as u32;
            let fd = ing.sock.as_raw_fd();
            let armed = match ing.sock.ring().map(|r| r.kind()) {
                None => self.ring.recv_multi(fd, token.encode()),
                // A block ring wakes the socket once per block: a standing poll is cheap.
                Some(RingKind::Blocks) => self.ring.poll_multi_mask(fd, mask, token.encode()),
                // A frame ring wakes it per frame: poll once, read everything that is ready,
                // poll again (re-armed here after the flush). While the worker is busy, no poll
                // is armed, so arriving frames cost the kernel no wake-up (NAPI-like).
                Some(RingKind::Frames) => self.ring.poll_once(fd, mask, token.encode()),
            };
            if armed.is_ok() {
                ing.armed = true;
            }
        }
    }

    fn run(&mut self, w: &mut Worker) -> Exit {
        // Frames read in the previous batch (drives the adaptive coalescing).
        let mut frames = 0usize;
        loop {
            let wait = if frames >= COALESCE_MIN {
                w.shared.spec.min_wait.max(w.shared.spec.coalesce)
            } else {
                w.shared.spec.min_wait
            };
            if let Err(e) = self.ring.submit_and_wait_batch(BATCH_WANT, wait) {
                return Exit::Failed(format!("io_uring_enter failed: {e}"));
            }
            frames = 0;
            self.cqes.clear();
            self.ring.completions(&mut self.cqes);
            let table = w.tables.load();
            if table.generation != w.generation {
                w.apply_table(&table, Some(self));
            }
            let now = Instant::now();
            let mut tick = false;
            let mut wake = false;
            for i in 0..self.cqes.len() {
                let c = self.cqes[i];
                match Token::decode(c.user_data) {
                    Some(Token::Recv { slot, epoch }) => {
                        if let Some(bid) = c.buffer()
                            && self.ring.bufs_mut().take(bid).is_some()
                        {
                            self.held.push(bid);
                            frames += 1;
                            if c.result > 0 {
                                let fam = FAMILIES[usize::from(slot & 1)];
                                let frame = self.ring.bufs().data(bid, c.result as usize);
                                w.on_frame(&table, fam, frame, u32::from(bid), 0, now);
                            }
                        } else if c.result > 0 && c.result & POLL_ERRORS != 0 {
                            // A ring's poll reports the socket's error (interface down or
                            // deleted), where a receive would have failed with it.
                            self.poll_error(w, slot, epoch);
                        }
                        if !c.more() {
                            self.ended(w, slot, epoch, c.result);
                        }
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
            frames += self.read_rings(w, &table, now);
            self.flush(w);
            self.arm();
            drop(table);
            if wake {
                w.shared.wake.drain();
                if w.shared.stop.load(Ordering::Acquire) {
                    self.drain_for_stop(w);
                    return Exit::Stop;
                }
                let table = w.tables.load_full();
                w.apply_table(&table, Some(self));
            }
            if tick && let Some(exit) = self.on_tick(w, now) {
                return exit;
            }
        }
    }

    /// Sends what is queued, then gives the receive buffers and ring blocks back.
    fn flush(&mut self, w: &mut Worker) {
        let store = FrameStore {
            bufs: self.ring.bufs(),
            rings: [0, 1].map(|s| self.ingress[s].as_ref().and_then(|i| i.sock.ring())),
        };
        w.egress.flush(&store, &mut w.counters);
        for bid in self.held.drain(..) {
            self.ring.bufs_mut().give_back(bid);
        }
        for (slot, block) in self.held_blocks.drain(..) {
            if let Some(r) = self.ingress[slot].as_mut().and_then(|i| i.sock.ring_mut()) {
                r.release(block);
            }
        }
        self.ring.bufs_mut().publish();
    }

    /// Walks what the rings handed over (a no-op in receive mode), flushing after each
    /// TPACKET_V3 block and after every [`FRAMES_PER_FLUSH`] TPACKET_V2 slots, so that a burst
    /// does not overrun the egress socket buffers while sends still go out in batches.
    fn read_rings(&mut self, w: &mut Worker, table: &Table, now: Instant) -> usize {
        let mut read = 0;
        for slot in 0..self.ingress.len() {
            // TPACKET_V2 slots read since the last flush
            let mut pending = 0usize;
            while let Some(ing) = self.ingress[slot].as_mut() {
                let Some(block) = ing.sock.ring_mut().and_then(|r| r.take_next()) else {
                    break;
                };
                self.held_blocks.push((slot, block));
                let family = ing.family;
                let ring = ing.sock.ring().expect("taken from this ring");
                let whole_block = ring.kind() == RingKind::Blocks;
                for (base, frame) in ring.frames(block) {
                    w.on_frame(table, family, frame, ring_region(slot, block), base, now);
                    read += 1;
                }
                pending += 1;
                if whole_block || pending >= FRAMES_PER_FLUSH {
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

    /// A ring's poll reported an error on its socket (a receive would have failed with it).
    fn poll_error(&mut self, w: &mut Worker, slot: u8, epoch: u32) {
        let Some(ing) = self.ingress[usize::from(slot & 1)].as_mut() else {
            return;
        };
        if ing.epoch != epoch || ing.paused {
            return;
        }
        let err = ing
            .sock
            .take_error()
            .unwrap_or_else(|| io::Error::other("socket error"));
        ing.pause(&w.shared.spec.interface, &err);
    }

    /// A multishot receive (or ring poll) ended (completion without `F_MORE`).
    fn ended(&mut self, w: &mut Worker, slot: u8, epoch: u32, result: i32) {
        let Some(ing) = self.ingress[usize::from(slot & 1)].as_mut() else {
            return;
        };
        if ing.epoch != epoch {
            return;
        }
        ing.armed = false;
        match -result {
            // A poll that ended (ring mode): simply re-armed.
            r if r <= 0 => {}
            // Ring ran empty, or the CQ filled: re-armed after the buffers are back.
            libc::ENOBUFS => w.counters.ring_stalls += 1,
            libc::ECANCELED => {}
            e => ing.pause(&w.shared.spec.interface, &io::Error::from_raw_os_error(e)),
        }
    }

    fn on_tick(&mut self, w: &mut Worker, now: Instant) -> Option<Exit> {
        for ing in self.ingress.iter().flatten() {
            if let Ok((packets, drops)) = ing.sock.statistics() {
                w.counters.kernel_packets += packets;
                w.counters.kernel_drops += drops;
            }
        }
        let retry = now.duration_since(self.last_retry) >= RETRY_PERIOD;
        for m in w.egress.maintain(retry) {
            tracing::info!("{m}");
        }
        if retry {
            self.last_retry = now;
            if self.ingress.iter().flatten().any(|i| i.paused) {
                if sys::ifindex(&w.shared.spec.interface) != Some(self.ifindex) {
                    return Some(Exit::Gone);
                }
                for ing in self.ingress.iter_mut().flatten() {
                    ing.paused = false;
                }
                self.arm();
            }
        }
        w.publish(now);
        None
    }

    fn cancel_recv(&mut self, slot: usize, epoch: u32) {
        let target = Token::Recv {
            slot: slot as u8,
            epoch,
        };
        let _ = self.ring.cancel(target.encode(), Token::Cancel.encode());
    }

    /// Stop: cancel the receives and wait (briefly) for their last completions so that no
    /// buffer is in the kernel's hands when the ring goes away. Sends are synchronous, so
    /// nothing else is in flight.
    fn drain_for_stop(&mut self, w: &mut Worker) {
        w.state = WorkerState::Stopping;
        for slot in 0..self.ingress.len() {
            if let Some(epoch) = self.ingress[slot]
                .as_ref()
                .filter(|i| i.armed)
                .map(|i| i.epoch)
            {
                self.cancel_recv(slot, epoch);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.ingress.iter().flatten().any(|i| i.armed) && Instant::now() < deadline {
            if self
                .ring
                .submit_and_wait(1, Some(Duration::from_millis(20)))
                .is_err()
            {
                break;
            }
            self.cqes.clear();
            self.ring.completions(&mut self.cqes);
            for i in 0..self.cqes.len() {
                let c = self.cqes[i];
                if let Some(Token::Recv { slot, epoch }) = Token::decode(c.user_data) {
                    if let Some(bid) = c.buffer()
                        && self.ring.bufs_mut().take(bid).is_some()
                    {
                        self.ring.bufs_mut().give_back(bid);
                    }
                    if !c.more()
                        && let Some(ing) = self.ingress[usize::from(slot & 1)].as_mut()
                        && ing.epoch == epoch
                    {
                        ing.armed = false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_hold_a_full_frame() {
        assert_eq!(buffer_size(1500), 2048);
        assert_eq!(buffer_size(9000), 9216);
        assert_eq!(buffer_size(576), 2048);
        assert_eq!(buffer_count(2048), 2048);
        assert_eq!(buffer_count(9216), 256);
        assert!(buffer_count(9216).is_power_of_two());
    }
}
