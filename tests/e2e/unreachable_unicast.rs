//! Dead unicast destinations next to a live one: the live one loses nothing.

use crate::netns::*;

#[test]
fn unreachable_unicast_destination_does_not_hurt_a_live_one() {
    let t = Topology::new(1);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]

        [destinations.live]
        address = "10.2.0.2:7000"
        [destinations.closed-port]       # the host answers ICMP port unreachable
        address = "10.2.0.2:7999"
        [destinations.no-neighbour]      # nobody answers ARP
        address = "10.2.0.99:7000"
        [destinations.no-route]          # the relay has no route at all
        address = "198.51.100.1:7000"
        [destinations.live-multicast]
        interface = "out0"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["closed-port", "no-neighbour", "no-route", "live", "live-multicast"]
        "#,
    );
    let rx = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--unicast",
            "10.2.0.2:7000",
            "--group",
            "239.1.1.1:5000",
        ],
    );
    let sent = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.1.1:5000",
            "--rate",
            "3000",
            "--duration",
            "3s",
        ],
    );
    let r = rx.finish();
    let log = relay.stop();
    r.assert_complete("10.2.0.2:7000", 0, sent.stream(0));
    r.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    r.assert_no_unexpected();
    assert!(!log.contains("panicked"), "relay log:\n{log}");
}
