//! Why mcrelay exists: a source the relay cannot route back to, behind strict rp_filter. The
//! kernel drops its packets before any socket sees them; mcrelay (AF_PACKET) relays them all.

use crate::netns::*;

#[test]
fn unroutable_source_is_relayed_while_a_joined_socket_gets_nothing() {
    let t = Topology::new(1);
    t.sender
        .ip(&["addr", "add", "192.0.2.10/32", "dev", "eth0"]);
    t.relay.sysctl("net.ipv4.conf.all.rp_filter", "1");
    t.relay.rp_filter("in0", 1);
    // the premise: the relay has no route back to the source
    let route = std::process::Command::new("ip")
        .args(["-n", t.relay.name(), "route", "get", "192.0.2.10"])
        .output()
        .expect("ip route get");
    assert!(
        !route.status.success(),
        "the relay can route to 192.0.2.10: {}",
        String::from_utf8_lossy(&route.stdout)
    );
    let relay = t.start_relay(Config::rx0().route("239.1.1.1:5000"));
    // an ordinary application on the relay host, joined to the same group on the ingress
    let plain = Receiver::listen(&t.relay, "in0", &["239.1.1.1:5000"], &[]);
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    let sent = t.send(
        &["239.1.1.1:5000"],
        &["--bind", "192.0.2.10", "--rate", "3000", "--duration", "2s"],
    );
    let r = rx.finish();
    let p = plain.stop();
    relay.stop();
    r.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    p.assert_nothing("239.1.1.1:5000");
    // and the kernel did see them, and dropped them for the reverse path
    let rp_drops = netstat(&t.relay, "TcpExt", "IPReversePathFilter");
    assert!(
        rp_drops >= sent.stream(0),
        "the kernel counted {rp_drops} reverse-path drops of {} packets: the premise failed",
        sent.stream(0)
    );
}
