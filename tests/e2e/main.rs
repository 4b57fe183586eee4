//! End-to-end tests: real traffic through real namespaces. One test binary; run as root, one
//! test at a time (they assert zero loss):
//!
//! ```text
//! cargo test --test e2e -- --test-threads=1
//! ```
//!
//! The harness is in `netns.rs` (read its module doc). Each test module covers one scenario and
//! builds its own topology (`topology.rs`), which is removed when the test ends, passes or not.

mod netns;

mod control;
mod fan_out;
mod faults;
mod harness;
mod hostile;
mod ingress_modes;
mod interface_later;
mod ipv6;
mod jumbo;
mod limits;
mod listen;
mod malformed;
mod many_groups;
mod one_group;
mod redundancy;
mod reload;
mod rewrite;
mod same_interface;
mod source_specific;
mod stop;
mod to_unicast;
mod ttl_dscp;
mod tunnel;
mod unreachable_unicast;
mod unroutable_source;
