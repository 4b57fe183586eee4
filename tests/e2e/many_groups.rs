//! More groups than one socket may join (`igmp_max_memberships` = 20): every one is joined and
//! relayed.

use std::fmt::Write;

use crate::netns::*;

const GROUPS: u32 = 60;

#[test]
fn sixty_groups_are_all_joined_and_relayed() {
    let t = Topology::new(1);
    let mut cfg = String::from(
        "[interfaces.in0]\n[interfaces.out0]\n[destinations.rx0]\ninterface = \"out0\"\n",
    );
    for i in 0..GROUPS {
        write!(
            cfg,
            "[[groups]]\ninterface = \"in0\"\ngroup = \"239.1.0.{}\"\nport = 5000\nto = [\"rx0\"]\n",
            i + 1
        )
        .unwrap();
    }
    let relay = Relay::start(&t.relay, &cfg);
    for i in 0..GROUPS {
        assert_joined(&t.relay, "in0", &format!("239.1.0.{}", i + 1));
    }
    let n = GROUPS.to_string();
    let rx = Receiver::start(
        &t.rx[0],
        &["-i", "eth0", "--group", "239.1.0.1:5000", "--groups", &n],
    );
    let sent = send(
        &t.sender,
        &[
            "-i",
            "eth0",
            "--to",
            "239.1.0.1:5000",
            "--streams",
            &n,
            "--rate",
            "6000",
            "--duration",
            "2s",
        ],
    );
    let r = rx.finish();
    relay.stop();
    for i in 0..GROUPS {
        r.assert_complete(
            &format!("239.1.0.{}:5000", i + 1),
            i as u16,
            sent.stream(i as u16),
        );
    }
    r.assert_no_unexpected();
    // and the memberships are gone with the relay
    let left: Vec<_> = memberships(&t.relay)
        .into_iter()
        .filter(|(d, g)| d == "in0" && g.to_string().starts_with("239.1.0."))
        .collect();
    assert!(
        left.is_empty(),
        "memberships left after the relay stopped: {left:?}"
    );
}
