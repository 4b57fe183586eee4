//! Compiler tests of groups with `legs` (issue 15): one per rule, each asserting message and
//! line:col, and the table's leg-aware index.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::table::{
    ByteOrder, FieldSize, IfaceId, LegId, RedundancyMode, Revert, RouteId, SequenceSpec,
};

const HEAD: &str = "[interfaces.red]\n[interfaces.blue]\n[interfaces.out]\n[destinations.mon]\ninterface = \"out\"\n";

fn ok(text: &str) -> Table {
    match compile(text, Path::new("t.toml"), &FakeResolver::everything()) {
        Ok(t) => t,
        Err(e) => panic!("expected a valid config, got:\n{}", render_errors(&e)),
    }
}

fn fails(text: &str) -> Vec<(usize, usize, String)> {
    match compile(text, Path::new("t.toml"), &FakeResolver::everything()) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.into_iter().map(|e| (e.line, e.col, e.message)).collect(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// HEAD is lines 1-5; the group's `[[groups]]` is line 6, its first key line 7.
fn group(body: &str) -> String {
    format!("{HEAD}[[groups]]\n{body}to = [\"mon\"]\n")
}

const TWO_LEGS: &str = "legs = [{ interface = \"red\", group = \"239.1.1.1\", port = 5004 }, { interface = \"blue\", group = \"239.2.2.2\", port = 5004, source = \"10.0.0.9\" }]\n";

#[test]
fn a_merged_group_is_one_route_with_every_leg_indexed() {
    let t = ok(&group(&format!(
        "{TWO_LEGS}redundancy = \"merge\"\nsequence = \"rtp\"\nwindow = \"30ms\"\n"
    )));
    assert_eq!(t.routes.len(), 1);
    let id = RouteId(0);
    let red = t.interface_id("red").unwrap();
    let blue = t.interface_id("blue").unwrap();
    let r = t.redundancy(id).expect("redundant");
    assert_eq!(
        r.mode,
        RedundancyMode::Merge {
            window: Duration::from_millis(30),
            sequence: SequenceSpec::Rtp
        }
    );
    assert_eq!(t.legs(id).len(), 2);
    assert_eq!(t.routes[0].key, t.legs(id)[0]);
    assert_eq!(
        t.lookup_leg(red, ip("10.1.1.1"), ip("239.1.1.1"), 5004),
        Some((id, LegId(0)))
    );
    assert_eq!(
        t.lookup_leg(blue, ip("10.0.0.9"), ip("239.2.2.2"), 5004),
        Some((id, LegId(1)))
    );
    assert_eq!(
        t.lookup(blue, ip("10.0.0.9"), ip("239.2.2.2"), 5004),
        Some(id)
    );
    // The second leg is source-specific, and each leg belongs to its own interface.
    assert_eq!(t.lookup(blue, ip("10.0.0.8"), ip("239.2.2.2"), 5004), None);
    assert_eq!(t.lookup(red, ip("10.0.0.9"), ip("239.2.2.2"), 5004), None);
    assert_eq!(t.routes[0].label, "239.1.1.1:5004");
    // A plain route answers leg 0 and its one key.
    assert_eq!(t.legs(id).len(), 2);
    assert!(t.ingress_interfaces().contains_key(&red));
    let _ = IfaceId(0);
}

#[test]
fn failover_defaults_and_payload_fields() {
    let t = ok(&group(&format!("{TWO_LEGS}redundancy = \"failover\"\n")));
    assert_eq!(
        t.redundancy(RouteId(0)).unwrap().mode,
        RedundancyMode::Failover {
            after: DEFAULT_FAILOVER_AFTER,
            revert: Revert::Never
        }
    );
    let t = ok(&group(&format!(
        "{TWO_LEGS}redundancy = \"failover\"\nfailover_after = \"50ms\"\nrevert = \"10s\"\n"
    )));
    assert_eq!(
        t.redundancy(RouteId(0)).unwrap().mode,
        RedundancyMode::Failover {
            after: Duration::from_millis(50),
            revert: Revert::After(Duration::from_secs(10))
        }
    );
    let t = ok(&group(&format!(
        "{TWO_LEGS}redundancy = \"merge\"\nsequence = {{ offset = 0, size = 4, byte_order = \"little\" }}\n"
    )));
    assert_eq!(
        t.redundancy(RouteId(0)).unwrap().mode,
        RedundancyMode::Merge {
            window: DEFAULT_WINDOW,
            sequence: SequenceSpec::Field {
                offset: 0,
                size: FieldSize::Four,
                order: ByteOrder::Little
            }
        }
    );
}

#[test]
fn rule_legs_need_at_least_two_and_replace_the_groups_own_keys() {
    let one = "legs = [{ interface = \"red\", group = \"239.1.1.1\" }]\nredundancy = \"merge\"\nsequence = \"rtp\"\n";
    assert_eq!(
        fails(&group(one)),
        [(
            7,
            8,
            "`legs` needs at least two legs, not 1; for one input use `interface` and `group` instead"
                .to_string()
        )]
    );
    let both = format!(
        "interface = \"red\"\ngroup = \"239.9.9.9\"\n{TWO_LEGS}redundancy = \"failover\"\n"
    );
    assert_eq!(
        fails(&group(&both)),
        [
            (
                7,
                13,
                "`interface` cannot be combined with `legs`: each leg names its own interface, group, port and source".to_string()
            ),
            (
                8,
                9,
                "`group` cannot be combined with `legs`: each leg names its own interface, group, port and source".to_string()
            ),
        ]
    );
}

#[test]
fn rule_each_leg_is_checked_like_a_group() {
    let bad = "legs = [{ interface = \"red\" }, { interface = \"green\", group = \"10.1.1.1\", port = 0 }]\nredundancy = \"failover\"\n";
    let errors = fails(&group(bad));
    let messages: Vec<&str> = errors.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        messages,
        [
            "leg 1 of this group needs a multicast `group` address",
            "interface `green` is not declared; add an [interfaces.green] table",
            "group 10.1.1.1 is not a multicast address (IPv4 multicast is 224.0.0.0/4, IPv6 is ff00::/8)",
            "port must be between 1 and 65535, not 0",
        ]
    );
    assert_eq!((errors[0].0, errors[0].1), (7, 9));
}

#[test]
fn rule_redundancy_keys_go_with_their_mode() {
    // `legs` without `redundancy`.
    assert_eq!(
        fails(&group(TWO_LEGS)),
        [(6, 1, "this group has `legs` but no `redundancy`; add redundancy = \"merge\" (first copy of each packet) or \"failover\" (one leg at a time)".to_string())]
    );
    // Merge needs `sequence`, and takes no failover keys.
    let e = fails(&group(&format!(
        "{TWO_LEGS}redundancy = \"merge\"\nfailover_after = \"1s\"\n"
    )));
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, 8);
    assert!(
        e[0].2
            .starts_with("redundancy = \"merge\" needs `sequence`"),
        "{e:?}"
    );
    assert_eq!(
        e[1],
        (
            9,
            18,
            "`failover_after` is for redundancy = \"failover\", not \"merge\"".to_string()
        )
    );
    // Failover takes no merge keys.
    assert_eq!(
        fails(&group(&format!(
            "{TWO_LEGS}redundancy = \"failover\"\nwindow = \"5ms\"\n"
        ))),
        [(
            9,
            10,
            "`window` is for redundancy = \"merge\", not \"failover\"".to_string()
        )]
    );
    // Unknown values.
    assert_eq!(
        fails(&group(&format!("{TWO_LEGS}redundancy = \"both\"\n"))),
        [(
            8,
            14,
            "redundancy `both` is not known; use \"merge\" or \"failover\"".to_string()
        )]
    );
    let e = fails(&group(&format!(
        "{TWO_LEGS}redundancy = \"failover\"\nrevert = \"sometimes\"\nfailover_after = \"0s\"\n"
    )));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].2
            .starts_with("revert `sometimes` is neither \"never\" nor a duration")
    );
    assert_eq!(e[1].2, "failover_after must be longer than zero");
    // Redundancy keys without legs.
    let plain =
        "interface = \"red\"\ngroup = \"239.1.1.1\"\nredundancy = \"merge\"\nwindow = \"5ms\"\n";
    let e = fails(&group(plain));
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (9, 14));
    assert!(
        e[0].2
            .starts_with("`redundancy` is for groups with several inputs; add `legs`")
    );
    assert_eq!(e[1].0, 10);
}

#[test]
fn rule_sequence_fields_are_checked() {
    let e = fails(&group(&format!(
        "{TWO_LEGS}redundancy = \"merge\"\nsequence = {{ offset = 70000, size = 3, byte_order = \"middle\" }}\n"
    )));
    let messages: Vec<&str> = e.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        messages,
        [
            "offset must be between 0 and 65505 (a field inside a UDP payload), not 70000",
            "size must be 2, 4 or 8 (bytes), not 3",
            "byte_order `middle` is not known; use \"big\" (network order) or \"little\"",
        ]
    );
    assert_eq!((e[0].0, e[0].1), (9, 23));
    let e = fails(&group(&format!(
        "{TWO_LEGS}redundancy = \"merge\"\nsequence = \"sequence\"\n"
    )));
    assert!(
        e[0].2
            .starts_with("sequence `sequence` is not known; use \"rtp\"")
    );
    let e = fails(&group(&format!(
        "{TWO_LEGS}redundancy = \"merge\"\nsequence = {{ size = 8 }}\n"
    )));
    assert!(
        e[0].2.starts_with("a sequence field needs `offset`"),
        "{e:?}"
    );
    // An unknown key inside the table is rejected by the parser with the keys it takes.
    let e = fails(&group(&format!(
        "{TWO_LEGS}redundancy = \"merge\"\nsequence = {{ offset = 1, size = 2, endian = \"big\" }}\n"
    )));
    assert!(e[0].2.contains("unknown key `endian`"), "{e:?}");
}

#[test]
fn rule_legs_must_not_overlap_each_other_or_other_groups() {
    let same = "legs = [{ interface = \"red\", group = \"239.1.1.1\", port = 5004 }, { interface = \"red\", group = \"239.1.1.1\" }]\nredundancy = \"failover\"\n";
    assert_eq!(
        fails(&group(same)),
        [(7, 95, "leg 2 claims packets that leg 1 of the same group already claims; legs must differ in interface, group, port or source".to_string())]
    );
    let other = format!(
        "{}[[groups]]\ninterface = \"blue\"\ngroup = \"239.2.2.2\"\nto = [\"mon\"]\n",
        group(&format!("{TWO_LEGS}redundancy = \"failover\"\n"))
    );
    let e = fails(&other);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (12, 9));
    assert!(
        e[0].2.starts_with("this group claims packets that leg 2 of the group at line 6 (`239.1.1.1:5004`) already claims: a packet on blue from 10.0.0.9 to 239.2.2.2:5004 would match both"),
        "{e:?}"
    );
}

#[test]
fn rule_destinations_are_checked_against_every_leg() {
    // Sending to the group of the second leg on its own interface is a loop.
    let text = format!(
        "{HEAD}[destinations.back]\ninterface = \"blue\"\ngroup = \"239.2.2.2\"\n[[groups]]\n{TWO_LEGS}redundancy = \"failover\"\nto = [\"back\"]\n"
    );
    let e = fails(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].2.starts_with("destination `back` sends back into what this group receives (blue 239.2.2.2:5004): a loop"), "{e:?}");
}

/// Differential test of legs: entries of one input (a plain group) or two or three (legs,
/// failover), against a naive scan of every input.
mod differential {
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;

    const IFACES: [&str; 2] = ["eth0", "eth1"];
    const GROUPS: [&str; 3] = ["239.1.1.1", "239.1.1.2", "ff3e::1"];
    const SOURCES: [[&str; 3]; 2] = [
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        ["2001:db8::1", "2001:db8::2", "2001:db8::3"],
    ];
    const PORTS: [u16; 2] = [1000, 1001];

    /// One input: interface, group, port, source (indexes).
    type Input = (usize, usize, Option<u16>, Option<usize>);

    fn v6(group: usize) -> usize {
        usize::from(GROUPS[group].contains(':'))
    }

    fn arb_entry() -> impl Strategy<Value = Vec<Input>> {
        let input = |family_v6: bool| {
            let groups: Vec<usize> = if family_v6 { vec![2] } else { vec![0, 1] };
            (
                0..IFACES.len(),
                prop::sample::select(groups),
                prop::option::of(prop::sample::select(PORTS.to_vec())),
                prop::option::of(0usize..2),
            )
        };
        (any::<bool>(), 1usize..=3)
            .prop_flat_map(move |(fam, n)| prop::collection::vec(input(fam), n))
    }

    fn render(entries: &[Vec<Input>]) -> String {
        let mut s = String::from(
            "[interfaces.eth0]\n[interfaces.eth1]\n[destinations.u4]\naddress = \"10.9.9.9:9\"\n[destinations.u6]\naddress = \"[2001:db8::9]:9\"\n",
        );
        let fields = |(i, g, p, src): &Input| {
            let mut f = format!("interface = \"{}\", group = \"{}\"", IFACES[*i], GROUPS[*g]);
            if let Some(p) = p {
                let _ = write!(f, ", port = {p}");
            }
            if let Some(src) = src {
                let _ = write!(f, ", source = \"{}\"", SOURCES[v6(*g)][*src]);
            }
            f
        };
        for e in entries {
            s.push_str("[[groups]]\n");
            if e.len() == 1 {
                for kv in fields(&e[0]).split(", ") {
                    let _ = writeln!(s, "{kv}");
                }
            } else {
                let legs: Vec<String> = e.iter().map(|i| format!("{{ {} }}", fields(i))).collect();
                let _ = writeln!(s, "legs = [{}]\nredundancy = \"failover\"", legs.join(", "));
            }
            let _ = writeln!(
                s,
                "to = [\"{}\"]",
                if v6(e[0].1) == 1 { "u6" } else { "u4" }
            );
        }
        s
    }

    fn matches(input: &Input, iface: usize, src: usize, group: usize, port: u16) -> bool {
        input.0 == iface
            && input.1 == group
            && input.2.is_none_or(|p| p == port)
            && input.3.is_none_or(|s| s == src)
    }

    fn overlap(a: &Input, b: &Input) -> bool {
        a.0 == b.0
            && a.1 == b.1
            && (a.2.is_none() || b.2.is_none() || a.2 == b.2)
            && (a.3.is_none() || b.3.is_none() || a.3 == b.3)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn lookup_leg_agrees_with_a_naive_scan(entries in prop::collection::vec(arb_entry(), 0..8)) {
            let text = render(&entries);
            let inputs: Vec<(usize, usize, &Input)> = entries
                .iter()
                .enumerate()
                .flat_map(|(r, e)| e.iter().enumerate().map(move |(l, i)| (r, l, i)))
                .collect();
            let any_overlap = inputs.iter().enumerate().any(|(k, a)| {
                inputs[..k].iter().any(|b| overlap(a.2, b.2))
            });
            match compile(&text, Path::new("p.toml"), &FakeResolver::everything()) {
                Err(errors) => {
                    prop_assert!(any_overlap, "rejected without an overlap: {errors:?}\n{text}");
                    for e in &errors {
                        prop_assert!(e.message.contains(" claims packets that "), "{}", e.message);
                    }
                }
                Ok(table) => {
                    prop_assert!(!any_overlap, "accepted overlapping inputs:\n{text}");
                    prop_assert_eq!(table.routes.len(), entries.len());
                    for (iface, name) in IFACES.iter().enumerate() {
                        let id = table.interface_id(name).unwrap();
                        for (group, gtext) in GROUPS.iter().enumerate() {
                            for (src, stext) in SOURCES[v6(group)].iter().enumerate() {
                                let saddr = ip(stext);
                                for port in [999, 1000, 1001] {
                                    let want = inputs
                                        .iter()
                                        .find(|(_, _, i)| matches(i, iface, src, group, port))
                                        .map(|&(r, l, _)| (RouteId(r as u32), LegId(l as u8)));
                                    prop_assert_eq!(
                                        table.lookup_leg(id, saddr, ip(gtext), port),
                                        want,
                                        "packet on {} from {} to {}:{}\n{}",
                                        name, saddr, gtext, port, text
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Fanout would hand the legs of one route to different workers, so an interface carrying a
/// leg must have one worker; the error points at its `workers`, once per interface.
#[test]
fn an_interface_with_a_leg_cannot_have_several_workers() {
    let text = format!(
        "[interfaces.red]\nworkers = 2\n[interfaces.blue]\n[interfaces.out]\n[destinations.mon]\ninterface = \"out\"\n\
         [[groups]]\n{TWO_LEGS}redundancy = \"failover\"\nto = [\"mon\"]\n\
         [[groups]]\nlegs = [{{ interface = \"red\", group = \"239.5.5.5\" }}, {{ interface = \"blue\", group = \"239.6.6.6\" }}]\nredundancy = \"failover\"\nto = [\"mon\"]\n"
    );
    let errors = fails(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (line, col, message) = &errors[0];
    assert_eq!((*line, *col), (2, 11), "{message}");
    assert!(
        message.contains("interface `red` receives a leg") && message.contains("remove `workers`"),
        "{message}"
    );
    // Several workers on an interface without legs stay allowed.
    ok(&format!(
        "[interfaces.red]\n[interfaces.blue]\n[interfaces.out]\n[interfaces.other]\nworkers = 2\n[destinations.mon]\ninterface = \"out\"\n\
         [[groups]]\n{TWO_LEGS}redundancy = \"failover\"\nto = [\"mon\"]\n\
         [[groups]]\ninterface = \"other\"\ngroup = \"239.7.7.7\"\nto = [\"mon\"]\n"
    ));
}
