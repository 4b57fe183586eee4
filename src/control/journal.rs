//! Log lines the systemd journal understands, with their subject as journal fields.
//!
//! On a terminal, logs are tracing's usual human-readable lines. Under systemd (stderr connected
//! to the journal, which sets `JOURNAL_STREAM`), each event is sent to the journal over its
//! native protocol (systemd.journal-fields(7), one datagram to `/run/systemd/journal/socket`):
//! `MESSAGE=` is the line a person reads, `PRIORITY=` its sd-daemon(3) level, and the event's
//! fields that name what it is about become fields of their own, so that
//!
//! ```text
//! journalctl -u mcrelay MCRELAY_GROUP=camera-1
//! ```
//!
//! finds every line about that group: `group=` → `MCRELAY_GROUP=`, `destination=` →
//! `MCRELAY_DESTINATION=`, `interface=` → `MCRELAY_INTERFACE=`, `generation=` →
//! `MCRELAY_GENERATION=`, and any other field `name=` → `MCRELAY_NAME=` (also kept in the message
//! text). Should the journal socket refuse a datagram, the event goes to stderr as one line
//! prefixed with its priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace),
//! which the journal also understands, only without the fields. An event whose message spans
//! several lines is joined into one with ` | `: one event, one line.

use std::fmt;
use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Where journald receives native-protocol datagrams.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Event fields that name the subject of a log line, and their journal field names. These are
/// journal fields only: the message text already says them in words.
pub const SUBJECT_FIELDS: [(&str, &str); 4] = [
    ("group", "MCRELAY_GROUP"),
    ("destination", "MCRELAY_DESTINATION"),
    ("interface", "MCRELAY_INTERFACE"),
    ("generation", "MCRELAY_GENERATION"),
];

/// True when stderr goes to the journal.
pub fn under_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())
}

/// The sd-daemon(3) priority of a level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Sends each event to the journal with its fields (see the module documentation); falls back
/// to `<priority>message field=value` on the writer, one line per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let entry = Entry::of(event);
        if let Some(socket) = journal_socket()
            && socket.send_to(&entry.encode(), JOURNAL_SOCKET).is_ok()
        {
            return Ok(());
        }
        let mut line = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut line), event)?;
        let line = line.trim_end().replace('\n', " | ");
        writeln!(writer, "<{}>{line}", priority(event.metadata().level()))
    }
}

/// One unbound datagram socket for the whole process, if journald listens (never in unit tests,
/// which must not write into the journal of the machine running them).
fn journal_socket() -> Option<&'static UnixDatagram> {
    if cfg!(test) {
        return None;
    }
    static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            Path::new(JOURNAL_SOCKET)
                .exists()
                .then(UnixDatagram::unbound)
                .and_then(Result::ok)
        })
        .as_ref()
}

/// A journal entry: the fields of one event, as journald will store them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `(NAME, value)`, `MESSAGE` and `PRIORITY` first.
    pub fields: Vec<(String, String)>,
}

impl Entry {
    /// The entry of one tracing event.
    pub fn of(event: &Event<'_>) -> Entry {
        let mut v = Fields::default();
        event.record(&mut v);
        let mut message = v.message.trim_end().replace('\n', " | ");
        for (name, value) in &v.others {
            let _ = write!(message, " {name}={value}");
        }
        let mut fields = vec![
            ("MESSAGE".to_string(), message.trim_start().to_string()),
            (
                "PRIORITY".to_string(),
                priority(event.metadata().level()).to_string(),
            ),
            ("SYSLOG_IDENTIFIER".to_string(), "mcrelay".to_string()),
        ];
        for (name, value) in v.subjects.into_iter().chain(v.others) {
            fields.push((journal_field_name(&name), value));
        }
        Entry { fields }
    }

    /// The native protocol's encoding: `NAME=value\n` per field, or, for a value with a line
    /// break, `NAME\n`, its length as 64-bit little endian, the value and `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in &self.fields {
            out.extend_from_slice(name.as_bytes());
            if value.contains('\n') {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                out.push(b'=');
            }
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// The journal field for an event field: a subject's own name, else `MCRELAY_` and the name in
/// upper case, with anything but letters, digits and `_` replaced by `_` (journald accepts only
/// those, up to 64 characters).
pub fn journal_field_name(field: &str) -> String {
    if let Some((_, name)) = SUBJECT_FIELDS.iter().find(|(f, _)| *f == field) {
        return name.to_string();
    }
    let mut name = String::from("MCRELAY_");
    name.extend(field.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    name.truncate(64);
    name
}

/// An event's fields, sorted into the message, subjects and the rest.
#[derive(Default)]
struct Fields {
    message: String,
    subjects: Vec<(String, String)>,
    others: Vec<(String, String)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: String) {
        let name = field.name();
        if name == "message" {
            self.message = value;
        } else if SUBJECT_FIELDS.iter().any(|(f, _)| *f == name) {
            self.subjects.push((name.to_string(), value));
        } else {
            self.others.push((name.to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_line_per_event_with_its_priority() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(JournalFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("configuration rejected");
            tracing::warn!(trigger = "file", "group cam1 on in0 is DOWN");
            tracing::info!("line one\nline two");
            tracing::debug!("details");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "<3>configuration rejected\n\
             <4>group cam1 on in0 is DOWN trigger=\"file\"\n\
             <6>line one | line two\n\
             <7>details\n"
        );
    }

    /// Collects the journal entries of events, as `JournalFormat` would send them.
    fn entries(f: impl FnOnce()) -> Vec<Entry> {
        use std::sync::Mutex;
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
        struct Collect(Arc<Mutex<Vec<Entry>>>);
        impl<S: Subscriber> Layer<S> for Collect {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                self.0.lock().unwrap().push(Entry::of(event));
            }
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Collect(got.clone()));
        tracing::subscriber::with_default(subscriber, f);
        got.lock().unwrap().clone()
    }

    fn field<'e>(e: &'e Entry, name: &str) -> Option<&'e str> {
        e.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn subjects_become_journal_fields_and_stay_out_of_the_message() {
        let e = entries(|| {
            tracing::warn!(
                group = "camera-1",
                interface = "eth0",
                generation = 4u64,
                trigger = "file",
                "group camera-1 on eth0 is DOWN"
            );
            tracing::info!(destination = "studio b", "line one\nline two");
        });
        assert_eq!(
            e[0].fields,
            [
                ("MESSAGE", "group camera-1 on eth0 is DOWN trigger=file"),
                ("PRIORITY", "4"),
                ("SYSLOG_IDENTIFIER", "mcrelay"),
                ("MCRELAY_GROUP", "camera-1"),
                ("MCRELAY_INTERFACE", "eth0"),
                ("MCRELAY_GENERATION", "4"),
                ("MCRELAY_TRIGGER", "file"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert_eq!(field(&e[1], "MESSAGE"), Some("line one | line two"));
        assert_eq!(field(&e[1], "MCRELAY_DESTINATION"), Some("studio b"));
        assert_eq!(field(&e[1], "PRIORITY"), Some("6"));
    }

    #[test]
    fn field_names_are_what_journald_accepts() {
        assert_eq!(journal_field_name("group"), "MCRELAY_GROUP");
        assert_eq!(journal_field_name("send.errors-x"), "MCRELAY_SEND_ERRORS_X");
        assert_eq!(journal_field_name(&"a".repeat(100)).len(), 64);
    }

    /// The datagram as journald parses it: simple `NAME=value` lines, and the binary form for a
    /// value with a line break.
    #[test]
    fn encoding_follows_the_native_protocol() {
        let e = Entry {
            fields: vec![
                ("MESSAGE".into(), "relayed".into()),
                ("MCRELAY_ERRORS".into(), "a\nb".into()),
            ],
        };
        let mut want = b"MESSAGE=relayed\nMCRELAY_ERRORS\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(e.encode(), want);
    }
}
