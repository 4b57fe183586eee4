//! The configuration language: TOML text → `Raw*` serde structs → [`compile`] → [`Table`].
//!
//! OWNER: config work (issue 2). This file is a stub that fixes the interface the rest of the
//! crate uses: `compile`, `load`, `ConfigError`, `Resolver`, `cmd_check`.

use std::path::{Path, PathBuf};

use crate::table::Table;

/// Resolves kernel interface names to indexes; a trait so tests run without real interfaces.
pub trait Resolver {
    fn ifindex(&self, name: &str) -> Option<u32>;
}

/// One error found in a configuration file, located at `path:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read (exit 66).
    Io { path: PathBuf, source: std::io::Error },
    /// The file was read but is invalid: every error found (exit 78).
    Invalid(Vec<ConfigError>),
}

/// Compiles configuration text into a table (generation 0), or returns every error found.
pub fn compile(
    _text: &str,
    _path: &Path,
    _resolver: &dyn Resolver,
) -> Result<Table, Vec<ConfigError>> {
    unimplemented!("config::compile")
}

/// `mcrelay check`.
pub fn cmd_check(_args: crate::cli::CheckArgs) -> i32 {
    eprintln!("mcrelay: check is not implemented yet");
    crate::exit::SOFTWARE
}
