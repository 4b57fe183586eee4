//! Source-specific routing (RFC 4607): two senders on one group, only the configured one relayed.

use crate::netns::*;

#[test]
fn source_specific_relays_only_the_named_sender() {
    let t = Topology::new(1);
    // a second sender address on the same link
    t.sender.ip(&["addr", "add", "10.1.0.3/24", "dev", "eth0"]);
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
        source = "10.1.0.2"
        to = ["rx0"]
        "#,
    );
    let rx = Receiver::start(&t.rx[0], &["-i", "eth0", "--group", "239.1.1.1:5000"]);
    let wanted = t.sender.spawn(&[
        TRAFFIC,
        "send",
        "--json",
        "-i",
        "eth0",
        "--bind",
        "10.1.0.2",
        "--to",
        "239.1.1.1:5000",
        "--first-stream",
        "1",
        "--rate",
        "2000",
        "--duration",
        "2s",
    ]);
    let other = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--bind",
            "10.1.0.3",
            "--to",
            "239.1.1.1:5000",
            "--first-stream",
            "2",
            "--rate",
            "2000",
            "--duration",
            "2s",
        ],
    );
    let wanted = wanted.wait(std::time::Duration::from_secs(30));
    let wanted: SendReport = serde_json::from_str(&wanted.stdout).expect("send report");
    let r = rx.finish();
    relay.stop();
    assert!(other.stream(2) > 0);
    r.assert_complete("239.1.1.1:5000", 1, wanted.stream(1));
    assert!(
        r.get("239.1.1.1:5000", 2).is_none(),
        "the other sender's stream was relayed:\n{}",
        r.raw
    );
    r.assert_no_unexpected();
}
