//! One group relayed to one destination: the basic promise.

use crate::netns::*;

#[test]
fn one_group_one_destination_delivers_every_byte() {
    let t = Topology::new(1);
    let relay = Relay::start(
        &t.relay,
        r#"
        [interfaces.in0]
        [interfaces.out0]

        [destinations.rx0]
        interface = "out0"

        [[groups]]
        interface = "in0"
        group = "239.1.1.1"
        port = 5000
        to = ["rx0"]
        "#,
    );
    assert_joined(&t.relay, "in0", "239.1.1.1");
    let rx = Receiver::start(&t.rx[0], &["-i", "eth0", "--group", "239.1.1.1:5000"]);
    let sent = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.1.1:5000",
            "--rate",
            "5000",
            "--duration",
            "3s",
            "--size",
            "1316",
        ],
    );
    let r = rx.finish();
    relay.stop();
    r.assert_no_unexpected();
    let s = r.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    assert_eq!(
        s.sources,
        vec!["10.2.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(sent.stream(0) >= 14_000, "sent only {}", sent.stream(0));
}
