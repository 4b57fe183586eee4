//! CLI clients of the control socket: `mcrelay reload`, `status`, `stats`.
//!
//! OWNER: control/stats work (issues 4, 5). Stub.

use crate::cli::{ClientArgs, StatsArgs, StatusArgs};

pub fn cmd_reload(_args: ClientArgs) -> i32 {
    eprintln!("mcrelay: reload is not implemented yet");
    crate::exit::SOFTWARE
}

pub fn cmd_status(_args: StatusArgs) -> i32 {
    eprintln!("mcrelay: status is not implemented yet");
    crate::exit::SOFTWARE
}

pub fn cmd_stats(_args: StatsArgs) -> i32 {
    eprintln!("mcrelay: stats is not implemented yet");
    crate::exit::SOFTWARE
}
