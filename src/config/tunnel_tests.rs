//! Unit tests of `listen` (unicast ingress) and tunnels: one per rule, with message and
//! line:col.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::table::{DestKind, IfaceId};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// eth0 and eth1 exist (and only they), with one good and one bad key file.
fn resolver() -> FakeResolver {
    FakeResolver::new(&[("eth0", 2), ("eth1", 3)])
        .with_key_file("/etc/mcrelay/wan.key", KEY)
        .with_key_file("/etc/mcrelay/bad.key", "not a key\n")
}

fn ok(text: &str) -> (Table, Vec<ConfigError>) {
    match compile_with_warnings(text, Path::new("t.toml"), &resolver()) {
        Ok(r) => r,
        Err(e) => panic!("expected a valid config, got:\n{}", render_errors(&e)),
    }
}

/// The errors of an invalid configuration as (line, col, message).
fn errors(text: &str) -> Vec<(usize, usize, String)> {
    match compile(text, Path::new("t.toml"), &resolver()) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.into_iter().map(|e| (e.line, e.col, e.message)).collect(),
    }
}

/// Asserts one error at `line:col` whose message contains `needle`.
fn fails_once(text: &str, line: usize, col: usize, needle: &str) {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (line, col), "{e:?}");
    assert!(e[0].2.contains(needle), "{:?} lacks {needle:?}", e[0].2);
}

const LISTEN: &str = r#"[interfaces.eth0]
[interfaces.eth1]
[destinations.out]
interface = "eth1"
group = "239.9.9.9"
[destinations.out6]
interface = "eth1"
group = "ff3e::9"
[destinations.host]
address = "10.9.9.9:7000"
"#;

#[test]
fn listen_receives_unicast_ipv4_and_ipv6_and_any_address() {
    let text = format!(
        "{LISTEN}[[groups]]\ninterface = \"eth0\"\nlisten = \"10.0.0.5:5000\"\nto = [\"out\", \"host\"]\n\
         [[groups]]\ninterface = \"eth0\"\nlisten = \"[2001:db8::5]:5000\"\nto = [\"out6\"]\n\
         [[groups]]\ninterface = \"eth0\"\nlisten = \"0.0.0.0:6000\"\nsource = \"192.0.2.1\"\nto = [\"out\"]\n"
    );
    let (t, warnings) = ok(&text);
    assert!(warnings.is_empty(), "{warnings:?}");
    let keys: Vec<_> = t.routes.iter().map(|r| r.key).collect();
    assert!(keys.iter().all(|k| k.is_listen()));
    assert_eq!(
        keys[0].group,
        "10.0.0.5".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(keys[0].port, Some(5000));
    assert_eq!(t.routes[1].label, "[2001:db8::5]:5000");
    assert_eq!(t.routes[2].label, "0.0.0.0:6000 from 192.0.2.1");
    let eth0 = IfaceId(0);
    let src = "192.0.2.1".parse().unwrap();
    let lookup = |dst: &str, port| t.lookup(eth0, src, dst.parse().unwrap(), port);
    assert_eq!(lookup("10.0.0.5", 5000), Some(crate::table::RouteId(0)));
    assert_eq!(lookup("10.0.0.6", 5000), None);
    assert_eq!(lookup("10.0.0.6", 6000), Some(crate::table::RouteId(2)));
    assert_eq!(lookup("10.0.0.5", 6000), Some(crate::table::RouteId(2)));
    assert_eq!(
        t.lookup(
            eth0,
            "192.0.2.2".parse().unwrap(),
            "10.0.0.5".parse().unwrap(),
            6000
        ),
        None,
        "the wildcard route is source-specific"
    );
    assert_eq!(lookup("239.0.0.1", 6000), None, "no wildcard for groups");
    let c = canonical(&t);
    assert!(
        c.contains("eth0 listen 10.0.0.5:5000 -> out (eth1 239.9.9.9:5000"),
        "{c}"
    );
}

#[test]
fn listen_is_not_a_group_and_replaces_group_and_port() {
    let g =
        |body: &str| format!("{LISTEN}[[groups]]\ninterface = \"eth0\"\n{body}\nto = [\"host\"]\n");
    fails_once(
        &g("listen = \"239.1.1.1:5000\""),
        13,
        10,
        "write `group = \"239.1.1.1\"` and `port = 5000`",
    );
    fails_once(&g("listen = \"10.0.0.5\""), 13, 10, "(the port is missing)");
    fails_once(&g("listen = \"10.0.0.5:0\""), 13, 10, "port other than 0");
    fails_once(&g("listen = \"255.255.255.255:5\""), 13, 10, "broadcast");
    fails_once(
        &g("listen = \"2001:db8::5:5000\""),
        13,
        10,
        "[2001:db8::5]:5000",
    );
    fails_once(
        &g("group = \"239.1.1.1\"\nlisten = \"10.0.0.5:5000\""),
        13,
        9,
        "`group` and `listen` exclude each other",
    );
    fails_once(
        &g("listen = \"10.0.0.5:5000\"\nport = 5000"),
        14,
        8,
        "`port` and `listen` exclude each other",
    );
}

#[test]
fn a_wildcard_listen_overlaps_an_address_on_the_same_port() {
    let text = format!(
        "{LISTEN}[[groups]]\ninterface = \"eth0\"\nlisten = \"0.0.0.0:5000\"\nto = [\"host\"]\n\
         [[groups]]\ninterface = \"eth0\"\nlisten = \"10.0.0.5:5000\"\nto = [\"host\"]\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (17, 10));
    assert!(
        e[0].2.contains("group at line 11") && e[0].2.contains("every address of eth0"),
        "{e:?}"
    );
    // Another port, another interface, or another family: no overlap.
    for (a, b) in [
        ("0.0.0.0:5000", "10.0.0.5:5001"),
        ("10.0.0.6:5000", "10.0.0.5:5000"),
    ] {
        ok(&format!(
            "{LISTEN}[[groups]]\ninterface = \"eth0\"\nlisten = \"{a}\"\nto = [\"host\"]\n\
             [[groups]]\ninterface = \"eth0\"\nlisten = \"{b}\"\nto = [\"host\"]\n"
        ));
    }
    ok(&format!(
        "{LISTEN}[[groups]]\ninterface = \"eth0\"\nlisten = \"[::]:5000\"\nto = [\"out6\"]\n\
         [[groups]]\ninterface = \"eth0\"\nlisten = \"10.0.0.5:5000\"\nto = [\"host\"]\n"
    ));
    // The same address twice is the ordinary overlap.
    let dup = format!(
        "{LISTEN}[[groups]]\ninterface = \"eth0\"\nlisten = \"10.0.0.5:5000\"\nto = [\"host\"]\n\
         [[groups]]\ninterface = \"eth0\"\nlisten = \"10.0.0.5:5000\"\nto = [\"host\"]\n"
    );
    assert!(errors(&dup)[0].2.contains("already claims"));
}

#[test]
fn a_listen_route_needs_destinations_with_a_group_of_their_own() {
    let text = format!(
        "{LISTEN}[destinations.keep]\ninterface = \"eth1\"\n\
         [[groups]]\ninterface = \"eth0\"\nlisten = \"10.0.0.5:5000\"\nto = [\"keep\"]\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (16, 7));
    assert!(e[0].2.contains("give the destination a `group`"), "{e:?}");
}

const TUNNEL: &str = r#"[interfaces.eth0]
[interfaces.wan]
tunnel = { local = "192.0.2.1:4789", peers = ["198.51.100.7:4789", "198.51.100.8:4789"], key_file = "/etc/mcrelay/wan.key" }
[destinations.into-wan]
interface = "wan"
[destinations.lan]
interface = "eth0"
group = "239.5.5.5"
[[groups]]
interface = "eth0"
group = "239.1.1.1"
port = 5000
to = ["into-wan"]
[[groups]]
interface = "wan"
group = "239.2.2.2"
port = 5000
to = ["lan"]
"#;

#[test]
fn a_tunnel_is_an_interface_groups_receive_on_and_destinations_send_into() {
    let (t, warnings) = ok(TUNNEL);
    assert!(warnings.is_empty(), "{warnings:?}");
    let wan = t.interface_id("wan").unwrap();
    let tunnel = t.tunnel(wan).unwrap();
    assert_eq!(tunnel.local, "192.0.2.1:4789".parse().unwrap());
    assert_eq!(tunnel.peers.len(), 2);
    assert_eq!(
        tunnel.key,
        Some(crate::tunnel::TunnelKey::parse(KEY).unwrap())
    );
    assert!(tunnel.is_ready());
    assert_eq!(
        tunnel.silence_timeout,
        Duration::from_secs(2),
        "the daemon's default"
    );
    assert!(t.tunnel(t.interface_id("eth0").unwrap()).is_none());
    assert!(matches!(
        t.destinations[0].kind,
        DestKind::Multicast { interface, group: None, port: None } if interface == wan
    ));
    assert_eq!(t.routes[1].key.interface, wan);
    let c = canonical(&t);
    assert!(
        c.contains("tunnel wan local 192.0.2.1:4789 peers 198.51.100.7:4789,198.51.100.8:4789 key_file /etc/mcrelay/wan.key silence_timeout 2s"),
        "{c}"
    );
    assert!(
        !format!("{t:?}").contains("0a0b0c"),
        "the key leaks into Debug"
    );
    assert!(
        !format!("{t:?}").contains("10, 11, 12"),
        "the key leaks into Debug"
    );
    assert!(super::check::summary(&t).ends_with(", 1 tunnel"));
}

#[test]
fn a_tunnel_without_a_key_is_a_warning_and_an_unreadable_key_stops_it() {
    let keyless = TUNNEL.replace(
        ", key_file = \"/etc/mcrelay/wan.key\"",
        ", silence_timeout = \"10s\"",
    );
    let (t, warnings) = ok(&keyless);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!((warnings[0].line, warnings[0].col), (3, 10));
    assert!(
        warnings[0]
            .message
            .contains("anyone who can send UDP from a peer's address can inject multicast")
    );
    assert!(t.tunnels[0].is_ready() && t.tunnels[0].key.is_none());
    assert_eq!(t.tunnels[0].silence_timeout, Duration::from_secs(10));

    let missing = TUNNEL.replace("wan.key", "absent.key");
    let (t, warnings) = ok(&missing);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.contains("cannot be read now"),
        "{warnings:?}"
    );
    assert!(
        !t.tunnels[0].is_ready(),
        "a tunnel whose key is missing carries nothing"
    );

    let bad = TUNNEL.replace("wan.key", "bad.key");
    let e = errors(&bad);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].2.starts_with(
            "key_file /etc/mcrelay/bad.key: line 1, column 1: `n` is not a hexadecimal digit"
        ),
        "{e:?}"
    );
    assert!(!e[0].2.contains(KEY));
    fails_once(
        &TUNNEL.replace("/etc/mcrelay/wan.key", "wan.key"),
        3,
        101,
        "must be an absolute path",
    );
}

#[test]
fn a_tunnel_must_not_have_the_name_of_a_kernel_interface() {
    let text = TUNNEL
        .replace("wan", "eth1")
        .replace("/etc/mcrelay/eth1.key", "/etc/mcrelay/wan.key");
    fails_once(
        &text,
        2,
        13,
        "also the name of an interface of this machine",
    );
}

#[test]
fn tunnel_addresses_are_checked() {
    let with = |tunnel: &str| format!("[interfaces.wan]\ntunnel = {tunnel}\n");
    fails_once(
        &with("{ peers = [\"198.51.100.7:4789\"] }"),
        2,
        10,
        "needs `local`",
    );
    fails_once(
        &with("{ local = \"192.0.2.1:4789\" }"),
        2,
        10,
        "needs `peers`",
    );
    fails_once(
        &with("{ local = \"192.0.2.1:4789\", peers = [] }"),
        2,
        46,
        "`peers` is empty",
    );
    fails_once(
        &with("{ local = \"239.1.1.1:4789\", peers = [\"198.51.100.7:4789\"] }"),
        2,
        20,
        "not a unicast address",
    );
    fails_once(
        &with("{ local = \"192.0.2.1\", peers = [\"198.51.100.7:4789\"] }"),
        2,
        20,
        "(the port is missing)",
    );
    fails_once(
        &with("{ local = \"0.0.0.0:4789\", peers = [\"0.0.0.0:4789\"] }"),
        2,
        45,
        "cannot be sent to",
    );
    fails_once(
        &with("{ local = \"0.0.0.0:4789\", peers = [\"[2001:db8::7]:4789\"] }"),
        2,
        45,
        "one family",
    );
    fails_once(
        &with(
            "{ local = \"0.0.0.0:4789\", peers = [\"198.51.100.7:4789\", \"198.51.100.7:4789\"] }",
        ),
        2,
        66,
        "listed twice",
    );
    // Keyless: a warning each, no error.
    ok(&with(
        "{ local = \"[::]:4789\", peers = [\"[2001:db8::7]:4789\"] }",
    ));
}

#[test]
fn interface_settings_that_do_not_apply_to_a_tunnel_are_refused() {
    let t = "tunnel = { local = \"0.0.0.0:4789\", peers = [\"198.51.100.7:4789\"] }";
    fails_once(
        &format!("[interfaces.wan]\ningress = \"ring\"\n{t}\n"),
        2,
        11,
        "ingress does not apply",
    );
    fails_once(
        &format!("[interfaces.wan]\nworkers = 2\n{t}\n"),
        2,
        11,
        "one worker",
    );
    ok(&format!(
        "[interfaces.wan]\nworkers = 1\ncpus = [1]\nrcvbuf = \"4MiB\"\n{t}\n"
    ));
}

#[test]
fn two_tunnels_cannot_share_a_local_port() {
    let text = "[interfaces.a]\ntunnel = { local = \"0.0.0.0:4789\", peers = [\"198.51.100.7:4789\"] }\n\
                [interfaces.b]\ntunnel = { local = \"192.0.2.1:4789\", peers = [\"198.51.100.8:4789\"] }\n";
    fails_once(
        text,
        4,
        20,
        "tunnel `b` and tunnel `a` both receive on 192.0.2.1:4789",
    );
    ok(&text.replace("192.0.2.1:4789", "192.0.2.1:4790"));
}

#[test]
fn a_tunnel_route_that_sends_back_into_its_tunnel_is_a_loop() {
    let text = TUNNEL.replace("to = [\"lan\"]", "to = [\"into-wan\"]");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].2.contains("a loop"), "{e:?}");
}
