//! The control socket server: a Unix stream socket, one thread per client (bounded), one JSON
//! request per line.
//!
//! Access control is the socket file's mode (0660) and group (`daemon.control_group`); the peer's
//! uid and pid (SO_PEERCRED) are logged with each reload request. A client cannot hurt the
//! daemon: at most [`MAX_CLIENTS`] connections are served at once (others get a `busy` error and
//! are closed), a request line is capped at [`MAX_LINE`] bytes (longer → `too_large`, then the
//! connection is closed), a client silent for [`IDLE_TIMEOUT`] or not reading its answers for
//! [`WRITE_TIMEOUT`] is dropped, and nothing here runs on a worker thread, so traffic never waits
//! for the control side. A sampler thread keeps the previous snapshot of each worker (for rates)
//! and logs groups turning UP or DOWN, once per change.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::control::protocol::{ErrorCode, MAX_LINE, Request, Response, parse_request, too_large};
use crate::control::view::{self, Sampler, StatsReport, StatusReport};
use crate::reload::{ReloadThread, Reloader, Trigger, unix_seconds};
use crate::table::Table;

/// Connections served at once.
pub const MAX_CLIENTS: usize = 16;
/// A connection without a complete request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not read its answer for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the control side shares between the socket, the sampler and the metrics endpoint.
pub struct ControlState {
    started_at: SystemTime,
    reloader: Arc<Reloader>,
    /// Runs reloads at normal priority (see [`ReloadThread`]): SIGHUP's and the socket's.
    reloads: ReloadThread,
    sampler: Mutex<Sampler>,
    health: Mutex<view::HealthLog>,
    control_socket: PathBuf,
    metrics_listen: Option<String>,
}

impl ControlState {
    /// `stats_window` is the span rates are computed over (`daemon.stats_interval`).
    pub fn new(
        reloader: Arc<Reloader>,
        started_at: SystemTime,
        control_socket: PathBuf,
        metrics_listen: Option<String>,
        stats_window: Duration,
    ) -> std::io::Result<Arc<ControlState>> {
        let reloads = ReloadThread::spawn(reloader.clone())?;
        Ok(Arc::new(ControlState {
            started_at,
            reloads,
            reloader,
            sampler: Mutex::new(Sampler::new(stats_window)),
            health: Mutex::new(view::HealthLog::default()),
            control_socket,
            metrics_listen,
        }))
    }

    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// The reload thread, for SIGHUP.
    pub fn reloads(&self) -> &ReloadThread {
        &self.reloads
    }

    /// Takes the workers' latest snapshots into the sampler and calls `f` with the table and
    /// one sample per worker.
    fn sampled<R>(&self, f: impl FnOnce(&Table, &[view::Sample<'_>]) -> R) -> R {
        let table = self.reloader.dataplane().current();
        let snaps = self.reloader.dataplane().snapshots();
        let mut sampler = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        sampler.update(snaps);
        f(&table, &sampler.samples())
    }

    /// The stats report.
    pub fn stats(&self, now: SystemTime) -> StatsReport {
        self.sampled(|table, samples| {
            view::stats_report(table, samples, now, table.daemon.silence_timeout)
        })
    }

    pub fn status(&self, now: SystemTime) -> StatusReport {
        let (workers, totals) = self.sampled(|table, samples| {
            (
                view::worker_status(samples),
                view::totals(table, samples, now, table.daemon.silence_timeout),
            )
        });
        StatusReport {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: unix_seconds(self.started_at),
            uptime_seconds: now
                .duration_since(self.started_at)
                .unwrap_or_default()
                .as_secs_f64(),
            control_socket: self.control_socket.display().to_string(),
            metrics_listen: self.metrics_listen.clone(),
            config: self.reloader.status(),
            workers,
            totals,
        }
    }

    /// The Prometheus exposition.
    pub fn metrics(&self, now: SystemTime) -> String {
        let (stats, workers) = self.sampled(|table, samples| {
            let stats = view::stats_report(table, samples, now, table.daemon.silence_timeout);
            let workers: Vec<_> = samples
                .iter()
                .map(|s| {
                    (
                        s.cur.interface.clone(),
                        s.cur.index,
                        s.cur.state,
                        s.cur.generation,
                    )
                })
                .collect();
            (stats, workers)
        });
        crate::control::metrics::encode(
            &self.reloader.status(),
            &stats,
            unix_seconds(self.started_at),
            &workers,
        )
    }

    /// Answers one decoded request.
    pub fn handle(&self, request: Request) -> Response {
        match request {
            Request::Status => Response::status(self.status(SystemTime::now())),
            Request::Stats => Response::stats(self.stats(SystemTime::now())),
            Request::Reload => match self.reloads.reload(Trigger::Control) {
                Some(outcome) => Response::reload(outcome),
                None => Response::error(ErrorCode::Internal, "the reload thread has stopped"),
            },
        }
    }

    /// One sampler tick: refresh the snapshots and log groups that turned UP or DOWN. Cheap:
    /// no report is built.
    pub fn tick(&self, now: SystemTime) {
        let (changes, silence) = self.sampled(|table, samples| {
            let silence = table.daemon.silence_timeout;
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            (health.update(samples, now, silence), silence)
        });
        for t in changes {
            if t.up {
                tracing::info!("group {} is UP", t.group);
            } else {
                tracing::warn!(
                    "group {} is DOWN: no packet for more than {}s",
                    t.group,
                    silence.as_secs_f64()
                );
            }
        }
    }
}

/// Why the control socket could not be set up, with the exit code `mcrelay run` should use.
#[derive(Debug)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The running control socket and sampler; dropping it stops both and removes the socket.
pub struct ControlServer {
    stop: Arc<AtomicBool>,
    path: PathBuf,
    /// The listening socket (a second handle), shut down to wake the accept loop.
    listener: UnixListener,
    /// The connected clients (second handles), shut down to end their threads.
    clients: Arc<Clients>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop and every client thread by means the daemon owns: a shutdown of
        // their sockets, not a connection to the socket's path (which an operator or a tmp
        // cleaner may have removed, and then the stop would hang for ever).
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Both);
        self.clients.shutdown_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Only our own socket: a later daemon may have bound the path since.
        if self.path.exists() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Second handles of the connected clients' sockets, so that a stop can end their reads.
#[derive(Default)]
struct Clients {
    next: AtomicUsize,
    open: Mutex<Vec<(usize, UnixStream)>>,
}

impl Clients {
    fn add(&self, stream: &UnixStream) -> Option<usize> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let handle = stream.try_clone().ok()?;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, handle));
        Some(id)
    }

    fn remove(&self, id: usize) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }

    fn shutdown_all(&self) {
        for (_, s) in self.open.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Binds the control socket at `path` (mode 0660, group `group` when given) and starts serving
/// `state`, plus the sampler ticking every `tick`.
pub fn serve(
    state: Arc<ControlState>,
    path: &Path,
    group: Option<&str>,
    tick: Duration,
) -> Result<ControlServer, StartError> {
    let listener = bind(path, group)?;
    let waker = listener
        .try_clone()
        .map_err(|e| os_err(format!("cannot duplicate the control socket: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = Arc::new(Clients::default());
    let mut threads = Vec::new();
    {
        let (state, stop, clients) = (state.clone(), stop.clone(), clients.clone());
        threads.push(
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || {
                    super::yield_to_workers();
                    accept_loop(listener, state, stop, clients)
                })
                .map_err(|e| os_err(format!("cannot start the control thread: {e}")))?,
        );
    }
    {
        let (state, stop) = (state.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("stats-sampler".into())
                .spawn(move || {
                    super::yield_to_workers();
                    while !stop.load(Ordering::Relaxed) {
                        state.tick(SystemTime::now());
                        let mut slept = Duration::ZERO;
                        while slept < tick && !stop.load(Ordering::Relaxed) {
                            let step = Duration::from_millis(50).min(tick - slept);
                            std::thread::sleep(step);
                            slept += step;
                        }
                    }
                })
                .map_err(|e| os_err(format!("cannot start the sampler thread: {e}")))?,
        );
    }
    tracing::info!("control socket at {}", path.display());
    Ok(ControlServer {
        stop,
        path: path.to_path_buf(),
        listener: waker,
        clients,
        threads,
    })
}

fn os_err(message: String) -> StartError {
    StartError {
        code: crate::exit::OSERR,
        message,
    }
}

fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, StartError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| {
                os_err(format!(
                    "cannot create {} for the control socket: {e}",
                    dir.display()
                ))
            })?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(StartError {
                code: crate::exit::CONFIG,
                message: format!(
                    "{} exists and is not a socket; remove it or set daemon.control_socket to another path",
                    path.display()
                ),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(os_err(format!(
                "another mcrelay answers on {}; stop it, or give this one another daemon.control_socket",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| {
            os_err(format!(
                "cannot remove the stale control socket {}: {e}",
                path.display()
            ))
        })?;
    }
    let gid = match group {
        Some(g) => Some(lookup_group(g, "/etc/group").ok_or_else(|| StartError {
            code: crate::exit::CONFIG,
            message: format!(
                "daemon.control_group: no group {g:?} in /etc/group; create it (groupadd {g}) or use a numeric gid"
            ),
        })?),
        None => None,
    };
    let listener = UnixListener::bind(path).map_err(|e| {
        os_err(format!(
            "cannot create the control socket {}: {e}",
            path.display()
        ))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| os_err(format!("cannot set mode 0660 on {}: {e}", path.display())))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            os_err(format!(
                "cannot give {} to group {}: {e}",
                path.display(),
                group.unwrap_or_default()
            ))
        })?;
    }
    Ok(listener)
}

/// A group's gid: numeric, or looked up by name in a group(5) file.
pub fn lookup_group(name: &str, group_file: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let text = std::fs::read_to_string(group_file).ok()?;
    parse_group_file(&text, name)
}

fn parse_group_file(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

/// Refused connections waiting for their `busy` answer, at most.
const REFUSE_QUEUE: usize = 64;

/// Answers refused clients `busy`, one after the other. It first reads what the client sent
/// (for up to 100 ms): closing a Unix socket with unread data makes the client's read fail with
/// `ECONNRESET` instead of returning the refusal.
fn refuser(rx: Receiver<UnixStream>) {
    for mut stream in rx {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let mut sink = [0u8; 4096];
        let _ = stream.read(&mut sink);
        let r = Response::error(
            ErrorCode::Busy,
            format!("more than {MAX_CLIENTS} clients at once; try again"),
        );
        let _ = stream.write_all(r.to_line().as_bytes());
    }
}

fn accept_loop(
    listener: UnixListener,
    state: Arc<ControlState>,
    stop: Arc<AtomicBool>,
    clients: Arc<Clients>,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let (refuse, refused) = sync_channel::<UnixStream>(REFUSE_QUEUE);
    if let Err(e) = std::thread::Builder::new()
        .name("control-refuse".into())
        .spawn(move || refuser(refused))
    {
        tracing::warn!("cannot start the control refusal thread: {e}");
    }
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        if count.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            count.fetch_sub(1, Ordering::AcqRel);
            // Refused clients are answered by their own thread, so that one that is slow to
            // send its request never holds up the accept loop; past REFUSE_QUEUE waiting for
            // their answer, the connection is simply closed.
            if let Err(TrySendError::Full(_)) = refuse.try_send(stream) {
                tracing::debug!("control socket: refusal queue full, connection closed");
            }
            continue;
        }
        let guard = ClientGuard {
            count: count.clone(),
            id: clients.add(&stream),
            clients: clients.clone(),
        };
        let state = state.clone();
        let spawned = std::thread::Builder::new()
            .name("control-client".into())
            .spawn(move || {
                let _guard = guard;
                if let Err(e) = serve_client(&state, stream) {
                    tracing::debug!("control client: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a control client thread: {e}");
        }
    }
}

/// A client thread's place: counted against [`MAX_CLIENTS`] and registered for a stop.
struct ClientGuard {
    count: Arc<AtomicUsize>,
    id: Option<usize>,
    clients: Arc<Clients>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.clients.remove(id);
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connected client until it hangs up: the same code every accepted connection runs,
/// public so that the `control` fuzz target can drive it over a socket pair.
pub fn serve_connection(state: &ControlState, stream: UnixStream) -> std::io::Result<()> {
    serve_client(state, stream)
}

fn serve_client(state: &ControlState, mut stream: UnixStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let line = line[..line.len() - 1].trim_ascii();
            if line.is_empty() {
                continue;
            }
            let response = match parse_request(line) {
                Ok(req) => {
                    if req == Request::Reload {
                        tracing::info!("reload requested on the control socket{}", peer(&stream));
                    }
                    state.handle(req)
                }
                Err(err) => {
                    tracing::debug!("control request refused: {}", err.message);
                    Response::refusal(err)
                }
            };
            stream.write_all(response.to_line().as_bytes())?;
        }
        if pending.len() > MAX_LINE {
            stream.write_all(Response::refusal(too_large()).to_line().as_bytes())?;
            drain(&mut stream);
            return Ok(());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            // A last line without its newline still gets an answer.
            let line = pending.trim_ascii();
            if !line.is_empty() {
                let response = match parse_request(line) {
                    Ok(req) => state.handle(req),
                    Err(err) => Response::refusal(err),
                };
                stream.write_all(response.to_line().as_bytes())?;
            }
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Reads and discards what the client still sends (at most 16 MiB or 2 s), so that closing does
/// not reset the connection before it has read the refusal.
fn drain(stream: &mut UnixStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let started = std::time::Instant::now();
    let mut chunk = [0u8; 16 * 1024];
    let mut total = 0usize;
    while total < 16 << 20 && started.elapsed() < Duration::from_secs(2) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

fn peer(stream: &UnixStream) -> String {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(c) => format!(" by pid {} uid {}", c.pid.as_raw_nonzero(), c.uid.as_raw()),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::tests::{Fixture, fixture};
    use std::io::{BufRead, BufReader};

    #[test]
    fn control_threads_yield_to_workers() {
        let nice = std::thread::spawn(|| {
            crate::control::yield_to_workers();
            // A thread started from here inherits it.
            std::thread::spawn(|| {
                rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            })
            .join()
            .unwrap()
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(nice, 19);
    }

    #[test]
    fn group_file_lookup() {
        let text = "root:x:0:\nmcrelay:x:997:alice,bob\nbroken\n";
        assert_eq!(parse_group_file(text, "mcrelay"), Some(997));
        assert_eq!(parse_group_file(text, "root"), Some(0));
        assert_eq!(parse_group_file(text, "nobody"), None);
        assert_eq!(lookup_group("1234", "/nonexistent"), Some(1234));
    }

    fn ask(path: &Path, bytes: &[u8]) -> Vec<Response> {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A refused client may find the socket closed before it wrote: read the answer anyway.
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        BufReader::new(s)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn socket_answers_requests_and_refuses_garbage() {
        let f = fixture("server", "route 1\n");
        let sock = f.dir.join("run/control.sock");
        let _server = serve(
            test_state(&f, &sock),
            &sock,
            None,
            Duration::from_millis(100),
        )
        .unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);

        let r = ask(
            &sock,
            b"{\"version\":1,\"request\":\"status\"}\n{\"version\":1,\"request\":\"stats\"}\n",
        );
        assert_eq!(r.len(), 2);
        let status = r[0].status.as_ref().unwrap();
        assert_eq!(status.config.generation, 1);
        assert_eq!(status.pid, std::process::id());
        assert_eq!(r[1].stats.as_ref().unwrap().groups.len(), 1);

        let r = ask(&sock, b"garbage\n{\"version\":9,\"request\":\"stats\"}\n\n{\"version\":1,\"request\":\"nope\"}");
        let codes: Vec<_> = r.iter().map(|x| x.error.as_ref().unwrap().code).collect();
        assert_eq!(
            codes,
            vec![
                ErrorCode::Malformed,
                ErrorCode::UnsupportedVersion,
                ErrorCode::UnknownRequest
            ]
        );
        assert!(r.iter().all(|x| !x.ok && x.version == 1));

        let mut huge = vec![b'{'; MAX_LINE + 10];
        huge.push(b'\n');
        let r = ask(&sock, &huge);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].error.as_ref().unwrap().code, ErrorCode::TooLarge);

        // Still serving after all that, and reload goes through the reloader.
        std::fs::write(&f.path, "route 1\nroute 2\n").unwrap();
        let r = ask(&sock, b"{\"version\":1,\"request\":\"reload\"}\n");
        let o = r[0].reload.as_ref().unwrap();
        assert_eq!(o.result, crate::reload::ReloadResult::Applied);
        assert_eq!(o.generation, 2);
        // Regression: the publication (which may start workers) ran at the daemon's priority,
        // not at the control threads' nice 19.
        let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_eq!(*f.dp.publish_nice.lock().unwrap(), Some(own));
    }

    /// The control state of `f`'s reloader, for a socket at `sock`.
    fn test_state(f: &Fixture, sock: &Path) -> Arc<ControlState> {
        ControlState::new(
            f.reloader.clone(),
            SystemTime::now(),
            sock.to_path_buf(),
            None,
            Duration::from_secs(1),
        )
        .unwrap()
    }

    /// A server on `sock` with all its client slots taken by idle connections (returned).
    fn full_server(f: &Fixture, sock: &Path) -> (ControlServer, Vec<UnixStream>) {
        let server = serve(test_state(f, sock), sock, None, Duration::from_secs(1)).unwrap();
        let idle: Vec<_> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(sock).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        (server, idle)
    }

    #[test]
    fn clients_beyond_the_limit_are_told_busy() {
        let f = fixture("busy", "route 1\n");
        let sock = f.dir.join("c.sock");
        let (_server, idle) = full_server(&f, &sock);
        let r = ask(&sock, b"{\"version\":1,\"request\":\"status\"}\n");
        assert_eq!(r[0].error.as_ref().unwrap().code, ErrorCode::Busy);
        drop(idle);
        std::thread::sleep(Duration::from_millis(200));
        let r = ask(&sock, b"{\"version\":1,\"request\":\"status\"}\n");
        assert!(r[0].ok);
    }

    /// Refused clients that send nothing (each answered after a 100 ms read) do not hold up
    /// the accept loop: a client arriving behind twenty of them, once slots are free, is served
    /// at once (it used to wait 100 ms per refused client ahead of it: 1.5 s more here).
    #[test]
    fn silent_refused_clients_do_not_delay_the_next_one() {
        let f = fixture("silent", "route 1\n");
        let sock = f.dir.join("q.sock");
        let (_server, idle) = full_server(&f, &sock);
        let silent: Vec<_> = (0..20)
            .map(|_| UnixStream::connect(&sock).unwrap())
            .collect();
        // all twenty refused (their answers now take 100 ms each) before slots free up
        std::thread::sleep(Duration::from_millis(200));
        drop(idle);
        // the freed slots are noticed by their client threads (EOF) within a moment
        std::thread::sleep(Duration::from_millis(300));
        let t0 = std::time::Instant::now();
        let r = ask(&sock, b"{\"version\":1,\"request\":\"status\"}\n");
        let took = t0.elapsed();
        assert!(r[0].ok, "{:?}", r[0].error);
        assert!(took < Duration::from_millis(1000), "served after {took:?}");
        drop(silent);
    }

    #[test]
    fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
        let f = fixture("stale", "route 1\n");
        let sock = f.dir.join("s.sock");
        let stale = UnixListener::bind(&sock).unwrap();
        let state = ControlState::new(
            f.reloader.clone(),
            SystemTime::now(),
            sock.clone(),
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        let err = serve(state.clone(), &sock, None, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(err.message.contains("another mcrelay"), "{}", err.message);
        drop(stale);
        let _server = serve(state, &sock, None, Duration::from_secs(1)).unwrap();
        assert!(ask(&sock, b"{\"version\":1,\"request\":\"status\"}\n")[0].ok);
    }
}
