//! Egress TTL / hop limit and DSCP as configured, read from the received packets.

use std::collections::BTreeMap;

use crate::netns::*;

fn only(m: &BTreeMap<u8, u64>) -> Vec<u8> {
    m.keys().copied().collect()
}

#[test]
fn egress_ttl_and_dscp_as_configured() {
    let t = Topology::new(2);
    let relay = t.start_relay(
        Config::new(&["in0", "out0"])
            .interface("out1", "ttl = 5")
            .dest("explicit", "interface = \"out0\"\nttl = 9\ndscp = 46")
            .dest("interface-default", "interface = \"out1\"\ndscp = 10")
            .dest(
                "unicast",
                "address = \"10.2.0.2:7000\"\nttl = 33\ndscp = 34",
            )
            .dest("v6", "interface = \"out0\"\nttl = 7\ndscp = 26")
            .group(
                "in0",
                "239.1.1.1:5000",
                &["explicit", "interface-default", "unicast"],
            )
            .group("in0", "[ff3e::1:1]:5000", &["v6"]),
    );
    let rx0 = t.receive(0, &["239.1.1.1:5000", "10.2.0.2:7000", "[ff3e::1:1]:5000"]);
    let rx1 = t.receive(1, &["239.1.1.1:5000"]);
    let sent = t.send(
        &["239.1.1.1:5000", "[ff3e::1:1]:5000"],
        &[
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--ttl",
            "64",
            "--tos",
            "0",
        ],
    );
    let (r0, r1) = (rx0.finish(), rx1.finish());
    relay.stop();
    let explicit = r0.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    assert_eq!(
        (only(&explicit.ttl), only(&explicit.tos)),
        (vec![9], vec![46 << 2])
    );
    let unicast = r0.assert_complete("10.2.0.2:7000", 0, sent.stream(0));
    assert_eq!(
        (only(&unicast.ttl), only(&unicast.tos)),
        (vec![33], vec![34 << 2])
    );
    let v6 = r0.assert_complete("[ff3e::1:1]:5000", 1, sent.stream(1));
    assert_eq!((only(&v6.ttl), only(&v6.tos)), (vec![7], vec![26 << 2]));
    let default = r1.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    assert_eq!(
        (only(&default.ttl), only(&default.tos)),
        (vec![5], vec![10 << 2])
    );
}
