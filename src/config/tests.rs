//! Unit tests of the compiler: one per validation rule, each asserting message and line:col.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::*;
use crate::table::{DestKind, IfaceId, IngressMode};

/// The sample from issue 2, verbatim.
pub(crate) const SAMPLE: &str = r#"[daemon]
control_socket = "/run/mcrelay/control.sock"
stats_interval = "1s"          # humantime durations everywhere a duration is set
silence_timeout = "2s"         # a group is reported down after this much silence
reload_debounce = "200ms"

[interfaces.eth0]              # the key is the kernel's interface name
[interfaces.eth1]
ttl = 16                       # default TTL / hop limit for destinations sent out of eth1

[destinations.studio-b]        # a named egress destination, reusable by many groups
interface = "eth1"             # multicast destinations need an interface
group = "239.2.2.2"            # optional: omitted = keep the ingress group
port = 6000                    # optional: omitted = keep the ingress port
ttl = 8
dscp = 34

[destinations.studio-b-v6]
interface = "eth1"
group = "ff3e::2:5"

[destinations.archive]
address = "10.20.0.9:7000"     # unicast, routed by the kernel; IPv6 as "[2001:db8::9]:7000"

[[groups]]
name = "camera-1"              # optional label used in logs and stats
interface = "eth0"             # ingress interface
group = "239.1.1.1"            # IPv4 or IPv6 multicast group
port = 5000                    # optional: omitted = every UDP port of the group
source = "10.10.1.100"         # optional: only this sender (source-specific)
to = ["studio-b", "archive"]

[[groups]]
interface = "eth0"
group = "ff3e::1:5"
port = 5004
to = ["studio-b-v6"]
"#;

fn ok(text: &str) -> Table {
    match compile(text, Path::new("t.toml"), &FakeResolver::everything()) {
        Ok(t) => t,
        Err(e) => panic!("expected a valid config, got:\n{}", render_errors(&e)),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn the_sample_from_the_issue_compiles_as_documented() {
    let t = ok(SAMPLE);
    assert_eq!(t.interfaces.len(), 2);
    assert_eq!(t.interfaces[1].ttl, 16);
    let eth0 = t.interface_id("eth0").unwrap();
    let eth1 = t.interface_id("eth1").unwrap();
    assert_eq!(eth0, IfaceId(0));
    let names: Vec<&str> = t.destinations.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["archive", "studio-b", "studio-b-v6"]);
    assert_eq!(
        t.destinations[0].kind,
        DestKind::Unicast {
            address: "10.20.0.9:7000".parse::<SocketAddr>().unwrap()
        }
    );
    assert_eq!((t.destinations[0].ttl, t.destinations[0].dscp), (64, 0));
    assert_eq!((t.destinations[1].ttl, t.destinations[1].dscp), (8, 34));
    // studio-b-v6 inherits eth1's ttl 16.
    assert_eq!(t.destinations[2].ttl, 16);
    assert_eq!(
        t.destinations[2].kind,
        DestKind::Multicast {
            interface: eth1,
            group: Some(ip("ff3e::2:5")),
            port: None
        }
    );
    let r = t
        .lookup(eth0, ip("10.10.1.100"), ip("239.1.1.1"), 5000)
        .unwrap();
    assert_eq!(t.route(r).label, "camera-1");
    let dests: Vec<&str> = t
        .route(r)
        .destinations
        .iter()
        .map(|d| t.destination(*d).name.as_str())
        .collect();
    assert_eq!(dests, ["studio-b", "archive"]);
    assert_eq!(
        t.lookup(eth0, ip("10.10.1.101"), ip("239.1.1.1"), 5000),
        None
    );
    let v6 = t
        .lookup(eth0, ip("fe80::1"), ip("ff3e::1:5"), 5004)
        .unwrap();
    assert_eq!(t.route(v6).label, "[ff3e::1:5]:5004");
    assert_eq!(
        t.daemon.reload_debounce,
        std::time::Duration::from_millis(200)
    );
}

#[test]
fn an_empty_file_is_valid_and_relays_nothing() {
    let t = ok("");
    assert!(t.routes.is_empty() && t.interfaces.is_empty());
    assert_eq!(t.daemon, crate::table::DaemonSettings::default());
}

/// Every error of an invalid config as (line, col, message).
fn fails(text: &str) -> Vec<(usize, usize, String)> {
    match compile(text, Path::new("t.toml"), &FakeResolver::everything()) {
        Ok(t) => panic!(
            "expected errors, got a table with {} routes",
            t.routes.len()
        ),
        Err(e) => e.into_iter().map(|e| (e.line, e.col, e.message)).collect(),
    }
}

/// Asserts the config fails with exactly one error, at `line:col`, with this message.
#[track_caller]
fn fails_once(text: &str, line: usize, col: usize, message: &str) {
    assert_eq!(fails(text), [(line, col, message.to_string())]);
}

const IFACES: &str =
    "[interfaces.eth0]\n[interfaces.eth1]\n[destinations.out]\naddress = \"10.9.9.9:9\"\n";

// Lines 1-4 are IFACES; a group written after it starts at line 5.
fn with_ifaces(rest: &str) -> String {
    format!("{IFACES}{rest}")
}

#[test]
fn rule_group_must_be_multicast() {
    fails_once(
        &with_ifaces("[[groups]]\ninterface = \"eth0\"\ngroup = \"10.1.1.1\"\nto = [\"out\"]\n"),
        7,
        9,
        "group 10.1.1.1 is not a multicast address (IPv4 multicast is 224.0.0.0/4, IPv6 is ff00::/8)",
    );
    fails_once(
        &with_ifaces("[[groups]]\ninterface = \"eth0\"\ngroup = \"2001:db8::1\"\nto = [\"out\"]\n"),
        7,
        9,
        "group 2001:db8::1 is not a multicast address (IPv4 multicast is 224.0.0.0/4, IPv6 is ff00::/8)",
    );
}

#[test]
fn rule_group_must_be_an_address() {
    fails_once(
        &with_ifaces("[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1\"\nto = [\"out\"]\n"),
        7,
        9,
        "group `239.1.1` is not an IP address; write for example \"239.1.1.1\" or \"ff3e::1:5\"",
    );
}

#[test]
fn rule_unknown_destination_suggests_the_nearest_name() {
    fails_once(
        &with_ifaces(
            "[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = [\"out\", \"otu\"]\n",
        ),
        8,
        14,
        "no destination named `otu`; did you mean `out`?",
    );
    fails_once(
        &with_ifaces(
            "[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = [\"archive\"]\n",
        ),
        8,
        7,
        "no destination named `archive`; define it in a [destinations.archive] table",
    );
}

#[test]
fn rule_multicast_destination_needs_an_interface() {
    let text = "[destinations.studio]\ngroup = \"239.2.2.2\"\nport = 6000\n";
    let e = fails(text);
    assert_eq!(
        e,
        [(
            1,
            15,
            "multicast destination `studio` needs an `interface` to send out of".to_string()
        )]
    );
    fails_once(
        "[destinations.studio]\nttl = 3\n",
        1,
        15,
        "destination `studio` needs `interface` (multicast) or `address` (unicast)",
    );
}

#[test]
fn rule_destination_is_multicast_or_unicast_not_both() {
    fails_once(
        &with_ifaces("[destinations.both]\ninterface = \"eth1\"\naddress = \"10.1.1.1:5\"\n"),
        7,
        11,
        "destination `both` has both `interface` and `address`; use `interface` (and `group`) for multicast or `address` for unicast",
    );
    assert_eq!(
        fails("[destinations.u]\naddress = \"10.1.1.1:5\"\ngroup = \"239.1.1.1\"\nport = 5\n"),
        [
            (
                3,
                9,
                "`group` is for multicast destinations; a unicast destination names its port in `address`, such as \"10.20.0.9:7000\"".to_string()
            ),
            (
                4,
                8,
                "`port` is for multicast destinations; a unicast destination names its port in `address`, such as \"10.20.0.9:7000\"".to_string()
            ),
        ]
    );
}

#[test]
fn rule_unicast_address_needs_a_port_and_a_unicast_host() {
    fails_once(
        "[destinations.a]\naddress = \"10.20.0.9\"\n",
        2,
        11,
        "address `10.20.0.9` is not an IP address with a port (the port is missing); write for example \"10.20.0.9:7000\" or \"[2001:db8::9]:7000\"",
    );
    fails_once(
        "[destinations.a]\naddress = \"239.1.1.1:5000\"\n",
        2,
        11,
        "address 239.1.1.1 is multicast; a multicast destination uses `interface` and `group` instead of `address`",
    );
    fails_once(
        "[destinations.a]\naddress = \"[::]:5000\"\n",
        2,
        11,
        "address :: cannot be sent to; name a unicast host",
    );
    fails_once(
        "[destinations.a]\naddress = \"10.0.0.1:0\"\n",
        2,
        11,
        "address needs a port other than 0",
    );
}

const LOOP: &str = "[interfaces.eth0]\n[interfaces.eth1]\n";

#[test]
fn rule_a_destination_must_not_send_back_into_its_own_ingress() {
    // Same interface, group kept, port kept.
    fails_once(
        &format!(
            "{LOOP}[destinations.back]\ninterface = \"eth0\"\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"back\"]\n"
        ),
        9,
        7,
        "destination `back` sends back into what this group receives (eth0 239.1.1.1:5000): a loop; change the destination's interface, group or port",
    );
    // Rewritten to the same group and port explicitly.
    fails_once(
        &format!(
            "{LOOP}[destinations.back]\ninterface = \"eth0\"\ngroup = \"ff3e::1\"\nport = 5000\n[[groups]]\ninterface = \"eth0\"\ngroup = \"ff3e::1\"\nport = 5000\nto = [\"back\"]\n"
        ),
        11,
        7,
        "destination `back` sends back into what this group receives (eth0 [ff3e::1]:5000): a loop; change the destination's interface, group or port",
    );
    // Every port of the group received, one of them sent: still inside what is received.
    fails_once(
        &format!(
            "{LOOP}[destinations.back]\ninterface = \"eth0\"\nport = 7\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = [\"back\"]\n"
        ),
        9,
        7,
        "destination `back` sends back into what this group receives (eth0 239.1.1.1:7): a loop; change the destination's interface, group or port",
    );
    // Both ports omitted.
    fails_once(
        &format!(
            "{LOOP}[destinations.back]\ninterface = \"eth0\"\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = [\"back\"]\n"
        ),
        8,
        7,
        "destination `back` sends back into what this group receives (eth0 239.1.1.1): a loop; change the destination's interface, group or port",
    );
    // Not loops: another interface, another group, another port.
    for dest in [
        "interface = \"eth1\"",
        "interface = \"eth0\"\ngroup = \"239.1.1.2\"",
        "interface = \"eth0\"\nport = 5001",
    ] {
        ok(&format!(
            "{LOOP}[destinations.d]\n{dest}\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"d\"]\n"
        ));
    }
}

fn group(iface: &str, group: &str, port: Option<u16>, source: Option<&str>) -> String {
    let mut s = format!("[[groups]]\ninterface = \"{iface}\"\ngroup = \"{group}\"\n");
    if let Some(p) = port {
        s.push_str(&format!("port = {p}\n"));
    }
    if let Some(src) = source {
        s.push_str(&format!("source = \"{src}\"\n"));
    }
    s.push_str("to = [\"out\"]\n");
    s
}

#[test]
fn rule_two_groups_must_not_claim_the_same_packets() {
    let first = group("eth0", "239.1.1.1", Some(5000), Some("10.0.0.1"));
    // The first group takes lines 5 to 10; the second's `group` is on line 13.
    let cases = [
        (
            Some(5000),
            Some("10.0.0.1"),
            "from 10.0.0.1 to 239.1.1.1:5000",
        ),
        (None, Some("10.0.0.1"), "from 10.0.0.1 to 239.1.1.1:5000"),
        (Some(5000), None, "from 10.0.0.1 to 239.1.1.1:5000"),
        (None, None, "from 10.0.0.1 to 239.1.1.1:5000"),
    ];
    for (port, source, example) in cases {
        let text = with_ifaces(&format!(
            "{first}{}",
            group("eth0", "239.1.1.1", port, source)
        ));
        fails_once(
            &text,
            13,
            9,
            &format!(
                "this group claims packets that the group at line 5 (`239.1.1.1:5000 from 10.0.0.1`) already claims: a packet on eth0 {example} would match both; give them different ports or sources, or merge their `to` lists"
            ),
        );
    }
    // Disjoint: another port, another source, another interface, another group.
    for (iface, g, port, source) in [
        ("eth0", "239.1.1.1", Some(5001), Some("10.0.0.1")),
        ("eth0", "239.1.1.1", Some(5000), Some("10.0.0.2")),
        ("eth0", "239.1.1.1", None, Some("10.0.0.2")),
        ("eth0", "239.1.1.1", Some(5001), None),
        ("eth1", "239.1.1.1", None, None),
        ("eth0", "239.1.1.2", None, None),
    ] {
        ok(&with_ifaces(&format!(
            "{first}{}",
            group(iface, g, port, source)
        )));
    }
    // Any-port any-source against a later exact one: reported at the later one.
    // The groups' destination is IPv4: that error is reported too, the overlap is not hidden.
    let text = with_ifaces(&format!(
        "{}{}",
        group("eth0", "ff3e::9", None, None),
        group("eth0", "ff3e::9", Some(9), Some("2001:db8::1"))
    ));
    let e = fails(&text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        (e[0].0, e[0].1, e[0].2.as_str()),
        (
            8,
            7,
            "destination `out` sends to IPv4 address 10.9.9.9 but group ff3e::9 is IPv6; relaying keeps the address family"
        )
    );
    assert_eq!(
        e[1],
        (
            11,
            9,
        "this group claims packets that the group at line 5 (`ff3e::9`) already claims: a packet on eth0 from 2001:db8::1 to [ff3e::9]:9 would match both; give them different ports or sources, or merge their `to` lists".to_string()
        )
    );
    assert_eq!(e[2].0, 14);
}

#[test]
fn rule_address_families_must_match() {
    let text = "[interfaces.eth0]\n[interfaces.eth1]\n[destinations.u6]\naddress = \"[2001:db8::9]:7000\"\n[destinations.m6]\ninterface = \"eth1\"\ngroup = \"ff3e::2\"\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nsource = \"2001:db8::1\"\nto = [\"u6\", \"m6\"]\n";
    assert_eq!(
        fails(text),
        [
            (
                11,
                10,
                "source 2001:db8::1 is IPv6 but group 239.1.1.1 is IPv4; a source-specific group needs a source of the same family".to_string()
            ),
            (
                12,
                7,
                "destination `u6` sends to IPv6 address 2001:db8::9 but group 239.1.1.1 is IPv4; relaying keeps the address family".to_string()
            ),
            (
                12,
                13,
                "destination `m6` sends to IPv6 group ff3e::2 but group 239.1.1.1 is IPv4; relaying keeps the address family".to_string()
            ),
        ]
    );
}

#[test]
fn rule_source_must_be_unicast() {
    fails_once(
        &with_ifaces(&group("eth0", "239.1.1.1", None, Some("239.0.0.1"))),
        8,
        10,
        "source 239.0.0.1 is not a unicast address; name the sender's address",
    );
    fails_once(
        &with_ifaces(&group("eth0", "239.1.1.1", None, Some("10.1"))),
        8,
        10,
        "source `10.1` is not an IP address; write for example \"239.1.1.1\" or \"ff3e::1:5\"",
    );
}

#[test]
fn rule_a_rewritten_group_must_be_multicast() {
    fails_once(
        "[interfaces.eth1]\n[destinations.d]\ninterface = \"eth1\"\ngroup = \"10.2.2.2\"\n",
        4,
        9,
        "group 10.2.2.2 is not a multicast address (IPv4 multicast is 224.0.0.0/4, IPv6 is ff00::/8)",
    );
}

#[test]
fn rule_ttl_dscp_and_port_ranges() {
    let text = "[interfaces.eth1]\nttl = 0\n[destinations.d]\ninterface = \"eth1\"\nttl = 256\ndscp = 64\nport = 0\n[destinations.e]\ninterface = \"eth1\"\nport = 65536\ndscp = -1\n";
    assert_eq!(
        fails(text),
        [
            (2, 7, "ttl must be between 1 and 255, not 0".to_string()),
            (5, 7, "ttl must be between 1 and 255, not 256".to_string()),
            (6, 8, "dscp must be between 0 and 63, not 64".to_string()),
            (7, 8, "port must be between 1 and 65535, not 0".to_string()),
            (
                10,
                8,
                "port must be between 1 and 65535, not 65536".to_string()
            ),
            (11, 8, "dscp must be between 0 and 63, not -1".to_string()),
        ]
    );
    fails_once(
        &with_ifaces(
            "[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 0\nto = [\"out\"]\n",
        ),
        8,
        8,
        "port must be between 1 and 65535, not 0",
    );
}

#[test]
fn rule_durations_must_parse() {
    let text = "[daemon]\nstats_interval = \"1 x\"\nsilence_timeout = \"0s\"\nreload_debounce = \"fast\"\n";
    let e = fails(text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (2, 18));
    assert!(
        e[0].2
            .starts_with("stats_interval `1 x` is not a duration (")
            && e[0]
                .2
                .ends_with("); write for example \"1s\", \"200ms\" or \"1m 30s\""),
        "{}",
        e[0].2
    );
    assert_eq!(
        e[1],
        (
            3,
            19,
            "silence_timeout must be longer than zero".to_string()
        )
    );
    assert_eq!((e[2].0, e[2].1), (4, 19));
    assert!(
        e[2].2
            .starts_with("reload_debounce `fast` is not a duration (")
    );
    // A zero debounce is allowed: reload at once.
    assert_eq!(
        ok("[daemon]\nreload_debounce = \"0s\"\n")
            .daemon
            .reload_debounce,
        std::time::Duration::ZERO
    );
    assert_eq!(
        ok("[daemon]\nstats_interval = \"1m 30s\"\n")
            .daemon
            .stats_interval,
        std::time::Duration::from_secs(90)
    );
}

#[test]
fn rule_interfaces_must_be_declared() {
    let text = "[interfaces.eth0]\n[destinations.d]\ninterface = \"eth1\"\n[[groups]]\ninterface = \"etho\"\ngroup = \"239.1.1.1\"\nto = [\"d\"]\n";
    assert_eq!(
        fails(text),
        [
            (
                3,
                13,
                "interface `eth1` is not declared; add an [interfaces.eth1] table or use `eth0`"
                    .to_string()
            ),
            (
                5,
                13,
                "interface `etho` is not declared; add an [interfaces.etho] table or use `eth0`"
                    .to_string()
            ),
        ]
    );
    fails_once(
        "[destinations.d]\ninterface = \"br-studio\"\n",
        2,
        13,
        "interface `br-studio` is not declared; add an [interfaces.br-studio] table",
    );
}

#[test]
fn rule_interface_names_follow_the_kernel_rules() {
    fails_once(
        "[interfaces.a-very-long-name-0]\n",
        1,
        13,
        "`a-very-long-name-0` is not a valid interface name (1 to 15 characters, no '/', ':' or white space)",
    );
    fails_once(
        "[interfaces.\"../x\"]\n",
        1,
        13,
        "`../x` is not a valid interface name (1 to 15 characters, no '/', ':' or white space)",
    );
}

#[test]
fn rule_groups_need_interface_group_and_destinations() {
    let text = with_ifaces("[[groups]]\nname = \"x\"\n");
    assert_eq!(
        fails(&text),
        [
            (
                5,
                1,
                "group `x` needs an `interface` to receive on".to_string()
            ),
            (
                5,
                1,
                "group `x` needs a multicast `group` address (or `listen = \"ADDRESS:PORT\"` to receive unicast)".to_string()
            ),
            (
                5,
                1,
                "group `x` needs `to`, the list of destinations to relay to".to_string()
            ),
        ]
    );
    fails_once(
        &with_ifaces("[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = []\n"),
        8,
        6,
        "`to` is empty; name at least one destination",
    );
    fails_once(
        &with_ifaces(
            "[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = [\"out\", \"out\"]\n",
        ),
        8,
        14,
        "destination `out` is listed twice",
    );
}

#[test]
fn rule_group_names_are_unique_and_not_empty() {
    let g = |name: &str, port: u16| {
        format!(
            "[[groups]]\nname = \"{name}\"\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nport = {port}\nto = [\"out\"]\n"
        )
    };
    fails_once(
        &with_ifaces(&format!("{}{}", g("cam", 1), g("cam", 2))),
        12,
        8,
        "group name `cam` is already used at line 6; names label groups in logs and statistics and must be unique",
    );
    fails_once(
        &with_ifaces(&g("", 1)),
        6,
        8,
        "name must not be empty; omit it to label the group by its address",
    );
}

/// `recv` was removed (issue 13): the error names the replacement.
#[test]
fn rule_ingress_recv_names_its_replacement() {
    let text = "[interfaces.eth0]\ningress = \"recv\"\n";
    assert_eq!(
        fails(text),
        [(
            2,
            11,
            "ingress \"recv\" was removed: use \"frames\" (the default), which has its latency at less CPU per packet, or delete the key".to_string()
        )]
    );
}

#[test]
fn rule_interface_settings_ranges() {
    let text = "[interfaces.eth0]\nworkers = 0\ningress = \"mmap\"\ncpus = [0, 1, 1, -1, 5000]\nrcvbuf = \"32 mb\"\n[interfaces.eth1]\nworkers = 65\nrcvbuf = 100\n";
    assert_eq!(
        fails(text),
        [
            (2, 11, "workers must be between 1 and 64, not 0".to_string()),
            (3, 11, "ingress `mmap` is not known; use \"frames\" or \"ring\"".to_string()),
            (4, 15, "cpu 1 is listed twice".to_string()),
            (4, 18, "cpu -1 is not a CPU number (0 to 1023)".to_string()),
            (4, 22, "cpu 5000 is not a CPU number (0 to 1023)".to_string()),
            (
                5,
                10,
                "rcvbuf `32 mb` is not a size; write bytes as an integer or a string such as \"32MiB\" (units B, KiB, MiB, GiB, kB, MB, GB)".to_string()
            ),
            (7, 11, "workers must be between 1 and 64, not 65".to_string()),
            (8, 10, "rcvbuf must be between 4KiB and 1GiB, not 100 bytes".to_string()),
        ]
    );
    let t = ok(
        "[interfaces.eth0]\nworkers = 4\ningress = \"ring\"\ncpus = [2, 3]\nrcvbuf = \"64 MiB\"\n[interfaces.eth1]\nrcvbuf = 1048576\n[interfaces.eth2]\n",
    );
    let i = &t.interfaces[0];
    assert_eq!(
        (i.workers, i.ingress, &i.cpus[..], i.rcvbuf),
        (4, IngressMode::Ring, &[2, 3][..], 64 << 20)
    );
    assert_eq!(t.interfaces[1].rcvbuf, 1 << 20);
    assert_eq!(
        (
            t.interfaces[2].workers,
            t.interfaces[2].ingress,
            t.interfaces[2].rcvbuf
        ),
        (1, IngressMode::Frames, DEFAULT_RCVBUF)
    );
}

#[test]
fn rule_daemon_settings() {
    let text = "[daemon]\ncontrol_socket = \"run/x.sock\"\nmetrics_listen = \"localhost:9477\"\nuser = \"\"\ncontrol_group = \"a b\"\n";
    assert_eq!(
        fails(text),
        [
            (
                2,
                18,
                "control_socket `run/x.sock` must be an absolute path, such as \"/run/mcrelay/control.sock\"".to_string()
            ),
            (
                3,
                18,
                "metrics_listen `localhost:9477` is not an address with a port; write \"127.0.0.1:9477\" (IPv6: \"[::1]:9477\")".to_string()
            ),
            (4, 8, "user `` is not a valid user or group name".to_string()),
            (5, 17, "control_group `a b` is not a valid user or group name".to_string()),
        ]
    );
    fails_once(
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n",
        2,
        18,
        "metrics_listen needs a port other than 0, such as \"127.0.0.1:9477\"",
    );
    let t = ok(
        "[daemon]\nmetrics_listen = \"[::1]:9477\"\nuser = \"mcrelay\"\ncontrol_group = \"mcrelay\"\n",
    );
    assert_eq!(t.daemon.metrics_listen, Some("[::1]:9477".parse().unwrap()));
    assert_eq!(t.daemon.user.as_deref(), Some("mcrelay"));
    assert_eq!(t.daemon.control_group.as_deref(), Some("mcrelay"));
}

#[test]
fn rule_unknown_keys_are_rejected_where_they_are() {
    fails_once(
        "[interfaces.eth0]\nttl = 3\nhop_limit = 3\n",
        3,
        1,
        "unknown key `hop_limit` in [interfaces.eth0]; the keys here are ttl, ingress, workers, cpus, rcvbuf, tunnel",
    );
    fails_once(
        "[demon]\n",
        1,
        2,
        "unknown key `demon` in the top level; did you mean `daemon`?",
    );
    fails_once(
        &format!(
            "{IFACES}[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nprot = 5000\nto = [\"out\"]\n"
        ),
        8,
        1,
        "unknown key `prot` in [[groups]]; did you mean `port`?",
    );
}

#[test]
fn syntax_and_type_errors_are_located() {
    fails_once("[daemon\n", 1, 8, "unclosed table, expected `]`");
    fails_once(
        "[interfaces.eth0]\nttl = \"8\"\n",
        2,
        7,
        "`ttl` in [interfaces.eth0] must be an integer, not a string (\"8\")",
    );
}

/// Type errors are worded in the file's terms (TOML types, the table they are in), not Rust's.
#[test]
fn type_errors_speak_toml_not_rust() {
    for (text, line, col, message) in [
        (
            "[interfaces.eth0]\ncpus = 3\n",
            2,
            8,
            "`cpus` in [interfaces.eth0] must be an array of integers, not an integer (3)",
        ),
        (
            "[interfaces.eth0]\ncpus = [1, \"2\"]\n",
            2,
            12,
            "each item of `cpus` in [interfaces.eth0] must be an integer, not a string (\"2\")",
        ),
        (
            "[interfaces.eth0]\nrcvbuf = true\n",
            2,
            10,
            "`rcvbuf` in [interfaces.eth0] must be a size: a number of bytes or a string such as \"32MiB\", not a boolean (true)",
        ),
        (
            "[interfaces]\neth0 = 1\n",
            2,
            8,
            "`eth0` in [interfaces] must be a table of settings, not an integer (1); write it as [interfaces.eth0]",
        ),
        (
            "interfaces = 1\n",
            1,
            14,
            "`interfaces` in the top level must be a table of named tables, not an integer (1)",
        ),
        (
            "[interfaces.eth0]\n[destinations.d]\naddress = \"10.0.0.1:9\"\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = [\"d\"]\nrtp = \"yes\"\n",
            8,
            7,
            "`rtp` in [[groups]] must be true or false, not a string (\"yes\")",
        ),
        (
            "[daemon]\nuser = 0\n",
            2,
            8,
            "`user` in [daemon] must be a string (a user name), not an integer (0)",
        ),
        (
            "[interfaces.eth0]\ningress = 1\n",
            2,
            11,
            "`ingress` in [interfaces.eth0] must be a string (one of \"frames\", \"ring\"), not an integer (1)",
        ),
        (
            "[interfaces.eth0]\n[destinations.d]\ninterface = \"eth0\"\nport = 99999999999999999999\n",
            4,
            8,
            "`port` in [destinations.d] is too large: 99999999999999999999",
        ),
        (
            "groups = 3\n",
            1,
            10,
            "`groups` in the top level must be [[groups]] tables, not an integer (3)",
        ),
    ] {
        fails_once(text, line, col, message);
    }
}

/// A destination without `interface` or `address` still has its `group` and `port` checked.
#[test]
fn a_destination_missing_its_kind_still_has_its_values_checked() {
    let text = "[destinations.d]\ngroup = \"10.1.1.1\"\nport = 99999\n";
    let lines: Vec<(usize, usize)> = fails(text).iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(lines, [(1, 15), (2, 9), (3, 8)]);
}

/// Regression (issue 17): an unknown key and a value of the wrong type used to stop the
/// compiler at the first of them, hiding every other error. Now each is one error among the
/// others, each at its own line and column.
#[test]
fn unknown_keys_and_type_errors_do_not_hide_the_other_errors() {
    let text = r#"[interfaces.eth0]
[interfaces.eth1]

[destinations.studio]
interface = "eth1"
colour = 3
port = 99999

[[groups]]
interface = "eth0"
group = "239.1.1.1"
to = ["studio"]
rtp = "yes"
"#;
    assert_eq!(
        fails(text),
        [
            (
                6,
                1,
                "unknown key `colour` in [destinations.studio]; the keys here are interface, group, port, address, ttl, dscp, source_port".to_string()
            ),
            (
                7,
                8,
                "port must be between 1 and 65535, not 99999".to_string()
            ),
            (
                13,
                7,
                "`rtp` in [[groups]] must be true or false, not a string (\"yes\")".to_string()
            ),
        ]
    );
}

#[test]
fn every_semantic_error_is_collected_in_file_order() {
    let text = "[interfaces.eth0]\nttl = 0\n[destinations.d]\ninterface = \"eth9\"\n[[groups]]\ninterface = \"eth0\"\ngroup = \"1.2.3.4\"\nto = [\"x\"]\n";
    let lines: Vec<(usize, usize)> = fails(text).iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(lines, [(2, 7), (4, 13), (7, 9), (8, 7)]);
}

#[test]
fn warnings_name_absent_interfaces_and_unused_destinations() {
    let resolver = FakeResolver::new(&[("eth0", 2)]);
    let text =
        "[interfaces.eth0]\n[interfaces.eth9]\n[destinations.spare]\naddress = \"10.0.0.1:1\"\n";
    let (t, w) = compile_with_warnings(text, Path::new("t.toml"), &resolver).unwrap();
    assert_eq!(t.interfaces.len(), 2);
    let w: Vec<_> = w
        .iter()
        .map(|w| (w.line, w.col, w.severity, w.message.as_str()))
        .collect();
    assert_eq!(
        w,
        [
            (
                2,
                13,
                Severity::Warning,
                "interface `eth9` does not exist on this machine now; mcrelay will use it when it appears"
            ),
            (
                3,
                15,
                Severity::Warning,
                "destination `spare` is not used by any group"
            ),
        ]
    );
}

#[test]
fn destination_ttl_falls_back_to_the_interface_then_the_default() {
    let t = ok(
        "[interfaces.a]\nttl = 9\n[interfaces.b]\n[destinations.ma]\ninterface = \"a\"\n[destinations.mb]\ninterface = \"b\"\n[destinations.own]\ninterface = \"a\"\nttl = 3\n[destinations.u]\naddress = \"10.0.0.1:1\"\n[destinations.u7]\naddress = \"10.0.0.1:1\"\nttl = 7\n",
    );
    let ttls: Vec<(&str, u8)> = t
        .destinations
        .iter()
        .map(|d| (d.name.as_str(), d.ttl))
        .collect();
    assert_eq!(
        ttls,
        [("ma", 9), ("mb", 1), ("own", 3), ("u", 64), ("u7", 7)]
    );
}

#[test]
fn labels_are_the_name_or_the_address() {
    let v6 = group("eth0", "ff3e::1", Some(5004), None).replace("\"out\"", "\"m\"");
    let t = ok(&with_ifaces(&format!(
        "[destinations.m]\ninterface = \"eth1\"\n{}{v6}{}",
        group("eth0", "239.1.1.1", Some(5000), None),
        group("eth0", "239.1.1.2", None, None)
    )));
    let labels: Vec<&str> = t.routes.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["239.1.1.1:5000", "[ff3e::1]:5004", "239.1.1.2"]);
    assert!(t.routes.iter().all(|r| !r.rtp));
}

#[test]
fn interfaces_are_numbered_by_name() {
    let t = ok("[interfaces.veth9]\n[interfaces.eth1]\n[interfaces.br0]\n");
    let names: Vec<&str> = t.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["br0", "eth1", "veth9"]);
    assert_eq!(t.interface_id("veth9"), Some(IfaceId(2)));
}

#[test]
fn load_reports_unreadable_and_non_utf8_files() {
    let dir = std::env::temp_dir().join(format!("mcrelay-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.toml");
    match load(&missing, &FakeResolver::everything()) {
        Err(e @ LoadError::Io { .. }) => {
            assert_eq!(e.exit_code(), crate::exit::NOINPUT);
            assert!(
                e.to_string()
                    .starts_with(&format!("cannot read {}: ", missing.display()))
            );
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, b"[daemon]\nuser = \"caf\xe9\"\n").unwrap();
    match load(&bad, &FakeResolver::everything()) {
        Err(e @ LoadError::Invalid(_)) => {
            assert_eq!(e.exit_code(), crate::exit::CONFIG);
            let LoadError::Invalid(errors) = e else {
                unreachable!()
            };
            assert_eq!((errors[0].line, errors[0].col), (2, 12));
            assert_eq!(
                errors[0].message,
                "the file is not valid UTF-8 here; save it as UTF-8"
            );
        }
        other => panic!("expected an invalid-file error, got {other:?}"),
    }
    let good = dir.join("good.toml");
    std::fs::write(&good, SAMPLE).unwrap();
    let loaded = load(&good, &FakeResolver::everything()).unwrap();
    assert_eq!(loaded.table, ok(SAMPLE));
    assert_eq!(loaded.digest, sha256_hex(SAMPLE.as_bytes()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn edit_distance_and_nearest() {
    use super::values::{edit_distance, nearest};
    assert_eq!(edit_distance("", ""), 0);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("studio-b", "studio-b-v6"), 3);
    assert_eq!(edit_distance("é", "e"), 1);
    assert_eq!(
        nearest("studio-c", &["archive", "studio-b", "studio-b-v6"]),
        Some("studio-b")
    );
    assert_eq!(nearest("zzz", &["archive", "studio-b"]), None);
    assert_eq!(nearest("x", &[]), None);
}

#[test]
fn system_resolver_finds_loopback_and_refuses_paths() {
    assert_eq!(
        SystemResolver.ifindex("lo"),
        Some(1),
        "every Linux machine has lo as ifindex 1"
    );
    assert_eq!(SystemResolver.ifindex("../lo"), None);
    assert_eq!(SystemResolver.ifindex("no-such-if0"), None);
}

fn rendered(text: &str) -> String {
    let errors = compile(
        text,
        Path::new("/etc/mcrelay/mcrelay.toml"),
        &FakeResolver::everything(),
    )
    .expect_err("expected errors");
    render_errors(&errors)
}

#[test]
fn snapshot_every_error_of_a_broken_file() {
    insta::assert_snapshot!(rendered(
        r#"[daemon]
stats_interval = "1 parsec"

[interfaces.eth0]
[interfaces.eth1]
ttl = 300

[destinations.studio-b]
interface = "eth1"
group = "239.2.2.2"
dscp = 70

[destinations.studio-b-v6]
interface = "eth1"
group = "ff3e::2:5"

[destinations.loopback]
interface = "eth0"

[destinations.nowhere]
group = "239.9.9.9"

[[groups]]
name = "camera-1"
interface = "eth0"
group = "239.1.1.1"
port = 5000
to = ["studio-c", "studio-b-v6", "loopback"]

[[groups]]
name = "camera-1-again"
interface = "eth0"
group = "239.1.1.1"
to = ["studio-b"]

[[groups]]
interface = "eth2"
group = "192.0.2.1"
port = 0
to = ["studio-b"]
"#
    ));
}

#[test]
fn snapshot_syntax_error() {
    insta::assert_snapshot!(rendered(
        "[interfaces.eth0]\nttl = 4\n\n[[groups]\ninterface = \"eth0\"\n"
    ));
}

#[test]
fn snapshot_unknown_key() {
    insta::assert_snapshot!(rendered(
        "[destinations.archive]\naddress = \"10.20.0.9:7000\"\nhost = \"archive.example\"\n"
    ));
}

#[test]
fn snapshot_wrong_type() {
    insta::assert_snapshot!(rendered(
        "[interfaces.eth0]\n[destinations.a]\naddress = \"10.0.0.1:9\"\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = \"a\"\n"
    ));
}

/// Regression: a group overlapping only a group that was itself rejected as an overlap must be
/// reported too, in the same run.
#[test]
fn overlap_with_an_already_overlapping_group_is_reported() {
    let text = with_ifaces(&format!(
        "{}{}{}",
        group("eth0", "239.1.1.1", Some(5000), Some("10.0.0.1")),
        group("eth0", "239.1.1.1", None, None),
        group("eth0", "239.1.1.1", Some(6000), Some("10.0.0.2"))
    ));
    let e = fails(&text);
    let at: Vec<(usize, usize)> = e.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(at, [(13, 9), (17, 9)], "{e:?}");
    assert!(
        e[1].2
            .starts_with("this group claims packets that the group at line 11 (`239.1.1.1`)"),
        "{}",
        e[1].2
    );
}

#[test]
fn source_specific_labels_name_the_source_and_labels_are_unique_per_interface() {
    let t = ok(&with_ifaces(&format!(
        "{}{}",
        group("eth0", "232.1.1.1", Some(5000), Some("10.0.0.1")),
        group("eth0", "232.1.1.1", Some(5000), Some("10.0.0.2"))
    )));
    let labels: Vec<&str> = t.routes.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "232.1.1.1:5000 from 10.0.0.1",
            "232.1.1.1:5000 from 10.0.0.2"
        ]
    );
    // A name equal to another group's address label on the same interface is refused...
    let named = "[[groups]]\nname = \"239.1.1.1:5000\"\ninterface = \"eth0\"\ngroup = \"239.1.1.2\"\nto = [\"out\"]\n";
    fails_once(
        &with_ifaces(&format!(
            "{}{named}",
            group("eth0", "239.1.1.1", Some(5000), None)
        )),
        11,
        8,
        "the group at line 5 on eth0 is also labelled `239.1.1.1:5000`; name this group otherwise",
    );
    // ...and allowed on another interface.
    ok(&with_ifaces(&format!(
        "{}{}",
        group("eth1", "239.1.1.1", Some(5000), None),
        named
    )));
}

#[test]
fn rule_source_port_range_and_sharing() {
    let dests = |a: &str, b: &str| {
        format!(
            "[interfaces.eth0]\n[interfaces.eth1]\n[destinations.a]\n{a}\n[destinations.b]\n{b}\n"
        )
    };
    // Range.
    assert_eq!(
        fails(&dests(
            "address = \"10.0.0.1:7000\"\nsource_port = 0",
            "address = \"10.0.0.2:7000\"\nsource_port = 65536"
        )),
        [
            (
                5,
                15,
                "source_port must be between 1 and 65535, not 0".to_string()
            ),
            (
                8,
                15,
                "source_port must be between 1 and 65535, not 65536".to_string()
            ),
        ]
    );
    let t = ok(&dests(
        "address = \"10.0.0.1:7000\"\nsource_port = 40000",
        "address = \"10.0.0.2:7000\"",
    ));
    assert_eq!(t.destinations[0].source_port, Some(40000));
    assert_eq!(t.destinations[1].source_port, None);
    let canonical = crate::config::canonical(&t);
    assert!(
        canonical.contains("destination a unicast 10.0.0.1:7000 ttl 64 dscp 0 source_port 40000\n"),
        "{canonical}"
    );
    // Shared: allowed when the two cannot send to the same target, refused otherwise.
    let allowed = [
        ("address = \"10.0.0.1:7000\"", "address = \"10.0.0.2:7000\""),
        ("address = \"10.0.0.1:7000\"", "address = \"10.0.0.1:7001\""),
        ("address = \"10.0.0.1:7000\"", "interface = \"eth1\""),
        ("interface = \"eth0\"", "interface = \"eth1\""),
        (
            "interface = \"eth1\"\ngroup = \"239.1.1.1\"",
            "interface = \"eth1\"\ngroup = \"239.1.1.2\"",
        ),
        (
            "interface = \"eth1\"\nport = 6000",
            "interface = \"eth1\"\nport = 6001",
        ),
    ];
    for (a, b) in allowed {
        ok(&dests(
            &format!("{a}\nsource_port = 40000"),
            &format!("{b}\nsource_port = 40000"),
        ));
    }
    let refused = [
        ("address = \"10.0.0.1:7000\"", "address = \"10.0.0.1:7000\""),
        ("interface = \"eth1\"", "interface = \"eth1\""),
        (
            "interface = \"eth1\"\ngroup = \"239.1.1.1\"",
            "interface = \"eth1\"\nport = 6000",
        ),
        (
            "interface = \"eth1\"\ngroup = \"239.1.1.1\"\nport = 6000",
            "interface = \"eth1\"\ngroup = \"239.1.1.1\"\nport = 6000",
        ),
    ];
    for (a, b) in refused {
        let text = dests(
            &format!("{a}\nsource_port = 40000"),
            &format!("{b}\nsource_port = 40000"),
        );
        let errors = fails(&text);
        assert_eq!(errors.len(), 1, "{text}\n{errors:?}");
        let (line, _, message) = &errors[0];
        assert_eq!(*line, text.lines().count(), "on b's source_port: {text}");
        assert!(
            message.starts_with("destinations `a` and `b` both send from source_port 40000"),
            "{message}"
        );
    }
    // Different source ports: no constraint.
    ok(&dests(
        "interface = \"eth1\"\nsource_port = 40000",
        "interface = \"eth1\"\nsource_port = 40001",
    ));
}
