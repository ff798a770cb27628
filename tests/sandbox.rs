//! The sandbox end to end: the unmodified grammers client talks MTProto to
//! the local DC, signs in as the sandbox bot (or as a sandbox user), and the
//! control API plays the users.

use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grammers_client::Client;
use grammers_mtsender::{
    ConnectionParams, InvocationError, NoRetries, SenderPool, UpdatesConfiguration,
};
use grammers_session::SessionData;
use grammers_session::storages::MemorySession;
use grammers_session::types::DcOption;
use grammers_session::updates::UpdatesLike;
use grammers_tl_types as tl;
use grammers_tl_types::Serializable;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{BOT_USERNAME, DC_ID, auth_key_from_hex, to_hex};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const API_ID: i32 = 1;
const API_HASH: &str = "telegate-sandbox";
/// Generous: the machine may be loaded; nothing waits this long when it works.
const PATIENCE: Duration = Duration::from_secs(20);

struct Harness {
    sandbox: Option<Sandbox>,
    dir: TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(SandboxOptions {
            state_dir: Some(dir.path().to_owned()),
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        Harness {
            sandbox: Some(sandbox),
            dir,
        }
    }

    fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().unwrap()
    }

    async fn control(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        control(self.sandbox().control_socket().unwrap(), method, path, body).await
    }

    /// A user who already wrote "hello" to the bot.
    async fn started_user(&self, name: &str) -> i64 {
        let (status, user) = self
            .control("POST", "/users", Some(json!({"first_name": name})))
            .await;
        assert_eq!(status, 201, "{user}");
        let id = user["id"].as_i64().unwrap();
        let (status, sent) = self
            .control(
                "POST",
                &format!("/users/{id}/messages"),
                Some(json!({"text": "hello"})),
            )
            .await;
        assert_eq!(status, 200, "{sent}");
        id
    }

    async fn chat(&self, user: i64) -> Value {
        let (status, chat) = self
            .control("GET", &format!("/users/{user}/chat"), None)
            .await;
        assert_eq!(status, 200, "{chat}");
        chat
    }

    /// A grammers client on the bot's key, signed in with the token.
    async fn bot(&self) -> Grammers {
        let telegram = self.sandbox().telegram();
        let bot = Grammers::connect(
            self.sandbox().dc_addr(),
            telegram.bot_auth_key(BOT_ID).unwrap(),
        );
        let me = bot
            .client
            .bot_sign_in(telegram.bot_token(BOT_ID).unwrap().expose(), API_HASH)
            .await
            .unwrap();
        assert!(me.is_bot());
        bot
    }
}

async fn control(socket: &Path, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "sandbox")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An unmodified grammers client whose session holds a pre-provisioned key.
struct Grammers {
    client: Client,
    updates: Option<mpsc::Receiver<UpdatesLike>>,
    runner: JoinHandle<()>,
}

impl Drop for Grammers {
    fn drop(&mut self) {
        self.client.disconnect();
        self.runner.abort();
    }
}

impl Grammers {
    fn connect(addr: SocketAddrV4, auth_key: [u8; 256]) -> Grammers {
        Grammers::connect_dcs(vec![(DC_ID, addr, auth_key)])
    }

    /// A client whose session knows these DCs, each with its auth key.
    fn connect_dcs(dcs: Vec<(i32, SocketAddrV4, [u8; 256])>) -> Grammers {
        let dc_options = dcs
            .into_iter()
            .map(|(id, addr, auth_key)| {
                let option = DcOption {
                    id,
                    ipv4: addr,
                    ipv6: SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0),
                    auth_key: Some(auth_key),
                };
                (id, option)
            })
            .collect();
        let data = SessionData {
            home_dc: DC_ID,
            dc_options,
            ..SessionData::default()
        };
        let params = ConnectionParams {
            retry_policy: Box::new(NoRetries),
            ..ConnectionParams::default()
        };
        let pool =
            SenderPool::with_configuration(Arc::new(MemorySession::from(data)), API_ID, params);
        let client = Client::new(pool.handle);
        let runner = tokio::spawn(pool.runner.run());
        Grammers {
            client,
            updates: Some(pool.updates),
            runner,
        }
    }

    /// Invokes, retrying while the connection is being re-established
    /// (grammers does not retry a request that died with its connection).
    async fn invoke<R: tl::RemoteCall>(&self, request: &R) -> Result<R::Return, InvocationError> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match self.client.invoke(request).await {
                Err(InvocationError::Dropped(_) | InvocationError::Io(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// The next raw update pushed to this client matching `pick`.
    async fn next_update<T>(&mut self, mut pick: impl FnMut(&tl::enums::Update) -> Option<T>) -> T {
        self.next_pushed(|update, _| pick(update)).await
    }

    /// [`Grammers::next_update`], `pick` also seeing the chats pushed with it.
    async fn next_pushed<T>(
        &mut self,
        mut pick: impl FnMut(&tl::enums::Update, &[tl::enums::Chat]) -> Option<T>,
    ) -> T {
        let updates = self.updates.as_mut().expect("updates taken by a stream");
        tokio::time::timeout(PATIENCE, async {
            loop {
                let Some(UpdatesLike::Updates(batch)) = updates.recv().await else {
                    continue;
                };
                let (list, chats) = match batch {
                    tl::enums::Updates::Updates(u) => (u.updates, u.chats),
                    tl::enums::Updates::Combined(u) => (u.updates, u.chats),
                    tl::enums::Updates::UpdateShort(u) => (vec![u.update], Vec::new()),
                    _ => continue,
                };
                if let Some(found) = list.iter().find_map(|u| pick(u, &chats)) {
                    return found;
                }
            }
        })
        .await
        .expect("no matching update arrived")
    }
}

fn user_peer(user_id: i64, access_hash: i64) -> tl::enums::InputPeer {
    tl::types::InputPeerUser {
        user_id,
        access_hash,
    }
    .into()
}

fn send(
    peer: tl::enums::InputPeer,
    text: &str,
    random_id: i64,
) -> tl::functions::messages::SendMessage {
    telegate::outgoing::text_message(peer, text.into(), None, random_id)
}

fn with_markup(
    mut request: tl::functions::messages::SendMessage,
    markup: tl::enums::ReplyMarkup,
) -> tl::functions::messages::SendMessage {
    request.reply_markup = Some(markup);
    request
}

fn inline(buttons: Vec<(&str, tl::enums::InlineButtonType)>) -> tl::enums::ReplyMarkup {
    tl::types::ReplyInlineMarkup {
        force_reply: false,
        rows: vec![
            tl::types::KeyboardInlineButtonRow {
                buttons: buttons
                    .into_iter()
                    .map(|(text, r#type)| {
                        tl::types::KeyboardInlineButton {
                            style: None,
                            text: text.into(),
                            r#type,
                        }
                        .into()
                    })
                    .collect(),
            }
            .into(),
        ],
    }
    .into()
}

fn callback(data: &[u8]) -> tl::enums::InlineButtonType {
    tl::types::InlineButtonTypeCallback {
        requires_password: false,
        data: data.to_vec(),
    }
    .into()
}

fn url(url: &str) -> tl::enums::InlineButtonType {
    tl::types::InlineButtonTypeUrl { url: url.into() }.into()
}

fn keyboard(
    buttons: Vec<(&str, tl::enums::ButtonType)>,
    single_use: bool,
) -> tl::enums::ReplyMarkup {
    tl::types::ReplyKeyboardMarkup {
        resize: false,
        single_use,
        selective: false,
        persistent: false,
        force_reply: false,
        rows: buttons
            .into_iter()
            .map(|(text, r#type)| {
                tl::types::KeyboardButtonRow {
                    buttons: vec![
                        tl::types::KeyboardButton {
                            style: None,
                            text: text.into(),
                            r#type,
                        }
                        .into(),
                    ],
                }
                .into()
            })
            .collect(),
        placeholder: None,
    }
    .into()
}

/// The four seed requests of `seeds/octopods-telegram-interactive.txt`.
const SEEDS: [&str; 4] = [
    r#"{"destination_user_id": "1", "telegram_interactive_message": {
        "type": "reply_buttons",
        "text": "Your order is ready. What would you like to do?",
        "reply_markup": {"inline_keyboard": [[
            {"text": "Track order", "url": "https://example.com/orders/1234"},
            {"text": "Suggest reply", "switch_inline_query_current_chat": "Reschedule please"}
        ]]}}}"#,
    r#"{"destination_user_id": "1", "telegram_interactive_message": {
        "type": "reply_keyboard",
        "text": "How can we help?",
        "reply_markup": {"one_time_keyboard": true, "keyboard": [
            [{"text": "Track my order"}],
            [{"text": "Share my number", "request_contact": true}],
            [{"text": "Share my place", "request_location": true}]
        ]}}}"#,
    r#"{"destination_user_id": "1", "telegram_interactive_message": {
        "type": "remove_reply_keyboard",
        "text": "Thanks — back to the standard keyboard.",
        "reply_markup": {"remove_keyboard": true}}}"#,
    r#"{"destination_user_id": "1", "telegram_interactive_message": {
        "type": "highlight_reply",
        "text": "How would you rate your experience today?",
        "reply_markup": {"force_reply": true, "input_field_placeholder": "Type your rating (1–5)"}}}"#,
];

/// The seed types as telegate's interactive model turns them into TL:
/// `(text, reply markup)`.
fn seeds() -> Vec<(String, tl::enums::ReplyMarkup)> {
    SEEDS
        .iter()
        .map(|body| {
            let request = telegate::interactive::InteractiveRequest::from_json(body.as_bytes())
                .expect("a valid seed");
            (request.text().to_string(), request.reply_markup())
        })
        .collect()
}

fn seed_markups() -> Vec<tl::enums::ReplyMarkup> {
    seeds().into_iter().map(|(_, markup)| markup).collect()
}

/// The message id in a send's result, checking the shape grammers relies on:
/// `updateShortSentMessage` (a text in a private chat, as Telegram answers)
/// or `updateMessageID` + `updateNewMessage`.
fn sent_id(updates: &tl::enums::Updates, random_id: i64) -> i32 {
    if let tl::enums::Updates::UpdateShortSentMessage(sent) = updates {
        assert!(sent.out && sent.pts_count == 1, "{sent:?}");
        return sent.id;
    }
    let tl::enums::Updates::Updates(updates) = updates else {
        panic!("expected updates, got {updates:?}")
    };
    let id = updates
        .updates
        .iter()
        .find_map(|u| match u {
            tl::enums::Update::MessageId(m) if m.random_id == random_id => Some(m.id),
            _ => None,
        })
        .expect("updateMessageID with our random_id");
    let new = updates.updates.iter().any(|u| {
        matches!(u, tl::enums::Update::NewMessage(n)
            if n.pts_count == 1
            && matches!(&n.message, tl::enums::Message::Message(m) if m.id == id && m.out))
    });
    assert!(new, "updateNewMessage of the sent message");
    id
}

fn rpc_error(result: Result<impl std::fmt::Debug, InvocationError>) -> (i32, String, Option<u32>) {
    match result {
        Err(InvocationError::Rpc(rpc)) => (rpc.code, rpc.name, rpc.value),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn bot_sends_the_four_seed_types_and_the_sandbox_records_the_exact_tl() {
    let harness = Harness::start().await;
    let user = harness.started_user("Ann").await;
    let bot = harness.bot().await;
    // Four messages to one chat in a row would draw a FLOOD_WAIT.
    harness
        .control("POST", "/faults", Some(json!({"limits": false})))
        .await;

    let mut ids = Vec::new();
    for (i, (text, markup)) in seeds().into_iter().enumerate() {
        let random_id = 100 + i as i64;
        let request = with_markup(send(user_peer(user, 0), &text, random_id), markup);
        let result = bot.invoke(&request).await.unwrap();
        ids.push(sent_id(&result, random_id));
    }
    let chat = harness.chat(user).await;
    let messages = chat["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5, "{chat}");
    for ((message, (text, markup)), id) in messages[1..].iter().zip(seeds()).zip(&ids) {
        assert_eq!(message["id"], *id);
        assert_eq!(message["text"], text);
        assert_eq!(message["from"], "bot");
        assert_eq!(message["reply_markup_tl"], to_hex(&markup.to_bytes()));
    }
    let kinds: Vec<_> = messages[1..]
        .iter()
        .map(|m| m["reply_markup"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "inline_keyboard",
            "reply_keyboard",
            "remove_keyboard",
            "force_reply"
        ]
    );
    let buttons = &messages[1]["reply_markup"]["rows"][0];
    assert_eq!(buttons[0]["type"], "url");
    assert_eq!(buttons[0]["url"], "https://example.com/orders/1234");
    assert_eq!(buttons[1]["type"], "switch_inline");
    assert_eq!(buttons[1]["query"], "Reschedule please");
    assert_eq!(
        messages[2]["reply_markup"]["rows"][1][0]["type"],
        "request_contact"
    );
    // The keyboard was removed by the third message; the force reply waits.
    assert_eq!(chat["reply_keyboard"], Value::Null);
    assert_eq!(chat["force_reply"]["message_id"], ids[3]);
    assert_eq!(chat["force_reply"]["placeholder"], "Type your rating (1–5)");

    // The user's answer replies to the force-reply message, which then clears.
    let (status, _) = harness
        .control(
            "POST",
            &format!("/users/{user}/messages"),
            Some(json!({"text": "5"})),
        )
        .await;
    assert_eq!(status, 200);
    let chat = harness.chat(user).await;
    assert_eq!(chat["messages"][5]["reply_to"], ids[3]);
    assert_eq!(chat["force_reply"], Value::Null);

    let (_, stats) = harness.control("GET", "/stats", None).await;
    assert_eq!(stats["rpc_counts"]["messages.sendMessage"], 4);
    assert_eq!(stats["rpc_counts"]["auth.importBotAuthorization"], 1);
}

#[tokio::test]
async fn reply_keyboard_presses_send_text_contact_and_location() {
    let harness = Harness::start().await;
    let user = harness.started_user("Ben").await;
    let bot = harness.bot().await;
    let markup = seed_markups().remove(1);
    let result = bot
        .invoke(&with_markup(
            send(user_peer(user, 0), "How can we help?", 1),
            markup,
        ))
        .await
        .unwrap();
    let keyboard_id = sent_id(&result, 1);
    assert_eq!(
        harness.chat(user).await["reply_keyboard"]["message_id"],
        keyboard_id
    );

    let (status, pressed) = harness
        .control(
            "POST",
            &format!("/users/{user}/click"),
            Some(json!({"message_id": keyboard_id, "text": "Share my number"})),
        )
        .await;
    assert_eq!(status, 200, "{pressed}");
    let chat = harness.chat(user).await;
    let last = chat["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["id"], pressed["message_id"]);
    assert_eq!(last["media"]["kind"], "contact");
    assert_eq!(last["reply_to"], keyboard_id);
    // `single_use`: the keyboard is gone after one press.
    assert_eq!(chat["reply_keyboard"], Value::Null);
    let (status, refused) = harness
        .control(
            "POST",
            &format!("/users/{user}/click"),
            Some(json!({"message_id": keyboard_id, "text": "Track my order"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("no longer shown"),
        "{refused}"
    );

    // A persistent keyboard: a location press, with the user's coordinates.
    let markup = keyboard(
        vec![("Here", tl::enums::ButtonType::RequestGeoLocation)],
        false,
    );
    let result = bot
        .invoke(&with_markup(send(user_peer(user, 0), "Where?", 2), markup))
        .await
        .unwrap();
    let id = sent_id(&result, 2);
    let (status, _) = harness
        .control(
            "POST",
            &format!("/users/{user}/click"),
            Some(json!({"message_id": id, "text": "Here", "location": {"latitude": 1.5, "longitude": 2.5}})),
        )
        .await;
    assert_eq!(status, 200);
    let chat = harness.chat(user).await;
    let last = chat["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["media"],
        json!({"kind": "location", "latitude": 1.5, "longitude": 2.5})
    );
    assert_eq!(chat["reply_keyboard"]["message_id"], id);
}

#[tokio::test]
async fn a_click_is_answered_and_one_nobody_answers_times_out() {
    let harness = Harness::start().await;
    let user = harness.started_user("Cy").await;
    let mut bot = harness.bot().await;
    let markup = inline(vec![("Yes", callback(b"yes")), ("No", callback(b"no"))]);
    let result = bot
        .invoke(&with_markup(
            send(user_peer(user, 0), "Did it arrive?", 7),
            markup,
        ))
        .await
        .unwrap();
    let message_id = sent_id(&result, 7);

    let socket = harness.sandbox().control_socket().unwrap().to_owned();
    let click = |data: &'static str| {
        let socket = socket.clone();
        tokio::spawn(async move {
            control(
                &socket,
                "POST",
                &format!("/users/{user}/click"),
                Some(json!({"message_id": message_id, "data": data})),
            )
            .await
        })
    };
    let pending = click("yes");
    let (query_id, data) = bot
        .next_update(|u| match u {
            tl::enums::Update::BotCallbackQuery(q)
                if q.user_id == user && q.msg_id == message_id =>
            {
                Some((q.query_id, q.data.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(data.as_deref(), Some(&b"yes"[..]));
    let answer = tl::functions::messages::SetBotCallbackAnswer {
        alert: true,
        query_id,
        message: Some("Thanks!".into()),
        url: None,
        cache_time: 5,
    };
    assert!(bot.invoke(&answer).await.unwrap());
    let (status, clicked) = pending.await.unwrap();
    assert_eq!(status, 200, "{clicked}");
    assert_eq!(clicked["answer"]["message"], "Thanks!");
    assert_eq!(clicked["answer"]["alert"], true);
    assert_eq!(clicked["answer"]["cache_time"], 5);
    // A second answer to the same query is refused.
    assert_eq!(rpc_error(bot.invoke(&answer).await).1, "QUERY_ID_INVALID");

    // Nobody answers: the user gets BOT_RESPONSE_TIMEOUT after the timeout.
    let (status, _) = harness
        .control("POST", "/faults", Some(json!({"callback_timeout_ms": 300})))
        .await;
    assert_eq!(status, 200);
    let pending = click("no");
    let late_query = bot
        .next_update(|u| match u {
            tl::enums::Update::BotCallbackQuery(q) => Some(q.query_id),
            _ => None,
        })
        .await;
    let (status, clicked) = pending.await.unwrap();
    assert_eq!(status, 200, "{clicked}");
    assert_eq!(clicked["error"], "BOT_RESPONSE_TIMEOUT");
    assert!(clicked["elapsed_ms"].as_u64().unwrap() >= 300, "{clicked}");
    let late = tl::functions::messages::SetBotCallbackAnswer {
        query_id: late_query,
        ..answer
    };
    assert_eq!(rpc_error(bot.invoke(&late).await).1, "QUERY_ID_INVALID");

    // Data that is on no button of the message is refused outright.
    let (status, refused) = click("maybe").await.unwrap();
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["telegram_error"]["name"], "DATA_INVALID");
    let (_, stats) = harness.control("GET", "/stats", None).await;
    assert_eq!(stats["callback_queries"], 2);
    assert_eq!(stats["callback_timeouts"], 1);
}

#[tokio::test]
async fn telegram_rules_flood_wait_peer_id_invalid_random_id_and_errors() {
    let harness = Harness::start().await;
    let bot = harness.bot().await;
    let (_, stranger) = harness
        .control("POST", "/users", Some(json!({"first_name": "Dee"})))
        .await;
    let stranger = stranger["id"].as_i64().unwrap();
    // The user never wrote to the bot.
    let (code, name, _) = rpc_error(bot.invoke(&send(user_peer(stranger, 0), "hi", 1)).await);
    assert_eq!((code, name.as_str()), (400, "PEER_ID_INVALID"));

    let user = harness.started_user("Eve").await;
    let first = sent_id(
        &bot.invoke(&send(user_peer(user, 0), "one", 10))
            .await
            .unwrap(),
        10,
    );
    // A repeated random_id returns the first message again, posting nothing.
    let again = sent_id(
        &bot.invoke(&send(user_peer(user, 0), "one", 10))
            .await
            .unwrap(),
        10,
    );
    assert_eq!(first, again);
    bot.invoke(&send(user_peer(user, 0), "two", 11))
        .await
        .unwrap();
    bot.invoke(&send(user_peer(user, 0), "three", 12))
        .await
        .unwrap();
    // A private chat takes a burst of 3, then one a second.
    let (code, name, value) = rpc_error(bot.invoke(&send(user_peer(user, 0), "four", 13)).await);
    assert_eq!((code, name.as_str()), (420, "FLOOD_WAIT"));
    assert!(value.unwrap() >= 1);
    let texts: Vec<_> = harness.chat(user).await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["hello", "one", "two", "three"]);

    // Limits off: content rules still apply.
    harness
        .control("POST", "/faults", Some(json!({"limits": false})))
        .await;
    let too_long = "x".repeat(4097);
    let cases: Vec<(tl::functions::messages::SendMessage, &str)> = vec![
        (send(user_peer(user, 0), &too_long, 20), "MESSAGE_TOO_LONG"),
        (send(user_peer(user, 0), " ", 21), "MESSAGE_EMPTY"),
        (
            with_markup(
                send(user_peer(user, 0), "x", 22),
                inline(vec![("b", callback(&[1; 65]))]),
            ),
            "BUTTON_DATA_INVALID",
        ),
        (
            with_markup(
                send(user_peer(user, 0), "x", 23),
                inline(vec![("b", url("ftp://x"))]),
            ),
            "BUTTON_URL_INVALID",
        ),
        (
            with_markup(send(user_peer(user, 0), "x", 24), inline(vec![])),
            "REPLY_MARKUP_INVALID",
        ),
    ];
    let cases_len = cases.len();
    for (request, expected) in cases {
        assert_eq!(rpc_error(bot.invoke(&request).await).1, expected);
    }
    // An injected per-chat error, then cleared.
    let (status, _) = harness
        .control(
            "POST",
            "/faults",
            Some(json!({"user_id": user, "error": "USER_IS_BLOCKED"})),
        )
        .await;
    assert_eq!(status, 200);
    let (code, name, _) = rpc_error(bot.invoke(&send(user_peer(user, 0), "hi", 30)).await);
    assert_eq!((code, name.as_str()), (400, "USER_IS_BLOCKED"));
    harness
        .control(
            "POST",
            "/faults",
            Some(json!({"user_id": user, "error": null})),
        )
        .await;
    sent_id(
        &bot.invoke(&send(user_peer(user, 0), "back", 31))
            .await
            .unwrap(),
        31,
    );
    // A one-off injected FLOOD_WAIT.
    harness
        .control(
            "POST",
            "/faults",
            Some(json!({"user_id": user, "error": "FLOOD_WAIT_7", "times": 1})),
        )
        .await;
    let (code, name, value) = rpc_error(bot.invoke(&send(user_peer(user, 0), "x", 32)).await);
    assert_eq!((code, name.as_str(), value), (420, "FLOOD_WAIT", Some(7)));
    sent_id(
        &bot.invoke(&send(user_peer(user, 0), "x", 32))
            .await
            .unwrap(),
        32,
    );
    // A bot-wide injected error hits every chat until cleared.
    harness
        .control("POST", "/faults", Some(json!({"error": "FLOOD_WAIT_3"})))
        .await;
    let (code, _, value) = rpc_error(bot.invoke(&send(user_peer(user, 0), "y", 33)).await);
    assert_eq!((code, value), (420, Some(3)));
    harness
        .control("POST", "/faults", Some(json!({"error": null})))
        .await;
    sent_id(
        &bot.invoke(&send(user_peer(user, 0), "y", 33))
            .await
            .unwrap(),
        33,
    );

    // Methods the sandbox does not serve are named, not hung.
    let (code, name, _) = rpc_error(
        bot.invoke(&tl::functions::messages::GetDialogFilters {})
            .await,
    );
    assert_eq!(code, 400);
    assert_eq!(
        name,
        "METHOD_NOT_SUPPORTED_IN_SANDBOX: messages.getDialogFilters"
    );

    let (_, stats) = harness.control("GET", "/stats", None).await;
    assert_eq!(stats["duplicates_suppressed"], 1);
    assert_eq!(
        stats["flood_waits"], 1,
        "the injected one is not the limits'"
    );
    assert_eq!(stats["rpc_errors"]["FLOOD_WAIT"], 3, "{stats}");
    assert_eq!(
        stats["rpc_errors"]["PEER_ID_INVALID"], 1,
        "{stats} after {cases_len} content cases"
    );
}

#[tokio::test]
async fn wrong_token_is_refused() {
    let harness = Harness::start().await;
    let telegram = harness.sandbox().telegram();
    let bot = Grammers::connect(
        harness.sandbox().dc_addr(),
        telegram.bot_auth_key(BOT_ID).unwrap(),
    );
    assert!(!bot.client.is_authorized().await.unwrap());
    let token = format!("{}:wrong", telegram.bot_id());
    let error = bot.client.bot_sign_in(&token, API_HASH).await;
    assert_eq!(rpc_error(error).1, "ACCESS_TOKEN_INVALID");
}

#[tokio::test]
async fn messages_missed_while_disconnected_come_back_through_get_difference() {
    let harness = Harness::start().await;
    let user = harness.started_user("Fay").await;
    let mut bot = harness.bot().await;
    let receiver = bot.updates.take().unwrap();
    let mut stream = bot
        .client
        .stream_updates(receiver, UpdatesConfiguration { catch_up: true })
        .await
        .unwrap();
    let path = format!("/users/{user}/messages");
    let say = |text: &str| harness.control("POST", &path, Some(json!({"text": text})));
    let mut next_text = async || {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let (update, _, _) = stream.next_raw().await.unwrap();
                if let tl::enums::Update::NewMessage(new) = update
                    && let tl::enums::Message::Message(m) = new.message
                    && !m.out
                {
                    return m.message;
                }
            }
        })
        .await
        .expect("a message")
    };

    say("m1").await;
    assert_eq!(next_text().await, "m1");
    harness
        .control("POST", "/faults", Some(json!({"drop_connections": true})))
        .await;
    say("m2").await;
    say("m3").await;
    // The bot reconnects on its next call; the next push reveals the gap.
    bot.invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    say("m4").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_text().await);
    }
    assert_eq!(seen, ["m2", "m3", "m4"]);
}

#[tokio::test]
async fn a_grammers_user_client_reads_the_keyboard_and_clicks_it() {
    let harness = Harness::start().await;
    let mut bot = harness.bot().await;
    let (status, created) = harness
        .control(
            "POST",
            "/users",
            Some(json!({"first_name": "Gus", "username": "gus_user"})),
        )
        .await;
    assert_eq!(status, 201);
    let user_id = created["id"].as_i64().unwrap();
    let key = auth_key_from_hex(created["auth_key"].as_str().unwrap()).unwrap();
    let mut user = Grammers::connect(harness.sandbox().dc_addr(), key);

    let me = user.client.get_me().await.unwrap();
    assert_eq!(me.id().bare_id_unchecked(), user_id);
    assert!(!me.is_bot());
    let tl::enums::contacts::ResolvedPeer::Peer(resolved) = user
        .invoke(&tl::functions::contacts::ResolveUsername {
            username: BOT_USERNAME.into(),
            referer: None,
        })
        .await
        .unwrap();
    let tl::enums::User::User(bot_user) = &resolved.users[0] else {
        panic!("empty user")
    };
    assert!(bot_user.bot);
    let bot_peer = user_peer(bot_user.id, bot_user.access_hash.unwrap());

    sent_id(
        &user
            .invoke(&send(bot_peer.clone(), "/start", 1))
            .await
            .unwrap(),
        1,
    );
    let text = bot
        .next_update(|u| match u {
            tl::enums::Update::NewMessage(n) => match &n.message {
                tl::enums::Message::Message(m) if !m.out => Some(m.message.clone()),
                _ => None,
            },
            _ => None,
        })
        .await;
    assert_eq!(text, "/start");

    let markup = inline(vec![("Pick me", callback(b"pick"))]);
    let tl::enums::updates::State::State(before) = user
        .invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    bot.invoke(&with_markup(
        send(user_peer(user_id, 0), "Choose", 5),
        markup,
    ))
    .await
    .unwrap();
    // Pushed to the user's connection, one pts on from its state...
    let (pushed, pts) = user
        .next_update(|u| match u {
            tl::enums::Update::NewMessage(n) => match &n.message {
                tl::enums::Message::Message(m) if !m.out => Some((m.message.clone(), n.pts)),
                _ => None,
            },
            _ => None,
        })
        .await;
    assert_eq!((pushed.as_str(), pts), ("Choose", before.pts + 1));
    // ...and in the user's difference from that state.
    let difference = user
        .invoke(&tl::functions::updates::GetDifference {
            pts: before.pts,
            pts_limit: None,
            pts_total_limit: None,
            date: before.date,
            qts: 0,
            qts_limit: None,
        })
        .await
        .unwrap();
    let tl::enums::updates::Difference::Difference(difference) = difference else {
        panic!("expected a difference, got {difference:?}")
    };
    assert_eq!(difference.new_messages.len(), 1);
    let tl::enums::messages::Messages::Messages(history) = user
        .invoke(&tl::functions::messages::GetHistory {
            peer: bot_peer.clone(),
            offset_id: 0,
            offset_date: 0,
            add_offset: 0,
            limit: 10,
            max_id: 0,
            min_id: 0,
            hash: 0,
        })
        .await
        .unwrap()
    else {
        panic!("expected messages.messages")
    };
    let (message_id, data) = history
        .messages
        .iter()
        .find_map(|m| match m {
            tl::enums::Message::Message(m) => match &m.reply_markup {
                Some(tl::enums::ReplyMarkup::ReplyInlineMarkup(markup)) => {
                    let tl::enums::KeyboardInlineButtonRow::Row(row) = &markup.rows[0];
                    let tl::enums::KeyboardInlineButton::Button(button) = &row.buttons[0];
                    match &button.r#type {
                        tl::enums::InlineButtonType::Callback(c) => Some((m.id, c.data.clone())),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        })
        .expect("the bot's keyboard in the user's history");
    assert_eq!(data, b"pick");

    let ask = tl::functions::messages::GetBotCallbackAnswer {
        game: false,
        peer: bot_peer,
        msg_id: message_id,
        data: Some(data),
        password: None,
    };
    let user = Arc::new(user);
    let asking = {
        let user = Arc::clone(&user);
        tokio::spawn(async move { user.invoke(&ask).await })
    };
    let query_id = bot
        .next_update(|u| match u {
            tl::enums::Update::BotCallbackQuery(q) if q.user_id == user_id => Some(q.query_id),
            _ => None,
        })
        .await;
    bot.invoke(&tl::functions::messages::SetBotCallbackAnswer {
        alert: false,
        query_id,
        message: Some("Picked".into()),
        url: None,
        cache_time: 0,
    })
    .await
    .unwrap();
    let tl::enums::messages::BotCallbackAnswer::Answer(answer) = asking.await.unwrap().unwrap();
    assert_eq!(answer.message.as_deref(), Some("Picked"));
}

#[tokio::test]
async fn state_survives_a_sandbox_restart() {
    let mut harness = Harness::start().await;
    let user = harness.started_user("Hal").await;
    let key = harness.sandbox().telegram().bot_auth_key(BOT_ID).unwrap();
    {
        let bot = harness.bot().await;
        sent_id(
            &bot.invoke(&send(user_peer(user, 0), "before", 1))
                .await
                .unwrap(),
            1,
        );
    }
    // A supergroup the bot is in, with a message, and a block.
    let supergroup = harness.group("supergroup", &[user], "member").await;
    harness.group_says(supergroup, user, "/in_group").await;
    harness
        .control("POST", &format!("/users/{user}/block"), None)
        .await;
    harness.sandbox.take().unwrap().shutdown().await.unwrap();

    let sandbox = Sandbox::start(SandboxOptions {
        state_dir: Some(harness.dir.path().to_owned()),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    harness.sandbox = Some(sandbox);
    let texts: Vec<_> = harness.chat(user).await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["hello", "before"]);
    // The bot's key is still signed in: no token needed.
    assert_eq!(
        harness.sandbox().telegram().bot_auth_key(BOT_ID).unwrap(),
        key
    );
    let bot = Grammers::connect(harness.sandbox().dc_addr(), key);
    assert!(bot.client.is_authorized().await.unwrap());
    let tl::enums::updates::State::State(state) = bot
        .invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    assert_eq!(state.pts, 3, "hello and before, each one pts");
    assert_eq!(state.qts, 3, "the bot's add and the block, each one qts");
    let (_, group) = harness
        .control("GET", &format!("/groups/{supergroup}/chat"), None)
        .await;
    assert_eq!(group["bot"], "member");
    let texts: Vec<&str> = group["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str().filter(|t| !t.is_empty()))
        .collect();
    assert_eq!(texts, ["/in_group"]);
    assert_eq!(harness.chat(user).await["blocked"], true);
}

#[tokio::test]
async fn control_api_errors_are_clear_json() {
    let harness = Harness::start().await;
    let (status, body) = harness
        .control("POST", "/users/42/messages", Some(json!({"text": "x"})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no user with id 42"))
    );
    let (status, body) = harness.control("POST", "/users", Some(json!({}))).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("first_name"),
        "{body}"
    );
    let user = harness.started_user("Ivy").await;
    let (status, body) = harness
        .control(
            "POST",
            &format!("/users/{user}/messages"),
            Some(json!({"text": "x", "location": {"latitude": 1.0, "longitude": 2.0}})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("exactly one of"),
        "{body}"
    );
    let (status, body) = harness
        .control(
            "POST",
            "/faults",
            Some(json!({"user_id": user, "error": "blocked!"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = harness.control("GET", "/nope", None).await;
    assert_eq!(status, 404);
    let (status, dc) = harness.control("GET", "/dc", None).await;
    assert_eq!(status, 200);
    assert_eq!(dc["port"], harness.sandbox().dc_addr().port());
    assert_eq!(dc["dc_id"], DC_ID);
}

fn send_media(
    peer: tl::enums::InputPeer,
    media: tl::enums::InputMedia,
    caption: &str,
    random_id: i64,
) -> tl::functions::messages::SendMedia {
    telegate::outgoing::media_message(peer, media, caption.into(), None, random_id)
}

fn edit(peer: tl::enums::InputPeer, id: i32) -> tl::functions::messages::EditMessage {
    tl::functions::messages::EditMessage {
        no_webpage: false,
        invert_media: false,
        peer,
        id,
        message: None,
        media: None,
        reply_markup: None,
        entities: None,
        schedule_date: None,
        schedule_repeat_period: None,
        quick_reply_shortcut_id: None,
        rich_message: None,
    }
}

#[tokio::test]
async fn media_by_url_edits_and_file_downloads() {
    let harness = Harness::start().await;
    let user = harness.started_user("Jo").await;
    let bot = harness.bot().await;
    harness
        .control("POST", "/faults", Some(json!({"limits": false})))
        .await;

    let photo = tl::types::InputMediaPhotoExternal {
        spoiler: false,
        url: "https://example.com/cat.jpg".into(),
        ttl_seconds: None,
    };
    let document = tl::types::InputMediaDocumentExternal {
        spoiler: false,
        url: "https://example.com/files/invoice.pdf".into(),
        ttl_seconds: None,
        video_cover: None,
        video_timestamp: None,
    };
    sent_id(
        &bot.invoke(&send_media(user_peer(user, 0), photo.into(), "a cat", 1))
            .await
            .unwrap(),
        1,
    );
    sent_id(
        &bot.invoke(&send_media(user_peer(user, 0), document.into(), "", 2))
            .await
            .unwrap(),
        2,
    );
    let too_long = "c".repeat(1025);
    let caption_error = bot
        .invoke(&send_media(
            user_peer(user, 0),
            tl::types::InputMediaPhotoExternal {
                spoiler: false,
                url: "https://example.com/x.jpg".into(),
                ttl_seconds: None,
            }
            .into(),
            &too_long,
            3,
        ))
        .await;
    assert_eq!(rpc_error(caption_error).1, "MEDIA_CAPTION_TOO_LONG");

    // An inline keyboard, edited twice.
    let markup = inline(vec![("Yes", callback(b"yes"))]);
    let id = sent_id(
        &bot.invoke(&with_markup(
            send(user_peer(user, 0), "Question?", 4),
            markup,
        ))
        .await
        .unwrap(),
        4,
    );
    let mut text_edit = edit(user_peer(user, 0), id);
    text_edit.message = Some("Question (edited)?".into());
    text_edit.reply_markup = Some(inline(vec![("Sure", callback(b"sure"))]));
    bot.invoke(&text_edit).await.unwrap();
    assert_eq!(
        rpc_error(bot.invoke(&text_edit).await).1,
        "MESSAGE_NOT_MODIFIED"
    );
    let mut markup_edit = edit(user_peer(user, 0), id);
    markup_edit.message = Some("Answered".into());
    bot.invoke(&markup_edit).await.unwrap();

    let chat = harness.chat(user).await;
    let messages = chat["messages"].as_array().unwrap();
    assert_eq!(messages[1]["media"]["kind"], "photo");
    assert_eq!(messages[1]["media"]["url"], "https://example.com/cat.jpg");
    assert_eq!(messages[1]["text"], "a cat");
    assert_eq!(messages[2]["media"]["file_name"], "invoice.pdf");
    assert_eq!(messages[2]["media"]["mime_type"], "application/pdf");
    assert_eq!(messages[3]["text"], "Answered");
    assert_eq!(
        messages[3]["reply_markup"],
        Value::Null,
        "keyboard removed by the edit"
    );
    assert!(messages[3]["edit_date"].is_i64());

    // The user sends a document; the bot downloads it.
    let (status, _) = harness
        .control(
            "POST",
            &format!("/users/{user}/messages"),
            Some(json!({"document": {"file_name": "a.txt", "mime_type": "text/plain", "size": 5000}})),
        )
        .await;
    assert_eq!(status, 200);
    let chat = harness.chat(user).await;
    let sent = chat["messages"].as_array().unwrap().last().unwrap()["media"].clone();
    let (file_id, hash) = (
        sent["id"].as_i64().unwrap(),
        sent["access_hash"].as_i64().unwrap(),
    );
    let tl::enums::upload::File::File(file) = bot
        .invoke(&tl::functions::upload::GetFile {
            precise: false,
            cdn_supported: false,
            location: tl::types::InputDocumentFileLocation {
                id: file_id,
                access_hash: hash,
                file_reference: Vec::new(),
                thumb_size: String::new(),
            }
            .into(),
            offset: 4096,
            limit: 4096,
        })
        .await
        .unwrap()
    else {
        panic!("expected a file")
    };
    assert_eq!(
        file.bytes,
        telegate::sandbox::telegram::file_content(file_id, 4096, 904)
    );

    // Bots may fetch messages by id, but not read history.
    let tl::enums::messages::Messages::Messages(fetched) = bot
        .invoke(&tl::functions::messages::GetMessages {
            id: vec![
                tl::types::InputMessageId { id }.into(),
                tl::types::InputMessageId { id: 9999 }.into(),
            ],
        })
        .await
        .unwrap()
    else {
        panic!("expected messages.messages")
    };
    assert!(matches!(&fetched.messages[0],
        tl::enums::Message::Message(m) if m.message == "Answered" && m.edit_date.is_some()));
    assert!(matches!(&fetched.messages[1], tl::enums::Message::Empty(_)));
    let history = bot
        .invoke(&tl::functions::messages::GetHistory {
            peer: user_peer(user, 0),
            offset_id: 0,
            offset_date: 0,
            add_offset: 0,
            limit: 10,
            max_id: 0,
            min_id: 0,
            hash: 0,
        })
        .await;
    assert_eq!(rpc_error(history).1, "BOT_METHOD_INVALID");
}

#[tokio::test]
async fn a_click_while_the_bot_is_offline_comes_through_get_difference() {
    use telegate::sandbox::telegram::key_id;
    use telegate::sandbox::{Caller, RpcOutcome, Service};

    let harness = Harness::start().await;
    let user = harness.started_user("Kim").await;
    let telegram = harness.sandbox().telegram().clone();
    let caller = Caller {
        auth_key_id: key_id(&telegram.bot_auth_key(BOT_ID).unwrap()),
        dc_id: DC_ID,
    };
    let call = |request: Vec<u8>| {
        let telegram = telegram.clone();
        async move {
            match telegram.call(caller, request).await {
                RpcOutcome::Ok(bytes) => bytes,
                RpcOutcome::Err { code, message } => panic!("{code} {message}"),
            }
        }
    };
    // Not signed in yet: 401.
    let outcome = telegram
        .call(caller, tl::functions::updates::GetState {}.to_bytes())
        .await;
    assert!(
        matches!(outcome, RpcOutcome::Err { code: 401, .. }),
        "{outcome:?}"
    );
    call(
        tl::functions::auth::ImportBotAuthorization {
            flags: 0,
            api_id: API_ID,
            api_hash: API_HASH.into(),
            bot_auth_token: telegram.bot_token(BOT_ID).unwrap().expose().into(),
        }
        .to_bytes(),
    )
    .await;
    let markup = inline(vec![("Go", callback(b"go"))]);
    let sent = call(with_markup(send(user_peer(user, 0), "Go?", 1), markup).to_bytes()).await;
    let sent = <tl::enums::Updates as tl::Deserializable>::from_bytes(&sent).unwrap();
    let message_id = sent_id(&sent, 1);
    let state = call(tl::functions::updates::GetState {}.to_bytes()).await;
    let tl::enums::updates::State::State(state) =
        <tl::enums::updates::State as tl::Deserializable>::from_bytes(&state).unwrap();

    // No bot connection is live: the click waits in the difference.
    let socket = harness.sandbox().control_socket().unwrap().to_owned();
    let clicking = tokio::spawn(async move {
        control(
            &socket,
            "POST",
            &format!("/users/{user}/click"),
            Some(json!({"message_id": message_id, "data": "go"})),
        )
        .await
    });
    let query_id = tokio::time::timeout(PATIENCE, async {
        loop {
            let difference = call(
                tl::functions::updates::GetDifference {
                    pts: state.pts,
                    pts_limit: None,
                    pts_total_limit: None,
                    date: state.date,
                    qts: state.qts,
                    qts_limit: None,
                }
                .to_bytes(),
            )
            .await;
            let difference =
                <tl::enums::updates::Difference as tl::Deserializable>::from_bytes(&difference)
                    .unwrap();
            if let tl::enums::updates::Difference::Difference(d) = difference
                && let Some(id) = d.other_updates.iter().find_map(|u| match u {
                    tl::enums::Update::BotCallbackQuery(q) => Some(q.query_id),
                    _ => None,
                })
            {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the click in the difference");
    call(
        tl::functions::messages::SetBotCallbackAnswer {
            alert: false,
            query_id,
            message: Some("Gone".into()),
            url: None,
            cache_time: 0,
        }
        .to_bytes(),
    )
    .await;
    let (status, clicked) = clicking.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(clicked["answer"]["message"], "Gone");
}

/// `telegate sandbox --dc-only` as a child process, killed on drop.
struct SandboxProcess {
    child: std::process::Child,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `telegate sandbox --bots 2`: one model with two bots, a `[[bots]]` table
/// and a session per bot, the keys in the ready message; each bot signs in
/// as itself, and a user writes to both, each chat its own.
#[tokio::test]
async fn the_sandbox_command_with_two_bots_writes_a_key_and_session_per_bot() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_telegate"))
        .args([
            "sandbox",
            "--dc-only",
            "--web",
            "off",
            "--bots",
            "2",
            "--state-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _process = SandboxProcess { child };
    // The ready message: a line per bot, name and key.
    let shown = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let (name, key) = line.trim_start().split_once('\t')?;
                Some((name.to_owned(), key.to_owned()))
            })
            .take(2)
            .collect::<Vec<_>>()
    });
    let shown = tokio::time::timeout(PATIENCE, shown)
        .await
        .unwrap()
        .unwrap();
    let config: toml::Table = std::fs::read_to_string(dir.path().join("telegate.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let tables = config["bots"].as_array().unwrap();
    let written: Vec<(String, String)> = tables
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap().to_owned();
            (name, t["api_keys"][0].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(shown, written);
    assert_eq!(shown[0].0, "bot1");
    assert_ne!(shown[0].1, shown[1].1);
    assert!(config["telegram"].get("bot_token").is_none(), "{config:?}");
    assert_eq!(tables[0]["dc_addr"], tables[1]["dc_addr"], "one sandbox");
    let socket = dir.path().join("sandbox.sock");
    let (_, listed) = control(&socket, "GET", "/bots", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // Each session signs in as its own bot with its own token.
    let mut usernames = Vec::new();
    for table in tables {
        let name = table["name"].as_str().unwrap();
        let path = dir.path().join(format!("sessions/{name}.session"));
        let session = telegate::session::SessionStore::open(&path).unwrap();
        let worker = telegate::telegram::Telegram::start(Arc::new(session), 1);
        let credentials = telegate::telegram::Credentials {
            api_id: 1,
            api_hash: config["telegram"]["api_hash"].as_str().unwrap().into(),
            bot_token: table["bot_token"].as_str().unwrap().into(),
        };
        let bot = worker.sign_in(&credentials).await.unwrap();
        usernames.push(bot.username.unwrap_or_default());
        worker.shutdown().await;
    }
    assert_eq!(usernames, [BOT_USERNAME, "telegate_sandbox_2_bot"]);

    // One user, two chats.
    let (_, user) = control(
        &socket,
        "POST",
        "/users",
        Some(json!({"first_name": "Ann"})),
    )
    .await;
    let user = user["id"].as_i64().unwrap();
    for (bot, text) in [("bot1", "to one"), ("bot2", "to two")] {
        let path = format!("/users/{user}/messages?bot={bot}");
        let (status, _) = control(&socket, "POST", &path, Some(json!({"text": text}))).await;
        assert_eq!(status, 200);
    }
    for (bot, text) in [("bot1", "to one"), ("bot2", "to two")] {
        let (_, chat) = control(
            &socket,
            "GET",
            &format!("/users/{user}/chat?bot={bot}"),
            None,
        )
        .await;
        let texts: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str())
            .collect();
        assert_eq!(texts, [text], "{bot}'s chat");
    }
    let (status, error) = control(
        &socket,
        "GET",
        &format!("/users/{user}/chat?bot=bot3"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("bot1..bot2"),
        "{error}"
    );
}

#[tokio::test]
async fn the_sandbox_command_writes_what_a_worker_needs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_telegate"))
        .args([
            "sandbox",
            "--dc-only",
            "--web",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut process = SandboxProcess { child };
    let socket = dir.path().join("sandbox.sock");
    let config_path = dir.path().join("telegate.toml");
    tokio::time::timeout(PATIENCE, async {
        while !(socket.exists() && config_path.exists()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the sandbox to come up");
    // The config is written after the DC listens; give it a moment to be whole.
    let config: toml::Table = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(table) = std::fs::read_to_string(&config_path)
                .unwrap()
                .parse::<toml::Table>()
                && table.contains_key("telegram")
            {
                return table;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let telegram = &config["telegram"];
    let (_, dc) = control(&socket, "GET", "/dc", None).await;
    assert_eq!(
        telegram["dc_addr"].as_str().unwrap(),
        format!("{}:{}", dc["host"].as_str().unwrap(), dc["port"])
    );

    // What `telegate run` does with those files: open the session, sign in.
    let session =
        telegate::session::SessionStore::open(&dir.path().join("sessions/default.session"))
            .unwrap();
    let worker = telegate::telegram::Telegram::start(
        Arc::new(session),
        i32::try_from(telegram["api_id"].as_integer().unwrap()).unwrap(),
    );
    let credentials = telegate::telegram::Credentials {
        api_id: 1,
        api_hash: telegram["api_hash"].as_str().unwrap().into(),
        bot_token: telegram["bot_token"].as_str().unwrap().into(),
    };
    let bot = worker.sign_in(&credentials).await.unwrap();
    assert_eq!(bot.username.as_deref(), Some(BOT_USERNAME));
    worker.shutdown().await;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(exit) = process.child.try_wait().unwrap() {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the sandbox to stop");
    assert!(exit.success(), "{exit:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut process.child.stderr.take().unwrap(), &mut logs).unwrap();
    assert!(logs.contains("sandbox ready"), "{logs}");
    assert!(logs.contains("web=http://127.0.0.1:"), "{logs}");
    let token = telegram["bot_token"].as_str().unwrap();
    let secret = token.split_once(':').unwrap().1;
    assert!(!logs.contains(secret), "the bot token leaked into the logs");
    // The world was saved: the bot's key is now signed in.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sandbox.json")).unwrap()).unwrap();
    assert!(
        saved["keys"][0]["account"].is_i64(),
        "{}",
        saved["keys"][0]["account"]
    );
    assert!(!socket.exists(), "the control socket is removed on stop");
}

/// The text of a pushed new message (private, group or channel).
fn new_text(update: &tl::enums::Update) -> Option<(tl::enums::Peer, String)> {
    let message = match update {
        tl::enums::Update::NewMessage(u) => &u.message,
        tl::enums::Update::NewChannelMessage(u) => &u.message,
        _ => return None,
    };
    match message {
        tl::enums::Message::Message(m) if !m.out => Some((m.peer_id.clone(), m.message.clone())),
        _ => None,
    }
}

impl Harness {
    async fn user(&self, name: &str) -> i64 {
        let (status, user) = self
            .control("POST", "/users", Some(json!({"first_name": name})))
            .await;
        assert_eq!(status, 201, "{user}");
        user["id"].as_i64().unwrap()
    }

    async fn group(&self, kind: &str, members: &[i64], bot: &str) -> i64 {
        let body =
            json!({"title": format!("A {kind}"), "kind": kind, "members": members, "bot": bot});
        let (status, created) = self.control("POST", "/groups", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_i64().unwrap()
    }

    async fn group_says(&self, group: i64, from: i64, text: &str) -> (u16, Value) {
        let body = json!({"from": from, "text": text});
        self.control("POST", &format!("/groups/{group}/messages"), Some(body))
            .await
    }

    async fn bot_action(&self, group: i64, action: &str) -> (u16, Value) {
        let body = json!({"action": action});
        self.control("POST", &format!("/groups/{group}/bot"), Some(body))
            .await
    }
}

#[tokio::test]
async fn groups_supergroups_and_channels_with_privacy_mode_and_telegram_s_sending_rules() {
    let harness = Harness::start().await;
    let (ann, bob) = (harness.user("Ann").await, harness.user("Bob").await);
    let mut bot = harness.bot().await;

    // Bad input is named.
    for (body, status, needle) in [
        (
            json!({"title": "x", "kind": "club", "members": [ann]}),
            400,
            "kind",
        ),
        (
            json!({"title": "x", "kind": "group", "members": []}),
            400,
            "members",
        ),
        (
            json!({"title": " ", "kind": "group", "members": [ann]}),
            400,
            "title",
        ),
        (
            json!({"title": "x", "kind": "group", "members": [42]}),
            404,
            "42",
        ),
    ] {
        let (got, answer) = harness.control("POST", "/groups", Some(body)).await;
        assert_eq!(got, status, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }

    let group = harness.group("group", &[ann, bob], "member").await;
    assert!((-1_000_000_000_000..0).contains(&group), "{group}");
    let supergroup = harness.group("supergroup", &[ann, bob], "member").await;
    assert!(supergroup < -1_000_000_000_000, "{supergroup}");
    let chat_id = -group;

    // Privacy mode: the bot sees commands, mentions and replies only.
    assert_eq!(harness.group_says(group, ann, "just chatting").await.0, 200);
    assert_eq!(harness.group_says(group, bob, "/help").await.0, 200);
    let (peer, text) = bot.next_update(new_text).await;
    assert_eq!(text, "/help", "the plain message did not reach the bot");
    assert_eq!(peer, tl::types::PeerChat { chat_id }.into());
    harness
        .group_says(group, ann, "thanks @telegate_sandbox_bot")
        .await;
    assert_eq!(
        bot.next_update(new_text).await.1,
        "thanks @telegate_sandbox_bot"
    );
    let (status, privacy) = harness
        .control("POST", "/bot", Some(json!({"privacy": false})))
        .await;
    assert_eq!((status, privacy["privacy"].clone()), (200, json!(false)));
    harness.group_says(group, ann, "now everything").await;
    assert_eq!(bot.next_update(new_text).await.1, "now everything");

    // The bot writes to the basic group; the history shows it.
    let peer: tl::enums::InputPeer = tl::types::InputPeerChat { chat_id }.into();
    bot.invoke(&send(peer.clone(), "hello group", 501))
        .await
        .unwrap();
    let (_, history) = harness
        .control("GET", &format!("/groups/{group}/chat"), None)
        .await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str().filter(|t| !t.is_empty()))
        .collect();
    assert_eq!(
        texts,
        [
            "just chatting",
            "/help",
            "thanks @telegate_sandbox_bot",
            "now everything",
            "hello group"
        ]
    );
    assert_eq!(history["bot"], "member");
    assert_eq!(history["kind"], "group");
    // 20 messages a minute per group, then FLOOD_WAIT.
    for n in 0..19 {
        bot.invoke(&send(peer.clone(), &format!("burst {n}"), 600 + n))
            .await
            .unwrap();
    }
    let (code, name, wait) = rpc_error(bot.invoke(&send(peer.clone(), "one too many", 700)).await);
    assert_eq!((code, name.as_str()), (420, "FLOOD_WAIT"));
    assert!(wait.unwrap() >= 1);

    // A supergroup's message comes with the channel and its access hash.
    harness
        .group_says(supergroup, bob, "in the supergroup")
        .await;
    let channel_id = -supergroup - 1_000_000_000_000;
    let access_hash = bot
        .next_pushed(|update, chats| {
            new_text(update)?;
            chats.iter().find_map(|chat| match chat {
                tl::enums::Chat::Channel(c) if c.id == channel_id && c.megagroup => c.access_hash,
                _ => None,
            })
        })
        .await;
    let channel_peer: tl::enums::InputPeer = tl::types::InputPeerChannel {
        channel_id,
        access_hash,
    }
    .into();
    let wrong_hash: tl::enums::InputPeer = tl::types::InputPeerChannel {
        channel_id,
        access_hash: access_hash ^ 1,
    }
    .into();
    assert_eq!(
        rpc_error(bot.invoke(&send(wrong_hash, "x", 801)).await).1,
        "CHANNEL_INVALID"
    );
    let sent = bot
        .invoke(&send(channel_peer.clone(), "bot in supergroup", 802))
        .await
        .unwrap();
    let tl::enums::Updates::Updates(sent) = sent else {
        panic!("a group send answers with updates: {sent:?}")
    };
    assert!(sent.updates.iter().any(|u| matches!(u,
        tl::enums::Update::NewChannelMessage(m) if m.pts_count == 1)));

    // Ban: a participant update (qts), then the channel is private to it.
    let (status, role) = harness.bot_action(supergroup, "ban").await;
    assert_eq!((status, role["bot"].clone()), (200, json!("banned")));
    let banned = bot
        .next_update(|u| match u {
            tl::enums::Update::ChannelParticipant(p) if p.channel_id == channel_id => {
                Some(p.clone())
            }
            _ => None,
        })
        .await;
    assert!(matches!(
        banned.new_participant,
        Some(tl::enums::ChannelParticipant::Banned(_))
    ));
    assert_eq!(
        rpc_error(bot.invoke(&send(channel_peer.clone(), "x", 803)).await).1,
        "CHANNEL_PRIVATE"
    );
    assert_eq!(harness.bot_action(supergroup, "ban").await.0, 400);
    assert_eq!(
        harness.bot_action(supergroup, "add").await.1["bot"],
        "member"
    );
    assert_eq!(
        harness.bot_action(supergroup, "promote").await.1["bot"],
        "admin"
    );
    assert_eq!(
        harness.bot_action(supergroup, "demote").await.1["bot"],
        "member"
    );
    assert_eq!(
        harness.bot_action(supergroup, "remove").await.1["bot"],
        "left"
    );
    let (status, refused) = harness.bot_action(supergroup, "remove").await;
    assert_eq!(status, 400, "{refused}");

    // Removed from the basic group: CHAT_WRITE_FORBIDDEN. A user banned
    // from the supergroup cannot post there.
    harness.bot_action(group, "remove").await;
    assert_eq!(
        rpc_error(bot.invoke(&send(peer, "x", 804)).await).1,
        "CHAT_WRITE_FORBIDDEN"
    );
    // A channel: only admins post.
    let channel = harness.group("channel", &[ann, bob], "none").await;
    let (status, refused) = harness.group_says(channel, bob, "hi").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["telegram_error"]["name"], "CHAT_ADMIN_REQUIRED");
    assert_eq!(
        harness.group_says(channel, ann, "announcement").await.0,
        200
    );
    let (_, groups) = harness.control("GET", "/groups", None).await;
    assert_eq!(groups.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn users_block_edit_delete_and_start_with_a_payload_and_the_bot_edits_deletes_and_types() {
    let harness = Harness::start().await;
    let (status, created) = harness
        .control(
            "POST",
            "/users",
            Some(json!({"first_name": "Lia", "lang_code": "pt-br"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (lia, lia_hash) = (
        created["id"].as_i64().unwrap(),
        created["access_hash"].as_i64().unwrap(),
    );
    let mut bot = harness.bot().await;
    let (_, started) = harness
        .control(
            "POST",
            &format!("/users/{lia}/messages"),
            Some(json!({"start": "ref_42"})),
        )
        .await;
    let start_id = started["message_id"].as_i64().unwrap();
    assert_eq!(bot.next_update(new_text).await.1, "/start ref_42");
    let (_, users) = harness.control("GET", "/users", None).await;
    assert_eq!(users[0]["lang_code"], "pt-br");

    // The user edits and deletes; the bot is told.
    let (status, _) = harness
        .control(
            "POST",
            &format!("/users/{lia}/messages/{start_id}/edit"),
            Some(json!({"text": "/start ref_43"})),
        )
        .await;
    assert_eq!(status, 200);
    let edited = bot
        .next_update(|u| match u {
            tl::enums::Update::EditMessage(e) => match &e.message {
                tl::enums::Message::Message(m) => Some((m.message.clone(), m.edit_date)),
                _ => None,
            },
            _ => None,
        })
        .await;
    assert_eq!(edited.0, "/start ref_43");
    assert!(edited.1.is_some());
    let (status, _) = harness
        .control(
            "POST",
            &format!("/users/{lia}/messages/{start_id}/delete"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let deleted = bot
        .next_update(|u| match u {
            tl::enums::Update::DeleteMessages(d) => Some(d.messages.clone()),
            _ => None,
        })
        .await;
    assert_eq!(deleted, [start_id as i32]);
    let (status, _) = harness
        .control(
            "POST",
            &format!("/users/{lia}/messages/{start_id}/edit"),
            Some(json!({"text": "x"})),
        )
        .await;
    assert_eq!(status, 404);

    // The bot sends with flags, entities and a reply; the chat shows them.
    let (_, hello) = harness
        .control(
            "POST",
            &format!("/users/{lia}/messages"),
            Some(json!({"text": "hello"})),
        )
        .await;
    let hello_id = hello["message_id"].as_i64().unwrap() as i32;
    let peer = user_peer(lia, lia_hash);
    let mut request = send(peer.clone(), "bold reply", 900);
    request.silent = true;
    request.noforwards = true;
    request.no_webpage = true;
    request.entities = Some(vec![
        tl::types::MessageEntityBold {
            offset: 0,
            length: 4,
        }
        .into(),
    ]);
    request.reply_to = Some(
        tl::types::InputReplyToMessage {
            reply_to_msg_id: hello_id,
            top_msg_id: None,
            reply_to_peer_id: None,
            quote_text: None,
            quote_entities: None,
            quote_offset: None,
            monoforum_peer_id: None,
            todo_item_id: None,
            poll_option: None,
        }
        .into(),
    );
    let sent = bot.invoke(&request).await.unwrap();
    let sent_id = sent_id(&sent, 900);
    let last = |chat: &Value| chat["messages"].as_array().unwrap().last().unwrap().clone();
    let shown = last(&harness.chat(lia).await);
    assert_eq!(shown["id"], sent_id);
    assert_eq!(shown["reply_to"], hello_id);
    assert_eq!(
        (
            shown["silent"].clone(),
            shown["noforwards"].clone(),
            shown["no_webpage"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(
        shown["entities"],
        json!([{"type": "messageEntityBold", "offset": 0, "length": 4}])
    );

    // The bot edits (text and entities), types, and deletes.
    let mut change = edit(peer.clone(), sent_id);
    change.message = Some("bold edited".into());
    change.entities = Some(vec![
        tl::types::MessageEntityItalic {
            offset: 5,
            length: 6,
        }
        .into(),
    ]);
    bot.invoke(&change).await.unwrap();
    let shown = last(&harness.chat(lia).await);
    assert_eq!(shown["text"], "bold edited");
    assert!(shown["edit_date"].is_i64());
    assert_eq!(shown["entities"][0]["type"], "messageEntityItalic");
    bot.invoke(&tl::functions::messages::SetTyping {
        peer: peer.clone(),
        top_msg_id: None,
        action: tl::enums::SendMessageAction::SendMessageTypingAction,
    })
    .await
    .unwrap();
    assert_eq!(
        harness.chat(lia).await["typing"]["action"],
        "sendMessageTypingAction"
    );
    let tl::enums::messages::AffectedMessages::Messages(affected) = bot
        .invoke(&tl::functions::messages::DeleteMessages {
            revoke: true,
            id: vec![sent_id],
        })
        .await
        .unwrap();
    assert_eq!(affected.pts_count, 1);
    assert_ne!(last(&harness.chat(lia).await)["id"], sent_id);

    // Block: updateBotStopped with the next qts; the chat refuses sends.
    let state = bot
        .invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    let tl::enums::updates::State::State(state) = state;
    let (status, blocked) = harness
        .control("POST", &format!("/users/{lia}/block"), None)
        .await;
    assert_eq!((status, blocked["blocked"].clone()), (200, json!(true)));
    let stopped = bot
        .next_update(|u| match u {
            tl::enums::Update::BotStopped(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (stopped.user_id, stopped.stopped, stopped.qts),
        (lia, true, state.qts + 1)
    );
    assert_eq!(
        rpc_error(bot.invoke(&send(peer.clone(), "x", 901)).await).1,
        "USER_IS_BLOCKED"
    );
    harness
        .control("POST", &format!("/users/{lia}/unblock"), None)
        .await;
    let unstopped = bot
        .next_update(|u| match u {
            tl::enums::Update::BotStopped(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!((unstopped.stopped, unstopped.qts), (false, state.qts + 2));
    bot.invoke(&send(peer, "welcome back", 902)).await.unwrap();
}

#[tokio::test]
async fn differences_come_in_configured_slices_and_too_long_past_the_backlog() {
    let harness = Harness::start().await;
    let ann = harness.user("Ann").await;
    let bot = harness.bot().await;
    let supergroup = harness.group("supergroup", &[ann], "admin").await;
    let tl::enums::updates::State::State(start) = bot
        .invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    let (status, settings) = harness
        .control("POST", "/faults", Some(json!({"difference_slice": 7})))
        .await;
    assert_eq!(
        (status, settings["difference_slice"].clone()),
        (200, json!(7))
    );
    for n in 0..20 {
        harness
            .control(
                "POST",
                &format!("/users/{ann}/messages"),
                Some(json!({"text": format!("p{n}")})),
            )
            .await;
        harness.group_says(supergroup, ann, &format!("g{n}")).await;
    }
    // The common box: 20 messages in slices of 7.
    let mut pts = start.pts;
    let mut texts = Vec::new();
    loop {
        let difference = bot
            .invoke(&get_difference(pts, start.date, start.qts))
            .await
            .unwrap();
        let (messages, state, last) = match difference {
            tl::enums::updates::Difference::Slice(s) => {
                (s.new_messages, s.intermediate_state, false)
            }
            tl::enums::updates::Difference::Difference(d) => (d.new_messages, d.state, true),
            other => panic!("unexpected {other:?}"),
        };
        assert!(messages.len() <= 7);
        texts.extend(messages.iter().map(|m| match m {
            tl::enums::Message::Message(m) => m.message.clone(),
            _ => String::new(),
        }));
        let tl::enums::updates::State::State(state) = state;
        pts = state.pts;
        if last {
            break;
        }
    }
    assert_eq!(texts, (0..20).map(|n| format!("p{n}")).collect::<Vec<_>>());
    let common_pts = pts;

    // The supergroup's box: its own pts, its own slices.
    let channel_id = -supergroup - 1_000_000_000_000;
    let (_, stats) = harness.control("GET", "/stats", None).await;
    assert_eq!(stats["differences"]["differenceSlice"], 2, "{stats}");
    assert_eq!(stats["differences"]["difference"], 1, "{stats}");
    let channel = |pts: i32, access_hash: i64| tl::functions::updates::GetChannelDifference {
        force: false,
        channel: tl::types::InputChannel {
            channel_id,
            access_hash,
        }
        .into(),
        filter: tl::enums::ChannelMessagesFilter::Empty,
        pts,
        limit: 100,
    };
    assert_eq!(
        rpc_error(bot.invoke(&channel(1, 0)).await).1,
        "CHANNEL_INVALID",
        "a channel needs its access hash"
    );
    let access_hash = {
        let tl::enums::messages::Chats::Chats(found) = bot
            .invoke(&tl::functions::messages::GetChats { id: vec![] })
            .await
            .unwrap()
        else {
            panic!("chats")
        };
        assert!(found.chats.is_empty());
        // The hash comes with the updates: read it from a difference.
        let tl::enums::updates::Difference::Difference(d) = bot
            .invoke(&get_difference(common_pts, start.date, start.qts - 1))
            .await
            .unwrap()
        else {
            panic!("the participant update")
        };
        d.chats
            .iter()
            .find_map(|c| match c {
                tl::enums::Chat::Channel(c) if c.id == channel_id => c.access_hash,
                _ => None,
            })
            .expect("the supergroup in the difference's chats")
    };
    let mut pts = 1;
    let mut got = Vec::new();
    loop {
        let tl::enums::updates::ChannelDifference::Difference(d) =
            bot.invoke(&channel(pts, access_hash)).await.unwrap()
        else {
            panic!("a channel difference")
        };
        assert!(d.new_messages.len() <= 7);
        got.extend(d.new_messages.iter().filter_map(|m| match m {
            tl::enums::Message::Message(m) => Some(m.message.clone()),
            _ => None,
        }));
        pts = d.pts;
        if d.r#final {
            break;
        }
    }
    assert_eq!(got, (0..20).map(|n| format!("g{n}")).collect::<Vec<_>>());
    assert!(matches!(
        bot.invoke(&channel(pts, access_hash)).await.unwrap(),
        tl::enums::updates::ChannelDifference::Empty(e) if e.r#final && e.pts == pts
    ));
    // Past the configured backlog: too long, both boxes.
    harness
        .control("POST", "/faults", Some(json!({"difference_too_long": 5})))
        .await;
    assert!(matches!(
        bot.invoke(&channel(1, access_hash)).await.unwrap(),
        tl::enums::updates::ChannelDifference::TooLong(_)
    ));
    let too_long = bot
        .invoke(&get_difference(start.pts, start.date, start.qts))
        .await
        .unwrap();
    assert!(
        matches!(too_long, tl::enums::updates::Difference::TooLong(t) if t.pts == pts_now(&bot).await)
    );
    let (_, stats) = harness.control("GET", "/stats", None).await;
    for kind in [
        "channelDifference",
        "channelDifferenceEmpty",
        "channelDifferenceTooLong",
        "differenceTooLong",
    ] {
        assert!(
            stats["differences"][kind].as_u64().unwrap() >= 1,
            "{kind}: {stats}"
        );
    }
}

/// `updates.getDifference` from `pts` and `qts`.
fn get_difference(pts: i32, date: i32, qts: i32) -> tl::functions::updates::GetDifference {
    tl::functions::updates::GetDifference {
        pts,
        pts_limit: None,
        pts_total_limit: None,
        date,
        qts,
        qts_limit: None,
    }
}

async fn pts_now(bot: &Grammers) -> i32 {
    let tl::enums::updates::State::State(state) = bot
        .invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    state.pts
}

/// `GET /stats`' count of a served fault.
async fn served(harness: &Harness, fault: &str) -> u64 {
    let (status, stats) = harness.control("GET", "/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    stats["faults_served"][fault].as_u64().unwrap_or(0)
}

async fn inject(harness: &Harness, fault: Value) {
    let (status, body) = harness.control("POST", "/faults", Some(fault)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn revoke_bot_session_answers_401_until_the_bot_signs_in_again() {
    let harness = Harness::start().await;
    let bot = harness.bot().await;
    bot.invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    inject(&harness, json!({"revoke_bot_session": true})).await;
    let error = bot.invoke(&tl::functions::updates::GetState {}).await;
    assert_eq!(rpc_error(error).1, "AUTH_KEY_UNREGISTERED");
    let token = harness.sandbox().telegram().bot_token(BOT_ID).unwrap();
    bot.client
        .bot_sign_in(token.expose(), API_HASH)
        .await
        .unwrap();
    bot.invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    assert_eq!(served(&harness, "revoke_bot_session").await, 1);
}

#[tokio::test]
async fn a_revoked_bot_token_cannot_sign_in() {
    let harness = Harness::start().await;
    let old = harness.sandbox().telegram().bot_token(BOT_ID).unwrap();
    let bot = harness.bot().await;
    inject(&harness, json!({"revoke_bot_token": true})).await;
    let error = bot.invoke(&tl::functions::updates::GetState {}).await;
    assert_eq!(rpc_error(error).1, "AUTH_KEY_UNREGISTERED");
    let error = bot.client.bot_sign_in(old.expose(), API_HASH).await;
    assert_eq!(rpc_error(error).1, "ACCESS_TOKEN_INVALID");
    assert_eq!(served(&harness, "revoke_bot_token").await, 1);
}

#[tokio::test]
async fn sign_in_flood_wait_hits_the_next_sign_in_once() {
    let harness = Harness::start().await;
    let telegram = harness.sandbox().telegram();
    let bot = Grammers::connect(
        harness.sandbox().dc_addr(),
        telegram.bot_auth_key(BOT_ID).unwrap(),
    );
    inject(&harness, json!({"sign_in_flood_wait_s": 7})).await;
    let token = telegram.bot_token(BOT_ID).unwrap();
    let error = bot.client.bot_sign_in(token.expose(), API_HASH).await;
    assert_eq!(rpc_error(error), (420, "FLOOD_WAIT".to_string(), Some(7)));
    bot.client
        .bot_sign_in(token.expose(), API_HASH)
        .await
        .unwrap();
    assert_eq!(served(&harness, "sign_in_flood_wait").await, 1);
}

#[tokio::test]
async fn injected_rpc_errors_hit_a_named_method_k_times() {
    let harness = Harness::start().await;
    let bot = harness.bot().await;
    let method = "updates.getState";
    inject(
        &harness,
        json!({"rpc_error": {"method": method, "error": "INTERNAL_SERVER_ERROR", "times": 2}}),
    )
    .await;
    for _ in 0..2 {
        let error = bot.invoke(&tl::functions::updates::GetState {}).await;
        assert_eq!(rpc_error(error).0, 500);
    }
    bot.invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    inject(
        &harness,
        json!({"rpc_error": {"method": method, "error": "-503 Timeout"}}),
    )
    .await;
    let error = bot.invoke(&tl::functions::updates::GetState {}).await;
    assert_eq!(rpc_error(error).0, -503);
    assert_eq!(served(&harness, "rpc_error").await, 3);

    let (status, body) = harness
        .control(
            "POST",
            "/faults",
            Some(json!({"rpc_error": {"method": "x y", "error": "E"}})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("rpc_error.method"),
        "{body}"
    );
}

#[tokio::test]
async fn a_blackholed_bot_is_read_but_never_answered() {
    let harness = Harness::start().await;
    let bot = harness.bot().await;
    inject(&harness, json!({"blackhole": true})).await;
    let silent = tokio::time::timeout(
        Duration::from_secs(1),
        bot.client.invoke(&tl::functions::updates::GetState {}),
    )
    .await;
    assert!(
        silent.is_err(),
        "answered through the blackhole: {silent:?}"
    );
    assert!(served(&harness, "blackhole").await >= 1);
    inject(&harness, json!({"blackhole": false})).await;
    // Like a NAT that forgot the mapping, the swallowed connection stays
    // dead after the hole ends; only a new connection gets through.
    let still = tokio::time::timeout(
        Duration::from_secs(1),
        bot.client.invoke(&tl::functions::updates::GetState {}),
    )
    .await;
    assert!(
        still.is_err(),
        "a swallowed connection came back: {still:?}"
    );
    let fresh = harness.bot().await;
    fresh
        .invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
}

#[tokio::test]
async fn reset_mid_frame_cuts_one_reply_and_the_next_call_works() {
    let harness = Harness::start().await;
    let bot = harness.bot().await;
    inject(&harness, json!({"reset_mid_frame": true})).await;
    let cut = bot
        .client
        .invoke(&tl::functions::updates::GetState {})
        .await;
    assert!(
        matches!(
            cut,
            Err(InvocationError::Dropped(_) | InvocationError::Io(_))
        ),
        "{cut:?}"
    );
    bot.invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    assert_eq!(served(&harness, "reset_mid_frame").await, 1);
}

#[tokio::test]
async fn max_connections_answers_429_beyond_n_per_key() {
    let harness = Harness::start().await;
    let bot = harness.bot().await;
    bot.invoke(&tl::functions::updates::GetState {})
        .await
        .unwrap();
    inject(&harness, json!({"max_connections": 1})).await;
    let key = harness.sandbox().telegram().bot_auth_key(BOT_ID).unwrap();
    let second = Grammers::connect(harness.sandbox().dc_addr(), key);
    let refused = second
        .client
        .invoke(&tl::functions::updates::GetState {})
        .await;
    assert!(
        matches!(
            &refused,
            Err(InvocationError::Transport(
                grammers_mtproto::transport::Error::BadStatus { status: 429 }
            ))
        ),
        "{refused:?}"
    );
    assert_eq!(served(&harness, "max_connections").await, 1);
    let (_, stats) = harness.control("GET", "/stats", None).await;
    assert!(
        stats["connections_by_transport"]["full"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(
        stats["connections_by_dc"]["2"].as_u64().unwrap() >= 2,
        "{stats}"
    );
}

#[tokio::test]
async fn users_send_voice_video_sticker_and_venue() {
    let harness = Harness::start().await;
    let user = harness.started_user("Vic").await;
    let mut bot = harness.bot().await;
    let path = format!("/users/{user}/messages");
    for body in [
        json!({"voice": {"duration": 3, "size": 4000}}),
        json!({"video": {"duration": 2.5, "width": 640, "height": 360, "size": 90000}}),
        json!({"sticker": {"emoji": "👍"}}),
        json!({"venue": {"latitude": 1.5, "longitude": 2.5, "title": "Cafe", "address": "Main St 1"}}),
    ] {
        let (status, sent) = harness.control("POST", &path, Some(body)).await;
        assert_eq!(status, 200, "{sent}");
    }
    let (status, refused) = harness
        .control(
            "POST",
            &path,
            Some(json!({"voice": {"duration": 0, "size": 1}})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let media = bot
            .next_update(|u| match u {
                tl::enums::Update::NewMessage(n) => match &n.message {
                    tl::enums::Message::Message(m) => m.media.clone(),
                    _ => None,
                },
                _ => None,
            })
            .await;
        kinds.push(match media {
            tl::enums::MessageMedia::Document(d) if d.voice => "voice".to_owned(),
            tl::enums::MessageMedia::Document(d) if d.video => "video".to_owned(),
            tl::enums::MessageMedia::Document(d) => match d.document {
                Some(tl::enums::Document::Document(doc)) => doc
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        tl::enums::DocumentAttribute::Sticker(s) => {
                            Some(format!("sticker {}", s.alt))
                        }
                        _ => None,
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            },
            tl::enums::MessageMedia::Venue(v) => format!("venue {}", v.title),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(kinds, ["voice", "video", "sticker 👍", "venue Cafe"]);
    let chat = harness.chat(user).await;
    let shown: Vec<Value> = chat["messages"].as_array().unwrap()[1..]
        .iter()
        .map(|m| m["media"].clone())
        .collect();
    assert_eq!(shown[0]["shown_as"]["as"], "voice");
    assert_eq!(shown[2]["shown_as"]["emoji"], "👍");
    assert_eq!(shown[3]["kind"], "venue");
}

#[tokio::test]
async fn files_live_on_a_dc_and_are_fetched_there_after_exporting_the_authorization() {
    use base64::Engine;
    use tl::functions::auth::{ExportAuthorization, ImportAuthorization};

    let harness = Harness::start().await;
    let user = harness.started_user("Ola").await;
    let sandbox = harness.sandbox();
    let telegram = sandbox.telegram();
    let dcs = sandbox
        .dc_addrs()
        .iter()
        .map(|(&id, &addr)| (id, addr, telegram.bot_auth_key_on(BOT_ID, id).unwrap()))
        .collect();
    let bot = Grammers::connect_dcs(dcs);
    let token = telegram.bot_token(BOT_ID).unwrap();
    bot.client
        .bot_sign_in(token.expose(), API_HASH)
        .await
        .unwrap();

    let tl::enums::Config::Config(config) = bot
        .invoke(&tl::functions::help::GetConfig {})
        .await
        .unwrap();
    let mut listed: Vec<(i32, i32)> = config
        .dc_options
        .iter()
        .map(|tl::enums::DcOption::Option(o)| (o.id, o.port))
        .collect();
    listed.sort();
    let expected: Vec<(i32, i32)> = sandbox
        .dc_addrs()
        .iter()
        .map(|(&id, addr)| (id, i32::from(addr.port())))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(listed.len(), 5);

    // The user sends a photo of given bytes, stored on DC 4.
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let body = json!({"photo": {"mime_type": "image/png", "base64": encoded}, "dc_id": 4});
    let (status, sent) = harness
        .control("POST", &format!("/users/{user}/messages"), Some(body))
        .await;
    assert_eq!(status, 200, "{sent}");
    let chat = harness.chat(user).await;
    let media = chat["messages"].as_array().unwrap().last().unwrap()["media"].clone();
    assert_eq!(media["size"], 70_000);
    assert_eq!(media["dc_id"], 4);
    let (id, access_hash) = (
        media["id"].as_i64().unwrap(),
        media["access_hash"].as_i64().unwrap(),
    );
    let chunk = |offset| tl::functions::upload::GetFile {
        precise: false,
        cdn_supported: false,
        location: tl::types::InputPhotoFileLocation {
            id,
            access_hash,
            file_reference: Vec::new(),
            thumb_size: "x".into(),
        }
        .into(),
        offset,
        limit: 64 * 1024,
    };

    // Asked at the home DC: Telegram's redirect to the file's DC.
    let error = bot.invoke(&chunk(0)).await;
    assert_eq!(rpc_error(error), (303, "FILE_MIGRATE".into(), Some(4)));
    // DC 4 does not know the bot until its authorization is imported there.
    let error = bot.client.invoke_in_dc(4, &chunk(0)).await;
    assert_eq!(rpc_error(error).1, "AUTH_KEY_UNREGISTERED");
    let tl::enums::auth::ExportedAuthorization::Authorization(exported) =
        bot.invoke(&ExportAuthorization { dc_id: 4 }).await.unwrap();
    let import = ImportAuthorization {
        id: exported.id,
        bytes: exported.bytes,
    };
    bot.client.invoke_in_dc(4, &import).await.unwrap();
    let error = bot.client.invoke_in_dc(4, &import).await;
    assert_eq!(
        rpc_error(error).1,
        "AUTH_BYTES_INVALID",
        "bytes are single-use"
    );

    let mut downloaded = Vec::new();
    for offset in [0, 64 * 1024] {
        let tl::enums::upload::File::File(file) =
            bot.client.invoke_in_dc(4, &chunk(offset)).await.unwrap()
        else {
            panic!("expected a file");
        };
        downloaded.extend(file.bytes);
    }
    assert_eq!(downloaded, bytes, "byte for byte");

    // Given content and size must agree.
    let body = json!({"document": {"file_name": "a", "mime_type": "text/plain", "size": 4, "base64": "AAAA"}});
    let (status, error) = harness
        .control("POST", &format!("/users/{user}/messages"), Some(body))
        .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("document.size must match"),
        "{error}"
    );
}

/// A third-party client, unmodified: Telethon (Python) over its default
/// transport, with a session whose DC address and auth key come from the
/// control API, asks `get_me()`. `.ci/run` installs Telethon.
#[tokio::test]
async fn a_stock_telethon_client_gets_itself() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let probe = Command::new("python3")
        .args(["-c", "import telethon"])
        .output()
        .expect("python3 is needed for this test (the stock third-party client)");
    assert!(
        probe.status.success(),
        "Telethon is not installed: `pip install telethon` (.ci/run does): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let harness = Harness::start().await;
    let (status, user) = harness
        .control("POST", "/users", Some(json!({"first_name": "Tess"})))
        .await;
    assert_eq!(status, 201, "{user}");
    let (_, dc) = harness.control("GET", "/dc", None).await;
    let target = json!({
        "dc_id": dc["dc_id"],
        "host": dc["host"],
        "port": dc["port"],
        "auth_key": user["auth_key"],
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/telethon_get_me.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{target}").unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "telethon failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let me: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["first_name"], "Tess");
}
