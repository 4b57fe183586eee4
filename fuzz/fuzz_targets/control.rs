//! The control protocol on arbitrary bytes: what a client sends on the control socket, served by
//! `control::server::serve_connection` (the code every accepted connection runs) over a socket
//! pair, against a fixed table.
//!
//! Besides "never panics, never hangs", checks that every answer is one JSON line carrying
//! `"version": 1` and exactly one of `status`, `stats`, `reload` or `error` (`ok` false exactly
//! for errors), that there are no more answers than request lines, and that a single line is
//! answered as `parse_request` decides. Seed corpus: `fuzz/corpus/control`.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use mcrelay::config::{FakeResolver, compile};
use mcrelay::control::protocol::{MAX_LINE, Response, parse_request};
use mcrelay::control::server::{ControlState, serve_connection};
use mcrelay::reload::PublishReport;
use mcrelay::reload::notify::Notifier;
use mcrelay::reload::{Dataplane, Reloader};
use mcrelay::stats::WorkerSnapshot;
use mcrelay::table::{Generation, Table};

const CONFIG: &str = r#"
[interfaces.in0]
[interfaces.out0]
[destinations.rx0]
interface = "out0"
[[groups]]
name = "cam1"
interface = "in0"
group = "239.1.1.1"
port = 5000
to = ["rx0"]
"#;

/// A data plane that runs one table and never changes.
struct Fixed(Arc<Table>);

impl Dataplane for Fixed {
    fn current(&self) -> Arc<Table> {
        self.0.clone()
    }
    fn publish(&self, table: Table, _timeout: Duration) -> PublishReport {
        PublishReport {
            generation: table.generation,
            acknowledged: true,
            ..PublishReport::default()
        }
    }
    fn snapshots(&self) -> Vec<WorkerSnapshot> {
        Vec::new()
    }
}

static STATE: LazyLock<Arc<ControlState>> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("mcrelay-fuzz-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("mcrelay.toml");
    std::fs::write(&path, CONFIG).expect("write config");
    let table = compile(CONFIG, &path, &FakeResolver::everything())
        .expect("the fixed config compiles")
        .with_generation(Generation(1));
    let reloader = Reloader::new(
        path,
        Arc::new(Fixed(Arc::new(table))),
        Box::new(fake),
        mcrelay::config::sha256_hex(CONFIG.as_bytes()),
    )
        .with_notifier(Notifier::disabled());
    ControlState::new(
        Arc::new(reloader),
        SystemTime::now(),
        PathBuf::from("/nonexistent/control.sock"),
        None,
        Duration::from_secs(1),
    )
    .expect("control state (its reload thread)")
});

fn fake(text: &str, path: &Path) -> Result<Table, Vec<mcrelay::config::ConfigError>> {
    compile(text, path, &FakeResolver::everything())
}

fuzz_target!(|data: &[u8]| {
    let (server, client) = UnixStream::pair().expect("socket pair");
    let mut writer = client.try_clone().expect("clone");
    let input = data.to_vec();
    let w = std::thread::spawn(move || {
        let _ = writer.write_all(&input);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let r = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut c = client;
        let _ = c.read_to_end(&mut out);
        out
    });
    let _ = serve_connection(&STATE, server);
    w.join().expect("writer");
    let out = r.join().expect("reader");

    let text = std::str::from_utf8(&out).expect("answers are UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "unterminated answer"
    );
    let answers: Vec<Response> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad answer {l:?}: {e}")))
        .collect();
    for a in &answers {
        assert_eq!(a.version, 1);
        let parts = [
            a.status.is_some(),
            a.stats.is_some(),
            a.reload.is_some(),
            a.error.is_some(),
        ];
        assert_eq!(parts.iter().filter(|&&p| p).count(), 1, "{a:?}");
        assert_eq!(a.ok, a.error.is_none(), "{a:?}");
    }
    let lines = data.split(|&b| b == b'\n').count();
    assert!(
        answers.len() <= lines,
        "{} answers to {lines} lines",
        answers.len()
    );
    let one = data.trim_ascii();
    if !one.is_empty() && !one.contains(&b'\n') && data.len() <= MAX_LINE {
        assert_eq!(answers.len(), 1, "one line, {} answers", answers.len());
        assert_eq!(answers[0].ok, parse_request(one).is_ok());
    }
});
