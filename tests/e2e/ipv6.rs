//! An IPv6 group: MLD membership on the ingress, relayed with every byte.

use crate::netns::*;

#[test]
fn ipv6_group_with_mld() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::rx0()
            .dest(
                "rx0-rewritten",
                "interface = \"out0\"\ngroup = \"ff3e::2:5\"\nport = 6004",
            )
            .group("in0", "[ff3e::1:5]:5004", &["rx0", "rx0-rewritten"])
            .route("[ff3e::1:6]:5004")
            .source("fd01::2"),
    );
    assert_joined(&t.relay, "in0", "ff3e::1:5");
    assert_joined(&t.relay, "in0", "ff3e::1:6");
    let rx = t.receive(
        0,
        &["[ff3e::1:5]:5004", "[ff3e::2:5]:6004", "[ff3e::1:6]:5004"],
    );
    let sent = t.send(
        &["[ff3e::1:5]:5004", "[ff3e::1:6]:5004"],
        &["--rate", "4000", "--duration", "2s", "--size", "1452"],
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
