//! Group and port rewriting on a multicast destination.

use crate::netns::*;

#[test]
fn port_and_group_rewrite() {
    let t = Topology::new(1);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]

        [destinations.both]
        interface = "out0"
        group = "239.7.7.7"
        port = 6000
        [destinations.port-only]
        interface = "out0"
        port = 6001
        [destinations.group-only]
        interface = "out0"
        group = "239.7.7.8"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["both", "port-only", "group-only"]
        "#,
    );
    let rx = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "239.7.7.7:6000",
            "--group",
            "239.1.1.1:6001",
            "--group",
            "239.7.7.8:5000",
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
            "2s",
            "--size",
            "100",
        ],
    );
    let r = rx.finish();
    relay.stop();
    let n = sent.stream(0);
    r.assert_complete("239.7.7.7:6000", 0, n);
    r.assert_complete("239.1.1.1:6001", 0, n);
    r.assert_complete("239.7.7.8:5000", 0, n);
    // nothing was sent under the original group and port
    r.assert_nothing("239.1.1.1:5000");
    r.assert_no_unexpected();
}
