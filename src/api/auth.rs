//! Which bot a request is for: its API key, and what that key may reach.
//!
//! A request names its bot by its key, `X-Octopods-Auth: KEY` (the seed's
//! header) or `Authorization: Bearer KEY`. With keys configured, a missing
//! or unknown key is 401, a deprecated key 400 with `error_code` 6, a
//! disabled bot's key 403. A bot's key reaches only that bot's jobs, events,
//! clicks, webhook and media; an operator key (`[api] admin_keys`) reaches
//! every bot and may name one with `?bot=NAME`. With no key configured
//! anywhere the socket works without one, as the operator. Keys are never
//! logged; the comparison is the keyring's, in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiState;
use super::answer::Failure;
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::{BotEntry, Bots, Caller, Refusal};
use crate::error::{ApiError, ErrorCode};

/// The seed's key header.
pub const KEY_HEADER: &str = "x-octopods-auth";

/// The key a request presents, if any.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(key) = headers.get(KEY_HEADER) {
        return Some(key.as_bytes());
    }
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// The probes and the scrape need no key: they show no bot's data. CM.com's
/// `/v1.0/message` carries its key in its own envelope (the product token,
/// looked up in the same keyring by `cm`) and answers refusals in CM's shape.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/v1.0/message"];

/// Middleware: puts the request's [`Caller`] in its extensions, or answers
/// the refusal. The paths of [`OPEN_PATHS`] need no key here.
pub async fn authenticate(
    State(api): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match api.bots.authenticate(presented(request.headers())) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => {
            let id = request
                .extensions()
                .get::<RequestId>()
                .cloned()
                .unwrap_or_else(RequestId::generate);
            Failure::from(refusal).answer(&id)
        }
    }
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::MissingKey | Refusal::UnknownKey => Failure::Unauthorized(message),
            Refusal::Deprecated(_) => Failure::BadRequest(ApiError {
                code: ErrorCode::DeprecatedKey,
                message,
            }),
            Refusal::Disabled(_) => Failure::Forbidden(message),
        }
    }
}

impl Caller {
    /// The bot a request covers: the key's, or the `?bot=` an operator
    /// names (`None`: every bot).
    pub fn scope(&self, bots: &Bots, query: &Query) -> Result<Option<String>, Failure> {
        match (self, query.get("bot")) {
            (Caller::Bot(entry), named) => {
                check_own(entry, named)?;
                Ok(Some(entry.name().to_string()))
            }
            (Caller::Operator, Some(name)) => Ok(Some(named(bots, name)?.name().to_string())),
            (Caller::Operator, None) => Ok(None),
        }
    }

    /// The one bot a request acts for: the key's, the `?bot=` an operator
    /// names, or the only bot there is.
    pub fn bot(&self, bots: &Bots, query: &Query) -> Result<Arc<BotEntry>, Failure> {
        match (self, query.get("bot")) {
            (Caller::Bot(entry), named) => {
                check_own(entry, named)?;
                Ok(Arc::clone(entry))
            }
            (Caller::Operator, Some(name)) => named(bots, name),
            (Caller::Operator, None) => match &bots.list()[..] {
                [only] => Ok(Arc::clone(only)),
                _ => Err(ApiError::rejected(
                    "several bots are configured: name one with `?bot=NAME`",
                )
                .into()),
            },
        }
    }

    /// Whether the request may see something of bot `name`.
    pub fn may_see(&self, name: &str) -> bool {
        match self {
            Caller::Bot(entry) => entry.name().as_str() == name,
            Caller::Operator => true,
        }
    }
}

fn check_own(entry: &BotEntry, named: Option<&str>) -> Result<(), Failure> {
    match named {
        Some(name) if name != entry.name().as_str() => Err(Failure::Forbidden(format!(
            "this API key is bot `{}`'s; it cannot act for bot `{name}`",
            entry.name()
        ))),
        _ => Ok(()),
    }
}

fn named(bots: &Bots, name: &str) -> Result<Arc<BotEntry>, Failure> {
    bots.get(name)
        .ok_or_else(|| Failure::NotFound(format!("no bot `{name}` is configured")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_key_comes_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  k1 "),
        );
        assert_eq!(presented(&headers), Some(&b"k1"[..]));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k1"));
        assert_eq!(presented(&headers), None);
        headers.insert(KEY_HEADER, HeaderValue::from_static("k2"));
        assert_eq!(presented(&headers), Some(&b"k2"[..]));
    }
}
