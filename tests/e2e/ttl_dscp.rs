//! Egress TTL / hop limit and DSCP as configured, read from the received packets.

use std::collections::BTreeMap;

use crate::netns::*;

fn only(m: &BTreeMap<u8, u64>) -> Vec<u8> {
    m.keys().copied().collect()
}

#[test]
fn egress_ttl_and_dscp_as_configured() {
    let t = Topology::new(2);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]
        [interfaces.out1]
        ttl = 5

        [destinations.explicit]
        interface = "out0"
        ttl = 9
        dscp = 46
        [destinations.interface-default]
        interface = "out1"
        dscp = 10
        [destinations.unicast]
        address = "10.2.0.2:7000"
        ttl = 33
        dscp = 34
        [destinations.v6]
        interface = "out0"
        ttl = 7
        dscp = 26

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["explicit", "interface-default", "unicast"]

        [[groups]]
        interface = "in0"
        group = "ff3e::1:1"
        port = 5000
        to = ["v6"]
        "#,
    );
    let rx0 = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "239.1.1.1:5000",
            "--unicast",
            "10.2.0.2:7000",
            "--group",
            "[ff3e::1:1]:5000",
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
            "--to",
            "[ff3e::1:1]:5000",
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
