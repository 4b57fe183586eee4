//! Relay-to-relay tunnels, the pure part: the datagram format, its authentication, the replay
//! window and the per-tunnel state of a sender and a receiver. No sockets, no clock: the worker
//! owns the UDP socket, passes `now` in and sends what [`Sender`] encodes.
//!
//! Why tunnels: clouds and WANs carry no multicast, so a relay at a site sends its groups to a
//! relay in the cloud over one unicast UDP flow, and that relay re-emits each datagram as if it
//! had received it on a LAN. Each tunnel datagram carries one original datagram as a complete
//! inner IPv4 or IPv6 + UDP packet (the idea of foo-over-UDP and GRE-in-UDP, RFC 8086), behind
//! a small header of our own that makes replays detectable; so the original source, group and
//! port are what the far side's routes match, and tcpdump can decode the inner packet once told
//! where it starts (docs/TUNNEL.md).
//!
//! * [`wire`]: the format, [`wire::encode`] into a caller's buffer and [`wire::decode`] with one
//!   typed error per reason;
//! * [`auth`]: HMAC-SHA256 truncated to 128 bits, compared in constant time;
//! * [`replay`]: the sliding window per peer, lane and session;
//! * [`key`]: [`TunnelKey`] (redacted, zeroized) and the key file.
//!
//! A tunnel without a key accepts datagrams from its peers' addresses only, and anyone who can
//! send with a peer's source address can inject multicast through it; `mcrelay check` warns.

pub mod auth;
pub mod key;
pub mod replay;
pub mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use auth::MacKey;
pub use key::{KeyError, KeyFileError, LoadedKey, TunnelKey, read_key_file};
pub use replay::{ReplayError, SessionEvent};
pub use wire::{DecodeError, Decoded, EncodeError, Header, Inner};

use replay::SessionWindow;

/// A session number for a sender started `since_epoch` after the Unix epoch: its start time in
/// microseconds, so that a restarted sender's session is larger than its previous one (as long
/// as the clock does not step back across the restart; see docs/TUNNEL.md).
pub fn session_at(since_epoch: Duration) -> u64 {
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// One sending context (a worker) of a tunnel: numbers and authenticates what it sends. The same
/// encoded bytes go to every peer of the tunnel.
#[derive(Debug)]
pub struct Sender {
    next: Header,
    mac: Option<MacKey>,
}

impl Sender {
    /// A sender for `lane` (distinct per worker sending into the tunnel) in `session`.
    pub fn new(lane: u8, session: u64, key: Option<&TunnelKey>) -> Sender {
        Sender {
            next: Header {
                lane,
                session,
                counter: 0,
            },
            mac: key.map(MacKey::new),
        }
    }

    /// Encodes `inner` into `out`; returns the datagram's length. The counter advances only when
    /// a datagram was written.
    pub fn encode(&mut self, out: &mut [u8], inner: &Inner) -> Result<usize, EncodeError> {
        self.write(out, Some(inner))
    }

    /// Encodes a keepalive (no inner packet), which keeps the peers' view of this end UP when no
    /// stream flows.
    pub fn keepalive(&mut self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.write(out, None)
    }

    /// Bytes [`Sender::encode`] needs for `inner`.
    pub fn encoded_len(&self, inner: &Inner) -> usize {
        wire::encoded_len(Some(inner), self.mac.is_some())
    }

    /// The header the next datagram gets.
    pub fn next_header(&self) -> Header {
        self.next
    }

    fn write(&mut self, out: &mut [u8], inner: Option<&Inner>) -> Result<usize, EncodeError> {
        let n = wire::encode(out, &self.next, inner, self.mac.as_ref())?;
        self.next.counter = self.next.counter.wrapping_add(1);
        Ok(n)
    }
}

/// Why a received datagram was refused: counted under [`Refusal::as_str`], never relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The source address and port are none of the tunnel's peers.
    NotAPeer,
    /// The datagram is malformed or failed authentication.
    Decode(DecodeError),
    /// Authentic, but seen before, too old, or from an older session.
    Replay(ReplayError),
}

impl Refusal {
    /// A short stable name, for counters and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAPeer => "not_a_peer",
            Refusal::Decode(d) => d.as_str(),
            Refusal::Replay(ReplayError::Replayed) => "replayed",
            Refusal::Replay(ReplayError::TooOld) => "too_old",
            Refusal::Replay(ReplayError::StaleSession) => "stale_session",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAPeer => f.write_str("not from a peer of the tunnel"),
            Refusal::Decode(d) => write!(f, "{d}"),
            Refusal::Replay(ReplayError::Replayed) => f.write_str("replayed"),
            Refusal::Replay(ReplayError::TooOld) => f.write_str("too old for the replay window"),
            Refusal::Replay(ReplayError::StaleSession) => {
                f.write_str("from an older session of the peer")
            }
        }
    }
}

/// A refused datagram and the peer it came from, when it came from one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub peer: Option<usize>,
    pub reason: Refusal,
}

/// A datagram accepted from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// Index of the peer in the tunnel's `peers`.
    pub peer: usize,
    pub event: SessionEvent,
    pub decoded: Decoded<'a>,
}

/// What the receiving side knows of one peer.
#[derive(Debug, Clone)]
pub struct PeerState {
    pub address: SocketAddr,
    /// When the last authentic datagram (keepalives included) arrived.
    pub last_heard: Option<Instant>,
    lanes: Vec<(u8, SessionWindow)>,
}

impl PeerState {
    fn new(address: SocketAddr) -> PeerState {
        PeerState {
            address,
            last_heard: None,
            lanes: Vec::new(),
        }
    }

    /// Whether an authentic datagram arrived within `silence_timeout` before `now`.
    pub fn is_up(&self, now: Instant, silence_timeout: Duration) -> bool {
        self.last_heard
            .is_some_and(|t| now.saturating_duration_since(t) <= silence_timeout)
    }
}

/// The receiving side of one tunnel: which peers may send, the key, and a replay window per
/// peer, lane and session.
#[derive(Debug)]
pub struct Receiver {
    peers: Vec<PeerState>,
    mac: Option<MacKey>,
}

impl Receiver {
    pub fn new(peers: &[SocketAddr], key: Option<&TunnelKey>) -> Receiver {
        Receiver {
            peers: peers
                .iter()
                .map(|&a| PeerState::new(canonical(a)))
                .collect(),
            mac: key.map(MacKey::new),
        }
    }

    /// Takes a new configuration (after a reload): peers still listed keep their windows and
    /// last-heard times, so a reload neither opens a replay gap nor marks a peer DOWN.
    pub fn reconfigure(&mut self, peers: &[SocketAddr], key: Option<&TunnelKey>) {
        let mut old = std::mem::take(&mut self.peers);
        self.peers = peers
            .iter()
            .map(|&a| {
                let a = canonical(a);
                match old.iter().position(|p| p.address == a) {
                    Some(i) => old.swap_remove(i),
                    None => PeerState::new(a),
                }
            })
            .collect();
        self.mac = key.map(MacKey::new);
    }

    pub fn peers(&self) -> &[PeerState] {
        &self.peers
    }

    /// Checks a datagram received from `from` at `now`: a peer's address, the format and MAC,
    /// then the replay window (only authentic datagrams move it).
    pub fn receive<'a>(
        &mut self,
        from: SocketAddr,
        datagram: &'a [u8],
        now: Instant,
    ) -> Result<Accepted<'a>, Refused> {
        let from = canonical(from);
        let Some(peer) = self.peers.iter().position(|p| p.address == from) else {
            return Err(Refused {
                peer: None,
                reason: Refusal::NotAPeer,
            });
        };
        let refused = |reason| Refused {
            peer: Some(peer),
            reason,
        };
        let decoded =
            wire::decode(datagram, self.mac.as_ref()).map_err(|e| refused(Refusal::Decode(e)))?;
        let h = decoded.header;
        let state = &mut self.peers[peer];
        let event = match state.lanes.iter_mut().find(|(l, _)| *l == h.lane) {
            Some((_, w)) => w
                .accept(h.session, h.counter, decoded.authenticated)
                .map_err(|e| refused(Refusal::Replay(e)))?,
            None => {
                state
                    .lanes
                    .push((h.lane, SessionWindow::new(h.session, h.counter)));
                SessionEvent::First
            }
        };
        state.last_heard = Some(now);
        Ok(Accepted {
            peer,
            event,
            decoded,
        })
    }
}

/// A socket address as peers are compared: an IPv4-mapped IPv6 address (as a dual-stack socket
/// reports IPv4 senders) becomes the IPv4 address.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests;
