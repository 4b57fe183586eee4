//! An IPv6 group: MLD membership on the ingress, relayed with every byte.

use crate::netns::*;

#[test]
fn ipv6_group_with_mld() {
    let t = Topology::new(1);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]

        [destinations.rx0]
        interface = "out0"
        [destinations.rx0-rewritten]
        interface = "out0"
        group = "ff3e::2:5"
        port = 6004

        [[groups]]
        interface = "in0"
        group = "ff3e::1:5"
        port = 5004
        to = ["rx0", "rx0-rewritten"]

        [[groups]]
        interface = "in0"
        group = "ff3e::1:6"
        port = 5004
        source = "fd01::2"
        to = ["rx0"]
        "#,
    );
    assert_joined(&t.relay, "in0", "ff3e::1:5");
    assert_joined(&t.relay, "in0", "ff3e::1:6");
    let rx = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "[ff3e::1:5]:5004",
            "--group",
            "[ff3e::2:5]:6004",
            "--group",
            "[ff3e::1:6]:5004",
        ],
    );
    let sent = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "[ff3e::1:5]:5004",
            "--to",
            "[ff3e::1:6]:5004",
            "--rate",
            "4000",
            "--duration",
            "2s",
            "--size",
            "1452",
        ],
    );
    let r = rx.finish();
    relay.stop();
    r.assert_no_unexpected();
    r.assert_complete("[ff3e::1:5]:5004", 0, sent.stream(0));
    r.assert_complete("[ff3e::2:5]:6004", 0, sent.stream(0));
    let s = r.assert_complete("[ff3e::1:6]:5004", 1, sent.stream(1));
    assert_eq!(
        s.sources,
        vec!["fd02::1".parse::<std::net::IpAddr>().unwrap()]
    );
}
