//! The configuration language: TOML text → `Raw*` serde structs → [`compile`] → [`Table`].
//!
//! An operator's only interface to mcrelay is `/etc/mcrelay/mcrelay.toml` (documented key by key
//! in `mcrelay.toml(5)`), so this module exists to point out every mistake precisely before
//! anything runs. It works in two phases, like ripgrep's low-level and high-level arguments:
//!
//! 1. `raw`: serde structs mirroring the file, unknown keys rejected, spans kept
//!    (`toml::Spanned`) on every value a later error may point at;
//! 2. `compile`: pure checks and resolution into the immutable [`Table`], collecting **every**
//!    error (a reload keeps the old table unless the whole new file is valid).
//!
//! Interface names are resolved to kernel indexes through [`Resolver`], so tests run without real
//! interfaces ([`FakeResolver`]); the daemon and `mcrelay check` use [`SystemResolver`]. An
//! interface missing from the machine is a warning, not an error: it may appear later.

mod check;
mod compile;
mod error;
mod keys;
mod raw;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::table::Table;

pub use check::{canonical, cmd_check};
pub use compile::{DEFAULT_FAILOVER_AFTER, DEFAULT_WINDOW};
pub use compile::{
    DEFAULT_MULTICAST_TTL, DEFAULT_RCVBUF, DEFAULT_UNICAST_TTL, MAX_CPU, MAX_RCVBUF, MAX_WORKERS,
    MIN_RCVBUF,
};
pub use error::{ConfigError, Severity, render_errors};
pub use keys::known_keys;

/// Resolves kernel interface names to indexes; a trait so tests run without real interfaces.
pub trait Resolver {
    fn ifindex(&self, name: &str) -> Option<u32>;
}

/// Resolves names through `/sys/class/net/NAME/ifindex`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn ifindex(&self, name: &str) -> Option<u32> {
        // compile only asks for names that pass `valid_ifname` (no '/', not "." or ".."), so the
        // name cannot leave /sys/class/net.
        if !values::valid_ifname(name) {
            return None;
        }
        let path = Path::new("/sys/class/net").join(name).join("ifindex");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }
}

/// A resolver for tests: a fixed name → index map, or every name present.
#[derive(Debug, Clone, Default)]
pub struct FakeResolver {
    known: BTreeMap<String, u32>,
    everything: bool,
}

impl FakeResolver {
    /// Exactly these interfaces exist.
    pub fn new(pairs: &[(&str, u32)]) -> FakeResolver {
        FakeResolver {
            known: pairs.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
            everything: false,
        }
    }

    /// Every interface name exists; indexes are derived from the name (stable, 1..=65535).
    pub fn everything() -> FakeResolver {
        FakeResolver {
            known: BTreeMap::new(),
            everything: true,
        }
    }
}

impl Resolver for FakeResolver {
    fn ifindex(&self, name: &str) -> Option<u32> {
        if let Some(&i) = self.known.get(name) {
            return Some(i);
        }
        self.everything.then(|| {
            let h = name.bytes().fold(2166136261u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(16777619)
            });
            h % 65535 + 1
        })
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read (exit 66).
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but is invalid: every error found (exit 78).
    Invalid(Vec<ConfigError>),
}

impl LoadError {
    /// The process exit status for this error (sysexits).
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadError::Io { .. } => crate::exit::NOINPUT,
            LoadError::Invalid(_) => crate::exit::CONFIG,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            LoadError::Invalid(errors) => {
                write!(f, "{}", render_errors(errors).trim_end())
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            LoadError::Invalid(_) => None,
        }
    }
}

/// Compiles configuration text into a table (generation 0), or returns every error found,
/// ordered by position in the text.
pub fn compile(
    text: &str,
    path: &Path,
    resolver: &dyn Resolver,
) -> Result<Table, Vec<ConfigError>> {
    compile::compile_full(text, path, resolver).map(|(table, _)| table)
}

/// Like [`compile`], and also returns the warnings (severity [`Severity::Warning`]): interfaces
/// absent from this machine, destinations no group uses.
pub fn compile_with_warnings(
    text: &str,
    path: &Path,
    resolver: &dyn Resolver,
) -> Result<(Table, Vec<ConfigError>), Vec<ConfigError>> {
    compile::compile_full(text, path, resolver)
}

/// Reads and compiles the file at `path`.
pub fn load(path: &Path, resolver: &dyn Resolver) -> Result<Table, LoadError> {
    load_with_warnings(path, resolver).map(|(table, _)| table)
}

/// Reads and compiles the file at `path`, returning the warnings too.
pub fn load_with_warnings(
    path: &Path,
    resolver: &dyn Resolver,
) -> Result<(Table, Vec<ConfigError>), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let loc = error::Locator::new(path, &lossy);
            // Offsets before the first invalid byte are the same in the lossy text.
            return Err(LoadError::Invalid(vec![loc.error(
                valid..valid + 1,
                "the file is not valid UTF-8 here; save it as UTF-8".into(),
            )]));
        }
    };
    compile_with_warnings(&text, path, resolver).map_err(LoadError::Invalid)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod redundancy_tests;
#[cfg(test)]
mod tests;
