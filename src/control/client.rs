//! The client side of the control socket, for `mcrelay reload`, `status` and `stats` (the
//! commands themselves are in `cli.rs`).
//!
//! The socket is the one given with `--socket`, else `daemon.control_socket` read from the
//! configuration file with a lenient parse (so that `mcrelay reload` still finds the daemon when
//! the file has just been broken: only TOML syntax is needed), else the default. A file that is
//! not even TOML cannot name a socket: the client then prints the file's errors and stops (exit
//! 78) rather than asking the default socket and reporting a running daemon as not running.
//! Exit codes: 69 when no daemon answers (socket missing or connection refused), 77 when the
//! socket's permissions refuse us, 78 when a reload is rejected or the file cannot name the
//! socket, 66 when the daemon cannot read its file.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::protocol::{ErrorCode, Request, Response, request_line};
use crate::exit;

/// Why a request failed, with the exit code to use.
#[derive(Debug)]
pub struct ClientError {
    pub code: i32,
    pub message: String,
}

/// Where the daemon listens, per the arguments. The default socket when the configuration file
/// cannot be read (the daemon reports that itself) or names none; an error (exit 78) listing
/// the file's errors when it is not TOML, so that it cannot say which socket.
pub fn socket_path(socket: Option<&Path>, config: &Path) -> Result<PathBuf, ClientError> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    let default = || PathBuf::from(crate::DEFAULT_CONTROL_SOCKET);
    let Ok(bytes) = std::fs::read(config) else {
        return Ok(default());
    };
    let text = String::from_utf8(bytes).ok();
    match text.as_deref().map(control_socket_in) {
        Some(Ok(socket)) => Ok(socket.unwrap_or_else(default)),
        Some(Err(_)) | None => Err(unnamed_socket(config)),
    }
}

/// `daemon.control_socket` from configuration text, even when the rest of the file is invalid
/// as long as it is TOML; `Err` when the text is not TOML.
pub fn control_socket_in(text: &str) -> Result<Option<PathBuf>, toml::de::Error> {
    let value: toml::Table = toml::from_str(text)?;
    Ok(value
        .get("daemon")
        .and_then(|d| d.get("control_socket"))
        .and_then(|s| s.as_str())
        .map(PathBuf::from))
}

/// The error for a configuration file that is not TOML: its errors as `mcrelay check` prints
/// them (`path:line:col`, the line, a caret), then what that means for finding the daemon.
fn unnamed_socket(config: &std::path::Path) -> ClientError {
    let errors = match crate::config::load(config, &crate::config::SystemResolver) {
        Err(crate::config::LoadError::Invalid(errors)) => errors,
        // Read again and now valid (saved in between) or unreadable: nothing to list.
        _ => Vec::new(),
    };
    ClientError {
        code: exit::CONFIG,
        message: format!(
            "{}cannot read daemon.control_socket from {}: the file has errors (see `mcrelay check -c {}`), so the daemon's control socket is unknown; fix the file, or name the socket with --socket PATH",
            crate::config::render_errors(&errors),
            config.display(),
            config.display()
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_from_config_even_when_the_rest_is_invalid() {
        let text = "[daemon]\ncontrol_socket = \"/tmp/x.sock\"\nbogus_key = 3\n[[groups]]\n";
        assert_eq!(
            control_socket_in(text).unwrap(),
            Some(PathBuf::from("/tmp/x.sock"))
        );
        assert_eq!(control_socket_in("[daemon]\n").unwrap(), None);
        assert!(control_socket_in("not toml [").is_err());
    }

    /// Regression: a file that is not TOML made every client ask the default socket and say
    /// "mcrelay is not running" about a daemon that runs on the socket the file names.
    #[test]
    fn a_file_that_is_not_toml_is_reported_with_its_errors_not_as_a_stopped_daemon() {
        let dir = std::env::temp_dir().join(format!("mcrelay-client-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("mcrelay.toml");
        let args = |config: &Path| config.to_path_buf();
        std::fs::write(
            &config,
            "[daemon]\ncontrol_socket = \"/tmp/x.sock\"\n[[groups]\n",
        )
        .unwrap();
        let e = socket_path(None, &args(&config)).unwrap_err();
        assert_eq!(e.code, exit::CONFIG);
        let location = format!("{}:3:", config.display());
        assert!(e.message.contains(&location), "{}", e.message);
        assert!(e.message.contains("control_socket"), "{}", e.message);
        assert!(!e.message.contains("not running"), "{}", e.message);
        // Not UTF-8: not TOML either.
        std::fs::write(&config, b"[daemon]\ncontrol_socket = \"\xff\"\n").unwrap();
        assert_eq!(
            socket_path(None, &args(&config)).unwrap_err().code,
            exit::CONFIG
        );
        // Valid TOML naming no socket, and a missing file: the default.
        std::fs::write(&config, "[daemon]\n").unwrap();
        let default = PathBuf::from(crate::DEFAULT_CONTROL_SOCKET);
        assert_eq!(socket_path(None, &args(&config)).unwrap(), default);
        assert_eq!(
            socket_path(None, &args(&dir.join("none.toml"))).unwrap(),
            default
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
