//! Unit tests of the compiler: one per validation rule, each asserting message and line:col.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::*;
use crate::table::{DestKind, IfaceId};

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
