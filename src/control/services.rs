//! Start-up of everything around the data plane, in one call from `mcrelay run`: the reloader,
//! the configuration watch, the control socket with its sampler, the metrics endpoint, and
//! `READY=1` for systemd.
//!
//! `mcrelay run` compiles the first table and starts the workers; then it calls
//! [`Services::start`], sends SIGHUP to [`Services::reloader`]'s `reload(Trigger::Signal)`, and
//! drops the services on shutdown (which stops the threads and removes the socket).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{self, SystemResolver};
use crate::control::metrics::{self, MetricsServer};
use crate::control::server::{self, ControlServer, ControlState, StartError};
use crate::reload::watch::{self, ConfigWatch};
use crate::reload::{Dataplane, Reloader};
use crate::table::Table;

/// The control side of a running daemon. Dropping it stops everything it started.
pub struct Services {
    reloader: Arc<Reloader>,
    state: Arc<ControlState>,
    // Field order is drop order: stop reacting to files first, then the socket, then metrics.
    watch: Option<ConfigWatch>,
    control: Option<ControlServer>,
    metrics: Option<MetricsServer>,
}

/// `config::compile` against the running system, logging warnings (an interface absent now).
pub fn system_compile(
    text: &str,
    path: &std::path::Path,
) -> Result<Table, Vec<config::ConfigError>> {
    let (table, warnings) = config::compile_with_warnings(text, path, &SystemResolver)?;
    log_warnings(&warnings);
    Ok(table)
}

/// Logs each configuration warning on one line (`path:line:col: message`, without the source
/// line and caret), at start-up and on every reload.
pub fn log_warnings(warnings: &[config::ConfigError]) {
    for w in warnings {
        tracing::warn!("{}", w.to_string().lines().next().unwrap_or_default());
    }
}

impl Services {
    /// Starts the reloader, the file watch, the control socket and (when configured) the metrics
    /// endpoint for `dataplane`, which runs the table compiled from `config_path` whose bytes
    /// had the SHA-256 `digest`.
    pub fn start(
        dataplane: Arc<dyn Dataplane>,
        config_path: PathBuf,
        digest: String,
        started_at: SystemTime,
    ) -> Result<Services, StartError> {
        let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
        let table = dataplane.current();
        let settings = table.daemon.clone();
        let reloader = Arc::new(Reloader::new(
            config_path,
            dataplane,
            Box::new(system_compile),
            digest,
        ));
        let state = ControlState::new(
            reloader.clone(),
            started_at,
            settings.control_socket.clone(),
            settings.metrics_listen.map(|a| a.to_string()),
            settings.stats_interval,
        )
        .map_err(|e| StartError {
            code: crate::exit::OSERR,
            message: format!("cannot start the control side's reload thread: {e}"),
        })?;
        let tick =
            (settings.stats_interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let control = server::serve(
            state.clone(),
            &settings.control_socket,
            settings.control_group.as_deref(),
            tick,
        )?;
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(
                metrics::serve(
                    {
                        let state = state.clone();
                        Arc::new(move || state.metrics(SystemTime::now()))
                    },
                    addr,
                )
                .map_err(|message| StartError {
                    code: crate::exit::OSERR,
                    message,
                })?,
            ),
            None => None,
        };
        let watch = match watch::watch(reloader.clone(), settings.reload_debounce) {
            Ok(w) => Some(w),
            Err(e) => {
                // Reload by SIGHUP and `mcrelay reload` still work.
                tracing::warn!("{e}; reload with `mcrelay reload` or SIGHUP instead");
                None
            }
        };
        Ok(Services {
            reloader,
            state,
            watch,
            control: Some(control),
            metrics,
        })
    }

    /// The one reload path (tests call it directly).
    #[cfg(test)]
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Where SIGHUP asks for reloads (without blocking).
    pub fn reloads(&self) -> &crate::reload::ReloadThread {
        self.state.reloads()
    }

    /// Tells systemd the relay is up (`READY=1`, `STATUS=`), and logs it.
    pub fn ready(&self) {
        let generation = self.reloader.dataplane().current().generation;
        let n = self.reloader.notifier();
        n.ready();
        n.status(&format!("running generation {generation}"));
    }

    /// Tells systemd the relay is stopping.
    pub fn stopping(&self) {
        self.reloader.notifier().stopping();
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        drop(self.watch.take());
        drop(self.control.take());
        drop(self.metrics.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::client::request;
    use crate::control::protocol::Request;
    use crate::reload::tests::{FakeDataplane, wait_for};
    use crate::reload::{ReloadResult, Trigger};
    use std::io::{Read, Write};

    fn config(dir: &std::path::Path, port: u16, groups: &[u8]) -> String {
        let mut s = format!(
            "[daemon]\ncontrol_socket = \"{}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\
             reload_debounce = \"50ms\"\nstats_interval = \"200ms\"\n\n\
             [interfaces.lo]\n[interfaces.mcrtestx0]\n\n[destinations.d1]\ninterface = \"mcrtestx0\"\n",
            dir.join("run/c.sock").display()
        );
        for g in groups {
            s.push_str(&format!(
                "\n[[groups]]\ninterface = \"lo\"\ngroup = \"239.1.1.{g}\"\nport = 5000\nto = [\"d1\"]\n"
            ));
        }
        s
    }

    /// A fresh directory for test `name`, a free TCP port for the metrics, and the
    /// configuration file in it with one group.
    fn setup(name: &str) -> (std::path::PathBuf, u16, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("mcrelay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = dir.join("mcrelay.toml");
        std::fs::write(&path, config(&dir, port, &[1])).unwrap();
        (dir, port, path)
    }

    /// Regression (issue 13, start-up digest race): a save between the first load and the
    /// start of the services must not pair the new file's digest with the old table; the
    /// reload after it applies the new file instead of calling it unchanged.
    #[test]
    fn a_save_during_start_up_is_applied_by_the_next_reload() {
        let (dir, port, path) = setup("services-race");
        let loaded = crate::config::load(&path, &crate::config::SystemResolver)
            .unwrap_or_else(|e| panic!("{e}"));
        let first_digest = loaded.digest.clone();
        let dp = FakeDataplane::new(loaded.table.with_generation(crate::table::Generation(1)));
        // The operator saves while the daemon starts.
        std::fs::write(&path, config(&dir, port, &[1, 2])).unwrap();
        let services =
            Services::start(dp.clone(), path.clone(), loaded.digest, SystemTime::now()).unwrap();
        assert_eq!(
            services.reloader().status().digest.as_deref(),
            Some(first_digest.as_str()),
            "the digest is the one of the bytes the running table came from"
        );
        let outcome = services.reloader().reload(Trigger::Signal);
        assert_eq!(outcome.result, ReloadResult::Applied);
        assert_eq!(outcome.diff.unwrap().groups_added.len(), 1);
        drop(services);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The whole control side against a fake data plane and the real config compiler: the
    /// socket answers, a file save reloads once, a broken file is rejected and reported, and
    /// `/metrics` serves the same generation.
    #[test]
    fn services_follow_the_file_and_answer_on_socket_and_metrics() {
        let (dir, port, path) = setup("services");
        let table = system_compile(&std::fs::read_to_string(&path).unwrap(), &path)
            .unwrap_or_else(|e| panic!("{}", crate::config::render_errors(&e)))
            .with_generation(crate::table::Generation(1));
        let dp = FakeDataplane::new(table);
        let digest = crate::config::sha256_hex(&std::fs::read(&path).unwrap());
        let services =
            Services::start(dp.clone(), path.clone(), digest, SystemTime::now()).unwrap();
        let sock = dir.join("run/c.sock");

        let status = request(&sock, Request::Status, Duration::from_secs(5))
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.config.generation, 1);
        assert_eq!(status.config.config, path);
        assert_eq!(
            status.config.digest.as_deref(),
            Some(crate::config::sha256_hex(&std::fs::read(&path).unwrap()).as_str())
        );

        // A save through rename: applied once, by the file trigger.
        let tmp = dir.join(".mcrelay.toml.new");
        std::fs::write(&tmp, config(&dir, port, &[1, 2])).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(wait_for(|| services.reloader().status().generation == 2));
        let last = services.reloader().status().last.unwrap();
        assert_eq!(
            (last.trigger, last.result),
            (Trigger::File, ReloadResult::Applied)
        );
        assert_eq!(last.diff.unwrap().groups_added.len(), 1);

        // A broken file: rejected with path:line:col, generation kept, visible in status.
        std::fs::write(&path, config(&dir, port, &[1, 2]) + "bogus = 1\n").unwrap();
        let o = request(&sock, Request::Reload, Duration::from_secs(10))
            .unwrap()
            .reload
            .unwrap();
        assert_eq!(o.result, ReloadResult::Rejected);
        assert!(
            o.errors[0].starts_with(&format!("{}:", path.display())),
            "{:?}",
            o.errors
        );
        let status = request(&sock, Request::Status, Duration::from_secs(5))
            .unwrap()
            .status
            .unwrap();
        assert!(!status.config.last_successful);
        assert_eq!(status.config.generation, 2);

        let mut http = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        http.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
        assert!(body.contains("\nmcrelay_config_generation 2.0\n"), "{body}");
        assert!(
            body.contains("\nmcrelay_config_last_reload_successful 0.0\n"),
            "{body}"
        );
        assert!(
            body.contains("mcrelay_config_reloads_total{result=\"failure\"} 1\n"),
            "{body}"
        );

        drop(services);
        assert!(!sock.exists(), "the socket is removed on shutdown");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
