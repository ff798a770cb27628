//! The page's HTML, rendered on the server with `maud` (which escapes every
//! value it inserts). The page is one shell plus named fragments; the live
//! stream pushes a fragment again whenever its HTML changes, and the
//! script swaps it in.
//!
//! The chat is rendered from the control API's JSON view of it
//! (`GET /users/{id}/chat?bot=ID`, `GET /groups/{id}/chat`), so the page
//! shows exactly what a test reading that view sees.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::CONTROL_PREFIX;
use super::access::WRITE_HEADER;
use super::worker::WorkerView;
use crate::sandbox::control::Control;

/// The chat shows its last this many messages (it is re-rendered on every
/// change).
const CHAT_TAIL: usize = 200;

/// Which chat a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChatShown {
    /// The private chat with this bot.
    Bot(i64),
    /// This group, supergroup or channel (its Bot API id).
    Group(i64),
}

/// What a page shows: who the person plays, and which of their chats.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shown {
    pub user: Option<i64>,
    pub chat: ChatShown,
}

impl Shown {
    /// The query that shows this page's chat for `user`.
    fn query(self, user: i64) -> String {
        match self.chat {
            ChatShown::Bot(bot) => format!("?user={user}&bot={bot}"),
            ChatShown::Group(group) => format!("?user={user}&group={group}"),
        }
    }
}

/// The control API's JSON of the chat a page shows.
pub(super) fn chat_of(control: &Control, shown: Shown) -> Option<Value> {
    let telegram = &control.telegram;
    match shown.chat {
        ChatShown::Bot(bot) => telegram.chat(shown.user?, bot).ok(),
        ChatShown::Group(group) => telegram.group_chat(group, telegram.bot_id()).ok(),
    }
}

/// The fragments of one user's page, by the id of the element each fills.
pub(super) struct Fragments {
    parts: Vec<(&'static str, Markup)>,
}

impl Fragments {
    pub(super) fn render(control: &Control, shown: Shown, worker: &WorkerView) -> Self {
        let telegram = &control.telegram;
        let bot = match shown.chat {
            ChatShown::Bot(bot) => bot,
            ChatShown::Group(_) => telegram.bot_id(),
        };
        let users = telegram.users(bot);
        let bots = telegram.bots();
        let groups = telegram.groups(bot);
        let chat = chat_of(control, shown);
        let stats = control.stats().unwrap_or(Value::Null);
        let settings = control.settings();
        let names: HashMap<i64, String> = bots
            .iter()
            .chain(&users)
            .filter_map(|p| Some((p["id"].as_i64()?, p["first_name"].as_str()?.to_owned())))
            .collect();
        let chat_html = match shown.chat {
            ChatShown::Bot(_) => {
                let name = shown.user.and_then(|id| names.get(&id)).map(String::as_str);
                chat_view(name, chat.as_ref(), &names)
            }
            ChatShown::Group(_) => group_view(shown.user, chat.as_ref(), &names),
        };
        let private = matches!(shown.chat, ChatShown::Bot(_));
        Fragments {
            parts: vec![
                ("users", users_list(&users, shown)),
                ("chats", chats_list(&bots, &groups, shown)),
                ("chat", chat_html),
                ("keyboard", keyboard(chat.as_ref().filter(|_| private))),
                ("stats", stats_view(&stats, &settings)),
                ("worker", worker_view(worker)),
            ],
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Markup> {
        self.parts.iter().find(|(n, _)| *n == name).map(|(_, m)| m)
    }

    pub(super) fn into_parts(self) -> Vec<(&'static str, Markup)> {
        self.parts
    }
}

/// The whole page.
pub(super) fn page(control: &Control, shown: Shown, fragments: &Fragments) -> Markup {
    let part = |name: &str| fragments.get(name).cloned().unwrap_or_default();
    let user = shown.user;
    let (bot, group) = match shown.chat {
        ChatShown::Bot(bot) => (Some(bot), None),
        ChatShown::Group(group) => (None, Some(group)),
    };
    let others: Vec<Value> = control
        .telegram
        .users(control.telegram.bot_id())
        .into_iter()
        .filter(|u| u["id"].as_i64() != user)
        .collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "telegate sandbox" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body data-user=[user] data-bot=[bot] data-group=[group] data-control=(CONTROL_PREFIX) data-write-header=(WRITE_HEADER) {
                aside #left {
                    h1 { "telegate " span.muted { "sandbox" } }
                    h2 { "You are" }
                    nav #users { (part("users")) }
                    form #new-user autocomplete="off" {
                        input name="first_name" placeholder="New user's first name" required;
                        input name="username" placeholder="username (optional)";
                        button type="submit" { "Create user" }
                    }
                    h2 { "Chats" }
                    nav #chats { (part("chats")) }
                    @if user.is_some() {
                        form #new-group autocomplete="off" {
                            input name="title" placeholder="New group's title" required;
                            select name="kind" title="kind" {
                                option value="group" { "group" }
                                option value="supergroup" { "supergroup" }
                                option value="channel" { "channel" }
                            }
                            select name="bot" title="the bot's role" {
                                option value="member" { "bot: member" }
                                option value="admin" { "bot: admin" }
                                option value="none" { "bot: not in it" }
                            }
                            @if !others.is_empty() {
                                fieldset.members {
                                    legend.muted { "with" }
                                    @for other in &others {
                                        label {
                                            input type="checkbox" name="member" value=(other["id"]);
                                            " " (other["first_name"].as_str().unwrap_or("?"))
                                        }
                                    }
                                }
                            }
                            button type="submit" { "Create group" }
                        }
                    }
                }
                main #center {
                    section #chat { (part("chat")) }
                    div #composer {
                        div #keyboard { (part("keyboard")) }
                        form #send autocomplete="off" {
                            button #attach type="button" title="Send a photo or a document" { "📎" }
                            input #file type="file" hidden;
                            input #text name="text" placeholder="Message";
                            button #location type="button" title="Send a location" { "📍" }
                            button #show-keyboard type="button" title="Show the bot's keyboard" hidden { "⌨" }
                            button #send-button type="submit" { "Send" }
                        }
                        form #where hidden {
                            input name="latitude" type="number" step="any" value="52.52" title="latitude";
                            input name="longitude" type="number" step="any" value="13.405" title="longitude";
                            button type="submit" { "Send location" }
                        }
                        form #start autocomplete="off" {
                            span.muted { "/start" }
                            input name="payload" placeholder="payload (deep link)";
                            button type="submit" { "Start" }
                        }
                    }
                }
                aside #right {
                    section #worker { (part("worker")) }
                    section #faults {
                        h2 { "Faults" }
                        div.row {
                            button type="button" data-fault="drop" { "Drop connections" }
                        }
                        form.row data-fault="latency" {
                            label { "Latency " input name="ms" type="number" min="0" value="0"; " ms" }
                            button type="submit" { "Set" }
                        }
                        form.row data-fault="flood" {
                            label { "FLOOD_WAIT_" input name="seconds" type="number" min="1" value="5"; }
                            label { " × " input name="times" type="number" min="1" value="1"; }
                            button type="submit" { "Flood" }
                        }
                        form.row data-fault="error" {
                            input name="error" placeholder="USER_IS_BLOCKED" value="USER_IS_BLOCKED";
                            button type="submit" { "Fail this chat" }
                            button type="button" data-fault="clear" { "Clear" }
                        }
                        div.row {
                            button type="button" data-fault="blackhole-on" title="The bot's connections are read but never answered" { "Black-hole the bot" }
                            button type="button" data-fault="blackhole-off" { "Answer again" }
                        }
                        div.row {
                            button type="button" data-fault="limits-on" { "Limits on" }
                            button type="button" data-fault="limits-off" { "Limits off" }
                        }
                    }
                    section #stats { (part("stats")) }
                }
                div #toast role="status" {}
                dialog #alert {
                    p #alert-text {}
                    form method="dialog" { button #alert-ok { "OK" } }
                }
                script src="/assets/app.js" {}
            }
        }
    }
}

fn users_list(users: &[Value], shown: Shown) -> Markup {
    html! {
        @if users.is_empty() {
            p.muted { "No users yet: create one below." }
        }
        @for user in users {
            @let id = user["id"].as_i64().unwrap_or_default();
            @let name = user["first_name"].as_str().unwrap_or("?");
            a.user.selected[Some(id) == shown.user] href={ "/" (shown.query(id)) } data-user=(id) {
                span.avatar { (name.chars().next().unwrap_or('?')) }
                span.who {
                    span.name { (name) }
                    span.muted {
                        @if let Some(username) = user["username"].as_str() { "@" (username) " · " }
                        (id)
                        @if user["started"] == false { " · not started" }
                    }
                }
            }
        }
    }
}

/// The chosen user's chats: one with each bot, then the groups (all of
/// them: a user who is not a member sees it, and is refused posting).
fn chats_list(bots: &[Value], groups: &[Value], shown: Shown) -> Markup {
    let Some(user) = shown.user else {
        return html! { p.muted { "Create a user first." } };
    };
    html! {
        @for bot in bots {
            @let id = bot["id"].as_i64().unwrap_or_default();
            @let name = bot["first_name"].as_str().unwrap_or("Bot");
            a.chat-link.selected[shown.chat == ChatShown::Bot(id)] href={ "/?user=" (user) "&bot=" (id) } data-bot=(id) {
                span.avatar.bot { "B" }
                span.who {
                    span.name { (name) }
                    span.muted {
                        @if let Some(username) = bot["username"].as_str() { "@" (username) }
                        @if bots.len() > 1 { " · " (bot["name"].as_str().unwrap_or_default()) }
                    }
                }
            }
        }
        @for group in groups {
            @let id = group["id"].as_i64().unwrap_or_default();
            @let title = group["title"].as_str().unwrap_or("?");
            a.chat-link.group.selected[shown.chat == ChatShown::Group(id)] href={ "/?user=" (user) "&group=" (id) } data-group=(id) {
                span.avatar.group { (title.chars().next().unwrap_or('#')) }
                span.who {
                    span.name { (title) }
                    span.muted { (group["kind"].as_str().unwrap_or_default()) " · " (id) }
                }
            }
        }
    }
}

/// The name a sender is shown with in a group.
fn sender_name(names: &HashMap<i64, String>, id: &Value) -> String {
    id.as_i64()
        .and_then(|id| names.get(&id).cloned())
        .unwrap_or_else(|| format!("user {id}"))
}

/// A group as the chosen user sees it: each message labelled by who sent it.
fn group_view(user: Option<i64>, group: Option<&Value>, names: &HashMap<i64, String>) -> Markup {
    let (Some(user), Some(group)) = (user, group) else {
        return html! { p.muted.empty { "Pick or create a user first." } };
    };
    let messages = group["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let members = group["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let member = members.iter().any(|m| {
        m["user_id"].as_i64() == Some(user)
            && !matches!(m["role"].as_str(), Some("left" | "banned"))
    });
    let viewer = Value::from(user);
    let seen = Seen {
        viewer: viewer.clone(),
        query: format!("?user={user}&group={}", group["id"]),
        names: Some(names),
    };
    html! {
        header.chat-head data-chat-user=(user) data-chat-group=(group["id"]) {
            span.avatar.group { (group["title"].as_str().unwrap_or("#").chars().next().unwrap_or('#')) }
            span.who {
                span.name { (group["title"].as_str().unwrap_or_default()) }
                span.muted {
                    @if !group["typing"].is_null() { span.typing { "typing… · " } }
                    (group["kind"].as_str().unwrap_or_default()) " · "
                    (members.len()) " members · "
                    @for bot in group["bots"].as_array().into_iter().flatten() {
                        (sender_name(names, &bot["bot_id"])) ": " (bot["role"].as_str().unwrap_or_default()) " · "
                    }
                    @if member { "you are " (sender_name(names, &viewer)) } @else { span.not-member { "you are not a member" } }
                }
            }
        }
        div #messages {
            @if messages.is_empty() { p.muted.empty { "No messages yet." } }
            @let hidden = messages.len().saturating_sub(CHAT_TAIL);
            @if hidden > 0 { p.service { (hidden) " earlier messages not shown" } }
            @for message in &messages[hidden..] {
                (message_view(message, messages, &seen))
            }
        }
    }
}

fn chat_view(name: Option<&str>, chat: Option<&Value>, names: &HashMap<i64, String>) -> Markup {
    let Some(chat) = chat else {
        return html! { p.muted.empty { "Pick or create a user to chat with the bot as them." } };
    };
    let messages = chat["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let bot = sender_name(names, &chat["bot_id"]);
    let seen = Seen {
        viewer: chat["user_id"].clone(),
        query: format!("?user={}&bot={}", chat["user_id"], chat["bot_id"]),
        names: None,
    };
    html! {
        header.chat-head data-chat-user=(chat["user_id"]) data-chat-bot=(chat["bot_id"]) {
            span.avatar.bot { "B" }
            span.who {
                span.name { (bot) }
                span.muted {
                    @if !chat["typing"].is_null() { span.typing { "typing… · " } }
                    "chatting as " (name.unwrap_or("?")) " (" (chat["user_id"]) ")"
                    @if chat["blocked"] == true { " · you blocked the bot" }
                }
            }
        }
        div #messages {
            @if messages.is_empty() { p.muted.empty { "No messages yet. Say /start." } }
            @let hidden = messages.len().saturating_sub(CHAT_TAIL);
            @if hidden > 0 { p.service { (hidden) " earlier messages not shown" } }
            @for message in &messages[hidden..] { (message_view(message, messages, &seen)) }
        }
    }
}

/// Whose chat a message is shown in.
struct Seen<'a> {
    /// The user whose chat it is.
    viewer: Value,
    /// The page query that names the chat (the media links carry it).
    query: String,
    /// In a group: the senders' names (the viewer's own messages are on the
    /// right, every other one is labelled with its sender's name).
    names: Option<&'a HashMap<i64, String>>,
}

fn message_view(message: &Value, all: &[Value], seen: &Seen) -> Markup {
    let (viewer, names) = (&seen.viewer, seen.names);
    let id = message["id"].as_i64().unwrap_or_default();
    let from_bot = match names {
        None => message["from"] == "bot",
        Some(_) => message["sender_id"] != *viewer,
    };
    let sender = names
        .filter(|_| from_bot)
        .map(|names| sender_name(names, &message["sender_id"]));
    let deleted = message["deleted"] == true;
    let text = message["text"].as_str().unwrap_or_default();
    let markup = &message["reply_markup"];
    if let Some(service) = message.get("service").filter(|s| !s.is_null()) {
        return html! { div.service id={ "m" (id) } { (service_text(service, names)) } };
    }
    html! {
        div.msg.from-bot[from_bot].from-user[!from_bot].deleted[deleted] id={ "m" (id) } data-id=(id) {
            @if let Some(sender) = &sender {
                div.sender.bot-sender[message["from"] == "bot"] { (sender) }
            }
            @if let Some(to) = message["reply_to"].as_i64() {
                @let quoted = all.iter().find(|m| m["id"].as_i64() == Some(to));
                div.quote {
                    "↩ "
                    @match quoted.and_then(|m| m["text"].as_str()).filter(|t| !t.is_empty()) {
                        Some(t) => (snippet(t, 60)),
                        None => { "message " (to) },
                    }
                }
            }
            @if deleted {
                div.text.muted { "message deleted" }
            } @else {
                @if let Some(media) = message.get("media").filter(|m| !m.is_null()) { (media_view(media, id, &seen.query)) }
                @if !text.is_empty() {
                    div.text { (formatted(text, &message["entities"])) }
                }
            }
            div.meta {
                @if !message["edit_date"].is_null() { span.edited { "edited " } }
                (clock(message["date"].as_i64().unwrap_or_default()))
                " · #" (id)
            }
            @if markup["kind"] == "inline_keyboard" && !deleted {
                div.inline-kb { @for row in rows(markup) { div.kb-row { @for button in row { (inline_button(id, button)) } } } }
            }
        }
    }
}

/// A service message (a group's creation, members joining or leaving),
/// naming the member if `names` knows them.
fn service_text(service: &Value, names: Option<&HashMap<i64, String>>) -> String {
    let user = |key: &str| match names {
        Some(names) => sender_name(names, &service[key]),
        None => format!("user {}", service[key]),
    };
    match service["kind"].as_str().unwrap_or_default() {
        "chat_create" => format!(
            "created the group {:?}",
            service["title"].as_str().unwrap_or("")
        ),
        "add_user" => format!("{} joined", user("user_id")),
        "delete_user" => format!("{} left", user("user_id")),
        other => other.replace('_', " "),
    }
}

fn rows(markup: &Value) -> impl Iterator<Item = &[Value]> {
    markup["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| row.as_array().map(Vec::as_slice).unwrap_or(&[]))
}

fn inline_button(message_id: i64, button: &Value) -> Markup {
    let text = button["text"].as_str().unwrap_or_default();
    let kind = button["type"].as_str().unwrap_or_default();
    html! {
        @match kind {
            "callback" => button.ikb type="button" data-kind="callback" data-msg=(message_id)
                data-data=(button["data"].as_str().unwrap_or_default()) { (text) },
            "url" | "web_view" => a.ikb href=(button["url"].as_str().unwrap_or_default())
                target="_blank" rel="noopener noreferrer" { (text) " ↗" },
            "copy" => button.ikb type="button" data-kind="copy"
                data-copy=(button["copy_text"].as_str().unwrap_or_default()) { (text) " ⧉" },
            _ => button.ikb type="button" disabled title={ "a " (kind) " button: not simulated" } { (text) },
        }
    }
}

fn media_view(media: &Value, message_id: i64, query: &str) -> Markup {
    let size = |m: &Value| m["size"].as_i64().map(human_size).unwrap_or_default();
    let download = html! {
        a.download href={ "/media/" (message_id) (query) } download title="the sandbox's bytes of this file" { "⤓" }
    };
    html! {
        @match media["kind"].as_str().unwrap_or_default() {
            "photo" => div.media.photo {
                span.icon { "🖼" }
                span { "Photo · " (media["mime_type"].as_str().unwrap_or_default()) " · " (size(media)) " " (download) }
                @if let Some(url) = media["url"].as_str() { span.url title="not loaded: the page fetches nothing from outside" { (url) } }
            },
            "document" => div.media.document {
                span.icon { "📄" }
                span { (media["file_name"].as_str().unwrap_or("file")) " · " (media["mime_type"].as_str().unwrap_or_default()) " · " (size(media)) " " (download) }
                @if let Some(url) = media["url"].as_str() { span.url title="not loaded: the page fetches nothing from outside" { (url) } }
            },
            "location" => div.media.location {
                span.icon { "📍" }
                span { (media["latitude"]) ", " (media["longitude"]) }
            },
            "contact" => div.media.contact {
                span.icon { "👤" }
                span { (media["first_name"].as_str().unwrap_or_default()) " · " (media["phone_number"].as_str().unwrap_or_default()) }
            },
            other => div.media { span.icon { "📦" } span { (other) } },
        }
    }
}

/// The reply keyboard and force reply of the chat: the keyboard replaces
/// the input; `data-*` tell the script the placeholder and what to focus.
fn keyboard(chat: Option<&Value>) -> Markup {
    let keyboard = chat.map(|c| &c["reply_keyboard"]).filter(|k| !k.is_null());
    let force = chat.map(|c| &c["force_reply"]).filter(|f| !f.is_null());
    let placeholder = force
        .and_then(|f| f["placeholder"].as_str())
        .or_else(|| keyboard.and_then(|k| k["markup"]["placeholder"].as_str()));
    html! {
        div #kb-state
            data-placeholder=[placeholder]
            data-force-reply=[force.and_then(|f| f["message_id"].as_i64())]
            data-keyboard=[keyboard.and_then(|k| k["message_id"].as_i64())] {
            @if let Some(keyboard) = keyboard {
                @let message_id = keyboard["message_id"].as_i64().unwrap_or_default();
                @let markup = &keyboard["markup"];
                div.reply-kb.single-use[markup["single_use"] == true] {
                    @for row in rows(markup) {
                        div.kb-row {
                            @for button in row {
                                @let kind = button["type"].as_str().unwrap_or("text");
                                @let text = button["text"].as_str().unwrap_or_default();
                                button.rkb type="button" data-msg=(message_id) data-text=(text) data-type=(kind) {
                                    @match kind {
                                        "request_contact" => { "☎ " },
                                        "request_location" => { "📍 " },
                                        _ => {},
                                    }
                                    (text)
                                }
                            }
                        }
                    }
                    button #hide-keyboard.muted type="button" title="Type instead" { "⌨ type instead" }
                }
            }
            @if let Some(force) = force {
                p.force.muted { "↩ the bot asks for a reply to message " (force["message_id"]) }
            }
        }
    }
}

fn stats_view(stats: &Value, settings: &Value) -> Markup {
    html! {
        h2 { "Sandbox" }
        table.kv {
            @for (key, value) in settings.as_object().into_iter().flatten() { tr.setting { th { (key) } td { (value) } } }
            @if let Some(object) = stats.as_object() {
                @for (key, value) in object.iter().filter(|(_, v)| !v.is_object()) {
                    tr { th { (key) } td { (value) } }
                }
                @for (key, value) in object.iter().filter(|(_, v)| v.is_object()) {
                    tr { th colspan="2" { (key) } }
                    @for (name, count) in value.as_object().into_iter().flatten() {
                        tr.sub { th { (name) } td { (count) } }
                    }
                }
            }
        }
    }
}

fn worker_view(worker: &WorkerView) -> Markup {
    html! {
        h2 { "Worker" }
        @if let Some(trouble) = &worker.trouble { p.trouble { (trouble) } }
        h3 { "Recent jobs" }
        @if worker.jobs.is_empty() { p.muted { "none yet" } }
        table.jobs {
            @for job in worker.jobs.iter().rev() {
                @let state = job["state"].as_str().unwrap_or_default();
                tr data-job=(job["job_id"]) {
                    td { "#" (job["job_id"]) }
                    td { span.state.(state) { (state) } }
                    td.muted { (job["kind"].as_str().unwrap_or_default()) " → " (job["destination"]) }
                    td.muted {
                        @if let Some(error) = job.get("error").or(job.get("last_error")) { (snippet(&error.to_string(), 80)) }
                    }
                }
            }
        }
        h3 { "Events" }
        @if worker.events.is_empty() { p.muted { "none yet" } }
        ol.events {
            @for event in worker.events.iter().rev() {
                @let body = &event["event"];
                li.event {
                    span.cursor { (event["cursor"]) }
                    " " span.id { (body["id"].as_str().unwrap_or_default()) }
                    div.summary { (event_summary(body)) }
                    details { summary { "JSON" } code { (body.to_string()) } }
                }
            }
        }
    }
}

/// One line saying what an event is: a user's message, a click, a job's
/// result (the shapes of `events::bird`).
fn event_summary(event: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    if let Some(kind) = event["body"]["type"].as_str() {
        let inner = &event["body"][kind];
        let detail = match kind {
            "text" => text(&inner["text"]),
            "location" => format!(
                "{}, {}",
                inner["coordinates"]["latitude"], inner["coordinates"]["longitude"]
            ),
            "contact" => format!(
                "{} {}",
                text(&inner["firstName"]),
                text(&inner["phoneNumber"])
            ),
            "image" => text(&inner["images"][0]["mediaUrl"]),
            "file" => format!(
                "{} ({})",
                text(&inner["files"][0]["filename"]),
                text(&inner["files"][0]["contentType"])
            ),
            _ => String::new(),
        };
        let from = text(&event["sender"]["contact"]["annotations"]["name"]);
        return format!("{from} → bot: {kind} {}", snippet(&detail, 120));
    }
    if let Some(payload) = event["results"][0]["metadata"]["button"]["payload"].as_str() {
        return format!("clicked {payload:?}");
    }
    match event["status"].as_str() {
        Some(status) => {
            let reason = text(&event["reason"]);
            let reason = if reason.is_empty() {
                reason
            } else {
                format!(": {reason}")
            };
            format!("job {} {status}{reason}", text(&event["jobId"]))
        }
        None => snippet(&event.to_string(), 120),
    }
}

/// `text` with its message entities as HTML; entities come as Bot
/// API-style `{type, offset, length, url?}` with UTF-16 offsets.
fn formatted(text: &str, entities: &Value) -> Markup {
    let Some(entities) = entities.as_array().filter(|e| !e.is_empty()) else {
        return html! { (text) };
    };
    let units: Vec<u16> = text.encode_utf16().collect();
    // (offset, end, opening tag, closing tag); outer entities first.
    let mut spans: Vec<(usize, usize, String, &'static str)> = entities
        .iter()
        .filter_map(|e| {
            let offset = usize::try_from(e["offset"].as_u64()?).ok()?;
            let end = offset.checked_add(usize::try_from(e["length"].as_u64()?).ok()?)?;
            let covered = String::from_utf16_lossy(units.get(offset..end)?);
            let (open, close) = entity_tags(e, &covered)?;
            Some((offset, end, open, close))
        })
        .collect();
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut html = String::new();
    // The entities open at `at`, innermost last, with where each ends.
    let mut stack: Vec<(usize, &'static str)> = Vec::new();
    let mut spans = spans.into_iter().peekable();
    let mut at = 0;
    loop {
        while let Some(&(_, close)) = stack.last().filter(|(end, _)| *end <= at) {
            html.push_str(close);
            stack.pop();
        }
        while let Some((_, end, open, close)) = spans.next_if(|s| s.0 <= at) {
            // An entity crossing its parent's end is cut there.
            let end = stack.last().map_or(end, |(outer, _)| end.min(*outer));
            if end > at {
                html.push_str(&open);
                stack.push((end, close));
            }
        }
        if at >= units.len() {
            break;
        }
        let next = stack
            .last()
            .map(|(end, _)| *end)
            .into_iter()
            .chain(spans.peek().map(|s| s.0))
            .filter(|boundary| *boundary > at)
            .min()
            .unwrap_or(units.len());
        let piece = String::from_utf16_lossy(&units[at..next]);
        html.push_str(&html! { (piece) }.into_string());
        at = next;
    }
    PreEscaped(html)
}

/// The HTML around one entity covering `covered`; `None` for kinds shown
/// as plain text. Types are Bot API names (`text_link`) or TL names
/// (`messageEntityTextUrl`).
fn entity_tags(entity: &Value, covered: &str) -> Option<(String, &'static str)> {
    let kind = entity["type"].as_str()?;
    let kind = kind
        .strip_prefix("messageEntity")
        .unwrap_or(kind)
        .to_ascii_lowercase();
    let simple = |tag: &'static str, close: &'static str| Some((format!("<{tag}>"), close));
    match kind.as_str() {
        "bold" => simple("b", "</b>"),
        "italic" => simple("i", "</i>"),
        "underline" => simple("u", "</u>"),
        "strikethrough" | "strike" => simple("s", "</s>"),
        "code" => simple("code", "</code>"),
        "pre" => simple("pre", "</pre>"),
        "spoiler" => Some(("<span class=\"spoiler\">".into(), "</span>")),
        "blockquote" => simple("blockquote", "</blockquote>"),
        "mention" | "mentionname" | "text_mention" | "hashtag" | "botcommand" | "bot_command"
        | "cashtag" | "email" | "phone" | "phone_number" => {
            Some(("<span class=\"link\">".into(), "</span>"))
        }
        "text_link" | "texturl" | "url" => {
            let href = entity["url"].as_str().or(Some(covered)).filter(|u| {
                u.starts_with("http://") || u.starts_with("https://") || u.starts_with("tg://")
            });
            match href {
                Some(url) => {
                    let open = html! { a href=(url) target="_blank" rel="noopener noreferrer" {} }
                        .into_string();
                    Some((open.trim_end_matches("</a>").to_owned(), "</a>"))
                }
                None => Some(("<span class=\"link\">".into(), "</span>")),
            }
        }
        _ => None,
    }
}

fn snippet(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max).chain(std::iter::once('…')).collect()
    }
}

/// `HH:MM` (UTC) of a Unix time.
fn clock(unix: i64) -> String {
    let minutes = unix.rem_euclid(86_400) / 60;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn human_size(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entities_become_nested_tags_and_text_is_escaped() {
        let entities = json!([
            {"type": "bold", "offset": 0, "length": 5},
            {"type": "italic", "offset": 2, "length": 3},
            {"type": "text_link", "offset": 6, "length": 4, "url": "https://e.com/?a=1&b=\"2\""},
        ]);
        let html = formatted("Hello <tg> there", &entities).into_string();
        assert_eq!(
            html,
            "<b>He<i>llo</i></b> <a href=\"https://e.com/?a=1&amp;b=&quot;2&quot;\" target=\"_blank\" rel=\"noopener noreferrer\">&lt;tg&gt;</a> there"
        );
    }

    #[test]
    fn entity_offsets_count_utf16_units() {
        // The emoji is two UTF-16 units; "bold" starts after it and a space.
        let entities = json!([{"type": "messageEntityBold", "offset": 3, "length": 4}]);
        let html = formatted("😀 bold!", &entities).into_string();
        assert_eq!(html, "😀 <b>bold</b>!");
    }

    #[test]
    fn bad_entities_are_ignored_not_trusted() {
        let entities = json!([
            {"type": "bold", "offset": 2, "length": 99},
            {"type": "text_link", "offset": 0, "length": 2, "url": "javascript:alert(1)"},
            {"type": "messageEntityUrl", "offset": 3, "length": 5},
            {"type": "unknown_kind", "offset": 0, "length": 1},
        ]);
        let html = formatted("hi there", &entities).into_string();
        assert_eq!(
            html,
            "<span class=\"link\">hi</span> <span class=\"link\">there</span>"
        );
        let url = json!([{"type": "messageEntityUrl", "offset": 4, "length": 13}]);
        assert_eq!(
            formatted("see https://e.com", &url).into_string(),
            "see <a href=\"https://e.com\" target=\"_blank\" rel=\"noopener noreferrer\">https://e.com</a>"
        );
        assert_eq!(formatted("<b>", &Value::Null).into_string(), "&lt;b&gt;");
    }

    #[test]
    fn a_message_shows_its_inline_keyboard_and_media() {
        let message = json!({
            "id": 7, "from": "bot", "date": 3600 * 13 + 60 * 5, "text": "Pick <one>",
            "media": {"kind": "document", "file_name": "a.pdf", "mime_type": "application/pdf", "size": 2048},
            "reply_markup": {"kind": "inline_keyboard", "rows": [[
                {"text": "Yes", "type": "callback", "data": "y\"es"},
                {"text": "Site", "type": "url", "url": "https://e.com"}
            ]]},
            "edit_date": 5,
        });
        let seen = Seen {
            viewer: json!(5),
            query: "?user=5&bot=9".into(),
            names: None,
        };
        let html = message_view(&message, &[], &seen).into_string();
        assert!(html.contains("Pick &lt;one&gt;"), "{html}");
        assert!(html.contains("data-data=\"y&quot;es\""), "{html}");
        assert!(html.contains("href=\"https://e.com\""), "{html}");
        assert!(html.contains("a.pdf · application/pdf · 2.0 KB"), "{html}");
        assert!(
            html.contains("href=\"/media/7?user=5&amp;bot=9\""),
            "{html}"
        );
        assert!(html.contains("edited") && html.contains("13:05"), "{html}");
    }

    #[test]
    fn a_group_labels_each_sender_and_keeps_the_viewers_own_on_the_right() {
        let group = json!({
            "id": -4000001, "kind": "group", "title": "Team <1>",
            "members": [{"user_id": 1, "role": "creator"}, {"user_id": 2, "role": "member"}],
            "bots": [{"bot_id": 7, "role": "member"}],
            "messages": [
                {"id": 1, "from": "user", "sender_id": 1, "date": 0, "text": "mine"},
                {"id": 2, "from": "user", "sender_id": 2, "date": 0, "text": "hers"},
                {"id": 3, "from": "bot", "sender_id": 7, "date": 0, "text": "beep",
                 "media": {"kind": "photo", "mime_type": "image/png", "size": 1}},
            ],
        });
        let names = HashMap::from([
            (1, "Ada".to_owned()),
            (2, "Grace".to_owned()),
            (7, "Bot".to_owned()),
        ]);
        let html = group_view(Some(1), Some(&group), &names).into_string();
        assert!(html.contains("Team &lt;1&gt;"), "{html}");
        assert!(html.contains("data-chat-group=\"-4000001\""), "{html}");
        assert!(html.contains("class=\"msg from-user\" id=\"m1\""), "{html}");
        assert!(html.contains("class=\"msg from-bot\" id=\"m2\""), "{html}");
        assert!(html.contains("<div class=\"sender\">Grace</div>"), "{html}");
        assert!(
            html.contains("<div class=\"sender bot-sender\">Bot</div>"),
            "{html}"
        );
        assert!(
            !html.contains(">Ada</div>"),
            "the viewer's own are not labelled: {html}"
        );
        assert!(
            html.contains("/media/3?user=1&amp;group=-4000001"),
            "{html}"
        );
        assert!(html.contains("you are Ada"), "{html}");
        let outsider = group_view(Some(5), Some(&group), &names).into_string();
        assert!(outsider.contains("you are not a member"), "{outsider}");
    }

    #[test]
    fn a_long_chat_shows_its_tail() {
        let messages: Vec<Value> = (1..=CHAT_TAIL + 5)
            .map(|id| json!({"id": id, "from": "user", "date": 0, "text": format!("n{id}")}))
            .collect();
        let chat = json!({"user_id": 1, "messages": messages});
        let html = chat_view(Some("Ann"), Some(&chat), &HashMap::new()).into_string();
        assert!(html.contains("5 earlier messages not shown"), "{html}");
        assert!(!html.contains("id=\"m5\""));
        assert!(html.contains("id=\"m6\"") && html.contains(&format!("n{}", CHAT_TAIL + 5)));
    }

    #[test]
    fn the_keyboard_fragment_carries_placeholder_and_force_reply() {
        let chat = json!({
            "reply_keyboard": {"message_id": 4, "markup": {"kind": "reply_keyboard", "single_use": true,
                "placeholder": "Choose", "rows": [[{"text": "Share", "type": "request_contact"}]]}},
            "force_reply": null,
        });
        let html = keyboard(Some(&chat)).into_string();
        assert!(html.contains("data-placeholder=\"Choose\""), "{html}");
        assert!(html.contains("data-keyboard=\"4\""), "{html}");
        assert!(html.contains("data-type=\"request_contact\""), "{html}");
        assert!(!html.contains("data-force-reply"), "{html}");
        let chat = json!({"reply_keyboard": null, "force_reply": {"message_id": 9, "placeholder": "Your name"}});
        let html = keyboard(Some(&chat)).into_string();
        assert!(
            html.contains("data-force-reply=\"9\"") && html.contains("Your name"),
            "{html}"
        );
    }
}
