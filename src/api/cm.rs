//! `POST /v1.0/message`: CM.com's Business Messaging gateway, so a CM.com
//! client ports by changing its base URL.
//!
//! The envelope is read by [`crate::cm`]; here its product token picks the
//! bot, every accepted recipient becomes a text and media job (all of one
//! request stored in one commit), and the answer is CM's: `details`,
//! `errorCode` and per recipient `to`, `status` (`Accepted`/`Rejected`),
//! `reference`, `parts`, `messageDetails`, `messageErrorCode` — plus
//! telegate's `job_id` for each accepted one. Like CM's gateway it answers
//! on acceptance: the jobs' results come as events (with the `reference`).

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::ApiState;
use super::answer::{self, Failure};
use super::enqueue::{Validated, read_body};
use super::request_id::RequestId;
use crate::cm::{Accepted, CmCode, Envelope, Outcome, Refused};
use crate::outgoing;
use crate::queue::JobKind;

/// CM's header for the product token (its recommended place for it).
pub const PRODUCT_TOKEN_HEADER: &str = "x-cm-producttoken";

/// `POST /v1.0/message`.
pub async fn post_message(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match accept(&api, &request_id, &headers, body).await {
        Ok(response) => response,
        Err((status, refused)) => refusal(&request_id, status, &refused),
    }
}

type Refusal = (StatusCode, Refused);

async fn accept(
    api: &ApiState,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let bad = |refused| (StatusCode::BAD_REQUEST, refused);
    let body = read_body(body, headers, api.max_body_bytes)
        .await
        .map_err(failure)?;
    let envelope = Envelope::parse(&body).map_err(bad)?;
    let header_token = headers
        .get(PRODUCT_TOKEN_HEADER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let token = envelope.product_token.clone().or(header_token);
    let bot = sender::token_bot(api, token.as_deref()).map_err(bad)?;
    let outcomes: Vec<Outcome> = envelope
        .messages
        .iter()
        .flat_map(|msg| msg.outcomes(|from| bot.check_from(from)))
        .collect();
    let mut jobs = Vec::new();
    for outcome in &outcomes {
        if let Ok(Accepted { bot, request }) = &outcome.result {
            let validated = Validated::new(
                request.destination(),
                JobKind::Messages,
                request,
                &outgoing::messages(request),
            )
            .map_err(|err| bad(Refused::new(CmCode::InternalError, err.message)))?;
            jobs.push(validated.into_job(request_id, bot.clone(), None));
        }
    }
    let mut enqueued = api
        .queue
        .enqueue_all(jobs)
        .await
        .map_err(|err| failure(err.into()))?
        .into_iter();
    let mut accepted = 0;
    let entries: Vec<Value> = outcomes
        .iter()
        .map(|outcome| match &outcome.result {
            Ok(Accepted { request, .. }) => {
                accepted += 1;
                json!({
                    "to": outcome.to,
                    "status": "Accepted",
                    "reference": outcome.reference,
                    "parts": request.part_count(),
                    "messageDetails": null,
                    "messageErrorCode": CmCode::Ok.as_u16(),
                    "job_id": enqueued.next().map(|job| job.id),
                })
            }
            Err(refused) => json!({
                "to": outcome.to,
                "status": "Rejected",
                "reference": outcome.reference,
                "parts": 0,
                "messageDetails": refused.details,
                "messageErrorCode": refused.code.as_u16(),
            }),
        })
        .collect();
    let (status, code) = match (accepted, entries.len()) {
        (all, total) if all == total => (StatusCode::OK, CmCode::Ok),
        (0, _) => (StatusCode::BAD_REQUEST, CmCode::NotAllSent),
        _ => (StatusCode::OK, CmCode::NotAllSent),
    };
    Ok(answer::json(
        request_id,
        status,
        json!({
            "details": format!("Created {accepted} message(s)"),
            "errorCode": code.as_u16(),
            "messages": entries,
        }),
    ))
}

/// A failure of the request as a whole, in CM's shape (413 and 503 keep
/// their HTTP status).
fn failure(failure: Failure) -> Refusal {
    let status = failure.status();
    let refused = match failure {
        Failure::TooLarge(limit) => Refused::new(
            CmCode::RequestMalformed,
            format!("request body is larger than {limit} bytes"),
        ),
        Failure::BadRequest(err) => Refused::new(CmCode::RequestMalformed, err.message),
        other => Refused::new(CmCode::InternalError, format!("{other:?}")),
    };
    (status, refused)
}

fn refusal(request_id: &RequestId, status: StatusCode, refused: &Refused) -> Response {
    answer::json(
        request_id,
        status,
        // CM's fields, plus telegate's `error` so the answer also keeps the
        // error contract of every other endpoint.
        json!({
            "details": refused.details,
            "errorCode": refused.code.as_u16(),
            "messages": [],
            "error": refused.details,
        }),
    )
}

/// Which bot a product token names, and whether a `msg`'s `from` is it.
mod sender {
    use super::*;
    use crate::bots::{Caller, Refusal};

    /// A bot a request's `from` may name.
    pub(super) struct Candidate {
        pub(super) name: String,
        /// Telegram's id of the bot, once known.
        pub(super) telegram_id: Option<i64>,
    }

    impl Candidate {
        fn is_named(&self, from: &str) -> bool {
            let by_id = self
                .telegram_id
                .is_some_and(|id| from.trim() == id.to_string());
            from == self.name || by_id
        }
    }

    /// The bots a request's product token lets it send as: the one bot
    /// whose API key it is, or (an operator key, or a daemon with no key
    /// configured anywhere) every enabled bot.
    pub(super) struct TokenBot {
        pub(super) candidates: Vec<Candidate>,
        /// The token is one bot's key (its error says which bot).
        pub(super) own: bool,
    }

    impl TokenBot {
        /// `from` must name a bot of this token, by name or by Telegram bot
        /// id; the answer is the bot's name.
        pub(super) fn check_from(&self, from: &str) -> Result<String, String> {
            if let Some(bot) = self.candidates.iter().find(|bot| bot.is_named(from)) {
                return Ok(bot.name.clone());
            }
            let from = crate::interactive::echo(from);
            match (&self.candidates[..], self.own) {
                ([bot], true) => {
                    let id = bot
                        .telegram_id
                        .map_or(String::new(), |id| format!(" (Telegram bot id {id})"));
                    Err(format!(
                        "`from` is `{from}`, which is not the bot of this product token: give \
                         its name `{}`{id}",
                        bot.name
                    ))
                }
                (bots, _) => {
                    let names: Vec<&str> = bots.iter().map(|bot| bot.name.as_str()).collect();
                    Err(format!(
                        "`from` is `{from}`, which names no enabled bot of this gateway: give a \
                         bot's name ({}) or its Telegram bot id",
                        names.join(", ")
                    ))
                }
            }
        }
    }

    fn candidate(entry: &crate::bots::BotEntry) -> Candidate {
        Candidate {
            name: entry.name().to_string(),
            telegram_id: entry.status().telegram_id,
        }
    }

    /// The bots a request's product token names: a bot's API key (the
    /// keyring's constant-time lookup, as for `X-Octopods-Auth`).
    pub(super) fn token_bot(api: &ApiState, token: Option<&str>) -> Result<TokenBot, Refused> {
        let Some(token) = token.filter(|token| !token.trim().is_empty()) else {
            return Err(Refused::new(
                CmCode::InvalidProductToken,
                "invalid or missing product token: give `messages.authentication.producttoken` \
                 (or the `X-CM-PRODUCTTOKEN` header)",
            ));
        };
        let refused = |why: String| {
            Err(Refused::new(
                CmCode::AuthenticationFailed,
                format!("no account found for the given authentication: {why}"),
            ))
        };
        match api.bots.authenticate(Some(token.as_bytes())) {
            Ok(Caller::Bot(entry)) => Ok(TokenBot {
                candidates: vec![candidate(&entry)],
                own: true,
            }),
            Ok(Caller::Operator) => Ok(TokenBot {
                candidates: api
                    .bots
                    .list()
                    .iter()
                    .filter(|entry| entry.is_enabled())
                    .map(|entry| candidate(entry))
                    .collect(),
                own: false,
            }),
            Err(Refusal::MissingKey | Refusal::UnknownKey) => {
                refused("the product token is not an API key of any bot".into())
            }
            Err(refusal @ (Refusal::Deprecated(_) | Refusal::Disabled(_))) => {
                refused(refusal.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sender::{Candidate, TokenBot};

    fn token(candidates: &[(&str, Option<i64>)], own: bool) -> TokenBot {
        TokenBot {
            candidates: candidates
                .iter()
                .map(|&(name, telegram_id)| Candidate {
                    name: name.into(),
                    telegram_id,
                })
                .collect(),
            own,
        }
    }

    #[test]
    fn from_names_the_bot_by_name_or_telegram_id() {
        let bot = token(&[("shop", Some(7_933_779_519))], true);
        assert_eq!(bot.check_from("shop").as_deref(), Ok("shop"));
        assert_eq!(bot.check_from("7933779519").as_deref(), Ok("shop"));
        let err = bot.check_from("Shop").unwrap_err();
        assert!(err.contains("`Shop`") && err.contains("`shop`") && err.contains("7933779519"));
        let unknown = token(&[("shop", None)], true);
        assert!(unknown.check_from("7933779519").is_err());
        // An operator's token sends as any bot `from` names.
        let any = token(&[("shop", Some(1)), ("news", Some(2))], false);
        assert_eq!(any.check_from("2").as_deref(), Ok("news"));
        let err = any.check_from("blog").unwrap_err();
        assert!(err.contains("shop, news"), "{err}");
    }
}
