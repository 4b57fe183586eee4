//! Log lines the systemd journal understands.
//!
//! On a terminal, logs are tracing's usual human-readable lines. Under systemd (stderr connected
//! to the journal, which sets `JOURNAL_STREAM`), each event is one line prefixed with its
//! sd-daemon(3) priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace), without
//! a timestamp or colours (the journal adds its own), so `journalctl -p warning` works. An event
//! whose message spans several lines is joined into one with ` | `: one event, one line.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

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

/// `<priority>message field=value`, one line per event.
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
        let mut line = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut line), event)?;
        let line = line.trim_end().replace('\n', " | ");
        writeln!(writer, "<{}>{line}", priority(event.metadata().level()))
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
}
