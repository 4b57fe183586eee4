//! The configuration language: TOML text → `Raw*` serde structs → [`compile`] → [`Table`].
//!
//! An operator's only interface to mcrelay is `/etc/mcrelay/mcrelay.toml` (documented key by key
//! in `mcrelay.toml(5)`), so this module exists to point out every mistake precisely before
//! anything runs. It works in phases, like ripgrep's low-level and high-level arguments:
//!
//! 1. `keys`: the parsed document is checked against the list of every accepted key and its
//!    type; each unknown key and each value of the wrong type is reported and taken out, so
//!    that it hides none of the other errors. The same list gives the JSON Schema for editors
//!    ([`json_schema`]) and is held equal to mcrelay.toml(5) by a test;
//! 2. `raw`: serde structs mirroring the file, spans kept (`toml::Spanned`) on every value a
//!    later error may point at;
//! 3. `compile`: pure checks and resolution into the immutable [`Table`], collecting **every**
//!    error (a reload keeps the old table unless the whole new file is valid).
//!
//! Interface names are resolved to kernel indexes through [`Resolver`], so tests run without real
//! interfaces ([`FakeResolver`]); the daemon and `mcrelay check` use [`SystemResolver`]. An
//! interface missing from the machine is a warning, not an error: it may appear later.

pub(crate) mod check;
mod compile;
mod error;
mod keys;
mod raw;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::table::Table;
use crate::tunnel::{KeyFileError, LoadedKey, TunnelKey};

pub use check::canonical;
pub use compile::{DEFAULT_FAILOVER_AFTER, DEFAULT_WINDOW};
pub use compile::{
    DEFAULT_MULTICAST_TTL, DEFAULT_RCVBUF, DEFAULT_UNICAST_TTL, MAX_CPU, MAX_RCVBUF, MAX_WORKERS,
    MIN_RCVBUF,
};
pub use error::{ConfigError, Severity, render_errors};
pub use keys::{json_schema, known_keys};

/// What the configuration names on this machine: kernel interface names (resolved to indexes)
/// and tunnel key files (read); a trait so tests run without real interfaces or files.
pub trait Resolver {
    fn ifindex(&self, name: &str) -> Option<u32>;

    /// Reads a tunnel's key file. The default reads the real file.
    fn key_file(&self, path: &Path) -> Result<LoadedKey, KeyFileError> {
        crate::tunnel::read_key_file(path)
    }
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

/// A resolver for tests: a fixed name → index map, or every name present; key files from a
/// map of path → contents, never from the disk.
#[derive(Debug, Clone, Default)]
pub struct FakeResolver {
    known: BTreeMap<String, u32>,
    everything: bool,
    keys: BTreeMap<PathBuf, String>,
}

impl FakeResolver {
    /// Exactly these interfaces exist.
    pub fn new(pairs: &[(&str, u32)]) -> FakeResolver {
        FakeResolver {
            known: pairs.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
            everything: false,
            keys: BTreeMap::new(),
        }
    }

    /// The key file at `path` holds `contents`. Other key files do not exist, except with
    /// [`FakeResolver::everything`], where each holds [`FakeResolver::EVERY_KEY`].
    pub fn with_key_file(mut self, path: &str, contents: &str) -> FakeResolver {
        self.keys.insert(PathBuf::from(path), contents.to_string());
        self
    }

    /// The key every key file holds under [`FakeResolver::everything`] (hex, 32 bytes).
    pub const EVERY_KEY: &str = "4242424242424242424242424242424242424242424242424242424242424242";

    /// Every interface name exists; indexes are derived from the name (stable, 1..=65535).
    pub fn everything() -> FakeResolver {
        FakeResolver {
            known: BTreeMap::new(),
            everything: true,
            keys: BTreeMap::new(),
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

    fn key_file(&self, path: &Path) -> Result<LoadedKey, KeyFileError> {
        let text = match self.keys.get(path) {
            Some(text) => text.as_str(),
            None if self.everything => Self::EVERY_KEY,
            None => {
                return Err(KeyFileError::Io(std::io::Error::from(
                    std::io::ErrorKind::NotFound,
                )));
            }
        };
        let key = TunnelKey::parse(text).map_err(KeyFileError::Invalid)?;
        Ok(LoadedKey { key, warning: None })
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

/// A configuration file read and compiled.
#[derive(Debug)]
pub struct Loaded {
    pub table: Table,
    /// SHA-256 (hex) of the very bytes `table` was compiled from: the reloader compares later
    /// reads with it, so it must never come from a second read of the file.
    pub digest: String,
    /// Warnings (severity [`Severity::Warning`]): interfaces absent from this machine,
    /// destinations no group uses.
    pub warnings: Vec<ConfigError>,
}

/// Reads and compiles the file at `path` (one read).
pub fn load(path: &Path, resolver: &dyn Resolver) -> Result<Loaded, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let digest = sha256_hex(&bytes);
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
    let (table, warnings) =
        compile_with_warnings(&text, path, resolver).map_err(LoadError::Invalid)?;
    Ok(Loaded {
        table,
        digest,
        warnings,
    })
}

/// SHA-256 of `bytes`, in lowercase hex: how a configuration's content is identified.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod redundancy_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tunnel_tests;
