//! One group relayed to one destination: the basic promise.

use crate::netns::*;

#[test]
fn one_group_one_destination_delivers_every_byte() {
    let t = Topology::new(1);
    let relay = t.start_relay(Config::rx0().route("239.1.1.1:5000"));
    assert_joined(&t.relay, "in0", "239.1.1.1");
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    let sent = t.send(
        &["239.1.1.1:5000"],
        &["--rate", "5000", "--duration", "3s", "--size", "1316"],
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

/// Ctrl-C (SIGINT) stops the relay like SIGTERM: exit 0 within a second, groups left.
#[test]
fn sigint_stops_cleanly_and_leaves_the_groups() {
    let t = Topology::new(1);
    let relay = t.start_relay(
        Config::rx0()
            .route("239.1.1.1:5000")
            .route("[ff3e::1:1]:5000"),
    );
    assert_joined(&t.relay, "in0", "239.1.1.1");
    assert_joined(&t.relay, "in0", "ff3e::1:1");
    // stopped while traffic flows
    let sender = t.start_send(
        &["239.1.1.1:5000", "[ff3e::1:1]:5000"],
        &["--rate", "5000", "--duration", "3s"],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    relay.stop_with("INT");
    drop(sender);
    let left: Vec<_> = memberships(&t.relay)
        .into_iter()
        .filter(|(d, g)| d == "in0" && ["239.1.1.1", "ff3e::1:1"].contains(&g.to_string().as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "groups still joined after SIGINT: {left:?}"
    );
}
