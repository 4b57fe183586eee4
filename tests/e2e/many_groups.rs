//! More groups than one socket may join (`igmp_max_memberships` = 20): every one is joined and
//! relayed.

use crate::netns::*;

const GROUPS: u32 = 60;

#[test]
fn sixty_groups_are_all_joined_and_relayed() {
    let t = Topology::new(1);
    let cfg = (0..GROUPS).fold(Config::rx0(), |c, i| {
        c.route(&format!("239.1.0.{}:5000", i + 1))
    });
    let relay = t.start_relay(cfg);
    for i in 0..GROUPS {
        assert_joined(&t.relay, "in0", &format!("239.1.0.{}", i + 1));
    }
    let n = GROUPS.to_string();
    let rx = t.receive_with(0, &["239.1.0.1:5000"], &["--groups", &n]);
    let sent = t.send(
        &["239.1.0.1:5000"],
        &["--streams", &n, "--rate", "6000", "--duration", "2s"],
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
