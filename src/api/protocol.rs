//! Requests hyper refuses before the router sees them, answered in the
//! error contract like every other rejection.
//!
//! hyper answers a request head it cannot parse (a garbage request line, a
//! negative or conflicting `Content-Length`, more than 100 headers, a target
//! over 64 KiB) by itself, with an empty body and no `request_id`, and
//! closes the connection. Its server has no hook for that answer, so each
//! connection's stream is wrapped: the wrapper keeps the start of the latest
//! request head, recognizes hyper's automatic answer (a 400, 414 or 431 with
//! `content-length: 0` and no `x-request-id`, which every routed answer
//! carries) and writes a JSON `{request_id, error}` naming the problem in
//! its place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::answer::Failure;
use super::request_id::{self, RequestId};

/// How much of a request head is kept for explaining a refusal.
const HEAD_KEPT: usize = 16 * 1024;
/// hyper's default limit on request headers.
const MAX_HEADERS: usize = 100;
/// hyper's limit on the request target, in bytes.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// One connection's stream, see the module doc.
pub struct GuardedIo<S> {
    inner: S,
    /// The start of the latest request (reset when an answer starts).
    head: Vec<u8>,
    /// A replacement answer still to be written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<S> GuardedIo<S> {
    pub(crate) fn new(inner: S) -> Self {
        GuardedIo {
            inner,
            head: Vec::new(),
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> GuardedIo<S> {
    /// Writes what is left of the replacement answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let room = HEAD_KEPT.saturating_sub(self.head.len());
        let new = &buf.filled()[before..];
        let kept = &new[..new.len().min(room)];
        self.head.extend_from_slice(kept);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(status) = automatic_answer(buf) {
            let request_id = RequestId::generate();
            let message = explain(status, &self.head);
            tracing::info!(%request_id, status = status.as_u16(), error = %message, "refused a malformed request");
            self.pending = raw_answer(status, &request_id, message);
            self.written = 0;
            // What is not written now is by the flush hyper does next.
            if let Poll::Ready(Err(err)) = self.drain(cx) {
                return Poll::Ready(Err(err));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        if buf.starts_with(b"HTTP/1.") {
            self.head.clear();
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// Writes come one buffer at a time (hyper then writes an answer's
    /// head at the start of a buffer), so each can be looked at whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The status of hyper's own answer to an unparsable request, if `buf`
/// starts with one.
fn automatic_answer(buf: &[u8]) -> Option<StatusCode> {
    if !buf.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    if !response.parse(buf).ok()?.is_complete() {
        return None;
    }
    let status = StatusCode::from_u16(response.code?).ok()?;
    let automatic = [
        StatusCode::BAD_REQUEST,
        StatusCode::URI_TOO_LONG,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ];
    let has = |name: &str| {
        response
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    let empty = response
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length") && h.value == b"0");
    (automatic.contains(&status) && empty && !has(request_id::HEADER)).then_some(status)
}

/// Why hyper refused the request that starts with `head`, in words.
fn explain(status: StatusCode, head: &[u8]) -> String {
    match status {
        StatusCode::URI_TOO_LONG => {
            format!("the request target (path and query) is longer than {MAX_TARGET} bytes")
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::Request::new(&mut headers).parse(head) {
                Err(httparse::Error::TooManyHeaders) => {
                    format!("the request has more than {MAX_HEADERS} headers")
                }
                _ => "the request head (its headers) is too large".into(),
            }
        }
        _ => explain_malformed(head),
    }
}

fn explain_malformed(head: &[u8]) -> String {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS * 2];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(head);
    let problem = match parsed {
        Err(httparse::Error::Token | httparse::Error::Status) => {
            "the request line is not `METHOD /path HTTP/1.1`".to_owned()
        }
        Err(httparse::Error::Version) => "the HTTP version is not HTTP/1.0 or HTTP/1.1".to_owned(),
        Err(httparse::Error::HeaderName) => "a header name is malformed".to_owned(),
        Err(httparse::Error::HeaderValue) => "a header value is malformed".to_owned(),
        Err(httparse::Error::NewLine) => "a line of the request head is malformed".to_owned(),
        Err(err) => err.to_string(),
        Ok(_) => malformed_framing(request.headers)
            .unwrap_or_else(|| "the request head is malformed".to_owned()),
    };
    format!("malformed request: {problem}")
}

/// A `Content-Length` or `Transfer-Encoding` hyper cannot frame a body by.
fn malformed_framing(headers: &[httparse::Header<'_>]) -> Option<String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
            .collect()
    };
    let lengths = values("content-length");
    if let Some(bad) = lengths.iter().find(|v| v.parse::<u64>().is_err()) {
        let shown: String = bad.chars().take(32).collect();
        return Some(format!(
            "`Content-Length` must be a whole number of bytes, got `{shown}`"
        ));
    }
    if lengths.windows(2).any(|pair| pair[0] != pair[1]) {
        return Some("`Content-Length` is given more than once with different values".into());
    }
    let codings = values("transfer-encoding");
    let last = codings
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .next_back();
    match last {
        Some(last) if !last.eq_ignore_ascii_case("chunked") => {
            Some("`Transfer-Encoding` must end in `chunked`".into())
        }
        _ => None,
    }
}

/// A whole HTTP/1.1 answer in the error contract, closing the connection.
fn raw_answer(status: StatusCode, request_id: &RequestId, message: String) -> Vec<u8> {
    let body = Failure::Protocol { status, message }.to_bytes(request_id);
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {}: {request_id}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        request_id::HEADER,
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_only_hyper_own_answers() {
        let automatic = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_answer(automatic), Some(StatusCode::BAD_REQUEST));
        let routed =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: req_1\r\n\r\n";
        assert_eq!(automatic_answer(routed), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n\r\n{}";
        assert_eq!(automatic_answer(with_body), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(ok), None);
        assert_eq!(automatic_answer(b"HTTP/1.1 4"), None);
    }

    #[test]
    fn explains_each_refusal() {
        let cases: [(&[u8], &str); 5] = [
            (b"GARBAGE\r\n\r\n", "request line"),
            (b"POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", "got `-1`"),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "more than once",
            ),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                "end in `chunked`",
            ),
            (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", "header name"),
        ];
        for (head, expected) in cases {
            let message = explain(StatusCode::BAD_REQUEST, head);
            assert!(message.contains(expected), "{message}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let message = explain(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, head.as_bytes());
        assert!(message.contains("more than 100 headers"), "{message}");
        let message = explain(StatusCode::URI_TOO_LONG, b"");
        assert!(message.contains("longer than"), "{message}");
    }

    #[test]
    fn the_answer_is_json_with_its_request_id() {
        let id = RequestId::generate();
        let raw = raw_answer(StatusCode::BAD_REQUEST, &id, "malformed request: x".into());
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["request_id"], id.as_str());
        assert_eq!(body["error"], "malformed request: x");
    }
}
