//! Group and port rewriting on a multicast destination.

use crate::netns::*;

#[test]
fn port_and_group_rewrite() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::new(&["in0", "out0"])
            .dest(
                "both",
                "interface = \"out0\"\ngroup = \"239.7.7.7\"\nport = 6000",
            )
            .dest("port-only", "interface = \"out0\"\nport = 6001")
            .dest("group-only", "interface = \"out0\"\ngroup = \"239.7.7.8\"")
            .group(
                "in0",
                "239.1.1.1:5000",
                &["both", "port-only", "group-only"],
            ),
    );
    let rx = t.receive(
        0,
        &[
            "239.7.7.7:6000",
            "239.1.1.1:6001",
            "239.7.7.8:5000",
            "239.1.1.1:5000",
        ],
    );
    let sent = t.send(
        &["239.1.1.1:5000"],
        &["--rate", "3000", "--duration", "2s", "--size", "100"],
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
