//! Errors and warnings located in the source text, rendered as `path:line:col: message`, the
//! offending line and a caret under the span.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Whether a finding stops the configuration from being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The configuration is rejected.
    Error,
    /// Worth knowing (for example an interface absent from this machine); the table is still built.
    Warning,
}

/// One error (or warning) found in a configuration file, located at `path:line:col`.
///
/// `Display` renders it in full: `path:line:col: message`, then the source line, then a caret
/// line under the offending span. `line` and `col` are 1-based; `col` counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// The text of line `line`, without its line break.
    pub source_line: String,
    /// How many characters the caret line underlines (at least 1).
    pub width: usize,
    pub severity: Severity,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        writeln!(
            f,
            "{}:{}:{}: {}{}",
            self.path.display(),
            self.line,
            self.col,
            prefix,
            self.message
        )?;
        writeln!(f, "  {}", self.source_line)?;
        // Keep tabs so the caret lines up with the source line in a terminal.
        let pad: String = self
            .source_line
            .chars()
            .take(self.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "  {}{}", pad, "^".repeat(self.width.max(1)))
    }
}

impl std::error::Error for ConfigError {}

/// Renders findings one after another, each as its `Display` form followed by a newline.
pub fn render_errors(errors: &[ConfigError]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str(&e.to_string());
        out.push('\n');
    }
    out
}

/// Turns byte offsets into `line:col` and the line's text.
pub(crate) struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Locator<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Locator {
            path,
            text,
            line_starts,
        }
    }

    /// A finding about the bytes `span` of the text.
    pub(crate) fn at(
        &self,
        span: Range<usize>,
        severity: Severity,
        message: String,
    ) -> ConfigError {
        let start = floor_char_boundary(self.text, span.start.min(self.text.len()));
        let line_idx = self.line_starts.partition_point(|&s| s <= start) - 1;
        let line_start = self.line_starts[line_idx];
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let source_line = self.text[line_start..line_end].trim_end_matches('\r');
        let col = self.text[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(self.text, span.end.clamp(start, line_end.max(start)));
        let width = self.text[start..end].chars().count().max(1);
        ConfigError {
            path: self.path.to_path_buf(),
            line: line_idx + 1,
            col,
            message,
            source_line: source_line.to_string(),
            width,
            severity,
        }
    }

    pub(crate) fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        self.at(span, Severity::Error, message)
    }

    /// The line number (1-based) of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_and_renders_a_span_on_the_second_line() {
        let text = "a = 1\nttl = 300\n";
        let loc = Locator::new(Path::new("x.toml"), text);
        let e = loc.error(12..15, "ttl 300 is out of range".into());
        assert_eq!((e.line, e.col, e.width), (2, 7, 3));
        assert_eq!(
            e.to_string(),
            "x.toml:2:7: ttl 300 is out of range\n  ttl = 300\n        ^^^"
        );
    }

    #[test]
    fn counts_columns_in_characters_and_keeps_tabs() {
        let text = "\tné = \"é\"";
        let loc = Locator::new(Path::new("x.toml"), text);
        let start = text.find('"').unwrap();
        let e = loc.error(start..text.len(), "m".into());
        assert_eq!((e.line, e.col, e.width), (1, 7, 3));
        assert!(e.to_string().ends_with("\n  \t     ^^^"), "{e}");
    }

    #[test]
    fn a_span_at_the_end_of_the_text_still_gets_a_caret() {
        let text = "a = [";
        let loc = Locator::new(Path::new("x.toml"), text);
        let e = loc.error(5..5, "m".into());
        assert_eq!((e.line, e.col, e.width), (1, 6, 1));
        assert_eq!(loc.line_of(0), 1);
    }
}
