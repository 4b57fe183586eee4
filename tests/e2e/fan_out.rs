//! One group fanned out to three destinations on two interfaces.

use crate::netns::*;

#[test]
fn fan_out_to_three_destinations_on_two_interfaces() {
    let t = Topology::new(2);
    let relay = t.start_relay(
        Config::new(&["in0", "out0", "out1"])
            .multicast("a", "out0")
            .dest("b", "interface = \"out0\"\ngroup = \"239.5.5.5\"")
            .multicast("c", "out1")
            .group("in0", "239.1.1.1:5000", &["a", "b", "c"]),
    );
    let rx0 = t.receive(0, &["239.1.1.1:5000", "239.5.5.5:5000"]);
    let rx1 = t.receive(1, &["239.1.1.1:5000"]);
    let sent = t.send(
        &["239.1.1.1:5000"],
        &["--rate", "4000", "--duration", "2s", "--size", "200"],
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
