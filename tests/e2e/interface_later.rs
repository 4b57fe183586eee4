//! An ingress interface that does not exist when the relay starts, or goes down and up again:
//! the relay waits for it and relays once it is there.

use std::time::Duration;

use crate::netns::*;

fn config() -> Config {
    Config::rx0().route("239.1.1.1:5000")
}

fn traffic(t: &Topology, first_stream: &str) -> (RecvReport, u64) {
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    let sent = t.send(
        &["239.1.1.1:5000"],
        &[
            "--first-stream",
            first_stream,
            "--rate",
            "2000",
            "--count",
            "3000",
        ],
    );
    (rx.finish(), sent.sent)
}

#[test]
fn ingress_interface_created_after_start() {
    // relay and receiver first; the sender's link (the relay's in0) comes later
    let t = Topology::builder().ingress(0).build();
    let relay = t.start_relay(config());
    t.link_ingress(0);
    // give the relay a moment to notice the interface, then expect everything
    wait_until(Duration::from_secs(5), || {
        memberships(&t.relay)
            .iter()
            .any(|(d, g)| d == "in0" && g.to_string() == "239.1.1.1")
    })
    .unwrap_or_else(|()| {
        panic!(
            "the relay never joined on in0 once it appeared:\n{}",
            relay.log()
        )
    });
    let (r, n) = traffic(&t, "0");
    relay.stop();
    r.assert_complete("239.1.1.1:5000", 0, n);
}

#[test]
fn ingress_interface_down_and_up_again() {
    let t = Topology::new(1);
    let relay = t.start_relay(config());
    let (r, n) = traffic(&t, "0");
    r.assert_complete("239.1.1.1:5000", 0, n);
    t.relay.ip(&["link", "set", "in0", "down"]);
    std::thread::sleep(Duration::from_millis(500));
    t.relay.ip(&["link", "set", "in0", "up"]);
    wait_until(Duration::from_secs(5), || {
        t.relay
            .exec(&["cat", "/sys/class/net/in0/operstate"])
            .trim()
            == "up"
    })
    .expect("in0 up again");
    // the relay retries on its own schedule: probe until something gets through again
    let mut probes = 0;
    wait_until(Duration::from_secs(10), || {
        probes += 1;
        let rx = t.receive_with(
            0,
            &["239.1.1.1:5000"],
            &["--idle", "300ms", "--duration", "2s"],
        );
        t.send(
            &["239.1.1.1:5000"],
            &["--first-stream", "99", "--rate", "1000", "--count", "100"],
        );
        rx.finish().totals.received > 0
    })
    .unwrap_or_else(|()| panic!("nothing relayed after in0 came back:\n{}", relay.log()));
    let (r, n) = traffic(&t, "1");
    relay.stop();
    r.assert_complete("239.1.1.1:5000", 1, n);
}
