//! A worker's egress: one socket per (destination, IP version) it sends to, the per-batch
//! queue of datagrams for each, and the flush that sends them and counts the outcome.
//!
//! Sockets are keyed by the whole [`Destination`] (name, kind, TTL, DSCP, source port): a
//! destination whose settings change on reload gets a fresh socket, an unchanged one keeps its
//! socket. Either way its source port stays: each destination (per IP version) sends from one
//! port for the life of the process, its `source_port` or else the ephemeral port its first
//! socket got ([`SOURCE_PORTS`]), so receivers and firewalls that lock onto the first sender's
//! address and port keep accepting it after a reload stopped and resumed using it. A destination whose socket cannot be opened (its interface is missing) counts
//! every datagram for it as an error and is retried about once a second.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use crate::packet::Family;
use crate::sys;
use crate::sys::egress::{EgressConfig, EgressSocket, Outcome, SendScratch};
use crate::table::{DestId, DestKind, Destination, IfaceId, Table};

use super::counters::Counters;
use super::source::Region;
use super::sources::SourceSet;
use super::tunnel::TunnelOut;
use crate::packet::Datagram;

const NO_SLOT: u32 = u32::MAX;

/// One datagram queued for a destination: where its payload lies in a received buffer, whose
/// counters it belongs to, and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    /// The unit of a source the payload lies in.
    pub region: Region,
    /// Offset of the payload in that unit.
    pub off: u32,
    pub len: u16,
    /// Route id (in the current table) and position of the destination in that route.
    pub route: u32,
    pub dest_pos: u16,
    pub target: SocketAddr,
    /// Position in its destination's queue, set by [`EgressSet::push`] (keeps each stream's
    /// order when a batch is grouped by target).
    pub seq: u32,
}

struct Slot {
    key: (Destination, Family),
    /// Multicast egress interface name, `None` for unicast.
    ifname: Option<String>,
    ifindex: u32,
    sock: Option<EgressSocket>,
    error: Option<String>,
    items: Vec<Item>,
    /// The destination sends into a tunnel: items are encapsulated into its buffer.
    tunnel: Option<Box<TunnelOut>>,
    /// The destination's interface is a tunnel (whose socket may have failed to open: such a
    /// slot is not retried as a plain socket).
    into_tunnel: bool,
}

/// The egress sockets and queues of one worker.
pub struct EgressSet {
    gso: bool,
    slots: Vec<Option<Slot>>,
    by_key: HashMap<(Destination, Family), u32>,
    /// By `DestId` of the current table: slot for IPv4, slot for IPv6.
    dest_slots: Vec<[u32; 2]>,
    touched: Vec<u32>,
    scratch: SendScratch,
    outcomes: Vec<Outcome>,
}

/// The IP version a destination sends with, for a datagram received on `group`.
pub fn dest_family(dest: &Destination, group: &IpAddr) -> Family {
    match &dest.kind {
        DestKind::Unicast { address } => Family::of(&address.ip()),
        DestKind::Multicast { group: g, .. } => Family::of(g.as_ref().unwrap_or(group)),
    }
}

fn fam_index(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

impl EgressSet {
    /// An empty set; `gso` enables UDP GSO where the kernel and device allow it.
    pub fn new(gso: bool) -> EgressSet {
        EgressSet {
            gso,
            slots: Vec::new(),
            by_key: HashMap::new(),
            dest_slots: Vec::new(),
            touched: Vec::new(),
            scratch: SendScratch::default(),
            outcomes: Vec::new(),
        }
    }

    /// Opens sockets for the destinations `table` sends to from routes on `ifaces`, keeps
    /// those still needed, closes the rest. Must not run while items are queued (between a
    /// batch's pushes and its flush). Returns messages for destinations whose socket failed to
    /// open.
    pub fn reconcile(&mut self, table: &Table, ifaces: &[IfaceId]) -> Vec<String> {
        debug_assert!(self.touched.is_empty());
        let mut wanted: Vec<(DestId, Family)> = Vec::new();
        for r in table
            .routes
            .iter()
            .filter(|r| ifaces.contains(&r.key.interface))
        {
            for &d in &r.destinations {
                wanted.push((d, dest_family(table.destination(d), &r.key.group)));
            }
        }
        let mut old = std::mem::take(&mut self.by_key);
        let mut new_by_key = HashMap::new();
        self.dest_slots = vec![[NO_SLOT; 2]; table.destinations.len()];
        let mut errors = Vec::new();
        // A slot whose interface became or stopped being a tunnel, or whose tunnel moved to
        // another local address, is opened again (its socket is the wrong one).
        old.retain(|k, s| {
            let fits = self.slots[*s as usize]
                .as_ref()
                .is_none_or(|slot| slot_fits(slot, &k.0, table));
            if !fits {
                self.slots[*s as usize] = None;
            }
            fits
        });
        for (d, fam) in wanted {
            let dest = table.destination(d);
            let key = (dest.clone(), fam);
            let slot = if let Some(&s) = new_by_key.get(&key) {
                s
            } else if let Some(s) = old.remove(&key) {
                new_by_key.insert(key, s);
                s
            } else {
                let ifname = match &dest.kind {
                    DestKind::Multicast { interface, .. } => {
                        Some(table.interface(*interface).name.clone())
                    }
                    DestKind::Unicast { .. } => None,
                };
                let tunnel = match &dest.kind {
                    DestKind::Multicast { interface, .. } => table.tunnel(*interface),
                    DestKind::Unicast { .. } => None,
                };
                let mut slot = Slot {
                    key: key.clone(),
                    ifname: if tunnel.is_some() { None } else { ifname },
                    ifindex: 0,
                    sock: None,
                    error: None,
                    items: Vec::new(),
                    tunnel: None,
                    into_tunnel: tunnel.is_some(),
                };
                match tunnel {
                    Some(t) => match TunnelOut::open(table, t, self.gso) {
                        Ok((out, sock)) => {
                            slot.tunnel = Some(out);
                            slot.sock = Some(sock);
                        }
                        Err(e) => {
                            slot.error = Some(format!(
                                "destination {}: cannot open tunnel {}'s socket on {}: {e}",
                                dest.name,
                                table.interface(t.interface).name,
                                t.local
                            ));
                        }
                    },
                    None => open_slot(&mut slot, self.gso),
                }
                if let Some(e) = &slot.error {
                    errors.push(e.clone());
                }
                let s = match self.slots.iter().position(Option::is_none) {
                    Some(free) => {
                        self.slots[free] = Some(slot);
                        free as u32
                    }
                    None => {
                        self.slots.push(Some(slot));
                        (self.slots.len() - 1) as u32
                    }
                };
                new_by_key.insert(key, s);
                s
            };
            self.dest_slots[d.0 as usize][fam_index(fam)] = slot;
        }
        for (_, s) in old {
            self.slots[s as usize] = None;
        }
        for slot in self.slots.iter_mut().flatten() {
            if let Some(t) = slot.tunnel.as_mut() {
                t.refresh(table);
            }
        }
        self.by_key = new_by_key;
        errors
    }

    /// The slot sending `dest` in `family`, if it has one.
    #[inline]
    pub fn slot_for(&self, dest: DestId, family: Family) -> Option<u32> {
        let s = *self
            .dest_slots
            .get(dest.0 as usize)?
            .get(fam_index(family))?;
        (s != NO_SLOT).then_some(s)
    }

    /// The egress interface index of a slot (0 for unicast).
    #[inline]
    pub fn ifindex(&self, slot: u32) -> u32 {
        self.slots[slot as usize].as_ref().map_or(0, |s| s.ifindex)
    }

    /// Queues a datagram on a slot until [`EgressSet::flush`]; `dest` and `dg` are what it
    /// carries (a slot into a tunnel encapsulates it now).
    #[inline]
    pub fn push(&mut self, slot: u32, item: Item, dest: &Destination, dg: &Datagram<'_>) {
        let s = self.slots[slot as usize]
            .as_mut()
            .expect("slot_for only returns live slots");
        let item = match s.tunnel.as_mut() {
            None => item,
            Some(t) => match t.encode(dest, item, dg) {
                Some(item) => item,
                None => return,
            },
        };
        if s.items.is_empty() {
            self.touched.push(slot);
        }
        s.items.push(Item {
            seq: s.items.len() as u32,
            ..item
        });
    }

    /// Sends everything queued, one batch per socket, and counts each datagram's outcome.
    pub fn flush(&mut self, store: &SourceSet, counters: &mut Counters) {
        let EgressSet {
            slots,
            touched,
            scratch,
            outcomes,
            ..
        } = self;
        for &t in touched.iter() {
            let Some(slot) = slots[t as usize].as_mut() else {
                continue;
            };
            match slot.sock.as_mut() {
                Some(sock) if slot.tunnel.is_some() => {
                    if let Some(t) = slot.tunnel.as_mut() {
                        t.flush(sock, &slot.items, scratch, outcomes, counters);
                    }
                }
                Some(sock) => {
                    group_by_target(&mut slot.items);
                    sock.send_batch(
                        scratch,
                        slot.items
                            .iter()
                            .map(|it| (store.bytes(it.region, it.off, it.len), it.target)),
                        outcomes,
                    );
                    for (it, oc) in slot.items.iter().zip(outcomes.iter()) {
                        counters.count_send(it.route, it.dest_pos, it.len, Some(oc));
                    }
                }
                None => {
                    for it in &slot.items {
                        counters.count_send(it.route, it.dest_pos, it.len, None);
                    }
                }
            }
            slot.items.clear();
        }
        touched.clear();
    }

    /// Housekeeping on the stats timer: empties the sockets' error queues and retries sockets
    /// that could not be opened or whose interface was re-created. Returns what changed.
    pub fn maintain(&mut self, retry: bool) -> Vec<String> {
        let mut opened = Vec::new();
        for slot in self.slots.iter_mut().flatten() {
            match &slot.sock {
                Some(s) => {
                    s.drain_errors();
                    // An egress interface deleted and created again has a new index: the old
                    // socket is bound to the dead one, so open a new one.
                    let moved = retry
                        && slot
                            .ifname
                            .as_deref()
                            .is_some_and(|n| sys::ifindex(n) != Some(slot.ifindex));
                    if moved {
                        open_slot(slot, self.gso);
                        opened.push(slot.error.clone().unwrap_or_else(|| {
                            format!(
                                "destination {}: its interface changed, socket re-opened",
                                slot.key.0.name
                            )
                        }));
                    }
                }
                None if retry && !slot.into_tunnel => {
                    open_slot(slot, self.gso);
                    if slot.sock.is_some() {
                        opened.push(format!("destination {} is sending again", slot.key.0.name));
                    }
                }
                None => {}
            }
        }
        opened
    }

    /// The first open error among the slots, for status.
    pub fn error(&self) -> Option<String> {
        self.slots.iter().flatten().find_map(|s| s.error.clone())
    }
}

/// Whether a kept slot still sends the right way for `dest` in `table`: into the same tunnel
/// (same local address) or, as before, not into a tunnel.
fn slot_fits(slot: &Slot, dest: &Destination, table: &Table) -> bool {
    let tunnel = match &dest.kind {
        DestKind::Multicast { interface, .. } => table.tunnel(*interface),
        DestKind::Unicast { .. } => None,
    };
    match (tunnel, &slot.tunnel) {
        (None, _) => !slot.into_tunnel,
        (Some(t), Some(out)) => out.local() == t.local,
        (Some(_), None) => false,
    }
}

/// Puts a destination's queued datagrams to the same address next to each other, each
/// address's datagrams in arrival order, so that interleaved streams (50 groups kept at their
/// own address through one destination) still make runs that UDP GSO sends in one pass. Order
/// between different addresses is not kept: they are different streams. Sorts in place
/// (`sort_unstable` does not allocate); a queue to a single address is left as it is.
fn group_by_target(items: &mut [Item]) {
    let Some(first) = items.first() else {
        return;
    };
    if items.iter().all(|it| it.target == first.target) {
        return;
    }
    items.sort_unstable_by(|a, b| a.target.cmp(&b.target).then(a.seq.cmp(&b.seq)));
}

/// The source port of each destination by (name, IPv6), for the life of the process: filled by
/// its first socket (from the configured `source_port` or the ephemeral port the kernel chose),
/// then bound by every later socket of it, whichever worker opens it (`SO_REUSEPORT`).
static SOURCE_PORTS: Mutex<BTreeMap<(String, bool), u16>> = Mutex::new(BTreeMap::new());

fn open_slot(slot: &mut Slot, gso: bool) {
    let (dest, fam) = &slot.key;
    let multicast_if = match &slot.ifname {
        Some(name) => match sys::ifindex(name) {
            Some(i) => Some((name.as_str(), i)),
            None => {
                slot.sock = None;
                slot.error = Some(format!(
                    "destination {}: egress interface {name} does not exist",
                    dest.name
                ));
                return;
            }
        },
        None => None,
    };
    let ipv6 = *fam == Family::V6;
    // Held while opening, so that two workers opening the same destination agree on one port.
    let mut ports = SOURCE_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    let port_key = (dest.name.clone(), ipv6);
    let remembered = ports.get(&port_key).copied();
    let cfg = EgressConfig {
        ipv6,
        multicast_if,
        ttl: dest.ttl,
        dscp: dest.dscp,
        gso,
        source_port: dest.source_port.or(remembered).unwrap_or(0),
    };
    let opened = match EgressSocket::open(&cfg) {
        // Another program took the remembered port while no socket of ours held it.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && dest.source_port.is_none() => {
            tracing::warn!(
                "destination {}: its source port {} is now used by another program; sending from a new one",
                dest.name,
                cfg.source_port
            );
            EgressSocket::open(&EgressConfig {
                source_port: 0,
                ..cfg
            })
        }
        opened => opened,
    };
    match opened {
        Ok(s) => {
            if let Ok(local) = s.local_addr() {
                ports.insert(port_key, local.port());
            }
            slot.ifindex = multicast_if.map_or(0, |(_, i)| i);
            slot.sock = Some(s);
            slot.error = None;
        }
        Err(e) => {
            slot.sock = None;
            slot.error = Some(format!(
                "destination {}: cannot open its socket: {e}",
                dest.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(target: &str, seq: u32) -> Item {
        Item {
            region: Region { source: 0, unit: 0 },
            off: seq,
            len: 64,
            route: 0,
            dest_pos: 0,
            target: target.parse().unwrap(),
            seq,
        }
    }

    #[test]
    fn grouping_keeps_each_address_in_arrival_order() {
        let order = [
            "239.1.0.2:5000",
            "239.1.0.1:5000",
            "239.1.0.2:5000",
            "239.1.0.3:5000",
        ];
        let mut items: Vec<Item> = (0..40).map(|i| item(order[i % 4], i as u32)).collect();
        group_by_target(&mut items);
        // runs by address, and inside a run the original order
        let runs: Vec<SocketAddr> = items
            .chunk_by(|a, b| a.target == b.target)
            .map(|run| {
                assert!(
                    run.windows(2).all(|w| w[0].seq < w[1].seq),
                    "order kept in a run"
                );
                run[0].target
            })
            .collect();
        assert_eq!(runs.len(), 3, "one run per address: {runs:?}");
        assert_eq!(items.len(), 40);
        let mut seqs: Vec<u32> = items.iter().map(|i| i.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..40).collect::<Vec<_>>(), "nothing lost or doubled");
    }

    /// A table routing one group from `in0` to destination `to`; `keep` and `fixed` are more
    /// keys of the destinations `egress-test-keep` and `egress-test-fixed`. (Names unique to
    /// these tests: the source ports are remembered process-wide.)
    fn table_to(to: &str, keep: &str, fixed: &str) -> Table {
        let text = format!(
            "[interfaces.in0]\n\
             [destinations.egress-test-keep]\naddress = \"127.0.0.1:9\"\n{keep}\n\
             [destinations.egress-test-other]\naddress = \"127.0.0.1:9\"\n\
             [destinations.egress-test-fixed]\naddress = \"127.0.0.1:9\"\n{fixed}\n\
             [[groups]]\ninterface = \"in0\"\ngroup = \"239.1.1.1\"\nto = [\"{to}\"]\n"
        );
        crate::config::compile(
            &text,
            std::path::Path::new("test.toml"),
            &crate::config::FakeResolver::everything(),
        )
        .unwrap()
    }

    fn source_port(set: &EgressSet, table: &Table, name: &str) -> u16 {
        let d = table
            .destinations
            .iter()
            .position(|d| d.name == name)
            .unwrap();
        let s = set
            .slot_for(DestId(d as u32), Family::V4)
            .expect("a socket for the destination");
        let slot = set.slots[s as usize].as_ref().unwrap();
        slot.sock.as_ref().unwrap().local_addr().unwrap().port()
    }

    /// Regression (issue 13, fix b): a destination unused by one reload and used again by a
    /// later one got a new ephemeral source port, and receivers locked onto the first went deaf.
    #[test]
    fn a_destination_keeps_its_source_port_when_it_goes_unused_and_comes_back() {
        let in0 = &[IfaceId(0)][..];
        let mut set = EgressSet::new(false);
        let first = table_to("egress-test-keep", "", "");
        assert_eq!(set.reconcile(&first, in0), Vec::<String>::new());
        let port = source_port(&set, &first, "egress-test-keep");
        // Unused: its socket is closed (the kernel would give a new socket another port).
        let other = table_to("egress-test-other", "", "");
        set.reconcile(&other, in0);
        assert_eq!(
            set.slot_for(DestId(0), Family::V4),
            None,
            "egress-test-keep is unused"
        );
        assert_ne!(source_port(&set, &other, "egress-test-other"), port);
        // Used again, by this worker and by another one (its own set): the same port.
        set.reconcile(&first, in0);
        assert_eq!(source_port(&set, &first, "egress-test-keep"), port);
        let mut another_worker = EgressSet::new(false);
        another_worker.reconcile(&first, in0);
        assert_eq!(
            source_port(&another_worker, &first, "egress-test-keep"),
            port
        );
        // A changed setting: a new socket, opened while the old one is still open, same port.
        let changed = table_to("egress-test-keep", "ttl = 9", "");
        set.reconcile(&changed, in0);
        assert_eq!(source_port(&set, &changed, "egress-test-keep"), port);
    }

    #[test]
    fn a_configured_source_port_is_bound() {
        let free = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let wanted = free.local_addr().unwrap().port();
        drop(free);
        let table = table_to("egress-test-fixed", "", &format!("source_port = {wanted}"));
        let mut set = EgressSet::new(false);
        assert_eq!(set.reconcile(&table, &[IfaceId(0)]), Vec::<String>::new());
        assert_eq!(source_port(&set, &table, "egress-test-fixed"), wanted);
    }

    #[test]
    fn one_address_is_left_alone() {
        let mut items: Vec<Item> = (0..5).map(|i| item("[ff3e::1]:5000", 4 - i)).collect();
        group_by_target(&mut items);
        assert_eq!(
            items.iter().map(|i| i.seq).collect::<Vec<_>>(),
            [4, 3, 2, 1, 0]
        );
    }
}
