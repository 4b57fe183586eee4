//! The control socket (`daemon.control_socket`): newline-delimited JSON requests and responses.
//!
//! OWNER: control/stats work (issue 5). Stub.

pub mod client;
