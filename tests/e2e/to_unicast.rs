//! Multicast in, unicast out (kernel-routed), IPv4 and IPv6.

use crate::netns::*;

#[test]
fn multicast_to_unicast() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::new(&["in0"])
            .unicast("host4", "10.2.0.2:7000")
            .unicast("host6", "[fd02::2]:7006")
            .group("in0", "239.1.1.1:5000", &["host4"])
            .group("in0", "[ff3e::1:1]:5000", &["host6"]),
    );
    let rx = t.receive(0, &["10.2.0.2:7000", "[fd02::2]:7006"]);
    let sent = t.send(
        &["239.1.1.1:5000", "[ff3e::1:1]:5000"],
        &["--rate", "4000", "--duration", "2s", "--size", "512"],
    );
    let r = rx.finish();
    relay.stop();
    r.assert_no_unexpected();
    r.assert_complete("10.2.0.2:7000", 0, sent.stream(0));
    r.assert_complete("[fd02::2]:7006", 1, sent.stream(1));
}
