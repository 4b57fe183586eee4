//! Stopping never depends on a file or a peer (issue 13): SIGTERM ends the daemon within a
//! second (and with status 0, [`Relay::stop`] asserts both) in every state: its control
//! socket's file removed, a client connected and silent, its interfaces deleted, a reload in
//! flight. Before, with the socket file gone, the control thread stayed blocked in `accept` and
//! the daemon ran on for ever after logging "stopping".

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::netns::*;

fn relay(t: &Topology) -> Relay {
    t.start_relay(Config::rx0().route("239.1.1.1:5000"))
}

#[test]
fn stop_with_the_control_socket_file_removed() {
    let t = Topology::new(1);
    let relay = relay(&t);
    std::fs::remove_file(relay.control_socket()).expect("remove the control socket's file");
    let log = relay.stop();
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn stop_with_a_silent_client_connected_and_the_socket_file_removed() {
    let t = Topology::new(1);
    let relay = relay(&t);
    // A client that connects and never sends a request (the server waits up to 10 s for one).
    let mut silent = UnixStream::connect(relay.control_socket()).expect("connect");
    std::fs::remove_file(relay.control_socket()).expect("remove the control socket's file");
    let log = relay.stop();
    assert!(log.contains("stopped"), "{log}");
    // The server hung up on it.
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn stop_after_its_interfaces_were_deleted() {
    let t = Topology::new(1);
    let relay = relay(&t);
    t.relay.ip(&["link", "del", "in0"]);
    t.relay.ip(&["link", "del", "out0"]);
    std::thread::sleep(Duration::from_millis(300));
    relay.stop();
}

#[test]
fn stop_during_a_reload() {
    let t = Topology::new(1);
    let mut relay = relay(&t);
    let text = std::fs::read_to_string(relay.config_path()).unwrap();
    let more: String = (2..200)
        .map(|g| {
            format!(
                "\n[[groups]]\ninterface = \"in0\"\ngroup = \"239.1.2.{}\"\nport = 5000\nto = [\"rx0\"]\n",
                g % 250
            )
        })
        .collect();
    std::fs::write(relay.config_path(), text + &more).unwrap();
    relay.proc().signal("HUP");
    let log = relay.stop();
    assert!(!log.contains("panicked"), "{log}");
}
