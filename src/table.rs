//! The immutable routing table: what `config::compile` produces and every other layer consumes.
//!
//! A [`Table`] owns no resources (no file descriptors, no buffers): arc-swap may keep an old table
//! alive until each worker's next load, so workers own sockets and reconcile them when the
//! [`Generation`] changes. The table derives `PartialEq` so that a reload can diff two tables.
//!
//! Lookups are exact: a packet matches at most one route, because `compile` rejects any two routes
//! whose match sets overlap. [`Table::lookup`] therefore probes at most four hash keys
//! (source-specific or any-source, one port or every port) and returns the first hit.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::tunnel::TunnelKey;

/// Version of a published table. Each successful reload bumps it by one; the first table is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Generation(pub u64);

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Dense index of an interface in [`Table::interfaces`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfaceId(pub u16);

/// Dense index of a destination in [`Table::destinations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestId(pub u32);

/// Dense index of a route in [`Table::routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId(pub u32);

/// How an interface receives: a TPACKET_V2 ring of frames handed over one by one (`frames`, the
/// default: no added latency, batches under load) or a TPACKET_V3 ring of blocks (`ring`:
/// cheapest per packet at high rates, up to a millisecond of added latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IngressMode {
    Ring,
    #[default]
    Frames,
}

/// `[daemon]`: settings of the process as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    pub control_socket: PathBuf,
    /// Group owning the control socket (mode 0660); `None` keeps the daemon's own group.
    pub control_group: Option<String>,
    pub stats_interval: Duration,
    pub silence_timeout: Duration,
    pub reload_debounce: Duration,
    /// `host:port` of the Prometheus endpoint, off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// User to switch to after privileged set-up when started as root; `None` stays.
    pub user: Option<String>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            control_socket: PathBuf::from(crate::DEFAULT_CONTROL_SOCKET),
            control_group: None,
            stats_interval: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(2),
            reload_debounce: Duration::from_millis(200),
            metrics_listen: None,
            user: None,
        }
    }
}

/// `[interfaces.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// The kernel's interface name (the TOML key).
    pub name: String,
    /// Default TTL / hop limit for multicast destinations sent out of this interface.
    pub ttl: u8,
    pub ingress: IngressMode,
    /// Workers receiving on this interface (spread with PACKET_FANOUT when > 1).
    pub workers: u16,
    /// CPUs to pin this interface's workers to, in order; empty = chosen automatically.
    pub cpus: Vec<usize>,
    /// Requested AF_PACKET receive buffer in bytes.
    pub rcvbuf: usize,
}

/// Where a destination sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DestKind {
    /// Multicast out of `interface`; `group`/`port` `None` keep the ingress group/port.
    Multicast {
        interface: IfaceId,
        group: Option<IpAddr>,
        port: Option<u16>,
    },
    /// Unicast, routed by the kernel.
    Unicast { address: SocketAddr },
}

/// `[destinations.NAME]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub name: String,
    pub kind: DestKind,
    /// TTL / hop limit actually used (destination's own, else the interface's, else 1 for
    /// multicast and 64 for unicast).
    pub ttl: u8,
    /// DSCP code point (0..=63) written into the TOS / traffic class byte.
    pub dscp: u8,
    /// The UDP source port to send from (`source_port`); `None`: an ephemeral port, chosen by
    /// the kernel for the first socket of this destination and kept for the life of the process.
    pub source_port: Option<u16>,
}

/// `[interfaces.NAME] tunnel = { ... }`: an interface that is a UDP flow to peer relays rather
/// than a kernel interface. Its [`Interface`] entry (same [`IfaceId`]) has no ifindex; routes
/// with this interface match the inner packets that arrive through it, and destinations with
/// this interface send into it, to every peer (see docs/TUNNEL.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Tunnel {
    pub interface: IfaceId,
    /// The local UDP address and port the tunnel's socket binds (address may be unspecified).
    pub local: SocketAddr,
    /// The peer relays: datagrams are accepted only from these and sent to each of them.
    pub peers: Vec<SocketAddr>,
    /// The key file named in the configuration; `None`: the tunnel is not authenticated.
    pub key_file: Option<PathBuf>,
    /// The key read from `key_file` when the table was compiled; `None` with a `key_file` means
    /// the file could not be read then, and the tunnel must carry nothing (see
    /// [`Tunnel::is_ready`]).
    pub key: Option<TunnelKey>,
    /// A peer not heard from for longer than this is shown DOWN.
    pub silence_timeout: Duration,
}

impl Tunnel {
    /// Whether the tunnel may carry datagrams: it has no key file, or its key was read.
    pub fn is_ready(&self) -> bool {
        self.key_file.is_none() || self.key.is_some()
    }
}

/// What a route matches: ingress interface, group, optional port, optional source.
///
/// A `listen` route (unicast ingress) has a unicast or unspecified (`0.0.0.0`, `::`: every
/// address) `group` and always a port; see [`RouteKey::is_listen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub interface: IfaceId,
    pub group: IpAddr,
    /// `None` = every UDP port of the group.
    pub port: Option<u16>,
    /// `None` = any source (ASM); `Some` = source-specific (SSM, RFC 4607).
    pub source: Option<IpAddr>,
}

impl RouteKey {
    /// Whether this route receives unicast (`listen = "ADDRESS:PORT"`) rather than a group.
    pub fn is_listen(&self) -> bool {
        !self.group.is_multicast()
    }
}

/// Index of one input (leg) of a route: the order of `legs` in the configuration; 0 for a
/// route with one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LegId(pub u8);

/// At most this many legs per route (per-leg sets are `u8` masks in the merge state).
pub const MAX_LEGS: usize = 8;

/// `redundancy = ...` and its keys, for a `[[groups]]` entry with `legs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redundancy {
    /// Each leg's ingress key, in the configured order; `legs[0]` is the route's `key`.
    pub legs: Vec<RouteKey>,
    pub mode: RedundancyMode,
}

/// What a route does with its legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedundancyMode {
    /// Hitless merge: the first copy of each sequence number is forwarded, later ones dropped.
    /// `window` is the skew the legs may have: how long a missing number is waited for;
    /// `sequence` says where each packet's number is.
    Merge {
        window: Duration,
        sequence: SequenceSpec,
    },
    /// One leg at a time: the first listed that is alive; switch after `after` of silence.
    Failover { after: Duration, revert: Revert },
}

/// When a failover route goes back to an earlier-listed leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Revert {
    /// Stay on the leg switched to until it fails in turn.
    Never,
    /// Once the earlier leg has been alive without a break for this long.
    After(Duration),
}

/// `sequence = ...`: where each packet's sequence number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SequenceSpec {
    /// The RTP header's 16-bit sequence number, with the SSRC naming the stream (RFC 3550).
    Rtp,
    /// An unsigned integer field of the UDP payload.
    Field {
        offset: u16,
        size: FieldSize,
        order: ByteOrder,
    },
}

/// Width of a sequence field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldSize {
    Two = 2,
    Four = 4,
    Eight = 8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    Big,
    Little,
}

/// One `[[groups]]` entry, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// What the route matches; for a route with `legs`, its first leg (all legs: [`Table::legs`]).
    pub key: RouteKey,
    /// The user's `name`, else `group:port` (or `group`, `[v6]:port`), followed by
    /// ` from SOURCE` when source-specific; unique per interface. Used in logs and stats.
    pub label: String,
    pub destinations: Vec<DestId>,
    /// Count RTP sequence gaps / duplicates / reorders (RFC 3550) for this group.
    pub rtp: bool,
}

/// The compiled configuration. Immutable once built; replaced whole on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub generation: Generation,
    pub daemon: DaemonSettings,
    pub interfaces: Vec<Interface>,
    pub destinations: Vec<Destination>,
    pub routes: Vec<Route>,
    /// The tunnels among `interfaces`, in interface order.
    pub tunnels: Vec<Tunnel>,
    /// Every ingress key → its route and which of the route's legs it is (0 for a plain route).
    index: FxHashMap<RouteKey, (RouteId, LegId)>,
    /// The routes with several inputs (`legs`), by route.
    redundant: BTreeMap<RouteId, Redundancy>,
}

impl Table {
    /// Builds a table from resolved parts. `routes` must not overlap (see `config::compile`);
    /// when two keys are identical the later one is ignored by the index.
    pub fn new(
        daemon: DaemonSettings,
        interfaces: Vec<Interface>,
        destinations: Vec<Destination>,
        routes: Vec<Route>,
    ) -> Table {
        Table::with_redundancy(daemon, interfaces, destinations, routes, BTreeMap::new())
    }

    /// Like [`Table::new`], with the routes that have several inputs. Each entry's `legs[0]`
    /// must be the route's own `key`; every leg's key is indexed to (route, leg).
    pub fn with_redundancy(
        daemon: DaemonSettings,
        interfaces: Vec<Interface>,
        destinations: Vec<Destination>,
        routes: Vec<Route>,
        redundant: BTreeMap<RouteId, Redundancy>,
    ) -> Table {
        let mut index = FxHashMap::default();
        index.reserve(routes.len() + redundant.values().map(|r| r.legs.len()).sum::<usize>());
        for (i, r) in routes.iter().enumerate() {
            let id = RouteId(i as u32);
            match redundant.get(&id) {
                None => {
                    index.entry(r.key).or_insert((id, LegId(0)));
                }
                Some(red) => {
                    debug_assert_eq!(red.legs.first(), Some(&r.key));
                    for (leg, key) in red.legs.iter().enumerate() {
                        index.entry(*key).or_insert((id, LegId(leg as u8)));
                    }
                }
            }
        }
        Table {
            generation: Generation(0),
            daemon,
            interfaces,
            destinations,
            routes,
            tunnels: Vec::new(),
            index,
            redundant,
        }
    }

    /// The same table with these tunnels (each naming one of its interfaces).
    pub fn with_tunnels(mut self, tunnels: Vec<Tunnel>) -> Table {
        self.tunnels = tunnels;
        self
    }

    /// The tunnel an interface is, if it is one.
    pub fn tunnel(&self, interface: IfaceId) -> Option<&Tunnel> {
        self.tunnels.iter().find(|t| t.interface == interface)
    }

    /// The same table with another generation number.
    pub fn with_generation(mut self, generation: Generation) -> Table {
        self.generation = generation;
        self
    }

    /// The route for a packet received on `interface` from `source` to `group`:`port`, if any.
    /// A packet to a unicast address that no route names exactly matches a `listen` route on
    /// the unspecified address (`0.0.0.0`, `::`) of its family.
    #[inline]
    pub fn lookup(
        &self,
        interface: IfaceId,
        source: IpAddr,
        group: IpAddr,
        port: u16,
    ) -> Option<RouteId> {
        self.lookup_leg(interface, source, group, port)
            .map(|(id, _)| id)
    }

    /// Like [`Table::lookup`], and which leg of the route the packet arrived on (always
    /// `LegId(0)` for a route without `legs`).
    #[inline]
    pub fn lookup_leg(
        &self,
        interface: IfaceId,
        source: IpAddr,
        group: IpAddr,
        port: u16,
    ) -> Option<(RouteId, LegId)> {
        if self.index.is_empty() {
            return None;
        }
        let exact = self.probe(interface, source, group, port);
        if exact.is_some() || group.is_multicast() {
            return exact;
        }
        let any = match group {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        self.probe(interface, source, any, port)
    }

    /// The four exact probes of [`Table::lookup`]: most specific first.
    #[inline]
    fn probe(
        &self,
        interface: IfaceId,
        source: IpAddr,
        group: IpAddr,
        port: u16,
    ) -> Option<(RouteId, LegId)> {
        let mut key = RouteKey {
            interface,
            group,
            port: Some(port),
            source: Some(source),
        };
        if let Some(&id) = self.index.get(&key) {
            return Some(id);
        }
        key.port = None;
        if let Some(&id) = self.index.get(&key) {
            return Some(id);
        }
        key.source = None;
        key.port = Some(port);
        if let Some(&id) = self.index.get(&key) {
            return Some(id);
        }
        key.port = None;
        self.index.get(&key).copied()
    }

    /// The redundancy settings of a route with several inputs; `None` for a plain route.
    pub fn redundancy(&self, id: RouteId) -> Option<&Redundancy> {
        self.redundant.get(&id)
    }

    /// Every route with several inputs, in route order.
    pub fn redundant_routes(&self) -> impl Iterator<Item = (RouteId, &Redundancy)> {
        self.redundant.iter().map(|(id, r)| (*id, r))
    }

    /// The ingress keys of a route: its legs, or its one key for a plain route.
    pub fn legs(&self, id: RouteId) -> &[RouteKey] {
        match self.redundant.get(&id) {
            Some(r) => &r.legs,
            None => std::slice::from_ref(&self.routes[id.0 as usize].key),
        }
    }

    /// Every ingress key of the table: each plain route's key and every leg of each route
    /// with legs (what the socket filters admit and the memberships join).
    pub fn ingress_keys(&self) -> impl Iterator<Item = &RouteKey> {
        self.routes.iter().enumerate().flat_map(|(i, r)| {
            match self.redundant.get(&RouteId(i as u32)) {
                Some(red) => red.legs.as_slice(),
                None => std::slice::from_ref(&r.key),
            }
        })
    }

    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id.0 as usize]
    }

    pub fn destination(&self, id: DestId) -> &Destination {
        &self.destinations[id.0 as usize]
    }

    pub fn interface(&self, id: IfaceId) -> &Interface {
        &self.interfaces[id.0 as usize]
    }

    pub fn interface_id(&self, name: &str) -> Option<IfaceId> {
        self.interfaces
            .iter()
            .position(|i| i.name == name)
            .map(|i| IfaceId(i as u16))
    }

    /// Interfaces that at least one route receives on, each with its routes, in table order.
    /// A route with `legs` is listed under its first leg's interface only: see [`Table::legs`].
    pub fn ingress_interfaces(&self) -> BTreeMap<IfaceId, Vec<RouteId>> {
        let mut m: BTreeMap<IfaceId, Vec<RouteId>> = BTreeMap::new();
        for (i, r) in self.routes.iter().enumerate() {
            m.entry(r.key.interface)
                .or_default()
                .push(RouteId(i as u32));
        }
        m
    }
}
