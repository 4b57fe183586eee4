//! Large datagrams: the biggest payload a 1500-byte MTU carries, and jumbo frames (MTU 9000).

use crate::netns::*;

fn relay_one_group(t: &Topology) -> Relay {
    Relay::start(
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

        [[groups]]
        interface = "in0"
        group = "ff3e::1:1"
        port = 5000
        to = ["rx0"]
        "#,
    )
}

fn run(t: &Topology, size4: &str, size6: &str) {
    let relay = relay_one_group(t);
    let rx = Receiver::start(
        &t.rx[0],
        &[
            "-i",
            "eth0",
            "--group",
            "239.1.1.1:5000",
            "--group",
            "[ff3e::1:1]:5000",
        ],
    );
    let s4 = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.1.1:5000",
            "--rate",
            "2000",
            "--count",
            "2000",
            "--size",
            size4,
        ],
    );
    let s6 = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "[ff3e::1:1]:5000",
            "--first-stream",
            "1",
            "--rate",
            "2000",
            "--count",
            "2000",
            "--size",
            size6,
        ],
    );
    let r = rx.finish();
    relay.stop();
    r.assert_complete("239.1.1.1:5000", 0, s4.stream(0));
    r.assert_complete("[ff3e::1:1]:5000", 1, s6.stream(1));
    r.assert_no_unexpected();
}

#[test]
fn largest_payload_at_mtu_1500() {
    let t = Topology::new(1);
    run(&t, "1472", "1452");
}

#[test]
fn jumbo_frames_at_mtu_9000() {
    let t = Topology::new(1);
    for (ns, ifname) in [
        (&t.sender, "eth0"),
        (&t.relay, "in0"),
        (&t.relay, "out0"),
        (&t.rx[0], "eth0"),
    ] {
        ns.ip(&["link", "set", ifname, "mtu", "9000"]);
    }
    run(&t, "8972", "8952");
}
