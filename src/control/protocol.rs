//! The control protocol: one JSON object per line each way, both carrying `"version": 1`.
//!
//! Requests: `{"version":1,"request":"status"}`, `"stats"` or `"reload"`. Responses:
//! `{"version":1,"ok":true,"status":{…}}` (or `"stats"`, `"reload"`), or
//! `{"version":1,"ok":false,"error":{"code":"…","message":"…"}}`. A line longer than
//! [`MAX_LINE`] bytes, invalid JSON, a missing or unknown version or request each get an error
//! response; none of them reaches the daemon. Decoding is pure ([`parse_request`]) so every
//! error path is unit-tested.

use serde::{Deserialize, Serialize};

use crate::control::view::{StatsReport, StatusReport};
use crate::reload::ReloadOutcome;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Longest request line accepted, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Status,
    Stats,
    Reload,
}

/// A request line as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestLine {
    pub version: u32,
    pub request: Request,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a JSON object, or not UTF-8.
    Malformed,
    /// Longer than [`MAX_LINE`].
    TooLarge,
    /// `version` missing or not one this daemon speaks.
    UnsupportedVersion,
    /// `request` missing or not one of status, stats, reload.
    UnknownRequest,
    /// Too many clients at once.
    Busy,
    /// The daemon could not answer (internal error).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

/// One response line. Exactly one of `status`, `stats`, `reload`, `error` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReply>,
}

impl Response {
    fn empty(ok: bool) -> Response {
        Response {
            version: VERSION,
            ok,
            status: None,
            stats: None,
            reload: None,
            error: None,
        }
    }

    pub fn status(s: StatusReport) -> Response {
        Response {
            status: Some(s),
            ..Response::empty(true)
        }
    }

    pub fn stats(s: StatsReport) -> Response {
        Response {
            stats: Some(s),
            ..Response::empty(true)
        }
    }

    pub fn reload(r: ReloadOutcome) -> Response {
        Response {
            reload: Some(r),
            ..Response::empty(true)
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::refusal(err(code, message))
    }

    pub fn refusal(e: ErrorReply) -> Response {
        Response {
            error: Some(e),
            ..Response::empty(false)
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"version":{VERSION},"ok":false,"error":{{"code":"internal","message":"cannot encode the response: {e}"}}}}"#
            )
        });
        s.push('\n');
        s
    }
}

/// The line a client sends for `request`, newline included.
pub fn request_line(request: Request) -> String {
    let mut s = serde_json::to_string(&RequestLine {
        version: VERSION,
        request,
    })
    .expect("a request always encodes");
    s.push('\n');
    s
}

/// Decodes one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, ErrorReply> {
    if line.len() > MAX_LINE {
        return Err(too_large());
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| err(ErrorCode::Malformed, "the request is not UTF-8"))?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        err(
            ErrorCode::Malformed,
            format!("the request is not valid JSON: {e}"),
        )
    })?;
    let obj = value.as_object().ok_or_else(|| {
        err(
            ErrorCode::Malformed,
            "the request must be a JSON object with \"version\" and \"request\"",
        )
    })?;
    match obj.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(err(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported; this daemon speaks version {VERSION}"
                ),
            ));
        }
        None => {
            return Err(err(
                ErrorCode::UnsupportedVersion,
                format!("the request has no numeric \"version\"; send \"version\": {VERSION}"),
            ));
        }
    }
    let name = obj.get("request").and_then(|r| r.as_str()).ok_or_else(|| {
        err(
            ErrorCode::UnknownRequest,
            "the request has no \"request\" string; use status, stats or reload",
        )
    })?;
    match name {
        "status" => Ok(Request::Status),
        "stats" => Ok(Request::Stats),
        "reload" => Ok(Request::Reload),
        other => Err(err(
            ErrorCode::UnknownRequest,
            format!(
                "unknown request {:?}; use status, stats or reload",
                truncate(other, 64)
            ),
        )),
    }
}

pub fn too_large() -> ErrorReply {
    err(
        ErrorCode::TooLarge,
        format!("the request is longer than {MAX_LINE} bytes"),
    )
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        code,
        message: message.into(),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &[u8]) -> ErrorCode {
        parse_request(line).unwrap_err().code
    }

    #[test]
    fn valid_requests() {
        for (r, name) in [
            (Request::Status, "status"),
            (Request::Stats, "stats"),
            (Request::Reload, "reload"),
        ] {
            let line = request_line(r);
            assert_eq!(line, format!("{{\"version\":1,\"request\":\"{name}\"}}\n"));
            assert_eq!(parse_request(line.trim_end().as_bytes()).unwrap(), r);
        }
        // Extra fields are tolerated (forward compatibility within a version).
        assert_eq!(
            parse_request(br#"{"request":"stats","version":1,"client":"x"}"#).unwrap(),
            Request::Stats
        );
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(code(b"garbage"), ErrorCode::Malformed);
        assert_eq!(code(b"\xff\xfe"), ErrorCode::Malformed);
        assert_eq!(code(b"[1,2]"), ErrorCode::Malformed);
        assert_eq!(
            code(br#"{"request":"status"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            code(br#"{"version":2,"request":"status"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            code(br#"{"version":"1","request":"status"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(code(br#"{"version":1}"#), ErrorCode::UnknownRequest);
        assert_eq!(
            code(br#"{"version":1,"request":"shutdown"}"#),
            ErrorCode::UnknownRequest
        );
        assert_eq!(code(&vec![b'x'; MAX_LINE + 1]), ErrorCode::TooLarge);
    }

    #[test]
    fn error_responses_round_trip() {
        let r = Response::error(ErrorCode::Busy, "too many clients");
        let line = r.to_line();
        assert!(line.ends_with('\n'));
        assert!(!line[..line.len() - 1].contains('\n'));
        assert!(
            line.starts_with(r#"{"version":1,"ok":false,"error":{"code":"busy""#),
            "{line}"
        );
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }
}
