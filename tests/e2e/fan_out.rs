//! One group fanned out to three destinations on two interfaces.

use crate::netns::*;

#[test]
fn fan_out_to_three_destinations_on_two_interfaces() {
    let t = Topology::new(2);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]
        [interfaces.out1]

        [destinations.a]
        interface = "out0"
        [destinations.b]
        interface = "out0"
        group = "239.5.5.5"
        [destinations.c]
        interface = "out1"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["a", "b", "c"]
        "#,
    );
    let rx0 = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "239.1.1.1:5000",
            "--group",
            "239.5.5.5:5000",
        ],
    );
    let rx1 = Receiver::start(&t.rx[1], &["-i", "eth0", "--group", "239.1.1.1:5000"]);
    let sent = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.1.1:5000",
            "--rate",
            "4000",
            "--duration",
            "2s",
            "--size",
            "200",
        ],
    );
    let (r0, r1) = (rx0.finish(), rx1.finish());
    relay.stop();
    let n = sent.stream(0);
    r0.assert_complete("239.1.1.1:5000", 0, n);
    r0.assert_complete("239.5.5.5:5000", 0, n);
    r1.assert_complete("239.1.1.1:5000", 0, n);
    r0.assert_no_unexpected();
    r1.assert_no_unexpected();
}
