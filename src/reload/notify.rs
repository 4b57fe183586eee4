//! sd_notify(3) without a crate: one datagram per message to `$NOTIFY_SOCKET`.
//!
//! The unit runs `Type=notify` (Debian 12's systemd 252 lacks `notify-reload`): `READY=1` once
//! the workers run, then `RELOADING=1` with `MONOTONIC_USEC=` before a new table is published and
//! `READY=1` after, with `STATUS=` saying which generation runs. When `NOTIFY_SOCKET` is unset
//! (not under systemd) every call does nothing. Failures are logged at debug level and ignored:
//! notification must never stop the relay.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    /// Linux abstract socket (`@name` in the variable).
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`, disabled when unset or empty.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::to(v.into()),
            _ => Notifier::disabled(),
        }
    }

    /// To the socket named like `$NOTIFY_SOCKET` would name it (`@` = abstract namespace).
    pub fn to(socket: PathBuf) -> Notifier {
        use std::os::unix::ffi::OsStrExt;
        let bytes = socket.as_os_str().as_bytes();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => Target::Abstract(name.to_vec()),
            None => Target::Path(socket),
        };
        Notifier {
            target: Some(target),
        }
    }

    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// `READY=1`.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `RELOADING=1` with the monotonic timestamp systemd asks for.
    pub fn reloading(&self) {
        match monotonic_usec() {
            Some(us) => self.send(&format!("RELOADING=1\nMONOTONIC_USEC={us}")),
            None => self.send("RELOADING=1"),
        }
    }

    /// `STATUS=text` (one line).
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Sends one raw message; best effort.
    pub fn send(&self, msg: &str) {
        let Some(target) = &self.target else {
            return;
        };
        // Non-blocking: a supervisor that does not read its socket must never stall a reload.
        let result = UnixDatagram::unbound().and_then(|s| {
            s.set_nonblocking(true)?;
            Ok(s)
        });
        let result = result.and_then(|s| match target {
            Target::Path(p) => s.send_to(msg.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(msg.as_bytes(), &addr)
            }
        });
        if let Err(e) = result {
            tracing::debug!("sd_notify {msg:?}: {e}");
        }
    }
}

fn monotonic_usec() -> Option<u64> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs * 1_000_000 + nanos / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let path = std::env::temp_dir().join(format!("mcrelay-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.clone());
        n.reloading();
        n.ready();
        n.status("running generation 2");
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = rx.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert!(
            got[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{got:?}"
        );
        let us: u64 = got[0].rsplit('=').next().unwrap().parse().unwrap();
        assert!(us > 0);
        assert_eq!(got[1], "READY=1");
        assert_eq!(got[2], "STATUS=running generation 2");
        std::fs::remove_file(&path).unwrap();
    }

    /// Regression: a notify socket nobody reads filled up and blocked the reload thread.
    #[test]
    fn a_full_notify_socket_never_blocks() {
        let path =
            std::env::temp_dir().join(format!("mcrelay-notify-full-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let _rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.clone());
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            n.ready();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn abstract_names_are_recognised_and_disabled_is_silent() {
        let n = Notifier::to(PathBuf::from("@mcrelay-test-nowhere"));
        assert!(matches!(n.target, Some(Target::Abstract(ref v)) if v == b"mcrelay-test-nowhere"));
        n.ready(); // nobody listens: logged, not fatal
        Notifier::disabled().ready();
    }
}
