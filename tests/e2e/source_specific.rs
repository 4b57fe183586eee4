//! Source-specific routing (RFC 4607): two senders on one group, only the configured one relayed.

use crate::netns::*;

#[test]
fn source_specific_relays_only_the_named_sender() {
    let t = Topology::new(1);
    // a second sender address on the same link
    t.sender.ip(&["addr", "add", "10.1.0.3/24", "dev", "eth0"]);
    let relay = t.start_relay(Config::rx0().route("239.1.1.1:5000").source("10.1.0.2"));
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    let paced = ["--rate", "2000", "--duration", "2s"];
    let from = |source, first| [&["--bind", source, "--first-stream", first][..], &paced].concat();
    let wanted = t.start_send(&["239.1.1.1:5000"], &from("10.1.0.2", "1"));
    let other = t.send(&["239.1.1.1:5000"], &from("10.1.0.3", "2"));
    let wanted = wanted.wait(std::time::Duration::from_secs(30));
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
