//! Every dotted key the parser accepts, for documentation checks and editors.

/// Every key the configuration accepts, dotted; `*` stands for a user-chosen name
/// (an interface or destination name). Tables are listed too (`daemon`, `interfaces`, ...).
pub fn known_keys() -> &'static [&'static str] {
    &[
        "daemon",
        "daemon.control_socket",
        "daemon.control_group",
        "daemon.stats_interval",
        "daemon.silence_timeout",
        "daemon.reload_debounce",
        "daemon.metrics_listen",
        "daemon.user",
        "interfaces",
        "interfaces.*.ttl",
        "interfaces.*.ingress",
        "interfaces.*.workers",
        "interfaces.*.cpus",
        "interfaces.*.rcvbuf",
        "destinations",
        "destinations.*.interface",
        "destinations.*.group",
        "destinations.*.port",
        "destinations.*.address",
        "destinations.*.ttl",
        "destinations.*.dscp",
        "groups",
        "groups.name",
        "groups.interface",
        "groups.group",
        "groups.port",
        "groups.source",
        "groups.to",
        "groups.rtp",
    ]
}
