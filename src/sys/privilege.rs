//! Least privilege outside systemd: check the capabilities the relay needs, and switch from root to
//! an unprivileged user that keeps only those.
//!
//! mcrelay needs two capabilities and nothing else (see mcrelay(8), OPERATION, Capabilities):
//!
//! * `CAP_NET_RAW`, for the AF_PACKET receive sockets. Needed for the life of the process: a
//!   reload that adds an ingress interface opens a new receive socket.
//! * `CAP_NET_ADMIN`, for `SO_RCVBUFFORCE`, only when an interface's `rcvbuf` is larger than
//!   `net.core.rmem_max` (a 32 MiB buffer against the 208 KiB default limit; a small buffer drops
//!   frames in bursts). Without it the buffer is capped at `rmem_max`: a warning, not a refusal.
//!
//! Under the packaged systemd unit the process starts as user `mcrelay` with both as ambient
//! capabilities, and none of this switches anything: [`check_capabilities`] just confirms them.
//!
//! # How `mcrelay run` uses this (for the daemon, `src/daemon.rs`)
//!
//! One call in `cmd_run`, right after the configuration is compiled and **before any thread is
//! spawned** (workers, file watcher, control socket, metrics, signal threads) and before any
//! socket is opened:
//!
//! ```text
//! let user = args.user.as_deref().or(table.daemon.user.as_deref());
//! match crate::sys::privilege::least_privilege(user, &table) {
//!     Ok(None) => {}
//!     Ok(Some(warning)) => tracing::warn!("{warning}"),   // no CAP_NET_ADMIN: rcvbuf capped
//!     Err(refusal) => {                                   // names the missing capability
//!         eprintln!("mcrelay: {refusal}");
//!         return crate::exit::NOPERM;                     // 77
//!     }
//! }
//! ```
//!
//! Started as root with a user, anything only root can do must happen before the switch:
//! `least_privilege` creates the control socket's directory when it does not exist (`/run` is
//! root's) and hands it to the user ([`prepare_socket_dir`]). Under systemd,
//! `RuntimeDirectory=` does it.
//!
//! Why before any thread: capabilities and the bounding set belong to a thread, not a process.
//! Threads started later inherit the calling thread's reduced sets; a thread started earlier
//! would keep root's. (glibc applies `setresuid`/`setresgid` to every thread, but not `capset`.)
//!
//! Metrics on a port below 1024 would need `CAP_NET_BIND_SERVICE`, which is not kept: use a port
//! of 1024 or above.

use std::ffi::{CStr, CString};
use std::io;

use caps::{CapSet, Capability};

/// A capability mcrelay may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cap {
    /// AF_PACKET receive sockets.
    NetRaw,
    /// `SO_RCVBUFFORCE` beyond `net.core.rmem_max`.
    NetAdmin,
}

impl Cap {
    /// The kernel's name, as in capabilities(7): `CAP_NET_RAW`.
    pub fn name(self) -> &'static str {
        match self {
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::NetAdmin => "CAP_NET_ADMIN",
        }
    }

    /// What it is needed for, for messages.
    pub fn purpose(self) -> &'static str {
        match self {
            Cap::NetRaw => "to open the AF_PACKET receive sockets",
            Cap::NetAdmin => "to force the receive buffer (rcvbuf) beyond net.core.rmem_max",
        }
    }

    /// The spelling setpriv(1) and capsh(1) take: `net_raw`.
    pub fn setpriv_name(self) -> &'static str {
        match self {
            Cap::NetRaw => "net_raw",
            Cap::NetAdmin => "net_admin",
        }
    }

    fn kernel(self) -> Capability {
        match self {
            Cap::NetRaw => Capability::CAP_NET_RAW,
            Cap::NetAdmin => Capability::CAP_NET_ADMIN,
        }
    }
}

/// The capabilities a configuration needs: `CAP_NET_RAW` always, `CAP_NET_ADMIN` when the
/// largest `rcvbuf` of any interface exceeds `rmem_max` (both in bytes). Pure.
pub fn needed(max_rcvbuf: usize, rmem_max: usize) -> Vec<Cap> {
    if max_rcvbuf > rmem_max {
        vec![Cap::NetRaw, Cap::NetAdmin]
    } else {
        vec![Cap::NetRaw]
    }
}

/// [`needed`] for a compiled table, against this host's `net.core.rmem_max`. When that cannot be
/// read, `CAP_NET_ADMIN` is assumed to be needed.
pub fn needed_for(table: &crate::table::Table) -> Vec<Cap> {
    let max_rcvbuf = table.interfaces.iter().map(|i| i.rcvbuf).max().unwrap_or(0);
    needed(max_rcvbuf, rmem_max().unwrap_or(0))
}

/// `net.core.rmem_max`, the largest receive buffer `SO_RCVBUF` grants without `CAP_NET_ADMIN`.
pub fn rmem_max() -> io::Result<usize> {
    let text = std::fs::read_to_string("/proc/sys/net/core/rmem_max")?;
    text.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/sys/net/core/rmem_max: {e}"),
        )
    })
}

/// Everything `mcrelay run` needs to do about privilege, in one call (see the module
/// documentation for where): switch to `user` when given (keeping [`needed_for`] the table,
/// after creating the control socket's directory for the user with [`prepare_socket_dir`]),
/// then require `CAP_NET_RAW`. Returns a warning when the table wants `CAP_NET_ADMIN` and the
/// process does not have it (receive buffers are then capped at `net.core.rmem_max`), and the
/// refusal (exit 77) when the switch fails or `CAP_NET_RAW` is missing.
pub fn least_privilege(
    user: Option<&str>,
    table: &crate::table::Table,
) -> Result<Option<String>, String> {
    let needed = needed_for(table);
    if let Some(name) = user {
        lookup_user(name)
            .and_then(|u| prepare_socket_dir(&table.daemon.control_socket, &u))
            .and_then(|()| drop_to_user(name, &needed))
            .map_err(|e| format!("cannot switch to user {name}: {e}"))?;
    }
    check_capabilities(&[Cap::NetRaw])?;
    if needed.contains(&Cap::NetAdmin) && check_capabilities(&[Cap::NetAdmin]).is_err() {
        let limit = rmem_max().map_or_else(
            |_| "net.core.rmem_max".to_owned(),
            |b| format!("net.core.rmem_max ({b} bytes)"),
        );
        return Ok(Some(format!(
            "no CAP_NET_ADMIN: receive buffers are capped at {limit} instead of the configured \
             rcvbuf; raise net.core.rmem_max or grant CAP_NET_ADMIN to avoid drops in bursts"
        )));
    }
    Ok(None)
}

/// Creates the directory of the control socket `socket` when it does not exist, owned by `user`
/// (mode 0755), so that the daemon can create its socket there after switching to `user`:
/// started by hand as root, `/run/mcrelay` does not exist and only root may create it (under
/// systemd, `RuntimeDirectory=mcrelay` does this). An existing directory is left as it is, and
/// nothing is done unless the process runs as root (then there is no user to switch to).
pub fn prepare_socket_dir(socket: &std::path::Path, user: &User) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if getresuid().1 != 0 {
        return Ok(());
    }
    let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.exists() {
        return Ok(());
    }
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(ctx)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(ctx)?;
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).map_err(ctx)
}

/// Confirms that the calling thread holds every capability in `needed` as an effective
/// capability, raising it from the permitted set when it is only there. The error names every
/// missing capability, what it is for, and how to grant it; `mcrelay run` prints it and exits 77.
pub fn check_capabilities(needed: &[Cap]) -> Result<(), String> {
    let mut missing = Vec::new();
    for &cap in needed {
        let have = |set| caps::has_cap(None, set, cap.kernel()).unwrap_or(false);
        if have(CapSet::Effective) {
            continue;
        }
        if have(CapSet::Permitted) && caps::raise(None, CapSet::Effective, cap.kernel()).is_ok() {
            continue;
        }
        missing.push(cap);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = missing
        .iter()
        .map(|c| format!("{} ({})", c.name(), c.purpose()))
        .collect();
    let setpriv: Vec<String> = missing
        .iter()
        .map(|c| format!("+{}", c.setpriv_name()))
        .collect();
    let setpriv = setpriv.join(",");
    Err(format!(
        "missing capability {}: run as root (optionally with --user), under the packaged systemd \
         unit, or grant it, e.g. `setpriv --inh-caps={setpriv} --ambient-caps={setpriv} ...`",
        what.join(" and ")
    ))
}

/// A user to switch to, from the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
}

/// Looks `name` up in the user database (NSS, as `getent passwd` does).
pub fn lookup_user(name: &str) -> io::Result<User> {
    let c_name = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("user name {name:?} contains a NUL byte"),
        )
    })?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: an all-zero `passwd` is a valid value of this plain C struct (null pointers,
        // zero ids); getpwnam_r only writes into it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `c_name` is NUL-terminated and outlives the call; `buf` is writable for
        // `buf.len()` bytes; `pwd` and `result` are valid for writes. The strings `pwd` points to
        // live in `buf`, which is not touched until we are done reading them below.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc);
            return Err(io::Error::new(
                e.kind(),
                format!("cannot look up user {name}: {e}"),
            ));
        }
        if result.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "user {name} does not exist (create it, e.g. with the package's sysusers.d file)"
                ),
            ));
        }
        // SAFETY: getpwnam_r succeeded and returned `pwd`, whose `pw_name` is a NUL-terminated
        // string inside `buf`, still alive here.
        let found = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Ok(User {
            name: found,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// Switches the process from root to `name` (its uid and primary group, no supplementary
/// groups), keeping exactly the capabilities in `keep` and nothing else:
///
/// 1. every capability not in `keep` leaves the bounding set (it can never come back, not even
///    through a set-uid program), and `no_new_privs` is set;
/// 2. `PR_SET_KEEPCAPS` keeps the permitted set across the uid change;
/// 3. `setgroups([])`, `setresgid(gid)`, `setresuid(uid)` (real, effective and saved);
/// 4. permitted and effective become exactly `keep`; inheritable and ambient are emptied (mcrelay
///    executes no program, so there is nothing to pass capabilities on to), keep-caps is reset;
/// 5. the result is read back and checked.
///
/// Already running as `name` (no switch needed): only checks `keep` with
/// [`check_capabilities`]. Running as anyone else but root: an error. Call it before any thread
/// is spawned (see the module documentation).
pub fn drop_to_user(name: &str, keep: &[Cap]) -> io::Result<()> {
    let user = lookup_user(name)?;
    let (ruid, euid, suid) = getresuid();
    if (ruid, euid, suid) == (user.uid, user.uid, user.uid) {
        return check_capabilities(keep)
            .map_err(|msg| io::Error::new(io::ErrorKind::PermissionDenied, msg));
    }
    if euid != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "switching to user {name} needs root, but mcrelay runs as uid {euid}: start it as root, or as {name} directly"
            ),
        ));
    }
    let keep_set: caps::CapsHashSet = keep.iter().map(|c| c.kernel()).collect();
    let step = |what: &str, e: caps::errors::CapsError| {
        io::Error::other(format!("dropping privileges: {what}: {e}"))
    };

    // 1. The bounding set, while still root (needs CAP_SETPCAP in the effective set).
    for cap in
        caps::read(None, CapSet::Bounding).map_err(|e| step("reading the bounding set", e))?
    {
        if !keep_set.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| step(&format!("dropping {cap} from the bounding set"), e))?;
        }
    }
    set_no_new_privs()?;

    // 2 and 3. Change identity, keeping the permitted set.
    caps::securebits::set_keepcaps(true).map_err(|e| step("PR_SET_KEEPCAPS", e))?;
    set_ids(&user)?;

    // 4. Exactly `keep`.
    let empty = caps::CapsHashSet::new();
    caps::set(None, CapSet::Effective, &empty)
        .map_err(|e| step("clearing the effective set", e))?;
    caps::set(None, CapSet::Permitted, &keep_set)
        .map_err(|e| step("setting the permitted set", e))?;
    caps::set(None, CapSet::Effective, &keep_set)
        .map_err(|e| step("setting the effective set", e))?;
    caps::set(None, CapSet::Inheritable, &empty)
        .map_err(|e| step("clearing the inheritable set", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| step("clearing the ambient set", e))?;
    caps::securebits::set_keepcaps(false).map_err(|e| step("resetting PR_SET_KEEPCAPS", e))?;

    // 5. Read back.
    if getresuid() != (user.uid, user.uid, user.uid)
        || getresgid() != (user.gid, user.gid, user.gid)
    {
        return Err(io::Error::other(format!(
            "dropping privileges: the switch to user {name} did not take"
        )));
    }
    let effective =
        caps::read(None, CapSet::Effective).map_err(|e| step("reading the effective set", e))?;
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(|e| step("reading the permitted set", e))?;
    if effective != keep_set || permitted != keep_set {
        return Err(io::Error::other(format!(
            "dropping privileges: expected exactly {:?}, have effective {effective:?}, permitted {permitted:?}",
            keep.iter().map(|c| c.name()).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn getresuid() -> (u32, u32, u32) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are to live locals, each valid for the write of one uid_t the
    // kernel makes; none is kept after the call, and getresuid cannot fail with valid pointers.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    (r, e, s)
}

fn getresgid() -> (u32, u32, u32) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are to live locals, each valid for the write of one gid_t the
    // kernel makes; none is kept after the call, and getresgid cannot fail with valid pointers.
    unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
    (r, e, s)
}

fn set_ids(user: &User) -> io::Result<()> {
    let fail = |what: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(
            e.kind(),
            format!("dropping privileges: {what} for user {}: {e}", user.name),
        )
    };
    // SAFETY: setgroups with a count of 0 reads no memory; the null pointer is allowed then.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(fail("setgroups([])"));
    }
    // SAFETY: integer arguments only, no memory is passed. glibc applies the change to every
    // thread of the process (its setxid broadcast), so no thread keeps the old ids.
    if unsafe { libc::setresgid(user.gid, user.gid, user.gid) } != 0 {
        return Err(fail("setresgid"));
    }
    // SAFETY: integer arguments only, no memory is passed; glibc applies the change to every
    // thread of the process, as for setresgid.
    if unsafe { libc::setresuid(user.uid, user.uid, user.uid) } != 0 {
        return Err(fail("setresuid"));
    }
    Ok(())
}

fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only; the unused ones must be zero.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("dropping privileges: PR_SET_NO_NEW_PRIVS: {e}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_raw_is_always_needed_net_admin_only_beyond_rmem_max() {
        assert_eq!(needed(212_992, 212_992), vec![Cap::NetRaw]);
        assert_eq!(needed(0, 212_992), vec![Cap::NetRaw]);
        assert_eq!(needed(32 << 20, 212_992), vec![Cap::NetRaw, Cap::NetAdmin]);
        assert_eq!(needed(32 << 20, 64 << 20), vec![Cap::NetRaw]);
    }

    #[test]
    fn names_match_capabilities_7() {
        assert_eq!(Cap::NetRaw.name(), "CAP_NET_RAW");
        assert_eq!(Cap::NetAdmin.name(), "CAP_NET_ADMIN");
        assert_eq!(Cap::NetRaw.kernel().to_string(), "CAP_NET_RAW");
        assert_eq!(Cap::NetAdmin.kernel().to_string(), "CAP_NET_ADMIN");
    }

    #[test]
    fn root_exists_in_the_user_database_and_a_made_up_user_does_not() {
        let root = lookup_user("root").expect("root is in every user database");
        assert_eq!((root.uid, root.gid), (0, 0));
        let err = lookup_user("mcrelay-no-such-user-4242").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .contains("mcrelay-no-such-user-4242 does not exist"),
            "{err}"
        );
    }
}
