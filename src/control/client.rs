//! CLI clients of the control socket: `mcrelay reload`, `status`, `stats`.
//!
//! The socket is the one given with `--socket`, else `daemon.control_socket` read from the
//! configuration file with a lenient parse (so that `mcrelay reload` still finds the daemon when
//! the file has just been broken), else the default. Exit codes: 69 when no daemon answers
//! (socket missing or connection refused), 77 when the socket's permissions refuse us, 78 when a
//! reload is rejected, 66 when the daemon cannot read its file.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{ClientArgs, StatsArgs, StatusArgs};
use crate::control::protocol::{ErrorCode, Request, Response, request_line};
use crate::control::render;
use crate::exit;
use crate::reload::ReloadResult;

/// Why a request failed, with the exit code to use.
#[derive(Debug)]
pub struct ClientError {
    pub code: i32,
    pub message: String,
}

/// Where the daemon listens, per the arguments.
pub fn socket_path(args: &ClientArgs) -> PathBuf {
    if let Some(s) = &args.socket {
        return s.clone();
    }
    std::fs::read_to_string(&args.config)
        .ok()
        .and_then(|text| control_socket_in(&text))
        .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_CONTROL_SOCKET))
}

/// `daemon.control_socket` from configuration text, even when the rest of the file is invalid
/// as long as it is TOML.
pub fn control_socket_in(text: &str) -> Option<PathBuf> {
    let value: toml::Table = toml::from_str(text).ok()?;
    let s = value.get("daemon")?.get("control_socket")?.as_str()?;
    Some(PathBuf::from(s))
}

/// Sends one request and reads one response.
pub fn request(
    path: &std::path::Path,
    req: Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(path).map_err(|e| connect_error(path, e))?;
    let io = |e: std::io::Error| ClientError {
        code: exit::UNAVAILABLE,
        message: format!("the daemon at {} did not answer: {e}", path.display()),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    if let Err(e) = stream.write_all(request_line(req).as_bytes()) {
        // A busy daemon answers and closes before reading: its answer is still there to read.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(io(e));
        }
    }
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(io)?;
    if line.is_empty() {
        return Err(ClientError {
            code: exit::UNAVAILABLE,
            message: format!("the daemon at {} closed the connection", path.display()),
        });
    }
    let resp: Response = serde_json::from_str(&line).map_err(|e| ClientError {
        code: exit::SOFTWARE,
        message: format!(
            "cannot decode the daemon's answer: {e} (is it another version of mcrelay?)"
        ),
    })?;
    match &resp.error {
        Some(err) => Err(ClientError {
            code: if err.code == ErrorCode::Busy {
                exit::UNAVAILABLE
            } else {
                exit::SOFTWARE
            },
            message: format!("the daemon refused the request: {}", err.message),
        }),
        None => Ok(resp),
    }
}

fn connect_error(path: &std::path::Path, e: std::io::Error) -> ClientError {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | ConnectionRefused => ClientError {
            code: exit::UNAVAILABLE,
            message: format!(
                "mcrelay is not running: nothing answers on {} ({e}); start it (systemctl start mcrelay) or name its socket with --socket",
                path.display()
            ),
        },
        PermissionDenied => ClientError {
            code: exit::NOPERM,
            message: format!(
                "permission denied on {}: run as root or as a member of the socket's group (daemon.control_group)",
                path.display()
            ),
        },
        _ => ClientError {
            code: exit::UNAVAILABLE,
            message: format!("cannot connect to {}: {e}", path.display()),
        },
    }
}

fn fail(e: ClientError) -> i32 {
    eprintln!("mcrelay: {}", e.message);
    e.code
}

pub fn cmd_reload(args: ClientArgs) -> i32 {
    let path = socket_path(&args);
    let resp = match request(&path, Request::Reload, Duration::from_secs(120)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let Some(outcome) = resp.reload else {
        return fail(ClientError {
            code: exit::SOFTWARE,
            message: "the daemon answered without a reload outcome".into(),
        });
    };
    let text = render::reload(&outcome);
    match outcome.result {
        ReloadResult::Applied | ReloadResult::Unchanged => {
            print!("{text}");
            if outcome.acknowledged {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        ReloadResult::Rejected => {
            eprint!("{text}");
            exit::CONFIG
        }
        ReloadResult::Unreadable => {
            eprint!("{text}");
            exit::NOINPUT
        }
    }
}

pub fn cmd_status(args: StatusArgs) -> i32 {
    let path = socket_path(&args.client);
    match request(&path, Request::Status, Duration::from_secs(10)) {
        Ok(Response {
            status: Some(s), ..
        }) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            } else {
                print!("{}", render::status(&s));
            }
            exit::OK
        }
        Ok(_) => fail(ClientError {
            code: exit::SOFTWARE,
            message: "the daemon answered without a status".into(),
        }),
        Err(e) => fail(e),
    }
}

pub fn cmd_stats(args: StatsArgs) -> i32 {
    let path = socket_path(&args.client);
    loop {
        let report = match request(&path, Request::Stats, Duration::from_secs(10)) {
            Ok(Response { stats: Some(s), .. }) => s,
            Ok(_) => {
                return fail(ClientError {
                    code: exit::SOFTWARE,
                    message: "the daemon answered without statistics".into(),
                });
            }
            Err(e) => return fail(e),
        };
        let mut out = std::io::stdout().lock();
        let written = match (args.json, args.watch.is_some()) {
            (true, true) => writeln!(
                out,
                "{}",
                serde_json::to_string(&report).unwrap_or_default()
            ),
            (true, false) => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            ),
            // Home, clear, then the table: refreshes in place like top(1).
            (false, true) => write!(out, "\x1b[H\x1b[2J{}", render::stats(&report)),
            (false, false) => write!(out, "{}", render::stats(&report)),
        };
        if written.and_then(|_| out.flush()).is_err() {
            return exit::OK; // stdout closed (e.g. piped into head)
        }
        drop(out);
        match args.watch {
            Some(interval) => std::thread::sleep(interval.max(Duration::from_millis(100))),
            None => return exit::OK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_from_config_even_when_the_rest_is_invalid() {
        let text = "[daemon]\ncontrol_socket = \"/tmp/x.sock\"\nbogus_key = 3\n[[groups]]\n";
        assert_eq!(control_socket_in(text), Some(PathBuf::from("/tmp/x.sock")));
        assert_eq!(control_socket_in("[daemon]\n"), None);
        assert_eq!(control_socket_in("not toml ["), None);
    }

    #[test]
    fn missing_socket_is_69_and_refused_is_69() {
        let dir = std::env::temp_dir().join(format!("mcrelay-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("none.sock");
        let e = request(&missing, Request::Status, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.code, exit::UNAVAILABLE);
        assert!(e.message.contains("not running"), "{}", e.message);
        let stale = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let e = request(&stale, Request::Status, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.code, exit::UNAVAILABLE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
