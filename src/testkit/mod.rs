//! Test support that is not part of the shipped library: compiled for this crate's own unit
//! tests and, with the `testkit` feature, for the benchmarks, the integration tests, the fuzz
//! corpus writer and the `mcrelay-traffic` test tool. `cargo build --release` (the packaged
//! daemon) builds neither this module nor `mcrelay-traffic`.
//!
//! * [`frames`]: IPv4/IPv6 UDP frames, valid or malformed on purpose, as AF_PACKET delivers
//!   them.

pub mod frames;
