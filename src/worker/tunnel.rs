//! Tunnels in the data plane (docs/TUNNEL.md, section 5): the tunnel's UDP socket as an
//! ingress [`Source`] ([`TunnelSource`], opened by [`TunnelOpener`] for the one worker of a
//! tunnel interface), and the sending side of a destination whose interface is a tunnel
//! ([`TunnelOut`], a kind of egress slot).
//!
//! One socket per tunnel, bound to its `local` address, shared process-wide ([`shared`]): the
//! tunnel's worker reads it, and every worker that sends into the tunnel sends through a
//! duplicate of its descriptor, so that every datagram leaves from `local` (the far side checks
//! the source address and port against its `peers`). Counters of a tunnel live with the socket
//! ([`TunnelShared`]): the receiving worker merges its own on each tick, senders add theirs
//! once per flush, and the tunnel's worker publishes them in its snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::packet::{Datagram, Family};
use crate::stats::{PeerSnapshot, TunnelSnapshot};
use crate::sys::SetupError;
use crate::sys::egress::{EgressSocket, Outcome, SendScratch};
use crate::sys::tunnel::{RecvSlab, TunnelSocket};
use crate::table::{Destination, IfaceId, Table, Tunnel};
use crate::tunnel::{Inner, Receiver, Sender, SessionEvent, TunnelKey, session_at};

use super::counters::Counters;
use super::egress::Item;
use super::source::{Opener, Source, SourceKey, Wakeup};

/// Datagrams read per `recvmmsg`, and sent per flush.
const BATCH: usize = 64;
/// A refusal of one reason from one peer is logged once per this period (a flood of forged
/// datagrams costs a log line, not a line each; the counters count them all).
const LOG_PERIOD: Duration = Duration::from_secs(10);
/// The largest tunnel datagram read whole. Larger ones (jumbo inner packets) are counted as
/// `truncated` and dropped.
const BUFFER: usize = 9216;

/// A tunnel's socket and counters, shared by its receiving worker and every sending one.
pub struct TunnelShared {
    pub local: SocketAddr,
    pub socket: TunnelSocket,
    stats: Mutex<TunnelStats>,
}

/// Counters of one tunnel (all workers).
#[derive(Default)]
struct TunnelStats {
    interface: String,
    /// Datagrams sent whose outer packet was larger than the path MTU (fragmented by the
    /// kernel), over every peer.
    fragmented: u64,
    ready: bool,
    silence: Duration,
    /// Peers in configuration order, with their counters.
    peers: Vec<(SocketAddr, PeerStats)>,
    /// Counters of peers no longer configured are dropped; these have no peer.
    refused: BTreeMap<&'static str, u64>,
    send_refused: BTreeMap<&'static str, u64>,
}

#[derive(Default, Clone)]
struct PeerStats {
    rx_datagrams: u64,
    rx_bytes: u64,
    tx_datagrams: u64,
    tx_bytes: u64,
    keepalives_rx: u64,
    last_heard: Option<Instant>,
    refused: BTreeMap<&'static str, u64>,
}

static REGISTRY: Mutex<Vec<Weak<TunnelShared>>> = Mutex::new(Vec::new());
/// Lanes handed out to senders, so that no two live senders of this process share one.
static NEXT_LANE: AtomicU32 = AtomicU32::new(0);

/// The shared socket of `tunnel` (opened with `rcvbuf` if no worker holds it yet).
pub fn shared(name: &str, tunnel: &Tunnel, rcvbuf: usize) -> io::Result<Arc<TunnelShared>> {
    let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    reg.retain(|w| w.strong_count() > 0);
    if let Some(s) = reg
        .iter()
        .filter_map(Weak::upgrade)
        .find(|s| s.local == tunnel.local)
    {
        s.configure(name, tunnel);
        return Ok(s);
    }
    let s = Arc::new(TunnelShared {
        local: tunnel.local,
        socket: TunnelSocket::open(tunnel.local, rcvbuf)?,
        stats: Mutex::new(TunnelStats::default()),
    });
    s.configure(name, tunnel);
    reg.push(Arc::downgrade(&s));
    Ok(s)
}

/// A new sender for the tunnel: a lane no other live sender of this process has, and a
/// session of now (so the peers follow it even when a lane is handed out again).
fn new_sender(key: Option<&TunnelKey>) -> Sender {
    let lane = NEXT_LANE.fetch_add(1, Ordering::Relaxed) as u8;
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Sender::new(lane, session_at(since), key)
}

impl TunnelShared {
    fn stats(&self) -> std::sync::MutexGuard<'_, TunnelStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the tunnel's configuration: its name, readiness, and peers (counters of peers
    /// still listed are kept).
    fn configure(&self, name: &str, tunnel: &Tunnel) {
        let mut st = self.stats();
        st.interface = name.to_string();
        st.ready = tunnel.is_ready();
        st.silence = tunnel.silence_timeout;
        let mut old = std::mem::take(&mut st.peers);
        st.peers = tunnel
            .peers
            .iter()
            .map(|&a| {
                let a = canonical(a);
                match old.iter().position(|(p, _)| *p == a) {
                    Some(i) => old.swap_remove(i),
                    None => (a, PeerStats::default()),
                }
            })
            .collect();
    }

    /// What status and stats show of this tunnel at `now`.
    pub fn snapshot(&self, now: Instant) -> TunnelSnapshot {
        let st = self.stats();
        let list = |m: &BTreeMap<&'static str, u64>| -> Vec<(String, u64)> {
            m.iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.to_string(), *n))
                .collect()
        };
        TunnelSnapshot {
            interface: st.interface.clone(),
            local: self.local.to_string(),
            ready: st.ready,
            peers: st
                .peers
                .iter()
                .map(|(a, p)| PeerSnapshot {
                    address: a.to_string(),
                    up: p
                        .last_heard
                        .is_some_and(|t| now.saturating_duration_since(t) <= st.silence),
                    last_heard_ms: p
                        .last_heard
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    rx_datagrams: p.rx_datagrams,
                    rx_bytes: p.rx_bytes,
                    tx_datagrams: p.tx_datagrams,
                    tx_bytes: p.tx_bytes,
                    keepalives_rx: p.keepalives_rx,
                    refused: list(&p.refused),
                })
                .collect(),
            refused: list(&st.refused),
            send_refused: list(&st.send_refused),
            fragmented: st.fragmented,
        }
    }
}

/// Snapshots of the tunnels among `interfaces` (for the tunnel's worker's publication).
pub fn snapshots(interfaces: &[String], now: Instant) -> Vec<TunnelSnapshot> {
    let reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if interfaces.is_empty() || reg.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<TunnelSnapshot> = reg
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|s| interfaces.contains(&s.stats().interface))
        .map(|s| s.snapshot(now))
        .collect();
    out.sort_by(|a, b| a.interface.cmp(&b.interface));
    out
}

/// Per peer, the largest tunnel datagram the path carries whole: its MTU less the outer IP and
/// UDP headers (28 bytes over IPv4, 48 over IPv6). Measured when the sender is made and at each
/// reload.
fn whole(peers: &[SocketAddr]) -> Vec<usize> {
    peers
        .iter()
        .map(|p| {
            let outer = if p.is_ipv6() { 48 } else { 28 };
            crate::sys::tunnel::path_mtu(*p)
                .map_or(usize::MAX, |m| (m as usize).saturating_sub(outer))
        })
        .collect()
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Opens the [`TunnelSource`] of a tunnel interface's worker.
pub struct TunnelOpener {
    pub rcvbuf: usize,
}

impl Opener for TunnelOpener {
    /// A tunnel is no kernel interface: there is nothing to wait for.
    fn exists(&self, _interface: &str) -> bool {
        true
    }

    fn open(
        &mut self,
        key: &SourceKey,
        table: &Table,
        iface: IfaceId,
    ) -> Result<Box<dyn Source>, SetupError> {
        let tunnel = table.tunnel(iface).ok_or_else(|| SetupError::Os {
            what: format!("{} is not a tunnel in this configuration", key.interface),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        let shared = shared(&key.interface, tunnel, self.rcvbuf).map_err(|e| {
            SetupError::os(
                format!(
                    "tunnel {}: cannot bind its local address {}",
                    key.interface, tunnel.local
                ),
                e,
            )
        })?;
        tracing::info!(
            "tunnel {}: receiving on {} from {} peer(s){}",
            key.interface,
            tunnel.local,
            tunnel.peers.len(),
            if tunnel.key.is_some() {
                ", authenticated"
            } else {
                ", NOT authenticated (no key_file)"
            }
        );
        Ok(Box::new(TunnelSource::new(
            key.interface.clone(),
            shared,
            tunnel,
        )))
    }
}

/// A unit of a [`TunnelSource`]: one accepted datagram's inner packet in the slab.
#[derive(Debug, Clone, Copy)]
struct Unit {
    slot: u32,
    off: u32,
    len: u32,
    family: Family,
}

/// The receiving side of a tunnel behind the ingress seam: each accepted datagram's inner IP
/// packet is a unit with one frame, received on the tunnel's interface.
pub struct TunnelSource {
    interface: String,
    shared: Arc<TunnelShared>,
    receiver: Receiver,
    ready: bool,
    peers: Vec<SocketAddr>,
    silence: Duration,
    slab: RecvSlab,
    /// Accepted datagrams of the last batch not yet taken.
    queue: VecDeque<Unit>,
    /// By slab slot: the unit taken from it.
    units: Vec<Unit>,
    /// Units taken and not given back; the slab is refilled only when none is.
    outstanding: usize,
    keepalive: Sender,
    keepalive_buf: [u8; 64],
    last_keepalive: Option<Instant>,
    /// Counters since the last tick, by peer index (configuration order).
    rx: Vec<PeerStats>,
    refused: BTreeMap<&'static str, u64>,
    /// Reasons already logged, per peer (None: not a peer), so each is logged once per
    /// [`LOG_PERIOD`].
    logged: Vec<(Option<usize>, &'static str)>,
    logged_since: Option<Instant>,
    /// The socket's drop count at the last [`Source::statistics`].
    kernel_drops: u64,
}

impl TunnelSource {
    fn new(interface: String, shared: Arc<TunnelShared>, tunnel: &Tunnel) -> TunnelSource {
        let kernel_drops = shared.socket.drops();
        TunnelSource {
            interface,
            shared,
            receiver: Receiver::new(&tunnel.peers, tunnel.key.as_ref()),
            ready: tunnel.is_ready(),
            peers: tunnel.peers.iter().map(|&a| canonical(a)).collect(),
            silence: tunnel.silence_timeout,
            slab: RecvSlab::new(BATCH, BUFFER),
            queue: VecDeque::with_capacity(BATCH),
            units: vec![
                Unit {
                    slot: 0,
                    off: 0,
                    len: 0,
                    family: Family::V4,
                };
                BATCH
            ],
            outstanding: 0,
            keepalive: new_sender(tunnel.key.as_ref()),
            keepalive_buf: [0; 64],
            last_keepalive: None,
            rx: vec![PeerStats::default(); tunnel.peers.len()],
            refused: BTreeMap::new(),
            logged: Vec::new(),
            logged_since: None,
            kernel_drops,
        }
    }

    /// Reads a batch and checks each datagram; the accepted ones with an inner packet queue.
    fn fill(&mut self) {
        let n = match self.shared.socket.recv_batch(&mut self.slab) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("tunnel {}: receive failed: {e}", self.interface);
                return;
            }
        };
        let now = Instant::now();
        for i in 0..n {
            let (from, bytes, truncated) = self.slab.get(i);
            let peer = self.peers.iter().position(|p| *p == canonical(from));
            let reason = if truncated {
                Some("truncated")
            } else if !self.ready {
                Some("no_key")
            } else {
                None
            };
            if let Some(reason) = reason {
                refuse(
                    &mut self.rx,
                    &mut self.refused,
                    &mut self.logged,
                    &self.interface,
                    from,
                    peer,
                    reason,
                );
                continue;
            }
            match self.receiver.receive(from, bytes, now) {
                Err(r) => refuse(
                    &mut self.rx,
                    &mut self.refused,
                    &mut self.logged,
                    &self.interface,
                    from,
                    r.peer,
                    r.reason.as_str(),
                ),
                Ok(a) => {
                    let p = &mut self.rx[a.peer];
                    p.last_heard = Some(now);
                    if a.event == SessionEvent::Restarted {
                        tracing::info!(
                            "tunnel {}: peer {from} restarted (new session)",
                            self.interface
                        );
                    }
                    let Some(dg) = a.decoded.inner else {
                        p.keepalives_rx += 1;
                        continue;
                    };
                    p.rx_datagrams += 1;
                    p.rx_bytes += bytes.len() as u64;
                    let base = self.slab.buffer(i).as_ptr() as usize;
                    let inner = a.decoded.inner_packet;
                    self.queue.push_back(Unit {
                        slot: i as u32,
                        off: (inner.as_ptr() as usize - base) as u32,
                        len: inner.len() as u32,
                        family: Family::of(&dg.source),
                    });
                }
            }
        }
    }

    /// Sends a keepalive to every peer when `silence_timeout / 3` passed since the last.
    fn keepalives(&mut self, now: Instant) {
        let due = self
            .last_keepalive
            .is_none_or(|t| now.saturating_duration_since(t) >= self.silence / 3);
        if !due || !self.ready {
            return;
        }
        self.last_keepalive = Some(now);
        let Ok(n) = self.keepalive.keepalive(&mut self.keepalive_buf) else {
            return;
        };
        for peer in &self.peers {
            let _ = self.shared.socket.send_to(&self.keepalive_buf[..n], *peer);
        }
    }

    /// Adds the counters since the last call to the tunnel's shared ones.
    fn merge(&mut self) {
        let mut st = self.shared.stats();
        for (i, p) in self.rx.iter_mut().enumerate() {
            let Some(addr) = self.peers.get(i) else {
                continue;
            };
            if let Some((_, s)) = st.peers.iter_mut().find(|(a, _)| a == addr) {
                s.rx_datagrams += p.rx_datagrams;
                s.rx_bytes += p.rx_bytes;
                s.keepalives_rx += p.keepalives_rx;
                if p.last_heard.is_some() {
                    s.last_heard = p.last_heard;
                }
                for (k, n) in p.refused.iter_mut() {
                    *s.refused.entry(k).or_default() += *n;
                    *n = 0;
                }
            }
            p.rx_datagrams = 0;
            p.rx_bytes = 0;
            p.keepalives_rx = 0;
            p.last_heard = None;
        }
        for (k, n) in self.refused.iter_mut() {
            *st.refused.entry(k).or_default() += *n;
            *n = 0;
        }
    }
}

/// Counts a refused datagram (per peer when it came from one) and logs the first of each
/// reason and peer per [`LOG_PERIOD`].
fn refuse(
    rx: &mut [PeerStats],
    refused: &mut BTreeMap<&'static str, u64>,
    logged: &mut Vec<(Option<usize>, &'static str)>,
    interface: &str,
    from: SocketAddr,
    peer: Option<usize>,
    reason: &'static str,
) {
    match peer.and_then(|p| rx.get_mut(p)) {
        Some(p) => *p.refused.entry(reason).or_default() += 1,
        None => *refused.entry(reason).or_default() += 1,
    }
    if !logged.contains(&(peer, reason)) {
        logged.push((peer, reason));
        tracing::warn!("tunnel {interface}: refused a datagram from {from}: {reason}");
    }
}

impl Source for TunnelSource {
    fn fd(&self) -> RawFd {
        self.shared.socket.as_raw_fd()
    }

    fn wakeup(&self) -> Wakeup {
        Wakeup::Once
    }

    fn units_per_flush(&self) -> usize {
        BATCH
    }

    fn take(&mut self) -> Option<u32> {
        if self.queue.is_empty() && self.outstanding == 0 {
            self.fill();
        }
        let u = self.queue.pop_front()?;
        self.units[u.slot as usize] = u;
        self.outstanding += 1;
        Some(u.slot)
    }

    fn frames(&self, unit: u32, each: &mut dyn FnMut(u32, &[u8])) {
        let u = self.units[unit as usize];
        each(u.off, self.bytes(unit, u.off, u.len as usize));
    }

    fn bytes(&self, unit: u32, off: u32, len: usize) -> &[u8] {
        let off = off as usize;
        &self.slab.buffer(unit as usize)[off..off + len]
    }

    fn release(&mut self, _unit: u32) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    fn poll_error(&mut self, _revents: i32) -> Option<io::Error> {
        self.shared.socket.take_error()
    }

    /// The socket's kernel drops (receive buffer full) since the last call, as the worker's
    /// `kernel_drops`.
    fn statistics(&mut self) -> (u64, u64) {
        let drops = self.shared.socket.drops();
        let new = drops.saturating_sub(self.kernel_drops);
        self.kernel_drops = drops;
        (0, new)
    }

    fn apply(&mut self, table: &Table, iface: IfaceId) -> io::Result<()> {
        let Some(t) = table.tunnel(iface) else {
            return Err(io::Error::other(format!(
                "{} is no longer a tunnel",
                self.interface
            )));
        };
        self.receiver.reconfigure(&t.peers, t.key.as_ref());
        let peers: Vec<SocketAddr> = t.peers.iter().map(|&a| canonical(a)).collect();
        if peers != self.peers {
            self.merge();
            self.rx = vec![PeerStats::default(); peers.len()];
            self.peers = peers;
        }
        self.ready = t.is_ready();
        self.silence = t.silence_timeout;
        self.shared.configure(&self.interface, t);
        Ok(())
    }

    fn alive(&self) -> bool {
        true
    }

    fn unit_family(&self, unit: u32) -> Option<Family> {
        Some(self.units[unit as usize].family)
    }

    fn tick(&mut self, now: Instant) {
        self.keepalives(now);
        self.merge();
        let since = *self.logged_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= LOG_PERIOD {
            self.logged.clear();
            self.logged_since = Some(now);
        }
    }
}

/// The sending side of an egress slot whose destination's interface is a tunnel: each queued
/// datagram is encapsulated into the worker's buffer at push time and sent to every peer from
/// the tunnel's socket at flush time.
pub struct TunnelOut {
    shared: Arc<TunnelShared>,
    interface: IfaceId,
    sender: Sender,
    key: Option<TunnelKey>,
    ready: bool,
    peers: Vec<SocketAddr>,
    /// Encoded datagrams of the current batch, back to back (reused: no allocation once it
    /// has grown to a batch's size).
    buf: Vec<u8>,
    /// Peer counters of the current flush, added to the shared ones once per flush.
    tx: Vec<(u64, u64)>,
    /// Per peer: the largest tunnel datagram that leaves unfragmented (path MTU less the outer
    /// IP and UDP headers); `usize::MAX` when unknown.
    whole: Vec<usize>,
    /// Datagrams of this flush larger than `whole`.
    fragmented: u64,
}

impl TunnelOut {
    /// The sending side for a destination into `tunnel`, and the egress socket to send with.
    pub fn open(
        table: &Table,
        tunnel: &Tunnel,
        gso: bool,
    ) -> io::Result<(Box<TunnelOut>, EgressSocket)> {
        let iface = table.interface(tunnel.interface);
        let shared = shared(&iface.name, tunnel, iface.rcvbuf)?;
        let sock = shared.socket.egress(gso)?;
        let out = TunnelOut {
            shared,
            interface: tunnel.interface,
            sender: new_sender(tunnel.key.as_ref()),
            key: tunnel.key.clone(),
            ready: tunnel.is_ready(),
            peers: tunnel.peers.iter().map(|&a| canonical(a)).collect(),
            buf: Vec::with_capacity(BATCH * 1500),
            tx: vec![(0, 0); tunnel.peers.len()],
            whole: whole(&tunnel.peers),
            fragmented: 0,
        };
        Ok((Box::new(out), sock))
    }

    /// The local address of the tunnel's socket.
    pub fn local(&self) -> SocketAddr {
        self.shared.local
    }

    /// Takes the tunnel's configuration in `table` (peers, key); a new key starts a new
    /// sender (a new session).
    pub fn refresh(&mut self, table: &Table) {
        let Some(t) = table.tunnel(self.interface) else {
            return;
        };
        self.peers = t.peers.iter().map(|&a| canonical(a)).collect();
        self.tx = vec![(0, 0); self.peers.len()];
        self.whole = whole(&t.peers);
        self.ready = t.is_ready();
        if t.key != self.key {
            self.key = t.key.clone();
            self.sender = new_sender(t.key.as_ref());
        }
    }

    /// Encapsulates the datagram `dg` for `dest` (inner destination `item.target`); returns
    /// the item pointing at the encoded bytes, or `None` (counted) when it cannot be sent.
    pub fn encode(&mut self, dest: &Destination, item: Item, dg: &Datagram<'_>) -> Option<Item> {
        let reason = if !self.ready {
            "no_key"
        } else {
            let inner = Inner {
                source: dg.source,
                destination: SocketAddr::new(item.target.ip(), item.target.port()),
                source_port: dg.src_port,
                ttl: dest.ttl,
                tos: dest.dscp << 2,
                payload: dg.payload,
            };
            let start = self.buf.len();
            let need = self.sender.encoded_len(&inner);
            self.buf.resize(start + need, 0);
            match self.sender.encode(&mut self.buf[start..], &inner) {
                Ok(n) => {
                    self.buf.truncate(start + n);
                    return Some(Item {
                        off: start as u32,
                        len: n as u16,
                        ..item
                    });
                }
                Err(_) => {
                    self.buf.truncate(start);
                    "too_large"
                }
            }
        };
        *self.shared.stats().send_refused.entry(reason).or_default() += 1;
        None
    }

    /// Sends the encoded `items` to every peer and counts the outcomes (per destination, each
    /// copy; per peer in the tunnel's counters).
    pub fn flush(
        &mut self,
        sock: &mut EgressSocket,
        items: &[Item],
        scratch: &mut SendScratch,
        outcomes: &mut Vec<Outcome>,
        counters: &mut Counters,
    ) {
        for (i, &peer) in self.peers.iter().enumerate() {
            let buf = &self.buf;
            sock.send_batch(
                scratch,
                items.iter().map(|it| {
                    let off = it.off as usize;
                    (&buf[off..off + usize::from(it.len)], peer)
                }),
                outcomes,
            );
            for (it, oc) in items.iter().zip(outcomes.iter()) {
                if counters.count_send(it.route, it.dest_pos, it.len, Some(oc)) {
                    self.tx[i].0 += 1;
                    self.tx[i].1 += u64::from(it.len);
                    if usize::from(it.len) > self.whole[i] {
                        self.fragmented += 1;
                    }
                }
            }
        }
        self.buf.clear();
        if self.tx.iter().any(|t| t.0 > 0) {
            let mut st = self.shared.stats();
            st.fragmented += std::mem::take(&mut self.fragmented);
            for (i, peer) in self.peers.iter().enumerate() {
                if let Some((_, s)) = st.peers.iter_mut().find(|(a, _)| a == peer) {
                    s.tx_datagrams += self.tx[i].0;
                    s.tx_bytes += self.tx[i].1;
                }
                self.tx[i] = (0, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram from 10.0.0.1:4000 to 239.1.1.1:5000 (TTL 9) carrying `payload`.
    fn datagram(payload: &[u8]) -> Datagram<'_> {
        Datagram {
            source: "10.0.0.1".parse().unwrap(),
            group: "239.1.1.1".parse().unwrap(),
            src_port: 4000,
            dst_port: 5000,
            ttl: 9,
            payload,
        }
    }
    use crate::config::{FakeResolver, compile};
    use crate::worker::source::Region;

    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Two tunnels on loopback, `a` (sending) and `b` (receiving), each the other's peer.
    fn table(pa: u16, pb: u16) -> Table {
        let text = format!(
            "[interfaces.eth0]\n\
             [interfaces.a]\ntunnel = {{ local = \"127.0.0.1:{pa}\", peers = [\"127.0.0.1:{pb}\"], key_file = \"/k\" }}\n\
             [interfaces.b]\ntunnel = {{ local = \"127.0.0.1:{pb}\", peers = [\"127.0.0.1:{pa}\"], key_file = \"/k\" }}\n\
             [destinations.into-a]\ninterface = \"a\"\n\
             [[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"into-a\"]\n\
             [[groups]]\ninterface = \"b\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"into-a\"]\n"
        );
        let resolver =
            FakeResolver::new(&[("eth0", 2)]).with_key_file("/k", FakeResolver::EVERY_KEY);
        compile(&text, std::path::Path::new("test.toml"), &resolver).unwrap()
    }

    /// Takes units from `src` for up to a second, collecting their frames.
    fn receive(src: &mut dyn Source, want: usize) -> Vec<(Family, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while got.len() < want && Instant::now() < deadline {
            while let Some(u) = src.take() {
                let fam = src.unit_family(u).unwrap();
                src.frames(u, &mut |_, f| got.push((fam, f.to_vec())));
                src.release(u);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    /// The sending and receiving halves, through real sockets on loopback: what one relay
    /// encapsulates the other hands to its worker as the original datagram; a datagram from
    /// no peer and a replay are counted and not handed over.
    #[test]
    fn what_a_tunnel_sends_its_peer_receives_as_the_original_datagram() {
        let (pa, pb) = (free_port(), free_port());
        let table = table(pa, pb);
        let (ia, ib) = (
            table.interface_id("a").unwrap(),
            table.interface_id("b").unwrap(),
        );
        let (mut out, mut sock) =
            TunnelOut::open(&table, table.tunnel(ia).unwrap(), false).unwrap();
        let key = SourceKey {
            interface: "b".into(),
            family: Family::V4,
        };
        let mut src = TunnelOpener { rcvbuf: 1 << 20 }
            .open(&key, &table, ib)
            .unwrap();
        let dest = table.destination(crate::table::DestId(0)).clone();
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let mut items = Vec::new();
        for p in &payloads {
            let dg = datagram(p);
            let item = Item {
                region: Region { source: 0, unit: 0 },
                off: 0,
                len: p.len() as u16,
                route: 0,
                dest_pos: 0,
                target: "239.1.1.1:5000".parse().unwrap(),
                seq: 0,
            };
            items.push(out.encode(&dest, item, &dg).expect("encoded"));
        }
        let mut outcomes = Vec::new();
        out.flush(
            &mut sock,
            &items,
            &mut SendScratch::default(),
            &mut outcomes,
            &mut Counters::default(),
        );
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Sent)));
        let got = receive(&mut *src, payloads.len());
        assert_eq!(got.len(), payloads.len());
        for ((fam, frame), p) in got.iter().zip(&payloads) {
            let dg = crate::packet::parse_any(frame, *fam).unwrap();
            assert_eq!(dg.source, "10.0.0.1".parse::<std::net::IpAddr>().unwrap());
            assert_eq!(dg.group, "239.1.1.1".parse::<std::net::IpAddr>().unwrap());
            assert_eq!((dg.src_port, dg.dst_port, dg.payload), (4000, 5000, &p[..]));
        }

        // Not from a peer; then a replay: the bytes of an accepted datagram again, from a's
        // address and port.
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger
            .send_to(b"not a tunnel datagram", ("127.0.0.1", pb))
            .unwrap();
        let dg = datagram(&payloads[0]);
        let item = out.encode(&dest, items[0], &dg).expect("encoded");
        let off = item.off as usize;
        let bytes = out.buf[off..off + usize::from(item.len)].to_vec();
        let mut scratch = SendScratch::default();
        out.flush(
            &mut sock,
            &[item],
            &mut scratch,
            &mut outcomes,
            &mut Counters::default(),
        );
        let to_b: SocketAddr = ([127, 0, 0, 1], pb).into();
        sock.send_batch(
            &mut scratch,
            std::iter::once((&bytes[..], to_b)),
            &mut outcomes,
        );
        assert_eq!(
            receive(&mut *src, 2).len(),
            1,
            "accepted once, the replay refused"
        );
        src.tick(Instant::now());
        let snap = snapshots(&["b".to_string()], Instant::now());
        assert_eq!(snap.len(), 1, "{snap:?}");
        let b = &snap[0];
        assert_eq!(b.refused, vec![("not_a_peer".to_string(), 1)], "{b:?}");
        assert_eq!(
            b.peers[0].refused,
            vec![("replayed".to_string(), 1)],
            "{b:?}"
        );
        assert_eq!(b.peers[0].rx_datagrams, 11, "{b:?}");
        assert!(b.peers[0].up, "{b:?}");
        assert!(!format!("{b:?}").contains(&FakeResolver::EVERY_KEY[..16]));
    }
}
