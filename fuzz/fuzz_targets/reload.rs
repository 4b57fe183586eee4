//! Sequences of reloads: random valid and invalid configurations written in turn to the file and
//! applied through `reload::Reloader::reload` (the one path SIGHUP, the file watch and
//! `mcrelay reload` take), against a data plane that records what it is given.
//!
//! After each step: the result is what the file deserves (rejected exactly when it does not
//! compile, is empty or is not UTF-8), the generation moved by one exactly when a new table was
//! applied, and the running table equals a fresh compile of the last file that compiled (the
//! first one included). Input: a list of steps, each an opcode byte and its operands (see
//! `step`). Seed corpus: `fuzz/corpus/reload`.
#![no_main]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcrelay::config::{ConfigError, FakeResolver, compile};
use mcrelay::reload::PublishReport;
use mcrelay::reload::notify::Notifier;
use mcrelay::reload::{Dataplane, ReloadResult, Reloader, Trigger};
use mcrelay::stats::WorkerSnapshot;
use mcrelay::table::{Generation, Table};

/// What the daemon would run: the last table published.
struct Recorder(Mutex<Arc<Table>>);

impl Dataplane for Recorder {
    fn current(&self) -> Arc<Table> {
        self.0.lock().unwrap().clone()
    }
    fn publish(&self, table: Table, _timeout: Duration) -> PublishReport {
        let generation = table.generation;
        *self.0.lock().unwrap() = Arc::new(table);
        PublishReport {
            generation,
            acknowledged: true,
            ..PublishReport::default()
        }
    }
    fn snapshots(&self) -> Vec<WorkerSnapshot> {
        Vec::new()
    }
}

static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("mcrelay-fuzz-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("mcrelay.toml")
});

fn compile_fake(text: &str, path: &Path) -> Result<Table, Vec<ConfigError>> {
    compile(text, path, &FakeResolver::everything())
}

const FIRST: &str = "[interfaces.in0]\n[interfaces.out0]\n[destinations.d0]\ninterface = \"out0\"\n\
                     [[groups]]\ninterface = \"in0\"\ngroup = \"239.1.1.1\"\nport = 5000\nto = [\"d0\"]\n";

/// Bytes as a cursor; reads past the end give 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

/// A configuration from a few bytes: mostly valid, with the usual mistakes mixed in when
/// `mistakes` is set.
fn config(inp: &mut Input, mistakes: bool) -> Vec<u8> {
    let mut s = String::new();
    let ifaces = 1 + inp.byte() % 3;
    for i in 0..ifaces {
        let _ = writeln!(s, "[interfaces.in{i}]");
        if inp.byte() % 4 == 0 {
            let _ = writeln!(s, "ttl = {}", inp.byte() % 4 * 8 + 1);
        }
    }
    s.push_str("[interfaces.out0]\n");
    let dests = 1 + inp.byte() % 3;
    for d in 0..dests {
        let _ = writeln!(s, "[destinations.d{d}]");
        match inp.byte() % 3 {
            0 => s.push_str("interface = \"out0\"\n"),
            1 => {
                let _ = writeln!(s, "interface = \"out0\"\ngroup = \"239.9.9.{d}\"");
            }
            _ => {
                let _ = writeln!(s, "address = \"10.0.0.{}:{}\"", d + 1, 7000 + d as u16);
            }
        }
    }
    let groups = inp.byte() % 6;
    for _ in 0..groups {
        let (a, b, c) = (inp.byte(), inp.byte(), inp.byte());
        s.push_str("[[groups]]\n");
        let _ = writeln!(s, "interface = \"in{}\"", a % ifaces);
        let _ = writeln!(s, "group = \"239.1.1.{}\"", b % 8);
        if c % 3 != 0 {
            let _ = writeln!(s, "port = {}", 5000 + u16::from(c % 3));
        }
        if c & 0x10 != 0 {
            let _ = writeln!(s, "source = \"10.1.0.{}\"", c >> 5);
        }
        let to: Vec<String> = (0..dests)
            .filter(|d| (a >> 2) & (1 << d) != 0 || *d == b % dests)
            .map(|d| format!("\"d{d}\""))
            .collect();
        let _ = writeln!(s, "to = [{}]", to.join(", "));
    }
    if mistakes {
        match inp.byte() % 6 {
            0 => {
                s.push_str("[[groups]]\ninterface = \"in0\"\ngroup = \"10.1.1.1\"\nto = [\"d0\"]\n")
            }
            1 => s.push_str(
                "[[groups]]\ninterface = \"in0\"\ngroup = \"239.1.1.1\"\nto = [\"nowhere\"]\n",
            ),
            2 => s.push_str("[daemon]\nno_such_key = 1\n"),
            3 => s.push_str("[interfaces.in0]\n"), // declared twice
            4 => s.push_str("[destinations.d0\n"), // not TOML
            _ => s.push_str(
                "[[groups]]\ninterface = \"in9\"\ngroup = \"239.1.1.1\"\nto = [\"d0\"]\n",
            ),
        }
    }
    s.into_bytes()
}

/// The next file to write, from one opcode and its operands.
fn step(inp: &mut Input, last: &[u8]) -> Vec<u8> {
    match inp.byte() % 8 {
        0..=2 => config(inp, false),
        3 | 4 => config(inp, true),
        5 => {
            let n = usize::from(inp.byte());
            inp.bytes(n) // arbitrary bytes
        }
        6 => {
            // the previous file with a comment or blank lines: the same table
            let mut v = last.to_vec();
            v.extend_from_slice(if inp.byte() % 2 == 0 {
                b"\n# saved again\n"
            } else {
                b"\n\n"
            });
            v
        }
        _ => Vec::new(), // emptied (a truncate caught mid-write)
    }
}

fuzz_target!(|data: &[u8]| {
    let path: &Path = &PATH;
    std::fs::write(path, FIRST).expect("write");
    let first = compile_fake(FIRST, path)
        .expect("first compiles")
        .with_generation(Generation(1));
    let dp = Arc::new(Recorder(Mutex::new(Arc::new(first))));
    let reloader = Reloader::new(
        path.to_path_buf(),
        dp.clone(),
        Box::new(compile_fake),
        mcrelay::config::sha256_hex(FIRST.as_bytes()),
    )
        .with_notifier(Notifier::disabled());
    let mut inp = Input(data);
    let mut last_valid = FIRST.to_string();
    let mut written = FIRST.as_bytes().to_vec();
    for _ in 0..16 {
        if inp.0.is_empty() {
            break;
        }
        written = step(&mut inp, &written);
        std::fs::write(path, &written).expect("write");
        let before = dp.current();
        let outcome = reloader.reload(Trigger::File);
        let after = dp.current();
        let valid = std::str::from_utf8(&written)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .filter(|t| compile_fake(t, path).is_ok());
        match (valid, outcome.result) {
            (Some(t), ReloadResult::Applied) => {
                assert_eq!(after.generation.0, before.generation.0 + 1);
                last_valid = t.to_string();
            }
            (Some(t), ReloadResult::Unchanged) => {
                assert_eq!(after.generation, before.generation);
                last_valid = t.to_string();
            }
            (None, ReloadResult::Rejected) => {
                assert_eq!(after.generation, before.generation);
                assert!(!outcome.errors.is_empty());
            }
            (v, r) => panic!(
                "file valid: {}, reload result {r:?}: {outcome:?}",
                v.is_some()
            ),
        }
        assert_eq!(outcome.generation, after.generation.0);
        let fresh = compile_fake(&last_valid, path)
            .expect("the last valid file compiles")
            .with_generation(after.generation);
        assert!(
            fresh == *after,
            "the running table is not a fresh compile of the last valid file:\n{last_valid}"
        );
    }
});
