//! Test support that is not part of the shipped library: compiled for this crate's own unit
//! tests and, with the `testkit` feature, for the benchmarks, the integration tests, the fuzz
//! corpus writer and the `mcrelay-traffic` test tool. `cargo build --release` (the packaged
//! daemon) builds neither this module nor `mcrelay-traffic`.
//!
//! * [`frames`]: IPv4/IPv6 UDP frames, valid or malformed on purpose, as AF_PACKET delivers
//!   them.
//! * [`interface`]: a table interface with the defaults, for tables built by hand.

pub mod frames;

use crate::table::{IngressMode, Interface};

/// An interface named `name` with small, fixed settings (TTL 1, frames ingress, one worker,
/// 1 MiB ring), for tables that tests build without the configuration compiler.
pub fn interface(name: &str) -> Interface {
    Interface {
        name: name.into(),
        ttl: 1,
        ingress: IngressMode::Frames,
        workers: 1,
        cpus: vec![],
        rcvbuf: 1 << 20,
    }
}
