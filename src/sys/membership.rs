//! IGMP / MLD group membership of one ingress interface, so that switches and routers forward
//! the routed groups to it: any-source joins (IGMPv2/v3, RFC 3376; MLDv1/v2, RFC 3810) and
//! source-specific joins (SSM, RFC 4607) where a route names a source.
//!
//! Why helper sockets: AF_PACKET receives the traffic, but only an IP socket can hold a
//! membership. The helper UDP sockets here are never bound, so they receive no data; they exist
//! only to carry memberships, and closing one leaves its groups (the kernel does that on close).
//!
//! Why shards: the kernel limits memberships per socket (`net.ipv4.igmp_max_memberships`,
//! default 20: the 21st join fails with ENOBUFS) and sources per group per socket
//! (`net.ipv4.igmp_max_msf`, default 10; `net.ipv6.mld_max_msf`, default 64). [`Memberships`]
//! reads those sysctls (falling back to the defaults) and opens as many helper sockets per
//! family as the joins need. A socket also cannot hold the same group both any-source and
//! source-specific, so those land on different sockets.
//!
//! Any-source joins use `IP_ADD_MEMBERSHIP` with `ip_mreqn` (by ifindex) and
//! `IPV6_ADD_MEMBERSHIP`; source-specific joins use `MCAST_JOIN_SOURCE_GROUP`
//! (`group_source_req`, by ifindex, both families; Linux 2.6.15+).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

/// A membership: group, and the source for a source-specific one (`None` = any source).
pub type Key = (IpAddr, Option<IpAddr>);

/// Per-socket limits of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Groups per socket (`net.ipv4.igmp_max_memberships`), used for both families.
    pub groups: usize,
    /// Sources per group per IPv4 socket (`net.ipv4.igmp_max_msf`).
    pub sources_v4: usize,
    /// Sources per group per IPv6 socket (`net.ipv6.mld_max_msf`).
    pub sources_v6: usize,
}

impl Limits {
    /// The kernel's defaults: 20 groups, 10 IPv4 sources, 64 IPv6 sources.
    pub const DEFAULT: Limits = Limits {
        groups: 20,
        sources_v4: 10,
        sources_v6: 64,
    };

    /// The limits of the current network namespace, each falling back to its default when the
    /// sysctl cannot be read.
    pub fn from_sysctl() -> Limits {
        let read = |name: &str, default: usize| {
            std::fs::read_to_string(format!("/proc/sys/net/{name}"))
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        Limits {
            groups: read("ipv4/igmp_max_memberships", Limits::DEFAULT.groups),
            sources_v4: read("ipv4/igmp_max_msf", Limits::DEFAULT.sources_v4),
            sources_v6: read("ipv6/mld_max_msf", Limits::DEFAULT.sources_v6),
        }
    }
}

/// The memberships of one interface, spread over helper sockets. Dropping it leaves every
/// group (the sockets close).
#[derive(Debug)]
pub struct Memberships {
    ifindex: u32,
    limits: Limits,
    shards: Vec<Shard>,
    /// Every membership held, with the index of its shard.
    joined: BTreeMap<Key, usize>,
}

#[derive(Debug)]
struct Shard {
    socket: Socket,
    v6: bool,
    /// Group → `None` for an any-source membership, `Some(n)` for `n` source-specific ones.
    groups: BTreeMap<IpAddr, Option<usize>>,
}

impl Memberships {
    /// Memberships on the interface with index `ifindex`, with the limits of the current
    /// network namespace. Opens no socket until the first join.
    pub fn new(ifindex: u32) -> Memberships {
        Memberships::with_limits(ifindex, Limits::from_sysctl())
    }

    /// As [`Memberships::new`] with given limits (lower than the kernel's is fine).
    pub fn with_limits(ifindex: u32, limits: Limits) -> Memberships {
        Memberships {
            ifindex,
            limits,
            shards: Vec::new(),
            joined: BTreeMap::new(),
        }
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The memberships held.
    pub fn joined(&self) -> impl Iterator<Item = &Key> {
        self.joined.keys()
    }

    /// Helper sockets open (both families).
    pub fn sockets(&self) -> usize {
        self.shards.len()
    }

    /// Joins `group`, from `source` only when given. Joining a membership already held is a
    /// no-op. Errors name the group, source and interface.
    pub fn join(&mut self, group: IpAddr, source: Option<IpAddr>) -> io::Result<()> {
        let key = (group, source);
        if self.joined.contains_key(&key) {
            return Ok(());
        }
        self.check(group, source)
            .and_then(|()| self.place_and_join(group, source))
            .map_err(|e| self.context("join", key, e))
    }

    /// Leaves a membership held; leaving one not held is a no-op.
    pub fn leave(&mut self, group: IpAddr, source: Option<IpAddr>) -> io::Result<()> {
        let key = (group, source);
        let Some(&i) = self.joined.get(&key) else {
            return Ok(());
        };
        let shard = &mut self.shards[i];
        let r = match source {
            None => drop_any(&shard.socket, group, self.ifindex),
            Some(s) => source_group(&shard.socket, false, self.ifindex, group, s),
        };
        // The membership is gone from our books even when the kernel refused (e.g. the
        // interface disappeared, which drops it anyway).
        self.joined.remove(&key);
        match shard.groups.get_mut(&group) {
            Some(Some(n)) if *n > 1 => *n -= 1,
            _ => {
                shard.groups.remove(&group);
            }
        }
        r.map_err(|e| self.context("leave", key, e))
    }

    /// Makes the memberships equal to `wanted`: joins what is new first, then leaves what is
    /// gone (so a group moving between any-source and source-specific is never briefly
    /// unjoined). Returns the memberships that failed, each with its error; the others are
    /// done.
    pub fn reconcile(&mut self, wanted: &BTreeSet<Key>) -> Vec<(Key, io::Error)> {
        let mut errors = Vec::new();
        for &(g, s) in wanted {
            if let Err(e) = self.join(g, s) {
                errors.push(((g, s), e));
            }
        }
        let gone: Vec<Key> = self
            .joined
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for (g, s) in gone {
            if let Err(e) = self.leave(g, s) {
                errors.push(((g, s), e));
            }
        }
        errors
    }

    /// Moves every membership to another interface index (an interface that was deleted and
    /// created again gets a new one): closes the helper sockets, which drops what the kernel
    /// still holds, and joins everything again on `ifindex`.
    pub fn set_ifindex(&mut self, ifindex: u32) -> Vec<(Key, io::Error)> {
        let keys: BTreeSet<Key> = self.joined.keys().copied().collect();
        self.shards.clear();
        self.joined.clear();
        self.ifindex = ifindex;
        self.reconcile(&keys)
    }

    /// Leaves everything now (as dropping does).
    pub fn clear(&mut self) {
        self.shards.clear();
        self.joined.clear();
    }

    fn check(&self, group: IpAddr, source: Option<IpAddr>) -> io::Result<()> {
        if !group.is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a multicast group",
            ));
        }
        if source.is_some_and(|s| s.is_ipv4() != group.is_ipv4()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "source and group are of different address families",
            ));
        }
        Ok(())
    }

    fn place_and_join(&mut self, group: IpAddr, source: Option<IpAddr>) -> io::Result<()> {
        let v6 = group.is_ipv6();
        let max_sources = if v6 {
            self.limits.sources_v6
        } else {
            self.limits.sources_v4
        };
        let fits = |s: &Shard| {
            s.v6 == v6
                && match (s.groups.get(&group), source) {
                    (None, _) => s.groups.len() < self.limits.groups,
                    (Some(Some(n)), Some(_)) => *n < max_sources,
                    _ => false,
                }
        };
        let i = match self.shards.iter().position(fits) {
            Some(i) => i,
            None => {
                let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
                let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
                self.shards.push(Shard {
                    socket,
                    v6,
                    groups: BTreeMap::new(),
                });
                self.shards.len() - 1
            }
        };
        let shard = &mut self.shards[i];
        match source {
            None => join_any(&shard.socket, group, self.ifindex)?,
            Some(s) => source_group(&shard.socket, true, self.ifindex, group, s)?,
        }
        let entry = shard.groups.entry(group).or_insert(source.map(|_| 0));
        if let Some(n) = entry {
            *n += 1;
        }
        self.joined.insert((group, source), i);
        Ok(())
    }

    fn context(&self, what: &str, (group, source): Key, e: io::Error) -> io::Error {
        let iface = interface_name(self.ifindex)
            .map(|n| format!("{n} (ifindex {})", self.ifindex))
            .unwrap_or_else(|| format!("ifindex {}", self.ifindex));
        let source = source
            .map(|s| format!(" from source {s}"))
            .unwrap_or_default();
        let hint = match e.raw_os_error() {
            Some(libc::ENOBUFS) => {
                ": too many memberships (net.ipv4.igmp_max_memberships, igmp_max_msf)"
            }
            Some(libc::ENODEV) => ": the interface does not exist",
            Some(libc::EPERM) => ": permission denied",
            _ => "",
        };
        io::Error::new(
            e.kind(),
            format!("cannot {what} group {group}{source} on interface {iface}: {e}{hint}"),
        )
    }
}

fn join_any(socket: &Socket, group: IpAddr, ifindex: u32) -> io::Result<()> {
    match group {
        IpAddr::V4(g) => socket.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex)),
        IpAddr::V6(g) => socket.join_multicast_v6(&g, ifindex),
    }
}

fn drop_any(socket: &Socket, group: IpAddr, ifindex: u32) -> io::Result<()> {
    match group {
        IpAddr::V4(g) => socket.leave_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex)),
        IpAddr::V6(g) => socket.leave_multicast_v6(&g, ifindex),
    }
}

/// `MCAST_JOIN_SOURCE_GROUP` / `MCAST_LEAVE_SOURCE_GROUP` on `socket`.
fn source_group(
    socket: &Socket,
    join: bool,
    ifindex: u32,
    group: IpAddr,
    source: IpAddr,
) -> io::Result<()> {
    // SAFETY: group_source_req is plain data (integers and sockaddr_storage), all-zero is a
    // valid value of it.
    let mut req: libc::group_source_req = unsafe { mem::zeroed() };
    req.gsr_interface = ifindex;
    write_sockaddr(&mut req.gsr_group, group);
    write_sockaddr(&mut req.gsr_source, source);
    let level = if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    };
    let name = if join {
        libc::MCAST_JOIN_SOURCE_GROUP
    } else {
        libc::MCAST_LEAVE_SOURCE_GROUP
    };
    super::setsockopt(socket.as_raw_fd(), level, name, &req)
}

fn write_sockaddr(storage: &mut libc::sockaddr_storage, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for any
            // sockaddr; the write stays inside `storage`.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin) };
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: `storage` is a live, writable sockaddr_storage (128 bytes, aligned for
            // every address type), so a sockaddr_in6 (28 bytes, alignment 4) written at its
            // start stays inside it and is aligned.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin6) };
        }
    }
}

/// The name of an interface, `None` when no interface has that index.
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes as if_indextoname requires; it writes a
    // NUL-terminated name there or returns NULL.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bookkeeping that needs no kernel: refusals before any socket is opened.
    #[test]
    fn refuses_unicast_groups_and_mixed_families() {
        let mut m = Memberships::with_limits(1, Limits::DEFAULT);
        let e = m.join("192.0.2.1".parse().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("not a multicast group"), "{e}");
        assert!(e.to_string().contains("192.0.2.1"), "{e}");
        let e = m
            .join(
                "239.1.1.1".parse().unwrap(),
                Some("2001:db8::1".parse().unwrap()),
            )
            .unwrap_err();
        assert!(e.to_string().contains("different address families"), "{e}");
        assert_eq!(m.sockets(), 0);
        assert_eq!(m.joined().count(), 0);
    }

    #[test]
    fn limits_fall_back_to_defaults() {
        let l = Limits::from_sysctl();
        assert!(l.groups > 0 && l.sources_v4 > 0 && l.sources_v6 > 0);
    }

    #[test]
    fn sockaddr_is_written_in_network_order() {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        write_sockaddr(&mut ss, "239.1.2.3".parse().unwrap());
        // SAFETY: write_sockaddr wrote a sockaddr_in at the start of `ss`.
        let sin: libc::sockaddr_in = unsafe { std::ptr::read((&raw const ss).cast()) };
        assert_eq!(sin.sin_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [239, 1, 2, 3]);
    }
}
