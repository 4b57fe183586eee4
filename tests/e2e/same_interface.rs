//! Egress on the ingress interface (another group): relayed once, never read back.

use crate::netns::*;

#[test]
fn egress_on_the_ingress_interface_does_not_loop() {
    let t = Topology::new(1);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]

        [destinations.back]
        interface = "in0"
        group = "239.3.3.3"
        [destinations.rx0]
        interface = "out0"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["back"]

        # if the relay read its own egress back, these would reach rx0
        [[groups]]
        interface = "in0"
        group = "239.3.3.3"
        port = 5000
        to = ["rx0"]
        "#,
    );
    let back = Receiver::start(&t.sender, &["-i", "eth0", "--group", "239.3.3.3:5000"]);
    let rx = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "239.3.3.3:5000",
            "--duration",
            "5s",
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
        ],
    );
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
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]

        [destinations.rx0]
        interface = "out0"
        group = "239.4.4.4"
        [destinations.rx0-v6]
        interface = "out0"
        group = "ff3e::4:4"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["rx0"]

        [[groups]]
        interface = "in0"
        group = "ff3e::1:1"
        port = 5000
        to = ["rx0-v6"]
        "#,
    );
    let local = Receiver::start(
        &t.relay,
        &[
            "-i",
            "out0",
            "--group",
            "239.4.4.4:5000",
            "--group",
            "[ff3e::4:4]:5000",
        ],
    );
    let rx = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "239.4.4.4:5000",
            "--group",
            "[ff3e::4:4]:5000",
        ],
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
            "2000",
            "--duration",
            "2s",
        ],
    );
    let r = rx.finish();
    let l = local.stop();
    relay.stop();
    r.assert_complete("239.4.4.4:5000", 0, sent.stream(0));
    r.assert_complete("[ff3e::4:4]:5000", 1, sent.stream(1));
    l.assert_nothing("239.4.4.4:5000");
    l.assert_nothing("[ff3e::4:4]:5000");
}
