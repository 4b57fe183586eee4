//! Large datagrams: the biggest payload a 1500-byte MTU carries, and jumbo frames (MTU 9000).

use crate::netns::*;

fn run(t: &Topology, size4: &str, size6: &str) {
    let relay = t.start_relay(
        Config::rx0()
            .route("239.1.1.1:5000")
            .route("[ff3e::1:1]:5000"),
    );
    let rx = t.receive(0, &["239.1.1.1:5000", "[ff3e::1:1]:5000"]);
    let counted = ["--rate", "2000", "--count", "2000"];
    let s4 = t.send(
        &["239.1.1.1:5000"],
        &[&counted[..], &["--size", size4]].concat(),
    );
    let s6 = t.send(
        &["[ff3e::1:1]:5000"],
        &[&counted[..], &["--first-stream", "1", "--size", size6]].concat(),
    );
    let r = rx.finish();
    relay.stop();
    r.assert_complete("239.1.1.1:5000", 0, s4.stream(0));
    r.assert_complete("[ff3e::1:1]:5000", 1, s6.stream(1));
    r.assert_no_unexpected();
}

#[test]
fn largest_payload_at_mtu_1500() {
    run(&Topology::new(1), "1472", "1452");
}

#[test]
fn jumbo_frames_at_mtu_9000() {
    run(&Topology::builder().mtu(9000).build(), "8972", "8952");
}
