//! Hot reload: one function, three triggers (file watch, SIGHUP, `mcrelay reload`).
//!
//! Why one path: an operator must get the same result whichever way the reload was asked for.
//! [`Reloader::reload`] reads the whole file, skips it when its SHA-256 digest is the one already
//! running, compiles it all or nothing, and only if it is valid hands the new table to
//! [`Dataplane::publish`] (joins before the swap, one atomic store, leaves after, every worker
//! acknowledging the generation). An invalid file keeps the running table and every error is
//! logged with `path:line:col`; an unreadable, missing or empty file keeps it too. Every
//! outcome is kept for `mcrelay status` and the metrics, and a diff is logged per reload.
//!
//! Concurrent requests coalesce: a reload that *starts* after a request was made answers it, so
//! a storm of SIGHUPs or file events during one reload costs at most one more reload.

pub(crate) mod diff;
pub mod notify;
pub(crate) mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, sha256_hex};
use crate::stats::WorkerSnapshot;
use crate::table::{Generation, Table};

pub use diff::{TableDiff, diff};

/// What the reloader and the control socket need from the running relay: the daemon's data
/// plane (the daemon's `Daemon`) in production, a fake in tests. Owned here so that the
/// reload path depends on no implementation of it.
pub trait Dataplane: Send + Sync {
    /// The table the workers run.
    fn current(&self) -> Arc<Table>;
    /// Publishes `table` as the next generation and waits up to `timeout` for every worker.
    fn publish(&self, table: Table, timeout: Duration) -> PublishReport;
    /// Every worker's latest snapshot.
    fn snapshots(&self) -> Vec<WorkerSnapshot>;
}

/// What publishing a table did.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    pub generation: Generation,
    /// Interfaces whose workers were started / stopped by this publication.
    pub workers_started: Vec<String>,
    pub workers_stopped: Vec<String>,
    /// True when every worker acknowledged the generation before the timeout.
    pub acknowledged: bool,
}

/// Compiles configuration text read from a path: `config::compile` with the system resolver in
/// production.
pub type CompileFn = dyn Fn(&str, &Path) -> Result<Table, Vec<ConfigError>> + Send + Sync;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The file watcher saw the configuration change.
    File,
    /// SIGHUP.
    Signal,
    /// `mcrelay reload` through the control socket.
    Control,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Signal => "signal",
            Trigger::Control => "control",
        }
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// A new generation runs.
    Applied,
    /// Same content (or same compiled table) as the running one: nothing done.
    Unchanged,
    /// The file is invalid: the running table stays.
    Rejected,
    /// The file could not be read: the running table stays.
    Unreadable,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Rejected => "rejected",
            ReloadResult::Unreadable => "unreadable",
        }
    }

    /// The file was acceptable (applied or nothing to do).
    pub fn is_success(self) -> bool {
        matches!(self, ReloadResult::Applied | ReloadResult::Unchanged)
    }
}

/// Everything about one reload, kept for `status` and returned to `mcrelay reload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub trigger: Trigger,
    /// When the reload started, in seconds since the Unix epoch.
    pub at: f64,
    pub duration_seconds: f64,
    pub result: ReloadResult,
    /// Generation running after this reload.
    pub generation: u64,
    /// SHA-256 of the file read, hex; `None` when it could not be read.
    pub digest: Option<String>,
    /// Present when applied.
    pub diff: Option<TableDiff>,
    /// Every error, rendered `path:line:col: message` (with source line and caret when known).
    pub errors: Vec<String>,
    /// Every worker acknowledged the new generation in time (true when nothing was published).
    pub acknowledged: bool,
}

/// Counters of reloads by result, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadCounts {
    pub applied: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub unreadable: u64,
}

/// A consistent copy of the reloader's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub config: PathBuf,
    /// SHA-256 of the file the running table was compiled from, hex.
    pub digest: Option<String>,
    pub generation: u64,
    pub last: Option<ReloadOutcome>,
    /// The last reload was acceptable (true before the first reload).
    pub last_successful: bool,
    /// When the running table was last successfully loaded (start or reload), Unix seconds.
    pub last_success_at: f64,
    pub counts: ReloadCounts,
}

/// The one reload path.
pub struct Reloader {
    path: PathBuf,
    dataplane: Arc<dyn Dataplane>,
    compile: Box<CompileFn>,
    ack_timeout: Duration,
    notifier: notify::Notifier,
    state: Mutex<State>,
    done: Condvar,
}

struct State {
    /// Requests handed out; a reload covers every request made before it started.
    requested: u64,
    covered: u64,
    running: bool,
    digest: Option<String>,
    last: Option<ReloadOutcome>,
    last_success_at: SystemTime,
    counts: ReloadCounts,
}

impl Reloader {
    /// A reloader for the table the dataplane runs now, compiled from `path` whose content had
    /// the SHA-256 `digest` ([`crate::config::Loaded::digest`]: the bytes compiled, never a
    /// second read, which could pair a newer file with the older table).
    pub fn new(
        path: PathBuf,
        dataplane: Arc<dyn Dataplane>,
        compile: Box<CompileFn>,
        digest: String,
    ) -> Reloader {
        let digest = Some(digest);
        Reloader {
            path,
            dataplane,
            compile,
            ack_timeout: Duration::from_secs(5),
            notifier: notify::Notifier::from_env(),
            state: Mutex::new(State {
                requested: 0,
                covered: 0,
                running: false,
                digest,
                last: None,
                last_success_at: SystemTime::now(),
                counts: ReloadCounts::default(),
            }),
            done: Condvar::new(),
        }
    }

    /// Sends sd_notify messages through this notifier instead of `$NOTIFY_SOCKET`'s.
    pub fn with_notifier(mut self, notifier: notify::Notifier) -> Reloader {
        self.notifier = notifier;
        self
    }

    pub fn config_path(&self) -> &Path {
        &self.path
    }

    pub fn dataplane(&self) -> &Arc<dyn Dataplane> {
        &self.dataplane
    }

    pub fn notifier(&self) -> &notify::Notifier {
        &self.notifier
    }

    /// Reloads the configuration and returns what happened. Blocks until a reload that started
    /// after this call has finished (coalescing concurrent calls into it).
    pub fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.covered >= ticket
                && let Some(last) = &st.last
            {
                return last.clone();
            }
            if !st.running {
                st.running = true;
                let covers = st.requested;
                let digest = st.digest.clone();
                drop(st);
                let outcome = self.run(trigger, digest.as_deref());
                // The previous table (and the compile's scratch) is free now: return it.
                crate::sys::release_free_memory();
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                st.covered = covers;
                match outcome.result {
                    ReloadResult::Applied => {
                        st.counts.applied += 1;
                        st.digest = outcome.digest.clone();
                        st.last_success_at = SystemTime::now();
                    }
                    ReloadResult::Unchanged => {
                        st.counts.unchanged += 1;
                        st.digest = outcome.digest.clone();
                    }
                    ReloadResult::Rejected => st.counts.rejected += 1,
                    ReloadResult::Unreadable => st.counts.unreadable += 1,
                }
                st.last = Some(outcome.clone());
                self.done.notify_all();
                return outcome;
            }
            st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A consistent copy of the state, for status and metrics.
    pub fn status(&self) -> ReloadStatus {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        ReloadStatus {
            config: self.path.clone(),
            digest: st.digest.clone(),
            generation: self.dataplane.current().generation.0,
            last: st.last.clone(),
            last_successful: st.last.as_ref().is_none_or(|l| l.result.is_success()),
            last_success_at: unix_seconds(st.last_success_at),
            counts: st.counts,
        }
    }

    /// One reload, outside the lock.
    fn run(&self, trigger: Trigger, running_digest: Option<&str>) -> ReloadOutcome {
        let started = Instant::now();
        let at = SystemTime::now();
        let current = self.dataplane.current();
        let mut outcome = ReloadOutcome {
            trigger,
            at: unix_seconds(at),
            duration_seconds: 0.0,
            result: ReloadResult::Unchanged,
            generation: current.generation.0,
            digest: None,
            diff: None,
            errors: Vec::new(),
            acknowledged: true,
        };
        let finish = |mut o: ReloadOutcome| {
            o.duration_seconds = started.elapsed().as_secs_f64();
            o
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                outcome.result = ReloadResult::Unreadable;
                let msg = format!(
                    "{}: cannot read the configuration: {e}; keeping generation {}",
                    self.path.display(),
                    current.generation
                );
                tracing::error!(trigger = trigger.as_str(), "{msg}");
                outcome.errors.push(msg);
                return finish(outcome);
            }
        };
        let digest = sha256_hex(&bytes);
        outcome.digest = Some(digest.clone());
        if running_digest == Some(digest.as_str()) {
            tracing::debug!(
                trigger = trigger.as_str(),
                "configuration unchanged (same digest)"
            );
            return finish(outcome);
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return finish(self.reject(
                    outcome,
                    vec![format!(
                        "{}: the file is not UTF-8 (invalid byte at offset {})",
                        self.path.display(),
                        e.utf8_error().valid_up_to()
                    )],
                    &current,
                ));
            }
        };
        if text.trim().is_empty() {
            // A truncate-then-write caught in the middle, or an emptied file: never run an empty
            // table because of it.
            return finish(self.reject(
                outcome,
                vec![format!(
                    "{}: the file is empty; write a complete configuration",
                    self.path.display()
                )],
                &current,
            ));
        }
        let table = match (self.compile)(&text, &self.path) {
            Ok(t) => t,
            Err(errors) => {
                let errors = errors.iter().map(render_error).collect();
                return finish(self.reject(outcome, errors, &current));
            }
        };
        let next = Generation(current.generation.0 + 1);
        let table = table.with_generation(next);
        let mut d = diff(&current, &table);
        if table == current.as_ref().clone().with_generation(next) {
            tracing::info!(
                trigger = trigger.as_str(),
                "configuration saved without a change to the routing table; generation {} stays",
                current.generation
            );
            return finish(outcome);
        }
        self.notifier.reloading();
        self.notifier
            .status(&format!("reloading generation {next}"));
        let report = self.dataplane.publish(table, self.ack_timeout);
        d.to = report.generation.0;
        if !report.workers_started.is_empty() || !report.workers_stopped.is_empty() {
            d.workers_started = report.workers_started.clone();
            d.workers_stopped = report.workers_stopped.clone();
        }
        outcome.result = ReloadResult::Applied;
        outcome.generation = report.generation.0;
        outcome.acknowledged = report.acknowledged;
        let outcome = finish(ReloadOutcome {
            diff: Some(d.clone()),
            ..outcome
        });
        tracing::info!(
            trigger = trigger.as_str(),
            generation = report.generation.0,
            "reload applied in {:.1} ms: {}",
            outcome.duration_seconds * 1e3,
            d.summary()
        );
        d.log();
        if !report.acknowledged {
            tracing::warn!(
                "not every worker acknowledged generation {} within {:?}",
                report.generation,
                self.ack_timeout
            );
        }
        self.notifier.ready();
        self.notifier
            .status(&format!("running generation {}", report.generation));
        outcome
    }

    fn reject(
        &self,
        mut outcome: ReloadOutcome,
        errors: Vec<String>,
        current: &Table,
    ) -> ReloadOutcome {
        tracing::error!(
            trigger = outcome.trigger.as_str(),
            generation = current.generation.0,
            "configuration rejected ({} error{}); keeping generation {}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            current.generation
        );
        for e in &errors {
            tracing::error!("{}", e.lines().next().unwrap_or_default());
        }
        self.notifier.status(&format!(
            "configuration rejected, running generation {}",
            current.generation
        ));
        outcome.result = ReloadResult::Rejected;
        outcome.errors = errors;
        outcome
    }
}

/// The thread reloads run on, for every trigger but the file watch (which has its own): a
/// signal handler's [`request`](Self::request) must never block, and the control socket's
/// [`reload`](Self::reload) must not run the reload on its own thread, which runs at a low
/// priority (it yields to the workers) that workers started by the publication would inherit;
/// so the thread is started at the daemon's normal priority.
///
/// One slot: requests arriving while one is already pending are folded into it (it has not
/// started reading the file yet, so it covers them), so a storm of SIGHUPs costs one or two
/// reloads.
pub struct ReloadThread {
    tx: Option<std::sync::mpsc::SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A reload to run, and where to send its outcome (`None`: nobody waits).
struct Job {
    trigger: Trigger,
    reply: Option<std::sync::mpsc::Sender<ReloadOutcome>>,
}

impl ReloadThread {
    /// Starts the thread that runs reloads on `reloader`; call it from a thread at normal
    /// priority.
    pub fn spawn(reloader: Arc<Reloader>) -> std::io::Result<ReloadThread> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1);
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let outcome = reloader.reload(job.trigger);
                    if let Some(reply) = job.reply {
                        let _ = reply.send(outcome);
                    }
                }
            })?;
        Ok(ReloadThread {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Asks for a reload; never blocks. Returns false when one was already pending (this
    /// request is covered by it).
    pub fn request(&self, trigger: Trigger) -> bool {
        self.tx.as_ref().is_some_and(|tx| {
            tx.try_send(Job {
                trigger,
                reply: None,
            })
            .is_ok()
        })
    }

    /// [`Reloader::reload`] on the thread, waiting for its outcome; `None` when the thread
    /// has stopped.
    pub fn reload(&self, trigger: Trigger) -> Option<ReloadOutcome> {
        let (reply, outcome) = std::sync::mpsc::channel();
        self.tx
            .as_ref()?
            .send(Job {
                trigger,
                reply: Some(reply),
            })
            .ok()?;
        outcome.recv().ok()
    }
}

/// Finishes a reload in progress, then stops the thread.
impl Drop for ReloadThread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `path:line:col: message`, then the source line and a caret.
pub fn render_error(e: &ConfigError) -> String {
    e.to_string()
}

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::table::DaemonSettings;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A dataplane that records publications.
    pub(crate) struct FakeDataplane {
        pub table: Mutex<Arc<Table>>,
        pub publishes: AtomicUsize,
        pub delay: Duration,
        pub snapshots: Mutex<Vec<WorkerSnapshot>>,
        /// Nice value of the thread that last published (workers it starts inherit it).
        pub publish_nice: Mutex<Option<i32>>,
    }

    impl FakeDataplane {
        pub(crate) fn new(table: Table) -> Arc<FakeDataplane> {
            Arc::new(FakeDataplane {
                table: Mutex::new(Arc::new(table)),
                publishes: AtomicUsize::new(0),
                delay: Duration::ZERO,
                snapshots: Mutex::new(Vec::new()),
                publish_nice: Mutex::new(None),
            })
        }
    }

    impl Dataplane for FakeDataplane {
        fn current(&self) -> Arc<Table> {
            self.table.lock().unwrap().clone()
        }
        fn publish(&self, table: Table, _timeout: Duration) -> PublishReport {
            std::thread::sleep(self.delay);
            *self.publish_nice.lock().unwrap() =
                rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok();
            self.publishes.fetch_add(1, Ordering::SeqCst);
            let generation = table.generation;
            *self.table.lock().unwrap() = Arc::new(table);
            PublishReport {
                generation,
                acknowledged: true,
                ..PublishReport::default()
            }
        }
        fn snapshots(&self) -> Vec<WorkerSnapshot> {
            self.snapshots.lock().unwrap().clone()
        }
    }

    /// A toy compiler: each line `route N` adds route 239.1.1.N on `in0`; `error L C msg` fails.
    pub(crate) fn toy_compile(text: &str, path: &Path) -> Result<Table, Vec<ConfigError>> {
        let mut routes = Vec::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["route", n] => routes.push(diff::tests::route(0, n.parse().unwrap(), n, &[])),
                ["error", msg @ ..] => errors.push(ConfigError {
                    path: path.to_path_buf(),
                    line: i + 1,
                    col: 1,
                    message: msg.join(" "),
                    source_line: line.to_string(),
                    width: 5,
                    severity: crate::config::Severity::Error,
                }),
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(Table::new(
                DaemonSettings::default(),
                vec![crate::testkit::interface("in0")],
                vec![],
                routes,
            ))
        } else {
            Err(errors)
        }
    }

    pub(crate) struct Fixture {
        pub dir: PathBuf,
        pub path: PathBuf,
        pub dp: Arc<FakeDataplane>,
        pub reloader: Arc<Reloader>,
    }

    impl Fixture {
        /// Writes `text` to the fixture's file and reloads it, by `trigger`.
        pub(crate) fn write_and_reload(&self, text: &str, trigger: Trigger) -> ReloadOutcome {
            std::fs::write(&self.path, text).unwrap();
            self.reloader.reload(trigger)
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Polls `f` every 20 ms until it holds (true) or 5 s pass (false).
    pub(crate) fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub(crate) fn fixture(name: &str, text: &str) -> Fixture {
        fixture_with_delay(name, text, Duration::ZERO)
    }

    /// Like [`fixture`], with a data plane whose publications take `delay`.
    pub(crate) fn fixture_with_delay(name: &str, text: &str, delay: Duration) -> Fixture {
        let dir = std::env::temp_dir().join(format!("mcrelay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mcrelay.toml");
        std::fs::write(&path, text).unwrap();
        let table = toy_compile(text, &path)
            .unwrap()
            .with_generation(Generation(1));
        let dp = Arc::new(FakeDataplane {
            table: Mutex::new(Arc::new(table)),
            publishes: AtomicUsize::new(0),
            delay,
            snapshots: Mutex::new(Vec::new()),
            publish_nice: Mutex::new(None),
        });
        let reloader = Arc::new(
            Reloader::new(
                path.clone(),
                dp.clone(),
                Box::new(toy_compile),
                sha256_hex(&std::fs::read(&path).unwrap_or_default()),
            )
            .with_notifier(notify::Notifier::disabled()),
        );
        Fixture {
            dir,
            path,
            dp,
            reloader,
        }
    }

    #[test]
    fn same_content_is_a_no_op() {
        let f = fixture("noop", "route 1\n");
        let o = f.reloader.reload(Trigger::Signal);
        assert_eq!(o.result, ReloadResult::Unchanged);
        assert_eq!(f.dp.publishes.load(Ordering::SeqCst), 0);
        assert_eq!(o.generation, 1);
    }

    #[test]
    fn valid_change_is_published_with_a_diff() {
        let f = fixture("apply", "route 1\n");
        let o = f.write_and_reload("route 1\nroute 2\n", Trigger::Control);
        assert_eq!(o.result, ReloadResult::Applied);
        assert_eq!(o.generation, 2);
        let d = o.diff.unwrap();
        assert_eq!(d.groups_added, vec!["2 (239.1.1.2:5000 on in0)"]);
        assert_eq!((d.from, d.to), (1, 2));
        assert_eq!(f.dp.current().generation, Generation(2));
        let s = f.reloader.status();
        assert_eq!(s.counts.applied, 1);
        assert!(s.last_successful);
        assert_eq!(s.digest.unwrap(), sha256_hex(b"route 1\nroute 2\n"));
    }

    #[test]
    fn invalid_file_keeps_the_table_and_reports_every_error() {
        let f = fixture("reject", "route 1\n");
        let o = f.write_and_reload("route 1\nerror bad key\nerror worse key\n", Trigger::File);
        assert_eq!(o.result, ReloadResult::Rejected);
        assert_eq!(o.errors.len(), 2);
        let p = f.path.display();
        assert_eq!(
            o.errors[0],
            format!("{p}:2:1: bad key\n  error bad key\n  ^^^^^")
        );
        assert_eq!(
            o.errors[1],
            format!("{p}:3:1: worse key\n  error worse key\n  ^^^^^")
        );
        assert_eq!(f.dp.publishes.load(Ordering::SeqCst), 0);
        assert_eq!(f.dp.current().generation, Generation(1));
        let s = f.reloader.status();
        assert!(!s.last_successful);
        assert_eq!(s.counts.rejected, 1);
        // Fixing the file resumes reloads.
        std::fs::write(&f.path, "route 1\nroute 3\n").unwrap();
        assert_eq!(
            f.reloader.reload(Trigger::File).result,
            ReloadResult::Applied
        );
        assert!(f.reloader.status().last_successful);
    }

    #[test]
    fn missing_or_empty_file_keeps_the_table() {
        let f = fixture("missing", "route 1\n");
        std::fs::remove_file(&f.path).unwrap();
        let o = f.reloader.reload(Trigger::File);
        assert_eq!(o.result, ReloadResult::Unreadable);
        assert!(o.errors[0].contains("cannot read"), "{:?}", o.errors);
        let o = f.write_and_reload("", Trigger::File);
        assert_eq!(o.result, ReloadResult::Rejected);
        assert!(o.errors[0].contains("empty"));
        assert_eq!(f.dp.publishes.load(Ordering::SeqCst), 0);
        assert_eq!(f.dp.current().routes.len(), 1);
    }

    #[test]
    fn a_comment_only_change_publishes_nothing() {
        let f = fixture("comment", "route 1\n");
        let o = f.write_and_reload("# hello\nroute 1\n", Trigger::File);
        assert_eq!(o.result, ReloadResult::Unchanged);
        assert_eq!(f.dp.publishes.load(Ordering::SeqCst), 0);
        // The new digest is remembered: saving again is a no-op too.
        assert_eq!(
            f.reloader.status().digest.unwrap(),
            sha256_hex(b"# hello\nroute 1\n")
        );
    }

    #[test]
    fn a_storm_of_async_requests_costs_at_most_a_few_reloads() {
        // Publishing takes 200 ms: every request made meanwhile folds into one pending reload.
        let f = fixture_with_delay("storm", "route 1\n", Duration::from_millis(200));
        std::fs::write(&f.path, "route 1\nroute 2\n").unwrap();
        let a = ReloadThread::spawn(f.reloader.clone()).unwrap();
        let accepted = (0..100).filter(|_| a.request(Trigger::Signal)).count();
        let deadline = Instant::now() + Duration::from_secs(5);
        while f.reloader.status().counts.applied == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        let c = f.reloader.status().counts;
        assert_eq!(c.applied, 1);
        assert!(accepted <= 2, "{accepted} requests were queued");
        assert!(c.applied + c.unchanged <= 2, "{c:?}");
        assert_eq!(f.dp.current().routes.len(), 2);
    }

    #[test]
    fn concurrent_requests_coalesce() {
        let f = fixture_with_delay("coalesce", "route 1\n", Duration::from_millis(100));
        let (r, dp, path) = (f.reloader.clone(), f.dp.clone(), f.path.clone());
        std::fs::write(&path, "route 1\nroute 2\n").unwrap();
        let threads: Vec<_> = (0..50)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || r.reload(Trigger::Signal))
            })
            .collect();
        for t in threads {
            let o = t.join().unwrap();
            assert!(o.result.is_success());
        }
        let s = r.status();
        // The first reload applies; every request made during it is answered by at most one more.
        assert_eq!(dp.publishes.load(Ordering::SeqCst), 1);
        assert!(s.counts.applied + s.counts.unchanged <= 2, "{:?}", s.counts);
    }
}
