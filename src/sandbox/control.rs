//! The control API: HTTP/1.1 + JSON on the Unix socket `DIR/sandbox.sock`.
//!
//! It is how a test or a person plays the users of the sandbox: create them,
//! write to the bot, press buttons, read the chat as the user's app shows it,
//! inject faults and read counters. Errors are JSON `{"error": "..."}` naming
//! the field and the rule, with Telegram's error name when Telegram refused.
//!
//! A sandbox may hold several bots (`telegate sandbox --bots N`). What is
//! about one bot — a user's chat with it, its role in a group, its privacy,
//! the faults aimed at "the bot" — takes `?bot=botK` (the K-th bot, as
//! `telegate.toml` names it) or `?bot=ID` (its user id); without it, the
//! first bot. Clicks need no bot: the message says whose button it is.
//!
//! | method, path | body → answer |
//! | --- | --- |
//! | `POST /users` | `{id?, first_name, last_name?, username?, lang_code?, premium?}` → `201 {id, access_hash, auth_key}` |
//! | `GET /users` | → `[{id, first_name, username, started}]` |
//! | `POST /users/{id}/messages` | one of `text`, `start`, `location`, `contact`, `photo`, `document`, `voice`, `video`, `sticker`, `venue`, `audio`, `video_note`, `animation`, `poll`, `dice`; `reply_to?` → `{message_id}` |
//! | `POST /users/{id}/click` | `{message_id, data}` → `{answer, elapsed_ms}` or `{error, elapsed_ms}`; `{message_id, text, location?}` → `{message_id}` |
//! | `GET /users/{id}/chat` | → messages, reply keyboard shown, force reply |
//! | `POST /users/{id}/block`, `/unblock` | → `{blocked}` (the bot gets `updateBotStopped`) |
//! | `POST /users/{id}/messages/{message_id}/edit` | `{text}` → `{}` |
//! | `POST /users/{id}/messages/{message_id}/delete` | → `{}` |
//! | `POST /users/{id}/messages/{message_id}/react`, `/groups/{id}/messages/{message_id}/react` | `{emoji \| null}`, `{from, emoji \| null}` → `{}` (the bot gets `updateBotMessageReaction`) |
//! | `POST /groups` | `{title, kind: group\|supergroup\|channel, members: [ids], bot: none\|member\|admin}` → `201 {id}` (`-N`, `-100N`) |
//! | `GET /groups` | → `[{id, kind, title, bot}]` |
//! | `POST /groups/{id}/messages` | `{from, text \| photo \| …, reply_to?}` → `{message_id}` |
//! | `POST /groups/{id}/messages/{message_id}/edit`, `/delete` | `{from, text}`, `{from}` → `{}` |
//! | `GET /groups/{id}/chat` | → members, the bot's role, messages |
//! | `POST /groups/{id}/bot` | `{action: add\|remove\|ban\|promote\|demote}` → `{bot: role}` |
//! | `POST /bot` | `{privacy}` → `{id, username, privacy}` |
//! | `POST /faults` | `{drop_connections?, latency_ms?, limits?, callback_timeout_ms?, user_id?, error?, times?, blackhole?, reset_mid_frame?, revoke_bot_session?, revoke_bot_token?, restore_bot_token?, bad_dc_config?, group_burst?, sign_in_flood_wait_s?, rpc_error?: {method, error, times?}, max_connections?, difference_slice?, difference_too_long?, push_backlog?, expire_file_references_after?, move_files?: {dc_id, after_chunks?}}` → the settings now |
//! | `GET /stats`, `GET /dc`, `GET /bot` | counters; `{dc_id, host, port, dcs: [{dc_id, host, port}]}`; `{id, username, privacy}` |
//! | `GET /bots` | → `[{name: botK, id, username, first_name, privacy}]` |

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::UnixListener;

use super::dc::Traffic;
use super::telegram::{
    AccountId, BotAction, ChatFault, DC_ID, DC_IDS, DifferenceRules, FakeTelegram, FileChange,
    GroupKind, NewGroup, NewUser, Pressed, Role, SandboxError, TgError, UserClick, UserMessage,
    to_hex,
};
use super::{Faults, InjectedError};

pub const SOCKET_NAME: &str = "sandbox.sock";
/// Telegram's longest last name.
const MAX_LAST_NAME: usize = 64;
/// A callback timeout above this is surely a typo.
const MAX_CALLBACK_TIMEOUT_MS: u64 = 600_000;

/// What the control API works on.
#[derive(Clone)]
pub struct Control {
    pub telegram: FakeTelegram,
    pub faults: Arc<Faults>,
    pub traffic: Arc<Traffic>,
    /// Where each DC listens.
    pub dc_addrs: BTreeMap<i32, SocketAddrV4>,
}

/// Serves the control API until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    control: Control,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(control))
        .with_graceful_shutdown(shutdown)
        .await
}

pub fn router(control: Control) -> Router {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route("/users/{id}/messages", post(user_message))
        .route("/users/{id}/click", post(click))
        .route("/users/{id}/chat", get(chat))
        .route("/users/{id}/block", post(block))
        .route("/users/{id}/unblock", post(unblock))
        .route("/users/{id}/messages/{message_id}/edit", post(user_edit))
        .route(
            "/users/{id}/messages/{message_id}/delete",
            post(user_delete),
        )
        .route("/users/{id}/messages/{message_id}/react", post(user_react))
        .route("/groups", post(create_group).get(list_groups))
        .route("/groups/{id}/messages", post(group_message))
        .route("/groups/{id}/messages/{message_id}/edit", post(group_edit))
        .route(
            "/groups/{id}/messages/{message_id}/delete",
            post(group_delete),
        )
        .route(
            "/groups/{id}/messages/{message_id}/react",
            post(group_react),
        )
        .route("/groups/{id}/chat", get(group_chat))
        .route("/groups/{id}/bot", post(group_bot))
        .route("/faults", post(faults))
        .route("/stats", get(stats))
        .route("/dc", get(dc))
        .route("/bot", get(bot).post(set_bot))
        .route("/bots", get(list_bots))
        .fallback(not_found)
        // Room for a photo or document of 8 MiB in base64.
        .layer(axum::extract::DefaultBodyLimit::max(12 << 20))
        .with_state(control)
}

/// An error answer: status and a JSON body.
struct Failure(StatusCode, Value);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl Failure {
    fn bad_request(message: impl Into<String>) -> Self {
        Failure(StatusCode::BAD_REQUEST, json!({"error": message.into()}))
    }
}

impl From<SandboxError> for Failure {
    fn from(error: SandboxError) -> Self {
        let status = match &error {
            SandboxError::UnknownUser(_)
            | SandboxError::UnknownBot(_)
            | SandboxError::UnknownMessage { .. }
            | SandboxError::UnknownGroup(_)
            | SandboxError::UnknownGroupMessage { .. } => StatusCode::NOT_FOUND,
            SandboxError::UserExists(_) | SandboxError::UsernameTaken(_) => StatusCode::CONFLICT,
            SandboxError::Invalid { .. } | SandboxError::Telegram(_) => StatusCode::BAD_REQUEST,
        };
        let mut body = json!({"error": error.to_string()});
        if let SandboxError::Telegram(tg) = &error {
            body["telegram_error"] = json!({"code": tg.code, "name": tg.name});
        }
        Failure(status, body)
    }
}

type ControlReply = Result<Response, Failure>;

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("invalid JSON body: {e}")))
}

/// `?bot=`: which bot a request is about.
#[derive(Debug, Default, Deserialize)]
struct WhichBot {
    bot: Option<String>,
}

impl Control {
    /// The bot `?bot=` names (`botK` or an id), else the first bot.
    fn bot(&self, which: &WhichBot) -> Result<AccountId, Failure> {
        let Some(raw) = which.bot.as_deref() else {
            return Ok(self.telegram.bot_id());
        };
        let ids = self.telegram.bot_ids();
        let numbered = raw
            .strip_prefix("bot")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| ids.get(n).copied());
        if let Some(id) = numbered {
            return Ok(id);
        }
        match raw.parse::<AccountId>() {
            Ok(id) => Ok(self.telegram.check_bot(id)?),
            Err(_) => Err(Failure::bad_request(format!(
                "bot must be bot1..bot{} or a bot's user id, not {raw:?}",
                ids.len()
            ))),
        }
    }
}

fn user_id(raw: &str) -> Result<AccountId, Failure> {
    raw.parse()
        .map_err(|_| Failure::bad_request(format!("user id must be an integer, not {raw:?}")))
}

async fn not_found() -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        json!({"error": "no such endpoint; see the control API table in src/sandbox/control.rs"}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    id: Option<AccountId>,
    first_name: String,
    username: Option<String>,
    lang_code: Option<String>,
    last_name: Option<String>,
    #[serde(default)]
    premium: bool,
}

async fn create_user(State(control): State<Control>, body: Bytes) -> ControlReply {
    let request: CreateUser = parse(&body)?;
    if request
        .last_name
        .as_deref()
        .is_some_and(|name| name.chars().count() > MAX_LAST_NAME)
    {
        return Err(Failure::bad_request(format!(
            "last_name must be at most {MAX_LAST_NAME} characters"
        )));
    }
    let created = control.telegram.create_user(NewUser {
        id: request.id,
        first_name: request.first_name,
        username: request.username,
        lang_code: request.lang_code,
    })?;
    if request.last_name.is_some() || request.premium {
        control
            .telegram
            .set_profile(created.id, request.last_name, request.premium)?;
    }
    let body = json!({
        "id": created.id,
        "access_hash": created.access_hash,
        "auth_key": to_hex(&created.auth_key),
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn list_users(State(control): State<Control>, Query(which): Query<WhichBot>) -> ControlReply {
    let bot = control.bot(&which)?;
    Ok(axum::Json(control.telegram.users(bot)).into_response())
}

async fn list_bots(State(control): State<Control>) -> ControlReply {
    Ok(axum::Json(control.telegram.bots()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Location {
    latitude: f64,
    longitude: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Contact {
    phone_number: String,
    first_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Photo {
    mime_type: String,
    size: Option<i64>,
    /// The file's bytes (standard base64); without them they are generated.
    base64: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    file_name: String,
    mime_type: String,
    size: Option<i64>,
    base64: Option<String>,
}

/// Given file content can be at most this large.
const MAX_CONTENT_BYTES: usize = 8 << 20;

/// A file's size and given bytes, from its `size` and `base64` fields.
fn file_content(
    field: &str,
    size: Option<i64>,
    base64: Option<&str>,
) -> Result<(i64, Option<Vec<u8>>), Failure> {
    use base64::Engine;
    let Some(text) = base64 else {
        let size = size.ok_or_else(|| {
            Failure::bad_request(format!("{field}: size or base64 content is required"))
        })?;
        check_size(&format!("{field}.size"), size)?;
        return Ok((size, None));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Failure::bad_request(format!("{field}.base64 is not base64: {e}")))?;
    if bytes.is_empty() || bytes.len() > MAX_CONTENT_BYTES {
        return Err(Failure::bad_request(format!(
            "{field}.base64 must hold 1..{MAX_CONTENT_BYTES} bytes"
        )));
    }
    let len = bytes.len() as i64;
    if size.is_some_and(|size| size != len) {
        return Err(Failure::bad_request(format!(
            "{field}.size must match the {len} bytes of {field}.base64 (or be left out)"
        )));
    }
    Ok((len, Some(bytes)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Voice {
    duration: i32,
    size: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Video {
    duration: f64,
    width: i32,
    height: i32,
    size: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sticker {
    emoji: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Venue {
    latitude: f64,
    longitude: f64,
    title: String,
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Audio {
    duration: i32,
    size: i64,
    title: Option<String>,
    performer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VideoNote {
    duration: f64,
    length: i32,
    size: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Poll {
    question: String,
    options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dice {
    emoji: String,
    value: i32,
}

/// Dice Telegram rolls, and the highest value of each.
const DICE: &[(&str, i32)] = &[
    ("🎲", 6),
    ("🎯", 6),
    ("🏀", 5),
    ("⚽", 5),
    ("🎳", 6),
    ("🎰", 64),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// Who posts (group messages only).
    from: Option<AccountId>,
    text: Option<String>,
    /// `/start PAYLOAD`: the user opened a deep link to the bot.
    start: Option<String>,
    location: Option<Location>,
    contact: Option<Contact>,
    photo: Option<Photo>,
    document: Option<Document>,
    voice: Option<Voice>,
    video: Option<Video>,
    sticker: Option<Sticker>,
    venue: Option<Venue>,
    audio: Option<Audio>,
    video_note: Option<VideoNote>,
    /// A GIF: `{duration, width, height, size}` as a video.
    animation: Option<Video>,
    poll: Option<Poll>,
    dice: Option<Dice>,
    /// The message this one replies to (default: a pending force reply).
    reply_to: Option<i32>,
    /// The DC a photo or document is stored on (default: the user's home DC).
    dc_id: Option<i32>,
}

impl SendBody {
    fn into_message(self) -> Result<UserMessage, Failure> {
        let one_of = "exactly one of text, start, location, contact, photo, document, voice, \
                      video, sticker, venue, audio, video_note, animation, poll, dice is required";
        let mut found = Vec::new();
        let dc_id = match self.dc_id {
            None => DC_ID,
            Some(dc) if DC_IDS.contains(&dc) => dc,
            Some(_) => return Err(Failure::bad_request("dc_id must be 1..5")),
        };
        if self.dc_id.is_some() && self.photo.is_none() && self.document.is_none() {
            return Err(Failure::bad_request("dc_id needs a photo or a document"));
        }
        if let Some(text) = self.text {
            found.push(UserMessage::Text(text));
        }
        if let Some(payload) = self.start {
            let valid = payload.len() <= 64
                && payload
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(Failure::bad_request(
                    "start must be at most 64 characters: letters, digits, _ and -",
                ));
            }
            found.push(UserMessage::Text(
                format!("/start {payload}").trim_end().to_owned(),
            ));
        }
        if let Some(l) = self.location {
            check_coordinates(&l)?;
            found.push(UserMessage::Location {
                latitude: l.latitude,
                longitude: l.longitude,
            });
        }
        if let Some(c) = self.contact {
            found.push(UserMessage::Contact {
                phone_number: c.phone_number,
                first_name: c.first_name,
            });
        }
        if let Some(p) = self.photo {
            let (size, content) = file_content("photo", p.size, p.base64.as_deref())?;
            found.push(UserMessage::Photo {
                mime_type: p.mime_type,
                size,
                dc_id,
                content,
            });
        }
        if let Some(d) = self.document {
            let (size, content) = file_content("document", d.size, d.base64.as_deref())?;
            if d.file_name.is_empty() {
                return Err(Failure::bad_request("document.file_name must not be empty"));
            }
            found.push(UserMessage::Document {
                file_name: d.file_name,
                mime_type: d.mime_type,
                size,
                dc_id,
                content,
            });
        }
        if let Some(v) = self.voice {
            check_size("voice.size", v.size)?;
            if v.duration < 1 {
                return Err(Failure::bad_request("voice.duration must be ≥ 1 second"));
            }
            found.push(UserMessage::Voice {
                duration: v.duration,
                size: v.size,
            });
        }
        if let Some(v) = self.video {
            check_video("video", &v)?;
            found.push(UserMessage::Video {
                duration: v.duration,
                width: v.width,
                height: v.height,
                size: v.size,
            });
        }
        if let Some(v) = self.animation {
            check_video("animation", &v)?;
            found.push(UserMessage::Animation {
                duration: v.duration,
                width: v.width,
                height: v.height,
                size: v.size,
            });
        }
        if let Some(a) = self.audio {
            check_size("audio.size", a.size)?;
            if a.duration < 1 {
                return Err(Failure::bad_request("audio.duration must be ≥ 1 second"));
            }
            found.push(UserMessage::Audio {
                duration: a.duration,
                title: a.title,
                performer: a.performer,
                size: a.size,
            });
        }
        if let Some(v) = self.video_note {
            check_size("video_note.size", v.size)?;
            if !(v.duration > 0.0 && (1..=640).contains(&v.length)) {
                return Err(Failure::bad_request(
                    "video_note: duration must be positive and length 1..640",
                ));
            }
            found.push(UserMessage::VideoNote {
                duration: v.duration,
                length: v.length,
                size: v.size,
            });
        }
        if let Some(poll) = self.poll {
            let fits =
                |text: &str, max: usize| !text.trim().is_empty() && text.chars().count() <= max;
            if !fits(&poll.question, 300) {
                return Err(Failure::bad_request(
                    "poll.question must be 1-300 characters",
                ));
            }
            if !(2..=10).contains(&poll.options.len()) || !poll.options.iter().all(|o| fits(o, 100))
            {
                return Err(Failure::bad_request(
                    "poll.options must be 2-10 options of 1-100 characters",
                ));
            }
            found.push(UserMessage::Poll {
                question: poll.question,
                options: poll.options,
            });
        }
        if let Some(dice) = self.dice {
            let Some(&(_, max)) = DICE.iter().find(|(emoji, _)| *emoji == dice.emoji) else {
                return Err(Failure::bad_request(
                    "dice.emoji must be one of 🎲 🎯 🏀 ⚽ 🎳 🎰",
                ));
            };
            if !(1..=max).contains(&dice.value) {
                return Err(Failure::bad_request(format!(
                    "dice.value must be 1..{max} for {}",
                    dice.emoji
                )));
            }
            found.push(UserMessage::Dice {
                emoji: dice.emoji,
                value: dice.value,
            });
        }
        if let Some(sticker) = self.sticker {
            if sticker.emoji.is_empty() || sticker.emoji.chars().count() > 8 {
                return Err(Failure::bad_request("sticker.emoji must be 1-8 characters"));
            }
            found.push(UserMessage::Sticker {
                emoji: sticker.emoji,
            });
        }
        if let Some(v) = self.venue {
            check_coordinates(&Location {
                latitude: v.latitude,
                longitude: v.longitude,
            })?;
            if v.title.trim().is_empty() {
                return Err(Failure::bad_request("venue.title must not be empty"));
            }
            found.push(UserMessage::Venue {
                latitude: v.latitude,
                longitude: v.longitude,
                title: v.title,
                address: v.address,
            });
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            _ => Err(Failure::bad_request(one_of)),
        }
    }
}

fn check_video(field: &str, v: &Video) -> Result<(), Failure> {
    check_size(&format!("{field}.size"), v.size)?;
    if v.duration > 0.0 && v.width > 0 && v.height > 0 {
        Ok(())
    } else {
        Err(Failure::bad_request(format!(
            "{field}: duration, width and height must be positive"
        )))
    }
}

fn check_coordinates(l: &Location) -> Result<(), Failure> {
    if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
        return Err(Failure::bad_request(
            "location: latitude must be in -90..90 and longitude in -180..180",
        ));
    }
    Ok(())
}

fn check_size(field: &str, size: i64) -> Result<(), Failure> {
    const MAX: i64 = 2 << 30;
    if (1..=MAX).contains(&size) {
        Ok(())
    } else {
        Err(Failure::bad_request(format!(
            "{field} must be 1..{MAX} bytes"
        )))
    }
}

async fn user_message(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let user = user_id(&id)?;
    let bot = control.bot(&which)?;
    let body = parse::<SendBody>(&body)?;
    if body.from.is_some() {
        return Err(Failure::bad_request(
            "from is for group messages; a user's own messages are sent by the path's user",
        ));
    }
    let reply_to = body.reply_to;
    let message = body.into_message()?;
    let message_id = control.telegram.user_sends(user, bot, message, reply_to)?;
    Ok(axum::Json(json!({"message_id": message_id})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClickBody {
    message_id: i32,
    data: Option<String>,
    text: Option<String>,
    location: Option<Location>,
}

async fn click(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> ControlReply {
    let user = user_id(&id)?;
    let request: ClickBody = parse(&body)?;
    let click = match (request.data, request.text) {
        (Some(data), None) => UserClick::Callback {
            message_id: request.message_id,
            data: data.into_bytes(),
        },
        (None, Some(text)) => {
            if let Some(l) = &request.location {
                check_coordinates(l)?;
            }
            UserClick::Keyboard {
                message_id: request.message_id,
                text,
                location: request.location.map(|l| (l.latitude, l.longitude)),
            }
        }
        _ => {
            return Err(Failure::bad_request(
                "exactly one of data (an inline callback button) or text (a reply keyboard button) is required",
            ));
        }
    };
    let body = match control.telegram.click(user, click).await? {
        Pressed::Answered(outcome) => {
            let elapsed_ms = u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX);
            match outcome.result {
                Ok(answer) => json!({"answer": answer, "elapsed_ms": elapsed_ms}),
                Err(error) => json!({"error": error.name, "elapsed_ms": elapsed_ms}),
            }
        }
        Pressed::Sent { message_id } => json!({"message_id": message_id}),
    };
    Ok(axum::Json(body).into_response())
}

async fn chat(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    Query(which): Query<WhichBot>,
) -> ControlReply {
    let user = user_id(&id)?;
    let bot = control.bot(&which)?;
    Ok(axum::Json(control.telegram.chat(user, bot)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    text: String,
}

fn message_id(raw: &str) -> Result<i32, Failure> {
    raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
        Failure::bad_request(format!(
            "message id must be a positive integer, not {raw:?}"
        ))
    })
}

fn group_id(raw: &str) -> Result<i64, Failure> {
    raw.parse().ok().filter(|id: &i64| *id < 0).ok_or_else(|| {
        Failure::bad_request(format!(
            "group id must be a Bot API id (-N for a group, -100N for a supergroup or channel), not {raw:?}"
        ))
    })
}

async fn set_blocked(control: &Control, id: &str, which: &WhichBot, blocked: bool) -> ControlReply {
    let user = user_id(id)?;
    let bot = control.bot(which)?;
    control.telegram.set_blocked(user, bot, blocked)?;
    Ok(axum::Json(json!({"blocked": blocked})).into_response())
}

async fn block(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    Query(which): Query<WhichBot>,
) -> ControlReply {
    set_blocked(&control, &id, &which, true).await
}

async fn unblock(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    Query(which): Query<WhichBot>,
) -> ControlReply {
    set_blocked(&control, &id, &which, false).await
}

async fn user_edit(
    State(control): State<Control>,
    UrlPath((id, message)): UrlPath<(String, String)>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let (user, message_id) = (user_id(&id)?, message_id(&message)?);
    let bot = control.bot(&which)?;
    let request: TextBody = parse(&body)?;
    control
        .telegram
        .user_edits(user, bot, message_id, request.text)?;
    Ok(axum::Json(json!({})).into_response())
}

async fn user_delete(
    State(control): State<Control>,
    UrlPath((id, message)): UrlPath<(String, String)>,
    Query(which): Query<WhichBot>,
) -> ControlReply {
    let (user, message_id) = (user_id(&id)?, message_id(&message)?);
    let bot = control.bot(&which)?;
    control.telegram.user_deletes(user, bot, message_id)?;
    Ok(axum::Json(json!({})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactBody {
    /// The posting user, in a group.
    from: Option<AccountId>,
    /// The reaction; `null` takes it back.
    emoji: Option<String>,
}

async fn user_react(
    State(control): State<Control>,
    UrlPath((id, message)): UrlPath<(String, String)>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let (user, message_id) = (user_id(&id)?, message_id(&message)?);
    let bot = control.bot(&which)?;
    let request: ReactBody = parse(&body)?;
    if request.from.is_some() {
        return Err(Failure::bad_request(
            "from is for group messages; the path names the reacting user",
        ));
    }
    control
        .telegram
        .react(user, bot, None, message_id, request.emoji)?;
    Ok(axum::Json(json!({})).into_response())
}

async fn group_react(
    State(control): State<Control>,
    UrlPath((id, message)): UrlPath<(String, String)>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let (group, message_id) = (group_id(&id)?, message_id(&message)?);
    let bot = control.bot(&which)?;
    let request: ReactBody = parse(&body)?;
    let Some(from) = request.from else {
        return Err(Failure::bad_request(
            "from (the reacting user's id) is required",
        ));
    };
    control
        .telegram
        .react(from, bot, Some(group), message_id, request.emoji)?;
    Ok(axum::Json(json!({})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    title: String,
    kind: String,
    members: Vec<AccountId>,
    bot: Option<String>,
}

async fn create_group(
    State(control): State<Control>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let request: CreateGroup = parse(&body)?;
    let bot_id = control.bot(&which)?;
    let kind = match request.kind.as_str() {
        "group" => GroupKind::Group,
        "supergroup" => GroupKind::Supergroup,
        "channel" => GroupKind::Channel,
        other => {
            return Err(Failure::bad_request(format!(
                "kind must be group, supergroup or channel, not {other:?}"
            )));
        }
    };
    let bot = match request.bot.as_deref().unwrap_or("none") {
        "none" => None,
        "member" => Some(Role::Member),
        "admin" => Some(Role::Admin),
        other => {
            return Err(Failure::bad_request(format!(
                "bot must be none, member or admin, not {other:?}"
            )));
        }
    };
    let id = control.telegram.create_group(NewGroup {
        title: request.title,
        kind,
        members: request.members,
        bot,
        bot_id,
    })?;
    Ok((StatusCode::CREATED, axum::Json(json!({"id": id}))).into_response())
}

async fn list_groups(
    State(control): State<Control>,
    Query(which): Query<WhichBot>,
) -> ControlReply {
    let bot = control.bot(&which)?;
    Ok(axum::Json(control.telegram.groups(bot)).into_response())
}

async fn group_message(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> ControlReply {
    let group = group_id(&id)?;
    let mut body = parse::<SendBody>(&body)?;
    let Some(from) = body.from.take() else {
        return Err(Failure::bad_request(
            "from (the posting user's id) is required",
        ));
    };
    let reply_to = body.reply_to;
    let message = body.into_message()?;
    let message_id = control
        .telegram
        .group_sends(group, from, message, reply_to)?;
    Ok(axum::Json(json!({"message_id": message_id})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupChange {
    from: AccountId,
    text: Option<String>,
}

async fn group_edit(
    State(control): State<Control>,
    UrlPath((id, message)): UrlPath<(String, String)>,
    body: Bytes,
) -> ControlReply {
    let (group, message_id) = (group_id(&id)?, message_id(&message)?);
    let request: GroupChange = parse(&body)?;
    let Some(text) = request.text else {
        return Err(Failure::bad_request("text (the new text) is required"));
    };
    control
        .telegram
        .group_edits(group, request.from, message_id, text)?;
    Ok(axum::Json(json!({})).into_response())
}

async fn group_delete(
    State(control): State<Control>,
    UrlPath((id, message)): UrlPath<(String, String)>,
    body: Bytes,
) -> ControlReply {
    let (group, message_id) = (group_id(&id)?, message_id(&message)?);
    let request: GroupChange = parse(&body)?;
    if request.text.is_some() {
        return Err(Failure::bad_request("a delete takes no text"));
    }
    control
        .telegram
        .group_deletes(group, request.from, message_id)?;
    Ok(axum::Json(json!({})).into_response())
}

async fn group_chat(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    Query(which): Query<WhichBot>,
) -> ControlReply {
    let group = group_id(&id)?;
    let bot = control.bot(&which)?;
    Ok(axum::Json(control.telegram.group_chat(group, bot)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotActionBody {
    action: String,
}

async fn group_bot(
    State(control): State<Control>,
    UrlPath(id): UrlPath<String>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let group = group_id(&id)?;
    let bot = control.bot(&which)?;
    let request: BotActionBody = parse(&body)?;
    let action = match request.action.as_str() {
        "add" => BotAction::Add,
        "remove" => BotAction::Remove,
        "ban" => BotAction::Ban,
        "promote" => BotAction::Promote,
        "demote" => BotAction::Demote,
        other => {
            return Err(Failure::bad_request(format!(
                "action must be add, remove, ban, promote or demote, not {other:?}"
            )));
        }
    };
    let role = control.telegram.bot_action(group, bot, action)?;
    Ok(axum::Json(json!({"bot": role})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotBody {
    privacy: bool,
}

async fn set_bot(
    State(control): State<Control>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let request: BotBody = parse(&body)?;
    control
        .telegram
        .set_privacy(control.bot(&which)?, request.privacy)?;
    bot(State(control), Query(which)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    #[serde(default)]
    drop_connections: bool,
    latency_ms: Option<u64>,
    limits: Option<bool>,
    callback_timeout_ms: Option<u64>,
    user_id: Option<AccountId>,
    /// The error the bot's sends to `user_id` (without it: to anyone) get;
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    error: Option<Option<String>>,
    /// With `error`: how many sends fail (default: all until cleared).
    times: Option<u32>,
    /// At most this many events per difference answer.
    difference_slice: Option<usize>,
    /// A client further behind than this many pts gets "too long".
    difference_too_long: Option<i32>,
    /// Unread pushes a connection may have before it gets `updatesTooLong`.
    push_backlog: Option<usize>,
    /// The bot's connections are read but never answered (`false` ends it).
    blackhole: Option<bool>,
    /// The next reply to the bot is cut mid-frame and the connection reset.
    #[serde(default)]
    reset_mid_frame: bool,
    /// The bot's authorization is dropped: 401 until it signs in again.
    #[serde(default)]
    revoke_bot_session: bool,
    /// The bot token is revoked: signing in with it fails.
    #[serde(default)]
    revoke_bot_token: bool,
    /// The token `revoke_bot_token` revoked is valid again.
    #[serde(default)]
    restore_bot_token: bool,
    /// The next `help.getConfig` lists a DC address that is no IP address.
    #[serde(default)]
    bad_dc_config: bool,
    /// Messages a group takes back to back (1..=20; Telegram's 20).
    group_burst: Option<u32>,
    /// The next `auth.importBotAuthorization` gets `FLOOD_WAIT_N`.
    sign_in_flood_wait_s: Option<u32>,
    /// An `rpc_error` for a named method, `times` times (default 1).
    rpc_error: Option<RpcErrorFault>,
    /// Connections allowed per auth key, beyond them `-429`; `null` clears.
    #[serde(default, deserialize_with = "present_count")]
    max_connections: Option<Option<usize>>,
    /// Every file reference handed out so far expires after this many more
    /// `upload.getFile` chunks (0: now).
    expire_file_references_after: Option<u32>,
    /// Every file moves to another DC (after some chunks).
    move_files: Option<MoveFiles>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveFiles {
    dc_id: i32,
    /// After this many more `upload.getFile` chunks (default 0: now).
    #[serde(default)]
    after_chunks: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RpcErrorFault {
    /// A TL method name such as `messages.sendMessage`.
    method: String,
    /// A Telegram error name (`INTERNAL_SERVER_ERROR`) or `-503 Timeout`.
    error: String,
    times: Option<u32>,
}

fn present_count<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}

/// The injected error an `rpc_error` fault names, checked.
fn injected_error(fault: &RpcErrorFault) -> Result<InjectedError, Failure> {
    let valid_method = fault.method.split('.').all(|part| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if !valid_method {
        return Err(Failure::bad_request(
            "rpc_error.method must be a TL method name such as messages.sendMessage",
        ));
    }
    let times = fault.times.unwrap_or(1);
    if times == 0 {
        return Err(Failure::bad_request("rpc_error.times must be ≥ 1"));
    }
    // `-503 Timeout`: a negative code and its message, as Telegram sends it.
    let (code, message) = match fault.error.split_once(' ') {
        Some((code, message)) if code.starts_with('-') => {
            let code = code.parse::<i32>().ok().filter(|c| *c < 0).ok_or_else(|| {
                Failure::bad_request("rpc_error.error: a negative code such as -503 Timeout")
            })?;
            (code, message.to_owned())
        }
        _ => {
            check_error_name(&fault.error)?;
            (TgError::named(&fault.error).code, fault.error.clone())
        }
    };
    Ok(InjectedError {
        code,
        message,
        remaining: times,
        label: "rpc_error",
        keys: None,
    })
}

/// Applies the DC-level faults of a `POST /faults` (all checked already).
fn apply_dc_faults(
    control: &Control,
    bot: AccountId,
    request: &FaultsBody,
    injected: Option<InjectedError>,
) {
    let bot_keys = control.telegram.bot_key_ids(bot);
    if let Some(on) = request.blackhole {
        control
            .faults
            .set_blackhole(if on { bot_keys.clone() } else { Vec::new() });
    }
    if request.reset_mid_frame {
        control.faults.arm_reset_mid_frame(bot_keys.clone());
    }
    if request.revoke_bot_token {
        control.telegram.revoke_bot_token(bot);
        control.faults.served("revoke_bot_token");
    } else if request.revoke_bot_session {
        control.telegram.revoke_bot_session(bot);
        control.faults.served("revoke_bot_session");
    }
    if request.restore_bot_token && control.telegram.restore_bot_token(bot) {
        control.faults.served("restore_bot_token");
    }
    if request.bad_dc_config {
        control.telegram.arm_bad_dc_config();
        control.faults.served("bad_dc_config");
    }
    if let Some(seconds) = request.sign_in_flood_wait_s {
        let error = InjectedError {
            code: 420,
            message: format!("FLOOD_WAIT_{seconds}"),
            remaining: 1,
            label: "sign_in_flood_wait",
            keys: Some(bot_keys.clone()),
        };
        control
            .faults
            .set_rpc_error("auth.importBotAuthorization", Some(error));
    }
    if let (Some(fault), Some(error)) = (&request.rpc_error, injected) {
        control.faults.set_rpc_error(&fault.method, Some(error));
    }
    if let Some(max) = request.max_connections {
        control.faults.set_max_connections(max);
    }
}

/// Tells a missing field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn check_error_name(name: &str) -> Result<(), Failure> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Failure::bad_request(
            "error must be a Telegram error name such as USER_IS_BLOCKED or FLOOD_WAIT_5",
        ))
    }
}

async fn faults(
    State(control): State<Control>,
    Query(which): Query<WhichBot>,
    body: Bytes,
) -> ControlReply {
    let request: FaultsBody = parse(&body)?;
    let bot = control.bot(&which)?;
    // Check everything before changing anything.
    if request.user_id.is_some() && request.error.is_none() {
        return Err(Failure::bad_request(
            "user_id needs an error (error: null clears the user's fault)",
        ));
    }
    if let Some(Some(name)) = &request.error {
        check_error_name(name)?;
    }
    if request.times == Some(0)
        || (request.times.is_some() && !matches!(request.error, Some(Some(_))))
    {
        return Err(Failure::bad_request("times must be ≥ 1 and needs an error"));
    }
    if request
        .callback_timeout_ms
        .is_some_and(|ms| ms == 0 || ms > MAX_CALLBACK_TIMEOUT_MS)
    {
        return Err(Failure::bad_request(format!(
            "callback_timeout_ms must be 1..{MAX_CALLBACK_TIMEOUT_MS}"
        )));
    }
    if request.difference_slice == Some(0)
        || request.difference_too_long.is_some_and(|n| n < 1)
        || request.push_backlog == Some(0)
    {
        return Err(Failure::bad_request(
            "difference_slice, difference_too_long and push_backlog must be ≥ 1",
        ));
    }
    if request.group_burst.is_some_and(|n| !(1..=20).contains(&n)) {
        return Err(Failure::bad_request("group_burst must be 1..=20"));
    }
    let injected = request.rpc_error.as_ref().map(injected_error).transpose()?;
    if request
        .move_files
        .as_ref()
        .is_some_and(|moved| !DC_IDS.contains(&moved.dc_id))
    {
        return Err(Failure::bad_request("move_files.dc_id must be 1..5"));
    }
    if request.max_connections == Some(Some(0)) {
        return Err(Failure::bad_request(
            "max_connections must be ≥ 1 (null clears it)",
        ));
    }
    apply_dc_faults(&control, bot, &request, injected);
    if request.difference_slice.is_some() || request.difference_too_long.is_some() {
        let current = control.telegram.difference_rules();
        control.telegram.set_difference_rules(DifferenceRules {
            slice: request.difference_slice.unwrap_or(current.slice),
            too_long: request.difference_too_long.unwrap_or(current.too_long),
        });
    }
    if let Some(limit) = request.push_backlog {
        control.telegram.set_push_backlog_limit(limit);
    }
    if let Some(chunks) = request.expire_file_references_after {
        control
            .telegram
            .change_files_after(chunks, FileChange::ExpireReferences);
    }
    if let Some(moved) = &request.move_files {
        control
            .telegram
            .change_files_after(moved.after_chunks, FileChange::MoveTo(moved.dc_id));
    }
    if let Some(error) = request.error {
        let user = request.user_id;
        let fault = error.map(|name| ChatFault {
            error: TgError::named(&name),
            remaining: request.times,
        });
        control.telegram.set_chat_fault(user, fault)?;
    }
    if let Some(ms) = request.latency_ms {
        control.faults.set_latency(Duration::from_millis(ms));
    }
    if let Some(enabled) = request.limits {
        control.telegram.set_limits_enabled(enabled);
    }
    if let Some(burst) = request.group_burst {
        control.telegram.set_group_burst(burst);
    }
    if let Some(ms) = request.callback_timeout_ms {
        control
            .telegram
            .set_callback_timeout(Duration::from_millis(ms));
    }
    if request.drop_connections {
        control.faults.drop_connections();
    }
    Ok(axum::Json(control.settings()).into_response())
}

impl Control {
    /// The fault settings now, as `POST /faults` answers them (the web
    /// page shows them too).
    pub fn settings(&self) -> Value {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        json!({
            "latency_ms": ms(self.faults.latency()),
            "limits": self.telegram.limits_enabled(),
            "callback_timeout_ms": ms(self.telegram.callback_timeout()),
            "difference_slice": self.telegram.difference_rules().slice,
            "difference_too_long": self.telegram.difference_rules().too_long,
            "push_backlog": self.telegram.push_backlog_limit(),
            "blackhole": self.faults.blackholed(),
            "max_connections": self.faults.max_connections(),
            "rpc_errors": self.faults.rpc_errors(),
        })
    }
}

/// The model's counters, the DCs' traffic and the faults served.
async fn stats(State(control): State<Control>) -> ControlReply {
    let body = control.stats().map_err(|e| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        )
    })?;
    Ok(axum::Json(body).into_response())
}

impl Control {
    /// `GET /stats`: the model's counters, then the DC's (connections,
    /// faults served).
    pub fn stats(&self) -> Result<Value, serde_json::Error> {
        let mut body = serde_json::to_value(self.telegram.stats())?;
        let traffic = self.traffic.counts();
        body["connections_by_transport"] = json!(traffic.connections_by_transport);
        body["connections_by_dc"] = json!(traffic.connections_by_dc);
        body["connections_refused"] = json!(traffic.refused);
        body["auth_key_duplicates_refused"] = json!(traffic.auth_key_duplicates_refused);
        body["max_live_connections_per_key"] = json!(traffic.max_live_connections_per_key);
        body["faults_served"] = json!(self.faults.served_counts());
        Ok(body)
    }
}

async fn dc(State(control): State<Control>) -> ControlReply {
    let home = control.dc_addrs.get(&DC_ID);
    let dcs: Vec<Value> = control
        .dc_addrs
        .iter()
        .map(|(id, addr)| json!({"dc_id": id, "host": addr.ip().to_string(), "port": addr.port()}))
        .collect();
    let body = json!({
        "dc_id": DC_ID,
        "host": home.map(|addr| addr.ip().to_string()),
        "port": home.map(|addr| addr.port()),
        "dcs": dcs,
    });
    Ok(axum::Json(body).into_response())
}

async fn bot(State(control): State<Control>, Query(which): Query<WhichBot>) -> ControlReply {
    let bot = control.bot(&which)?;
    let listed = control.telegram.bots();
    let username = listed
        .iter()
        .find(|b| b["id"] == bot)
        .map_or(Value::Null, |b| b["username"].clone());
    let body = json!({
        "id": bot,
        "username": username,
        "privacy": control.telegram.privacy(bot)?,
    });
    Ok(axum::Json(body).into_response())
}
