//! Who may use the page: it drives the sandbox's users and faults, so it
//! must not be reachable from elsewhere.
//!
//! - The bind address must be loopback unless the page is public, and a
//!   public page needs a token ([`check_bind`]).
//! - A loopback page answers only requests whose `Host` is a loopback name,
//!   so a web site rebinding its DNS name to 127.0.0.1 cannot drive it.
//! - Every request that changes something must carry `X-Telegate-Web: 1`,
//!   which a cross-site form or `no-cors` fetch cannot send.
//! - With a token, each request carries it: the `telegate_web` cookie (set
//!   when the page is opened with `?token=`), or `Authorization: Bearer`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::WebOptions;
use crate::config::Secret;

/// The header every changing request must carry.
pub(super) const WRITE_HEADER: &str = "x-telegate-web";
const COOKIE: &str = "telegate_web";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "the web page may only listen on a loopback address, not {0} (give --web-public to serve it beyond this machine, with a token)"
    )]
    NotLoopback(SocketAddr),
    #[error("a public web page (--web-public) needs a token")]
    NoToken,
    #[error("the web token must be 16 to 256 visible ASCII characters")]
    BadToken,
}

/// Refuses a non-loopback `addr` unless `public`, and a public page
/// without a usable token.
pub fn check_bind(
    addr: SocketAddr,
    public: bool,
    token: Option<&Secret>,
) -> Result<(), AccessError> {
    if let Some(token) = token {
        let text = token.expose();
        let visible = text.bytes().all(|b| b.is_ascii_graphic() && b != b';');
        if !(16..=256).contains(&text.len()) || !visible {
            return Err(AccessError::BadToken);
        }
    }
    match (public, token) {
        (true, None) => Err(AccessError::NoToken),
        (false, _) if !addr.ip().is_loopback() => Err(AccessError::NotLoopback(addr)),
        _ => Ok(()),
    }
}

/// A fresh random token (32 hex digits).
pub fn new_token() -> Secret {
    let bytes: [u8; 16] = rand::random();
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// What [`guard`] checks, from the options.
#[derive(Clone)]
pub(super) struct Policy {
    public: bool,
    /// SHA-256 of the token: compared digest to digest, so the comparison
    /// time says nothing about the token.
    token: Option<[u8; 32]>,
}

impl Policy {
    pub(super) fn new(options: &WebOptions) -> Self {
        Policy {
            public: options.public,
            token: options.token.as_ref().map(|t| digest(t.expose())),
        }
    }

    fn token_ok(&self, headers: &HeaderMap, uri: &Uri) -> TokenCheck {
        let Some(expected) = self.token else {
            return TokenCheck::Ok;
        };
        let matches = |candidate: &str| digest(candidate) == expected;
        if let Some(candidate) = query_token(uri) {
            return if matches(&candidate) {
                TokenCheck::FromQuery
            } else {
                TokenCheck::Wrong
            };
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .find(|value| matches(value));
        match (bearer, cookie) {
            (_, Some(_)) => TokenCheck::Ok,
            (Some(b), None) if matches(b) => TokenCheck::Ok,
            (Some(_), None) => TokenCheck::Wrong,
            (None, None) => TokenCheck::Missing,
        }
    }
}

enum TokenCheck {
    Ok,
    /// Right, in `?token=`: set the cookie and drop it from the address.
    FromQuery,
    Missing,
    Wrong,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn query_token(uri: &Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// `uri` without its `token` query parameter.
fn without_token(uri: &Uri) -> String {
    let kept: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in kept.iter().filter(|(key, _)| key != "token") {
        query.append_pair(key, value);
    }
    let query = query.finish();
    if query.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{query}", uri.path())
    }
}

/// Whether `Host` names this machine's loopback.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// The middleware in front of every route.
pub(super) async fn guard(State(policy): State<Policy>, request: Request, next: Next) -> Response {
    if !policy.public && !loopback_host(request.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this page answers only to a loopback Host (127.0.0.1, localhost, [::1])",
        );
    }
    match policy.token_ok(request.headers(), request.uri()) {
        TokenCheck::Ok => {}
        TokenCheck::FromQuery => {
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                query_token(request.uri()).unwrap_or_default()
            );
            let location = without_token(request.uri());
            return (
                StatusCode::SEE_OTHER,
                [(header::SET_COOKIE, cookie), (header::LOCATION, location)],
            )
                .into_response();
        }
        TokenCheck::Missing => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this page needs its token: open it as /?token=TOKEN (the sandbox's log says where the token is)",
            );
        }
        TokenCheck::Wrong => return refuse(StatusCode::UNAUTHORIZED, "wrong web token"),
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && request.headers().get(WRITE_HEADER).is_none() {
        return refuse(
            StatusCode::FORBIDDEN,
            "a request that changes something needs the X-Telegate-Web header (the page sends it)",
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret::new("0123456789abcdef0123")
    }

    #[test]
    fn only_loopback_unless_public_and_public_needs_a_token() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:8080".parse().unwrap();
        assert_eq!(check_bind(lo, false, None), Ok(()));
        assert_eq!(check_bind(lo6, false, None), Ok(()));
        assert_eq!(
            check_bind(any, false, None),
            Err(AccessError::NotLoopback(any))
        );
        assert_eq!(
            check_bind(lan, false, Some(&token())),
            Err(AccessError::NotLoopback(lan))
        );
        assert_eq!(check_bind(any, true, None), Err(AccessError::NoToken));
        assert_eq!(check_bind(lo, true, None), Err(AccessError::NoToken));
        assert_eq!(check_bind(any, true, Some(&token())), Ok(()));
        assert_eq!(
            check_bind(lo, true, Some(&Secret::new("short"))),
            Err(AccessError::BadToken)
        );
        assert_eq!(check_bind(lo, false, Some(&new_token())), Ok(()));
    }

    #[test]
    fn host_must_be_a_loopback_name() {
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            loopback_host(&headers)
        };
        for good in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.3.4.5",
        ] {
            assert!(with_host(good), "{good}");
        }
        for bad in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "[fe80::1]:80",
            "localhost.evil",
        ] {
            assert!(!with_host(bad), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn the_token_is_dropped_from_the_address() {
        let uri: Uri = "/?user=5&token=abc".parse().unwrap();
        assert_eq!(without_token(&uri), "/?user=5");
        let uri: Uri = "/?token=abc".parse().unwrap();
        assert_eq!(without_token(&uri), "/");
    }
}
