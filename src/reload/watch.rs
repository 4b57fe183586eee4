//! The file trigger: a watch on the configuration's directory, not on the file.
//!
//! Editors and dpkg replace a file by renaming a new one over it, after which an inotify watch on
//! the file itself is deaf. So the directory is watched (non-recursively), events are filtered to
//! the configuration's name, and editor and package-manager droppings (`*.dpkg-*`, `*.swp`, `*~`,
//! vim's `4913` probe, `*.bak`, `*.orig`, `#name#`) are ignored. A symlinked configuration is
//! followed: every directory along the chain of links is watched for the names in the chain
//! (this covers `ln -sfn new.toml mcrelay.toml` and the Kubernetes `..data` swap), and the watches
//! are re-computed after every batch. Events are debounced by `daemon.reload_debounce`, and one
//! batch triggers at most one [`Reloader::reload`]; a save that changes nothing is a no-op there.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};

use super::{Reloader, Trigger};

/// A running watch; stopped when dropped.
pub struct ConfigWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts watching `reloader`'s configuration file; every debounced change calls
/// `reloader.reload(Trigger::File)`.
pub fn watch(reloader: Arc<Reloader>, debounce: Duration) -> Result<ConfigWatch, String> {
    let (tx, rx) = mpsc::channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(debounce.max(Duration::from_millis(10)), None, tx)
        .map_err(|e| format!("cannot watch the configuration directory: {e}"))?;
    let path = reloader.config_path().to_path_buf();
    let mut targets = WatchSet::of(&path);
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    sync_watches(&mut debouncer, &targets, &mut watched)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    tracing::info!(
        "watching {} for changes (debounce {:?})",
        path.display(),
        debounce
    );
    let thread = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let batch = match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(b) => b,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let relevant = match batch {
                    // Opening and reading the file (our own reload does) is not a change.
                    Ok(events) => events
                        .iter()
                        .filter(|e| !matches!(e.kind, notify::EventKind::Access(_)))
                        .flat_map(|e| e.paths.iter())
                        .any(|p| targets.matches(p)),
                    Err(errors) => {
                        for e in errors {
                            tracing::warn!("configuration watch: {e}");
                        }
                        true
                    }
                };
                if relevant {
                    reloader.reload(Trigger::File);
                    targets = WatchSet::of(&path);
                    if let Err(e) = sync_watches(&mut debouncer, &targets, &mut watched) {
                        tracing::warn!("{e}");
                    }
                }
            }
            debouncer.stop_nonblocking();
        })
        .map_err(|e| format!("cannot start the configuration watch thread: {e}"))?;
    Ok(ConfigWatch {
        stop,
        thread: Some(thread),
    })
}

fn sync_watches(
    debouncer: &mut notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    targets: &WatchSet,
    watched: &mut BTreeSet<PathBuf>,
) -> Result<(), String> {
    for dir in watched
        .difference(&targets.dirs)
        .cloned()
        .collect::<Vec<_>>()
    {
        let _ = debouncer.unwatch(&dir);
        watched.remove(&dir);
    }
    let mut first_error = None;
    for dir in &targets.dirs {
        if watched.contains(dir) {
            continue;
        }
        match debouncer.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir.clone());
            }
            Err(e) => {
                first_error.get_or_insert(format!("cannot watch {}: {e}", dir.display()));
            }
        }
    }
    match first_error {
        Some(e) if watched.is_empty() => Err(e),
        Some(e) => {
            tracing::warn!("{e}");
            Ok(())
        }
        None => Ok(()),
    }
}

/// The directories to watch and the file names in them that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSet {
    pub dirs: BTreeSet<PathBuf>,
    pub names: BTreeSet<OsString>,
}

impl WatchSet {
    /// Follows `path` through symbolic links (at most 16 hops), collecting every directory and
    /// name involved, including symlinked directories along the way.
    pub fn of(path: &Path) -> WatchSet {
        let mut set = WatchSet {
            dirs: BTreeSet::new(),
            names: BTreeSet::new(),
        };
        let mut current = absolute(path);
        for _ in 0..16 {
            // Symlinked ancestors (e.g. `..data/` in a Kubernetes ConfigMap volume).
            for anc in current.ancestors().skip(1) {
                if let (Some(parent), Some(name)) = (anc.parent(), anc.file_name())
                    && anc
                        .symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                {
                    set.dirs.insert(parent.to_path_buf());
                    set.names.insert(name.to_os_string());
                }
            }
            let (Some(parent), Some(name)) = (current.parent(), current.file_name()) else {
                break;
            };
            set.dirs.insert(parent.to_path_buf());
            if let Ok(canon) = parent.canonicalize() {
                set.dirs.insert(canon);
            }
            set.names.insert(name.to_os_string());
            match std::fs::read_link(&current) {
                Ok(target) => current = absolute(&parent.join(target)),
                Err(_) => break,
            }
        }
        set.dirs.retain(|d| d.is_dir());
        set
    }

    /// True when an event on `path` may change the configuration.
    pub fn matches(&self, path: &Path) -> bool {
        match path.file_name() {
            Some(name) => !is_ignored(name) && self.names.contains(name),
            None => false,
        }
    }
}

/// Names editors and package managers leave next to a file, never the configuration itself.
pub fn is_ignored(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name == "4913"
        || name.contains(".dpkg-")
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with('~')
        || name.ends_with(".bak")
        || name.ends_with(".orig")
        || name.ends_with(".rej")
        || (name.starts_with('#') && name.ends_with('#'))
        || name.starts_with(".#")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::tests::{fixture, wait_for};
    use crate::reload::{Dataplane, ReloadResult};
    use std::ffi::OsStr;

    #[test]
    fn droppings_are_ignored() {
        for n in [
            "mcrelay.toml.dpkg-new",
            "mcrelay.toml.dpkg-old",
            ".mcrelay.toml.swp",
            "mcrelay.toml~",
            "4913",
            "mcrelay.toml.bak",
            "#mcrelay.toml#",
        ] {
            assert!(is_ignored(OsStr::new(n)), "{n}");
        }
        assert!(!is_ignored(OsStr::new("mcrelay.toml")));
    }

    #[test]
    fn symlink_chains_are_followed() {
        let dir = std::env::temp_dir().join(format!("mcrelay-wset-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("v1")).unwrap();
        std::fs::write(dir.join("v1/real.toml"), "x").unwrap();
        std::os::unix::fs::symlink("v1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/real.toml", dir.join("mcrelay.toml")).unwrap();
        let set = WatchSet::of(&dir.join("mcrelay.toml"));
        assert!(set.dirs.contains(&dir), "{set:?}");
        for n in ["mcrelay.toml", "..data", "real.toml"] {
            assert!(
                set.names.contains(OsStr::new(n)),
                "{n} missing from {set:?}"
            );
        }
        assert!(set.matches(&dir.join("..data")));
        assert!(!set.matches(&dir.join("other.toml")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rename_over_is_picked_up_once_and_droppings_are_not() {
        let f = fixture("watch", "route 1\n");
        let _w = watch(f.reloader.clone(), Duration::from_millis(50)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(f.dir.join("mcrelay.toml.swp"), "junk").unwrap();
        std::fs::write(f.dir.join("4913"), "").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            f.reloader.status().last.is_none(),
            "a dropping triggered a reload"
        );
        let tmp = f.dir.join(".mcrelay.toml.tmp");
        std::fs::write(&tmp, "route 1\nroute 2\n").unwrap();
        std::fs::rename(&tmp, &f.path).unwrap();
        assert!(wait_for(|| f.reloader.status().counts.applied == 1));
        std::thread::sleep(Duration::from_millis(300));
        // Later events of the same save may trigger again, but only as a no-op.
        let s = f.reloader.status();
        assert_eq!(s.counts.applied, 1);
        assert_eq!(s.counts.rejected + s.counts.unreadable, 0);
        assert_ne!(s.last.unwrap().result, ReloadResult::Rejected);
        assert_eq!(f.dp.current().routes.len(), 2);
        // Regression: our own reads of the file (inotify open/close events) must not trigger
        // reloads, or a reload would trigger the next one forever.
        let quiet = |s: &crate::reload::ReloadStatus| s.counts.applied + s.counts.unchanged;
        let before = quiet(&f.reloader.status());
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            quiet(&f.reloader.status()),
            before,
            "reloads while nothing changed"
        );
    }
}
