//! The error contract at the edge of the router: every rejection is JSON
//! `{request_id, error_code?, error}`, whoever made it.
//!
//! Handlers answer in the contract themselves; this covers the rest. A
//! request whose body is sent in a coding telegate does not decode
//! (`Content-Encoding: gzip`, `Transfer-Encoding: gzip, chunked`) is
//! refused with 415 before any handler reads it as plain, and an error axum
//! produced on its own (an extractor's plain-text rejection) is rewritten
//! into JSON with its status kept. Protocol errors below the router are
//! `protocol`'s.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use http_body_util::BodyExt;

use super::answer::Failure;
use super::request_id::RequestId;

/// The longest framework error text kept in a rewritten answer.
const MAX_TEXT: usize = 1024;

/// A refusal of `request` before routing, if its body is encoded.
pub fn screen(request: &Request) -> Option<Failure> {
    unsupported_coding(request.headers())
}

fn unsupported_coding(headers: &HeaderMap) -> Option<Failure> {
    let codings = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|value| {
                String::from_utf8_lossy(value.as_bytes())
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|coding| !coding.is_empty())
            .collect::<Vec<_>>()
    };
    if let Some(coding) = codings(header::CONTENT_ENCODING)
        .into_iter()
        .find(|c| c != "identity")
    {
        return Some(Failure::UnsupportedEncoding(format!(
            "`Content-Encoding: {}` is not supported: send the body uncompressed",
            shown(&coding)
        )));
    }
    codings(header::TRANSFER_ENCODING)
        .into_iter()
        .find(|c| c != "chunked")
        .map(|coding| {
            Failure::UnsupportedEncoding(format!(
                "`Transfer-Encoding: {}` is not supported: only `chunked` is",
                shown(&coding)
            ))
        })
}

fn shown(text: &str) -> String {
    text.chars().take(32).collect()
}

/// `response` in the contract: an error that is not JSON becomes one.
pub async fn conform(request_id: &RequestId, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match Body::new(response.into_body()).collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let mut message: String = text.trim().chars().take(MAX_TEXT).collect();
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("refused")
            .to_ascii_lowercase();
    }
    Failure::Protocol { status, message }.answer(request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn refuses_codings_it_does_not_decode() {
        let refused = |pairs: &[(header::HeaderName, &str)]| unsupported_coding(&headers(pairs));
        let gzip = refused(&[(header::CONTENT_ENCODING, "gzip")]).unwrap();
        assert_eq!(gzip.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(format!("{gzip:?}").contains("Content-Encoding: gzip"));
        let te = refused(&[(header::TRANSFER_ENCODING, "gzip, chunked")]).unwrap();
        assert!(format!("{te:?}").contains("Transfer-Encoding: gzip"));
        assert!(refused(&[(header::TRANSFER_ENCODING, "chunked")]).is_none());
        assert!(refused(&[(header::CONTENT_ENCODING, "identity")]).is_none());
        assert!(refused(&[]).is_none());
    }

    #[tokio::test]
    async fn plain_errors_become_json_with_their_status() {
        let id = RequestId::generate();
        let plain = (StatusCode::BAD_REQUEST, "Invalid URL: bad percent-encoding").into_response();
        let answer = conform(&id, plain).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["request_id"], id.as_str());
        assert_eq!(body["error"], "Invalid URL: bad percent-encoding");
        let ok = (StatusCode::OK, "fine").into_response();
        let body = conform(&id, ok)
            .await
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"fine");
    }
}
