//! Dead unicast destinations next to a live one: the live one loses nothing.

use std::time::Duration;

use crate::netns::*;

#[test]
fn unreachable_unicast_destination_does_not_hurt_a_live_one() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::new(&["in0", "out0"])
            .unicast("live", "10.2.0.2:7000")
            // the host answers ICMP port unreachable
            .unicast("closed-port", "10.2.0.2:7999")
            // nobody answers ARP
            .unicast("no-neighbour", "10.2.0.99:7000")
            // the relay has no route at all
            .unicast("no-route", "198.51.100.1:7000")
            .multicast("live-multicast", "out0")
            .group(
                "in0",
                "239.1.1.1:5000",
                &[
                    "closed-port",
                    "no-neighbour",
                    "no-route",
                    "live",
                    "live-multicast",
                ],
            ),
    );
    let rx = t.receive(0, &["10.2.0.2:7000", "239.1.1.1:5000"]);
    let sent = t.send(&["239.1.1.1:5000"], &["--rate", "3000", "--duration", "3s"]);
    let r = rx.finish();
    let n = sent.stream(0);
    // the relay's own account, per destination: (packets, errors)
    let dest = |s: &serde_json::Value, name: &str| -> (u64, u64) {
        let d = s["groups"][0]["destinations"]
            .as_array()
            .expect("destinations")
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no destination {name} in stats: {s:#}"));
        (
            d["packets"].as_u64().expect("packets"),
            d["errors"].as_u64().expect("errors"),
        )
    };
    let stats = relay.stats_when(Duration::from_secs(3), |s| dest(s, "live").0 == n);
    let log = relay.stop();
    r.assert_complete("10.2.0.2:7000", 0, n);
    r.assert_complete("239.1.1.1:5000", 0, n);
    r.assert_no_unexpected();
    assert!(!log.contains("panicked"), "relay log:\n{log}");
    assert_eq!(dest(&stats, "live"), (n, 0), "stats:\n{stats:#}");
    assert_eq!(dest(&stats, "live-multicast"), (n, 0), "stats:\n{stats:#}");
    // no route: every send fails at once, and is counted
    assert_eq!(dest(&stats, "no-route"), (0, n), "stats:\n{stats:#}");
    // port unreachable: the ICMP errors the kernel reports make some sends fail; each datagram
    // is either sent or counted as an error
    let (p, e) = dest(&stats, "closed-port");
    assert_eq!(p + e, n, "stats:\n{stats:#}");
    // no neighbour: the kernel accepts the datagrams and drops them unseen (nothing to count)
    assert_eq!(
        dest(&stats, "no-neighbour").0 + dest(&stats, "no-neighbour").1,
        n
    );
}
