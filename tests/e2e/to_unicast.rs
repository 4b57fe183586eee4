//! Multicast in, unicast out (kernel-routed), IPv4 and IPv6.

use crate::netns::*;

#[test]
fn multicast_to_unicast() {
    let t = Topology::new(1);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]

        [destinations.host4]
        address = "10.2.0.2:7000"
        [destinations.host6]
        address = "[fd02::2]:7006"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["host4"]

        [[groups]]
        interface = "in0"
        group = "ff3e::1:1"
        port = 5000
        to = ["host6"]
        "#,
    );
    let rx = Receiver::start(
        &t.rx[0],
        &["--unicast", "10.2.0.2:7000", "--unicast", "[fd02::2]:7006"],
    );
    let sent = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.1.1:5000",
            "--to",
            "[ff3e::1:1]:5000",
            "--rate",
            "4000",
            "--duration",
            "2s",
            "--size",
            "512",
        ],
    );
    let r = rx.finish();
    relay.stop();
    r.assert_no_unexpected();
    r.assert_complete("10.2.0.2:7000", 0, sent.stream(0));
    r.assert_complete("[fd02::2]:7006", 1, sent.stream(1));
}
