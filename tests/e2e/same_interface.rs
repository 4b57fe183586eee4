//! Egress on the ingress interface (another group): relayed once, never read back.

use crate::netns::*;

#[test]
fn egress_on_the_ingress_interface_does_not_loop() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::rx0()
            .dest("back", "interface = \"in0\"\ngroup = \"239.3.3.3\"")
            .group("in0", "239.1.1.1:5000", &["back"])
            // if the relay read its own egress back, these would reach rx0
            .route("239.3.3.3:5000"),
    );
    let back = Receiver::listen(&t.sender, "eth0", &["239.3.3.3:5000"], &[]);
    let rx = t.receive_with(0, &["239.3.3.3:5000"], &["--duration", "5s"]);
    let sent = t.send(&["239.1.1.1:5000"], &["--rate", "3000", "--duration", "2s"]);
    let b = back.finish();
    let r = rx.stop();
    relay.stop();
    b.assert_complete("239.3.3.3:5000", 0, sent.stream(0));
    b.assert_no_unexpected();
    r.assert_nothing("239.3.3.3:5000");
}

/// The relay's egress sockets have multicast loop off: applications on the relay host joined to
/// the egress group on the egress interface get nothing from the relay (no double delivery, no
/// feedback into a local relay instance).
#[test]
fn relayed_multicast_is_not_looped_back_to_the_relay_host() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::new(&["in0", "out0"])
            .dest("rx0", "interface = \"out0\"\ngroup = \"239.4.4.4\"")
            .dest("rx0-v6", "interface = \"out0\"\ngroup = \"ff3e::4:4\"")
            .route("239.1.1.1:5000")
            .group("in0", "[ff3e::1:1]:5000", &["rx0-v6"]),
    );
    let egress = ["239.4.4.4:5000", "[ff3e::4:4]:5000"];
    let local = Receiver::listen(&t.relay, "out0", &egress, &[]);
    let rx = t.receive(0, &egress);
    let sent = t.send(
        &["239.1.1.1:5000", "[ff3e::1:1]:5000"],
        &["--rate", "2000", "--duration", "2s"],
    );
    let r = rx.finish();
    let l = local.stop();
    relay.stop();
    r.assert_complete("239.4.4.4:5000", 0, sent.stream(0));
    r.assert_complete("[ff3e::4:4]:5000", 1, sent.stream(1));
    l.assert_nothing("239.4.4.4:5000");
    l.assert_nothing("[ff3e::4:4]:5000");
}
