//! IGMP/MLD memberships in the kernel, checked in `/proc/net/{igmp,mcfilter,igmp6,mcfilter6}`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mcrelay::sys::membership::{Key, Memberships};

use crate::{ifindex, in_netns, ip};

#[test]
fn joins_shards_and_leaves_in_a_namespace() {
    in_netns("membership::joins_shards_and_leaves_in_a_namespace", || {
        inner("m0")
    });
}

fn inner(iface: &str) {
    let index = ifindex(iface);
    let mut wanted: BTreeSet<Key> = BTreeSet::new();
    for i in 0..50u8 {
        wanted.insert((IpAddr::V4(Ipv4Addr::new(239, 10, 0, i)), None));
    }
    // One SSM group with more sources than igmp_max_msf (10) allows per socket, two with one.
    for s in 1..=12u8 {
        wanted.insert((v4(232, 1, 1, 1), Some(v4(10, 0, 0, s))));
    }
    wanted.insert((v4(232, 1, 1, 2), Some(v4(10, 0, 0, 1))));
    wanted.insert((v4(232, 1, 1, 3), Some(v4(10, 0, 0, 2))));
    for i in 0..30u16 {
        wanted.insert((
            IpAddr::V6(Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0x10, i)),
            None,
        ));
    }
    wanted.insert((v6(0xff3e, 1), Some(v6(0x2001, 1))));
    wanted.insert((v6(0xff3e, 2), Some(v6(0x2001, 2))));

    let mut m = Memberships::new(index);
    let errors = m.reconcile(&wanted);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(held(&mut m, iface), wanted, "after the joins");
    // v4, joined in order: 232.1.1.1 takes 10 sources on socket 0 and 2 on socket 1, then
    // 232.1.1.2, 232.1.1.3 and the 50 any-source groups fill sockets 0 and 1 to 20 groups and
    // 14 go to socket 2; v6: 32 groups on 2 sockets.
    assert_eq!(m.sockets(), 5);

    // "Users" counts sockets per group: 232.1.1.1 is on two (12 sources > igmp_max_msf),
    // every other group on one.
    let users = igmp_users(iface);
    for (g, u) in &users {
        let expected = if *g == v4(232, 1, 1, 1) { 2 } else { 1 };
        assert_eq!(*u, expected, "{g}: {users:?}");
    }

    // Change: drop half the groups and a source, add a group; joins before leaves.
    let mut next: BTreeSet<Key> = wanted
        .iter()
        .filter(|(g, s)| match (g, s) {
            (IpAddr::V4(g), None) => g.octets()[3] % 2 == 0,
            (_, Some(s)) => *s != v4(10, 0, 0, 12),
            _ => true,
        })
        .copied()
        .collect();
    next.insert((v4(239, 20, 0, 1), None));
    let errors = m.reconcile(&next);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(held(&mut m, iface), next, "after the reconcile");

    // The interface is re-created with a new index: move every membership there.
    ip(&["link", "del", "m0"]);
    ip(&["link", "add", "m0", "type", "veth", "peer", "name", "m1"]);
    ip(&["link", "set", "m0", "up"]);
    ip(&["link", "set", "m1", "up"]);
    let new_index = ifindex(iface);
    assert_ne!(new_index, index);
    let errors = m.set_ifindex(new_index);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        held(&mut m, iface),
        next,
        "after the move to ifindex {new_index}"
    );

    // Errors name the group and the interface.
    let mut gone = Memberships::new(9999);
    let e = gone.join(v4(239, 1, 1, 1), None).unwrap_err().to_string();
    assert!(e.contains("239.1.1.1") && e.contains("ifindex 9999"), "{e}");

    drop(m);
    assert_eq!(kernel(iface), BTreeSet::new(), "after the drop");
}

/// What the kernel holds on `iface`, without [`SENTINEL`].
///
/// `/proc/net/mcfilter` lists an interface's source filters only when the group joined last
/// on it (the head of its list) has sources: the sentinel, a source-specific membership joined
/// last, makes the listing complete.
fn held(m: &mut Memberships, iface: &str) -> BTreeSet<Key> {
    let (g, s) = SENTINEL;
    let (g, s) = (IpAddr::V4(g), Some(IpAddr::V4(s)));
    m.leave(g, s).unwrap();
    m.join(g, s).unwrap();
    let mut k = kernel(iface);
    assert!(k.remove(&(g, s)), "the sentinel is missing: {k:?}");
    m.leave(g, s).unwrap();
    k
}

const SENTINEL: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(232, 9, 9, 9), Ipv4Addr::new(10, 9, 9, 9));

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(first: u16, last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        first,
        0xdb8 * u16::from(first == 0x2001),
        0,
        0,
        0,
        0,
        0,
        last,
    ))
}

/// What the kernel holds on `iface`, in the test's terms: any-source groups from
/// `/proc/net/igmp` and `igmp6` (minus those with source filters), source-specific ones from
/// `mcfilter` and `mcfilter6`. Link-local groups the kernel joins by itself are left out.
fn kernel(iface: &str) -> BTreeSet<Key> {
    let mut groups: BTreeSet<IpAddr> = igmp_users(iface).into_keys().collect();
    for line in read("/proc/net/igmp6").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 && f[1] == iface {
            groups.insert(IpAddr::V6(hex_v6(f[2])));
        }
    }
    let mut out = BTreeSet::new();
    let mut ssm_groups = BTreeSet::new();
    for line in read("/proc/net/mcfilter").lines().skip(1) {
        // "Idx Device MCA SRC INC EXC", addresses as 0x%08x in host order.
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 6 && f[1] == iface && f[4] != "0" {
            let g = hex_u32(f[2]);
            let s = hex_u32(f[3]);
            ssm_groups.insert(IpAddr::V4(Ipv4Addr::from(g)));
            out.insert((
                IpAddr::V4(Ipv4Addr::from(g)),
                Some(IpAddr::V4(Ipv4Addr::from(s))),
            ));
        }
    }
    for line in read("/proc/net/mcfilter6").lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 6 && f[1] == iface && f[4] != "0" {
            let g = IpAddr::V6(hex_v6(f[2]));
            ssm_groups.insert(g);
            out.insert((g, Some(IpAddr::V6(hex_v6(f[3])))));
        }
    }
    for g in groups {
        let link_local = match g {
            IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
            IpAddr::V6(a) => a.segments()[0] & 0xff0f == 0xff02 || a.segments()[0] == 0xff01,
        };
        if !link_local && !ssm_groups.contains(&g) {
            out.insert((g, None));
        }
    }
    out
}

/// IPv4 groups of `iface` in `/proc/net/igmp` with their socket counts ("Users").
fn igmp_users(iface: &str) -> BTreeMap<IpAddr, u32> {
    let mut out = BTreeMap::new();
    let mut current = String::new();
    for line in read("/proc/net/igmp").lines().skip(1) {
        if line.starts_with('\t') {
            let f: Vec<&str> = line.split_whitespace().collect();
            if current == iface && f.len() >= 2 {
                // The group as the raw big-endian word printed with %08X: native byte order.
                let raw = hex_u32(f[0]);
                let g = Ipv4Addr::from(raw.to_ne_bytes());
                out.insert(IpAddr::V4(g), f[1].parse().unwrap());
            }
        } else {
            current = line.split_whitespace().nth(1).unwrap_or("").to_string();
        }
    }
    out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn hex_u32(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn hex_v6(s: &str) -> Ipv6Addr {
    Ipv6Addr::from(u128::from_str_radix(s, 16).unwrap_or_else(|e| panic!("{s}: {e}")))
}
