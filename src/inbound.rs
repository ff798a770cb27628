//! Updates from Telegram become durable events, and clicks get answered.
//!
//! grammers hands out updates in order, each with the update state that
//! covers it. Two stages keep both promises of this module:
//!
//! - the *reader* takes each update off the stream and, for a click, hands
//!   it to the [`CallbackAnswerer`] at once — answering never waits for the
//!   store;
//! - the *recorder* takes whatever the reader has passed on, turns it into
//!   events, commits them in one group commit, and only then writes the
//!   update state they cover to the session. The session's pts/qts so never
//!   run ahead of stored events: a crash between the two repeats events on
//!   the next start (grammers catches up with `updates.getDifference` from
//!   the session's state), and the store keeps the first of each event id.
//!
//! A state an update carries is not always *its own*: grammers stamps every
//! message of a `getDifference` / `getChannelDifference` answer with the
//! answer's final state, and hands out the answer's other updates (with
//! their own, higher pts) before its messages. So the state of an update is
//! only complete once every update grammers had buffered with it has been
//! passed on too, which the reader knows when the stream has nothing more
//! ready (its next update is not there yet): it then passes on a
//! [`Passed::Settled`] mark, and the recorder saves only states that a mark
//! has settled, after committing everything before the mark.
//!
//! Clicks do not wait for any of this, nor for the difference grammers
//! fetches before it reads live updates (at start, one per supergroup):
//! [`answer_live_clicks`] takes them as they arrive on the wire
//! ([`Telegram::updates`](crate::telegram::Telegram::updates) copies them
//! out), answers them and records their events at once. The same click
//! later coming through the stream is recognised and not answered again.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use grammers_client::client::UpdateStream;
use grammers_client::peer::{Peer as PeerInfo, PeerMap};
use grammers_mtsender::InvocationError;
use grammers_session::Session;
use grammers_session::types::{PeerId, UpdateState};
use grammers_session::updates::{MessageBox, State};
use grammers_tl_types as tl;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::after_click;
use crate::callbacks::{CallbackAnswerer, ClickQuery};
use crate::chat::{ChatId, Peer};
use crate::events::bird::{
    self, Body, ChatType, FileKind, Membership, MessageContext, Origin, Person, ReplyTo, SentBy,
    Standing,
};
use crate::events::{EventStore, NewEvent};
use crate::interactive::InteractiveRequest;
use crate::queue::{JobKind, Queue, QueueError, Timestamp, until_stored};
use crate::session::{SessionError, SessionStore};
use crate::telegram::{LiveClicks, tl_name};

/// Updates taken off the stream but not yet recorded, at most (the reader
/// waits beyond that; grammers buffers behind it).
const BACKLOG: usize = 16_384;
/// Updates recorded in one commit at most.
const BATCH: usize = 1024;
/// The longest a state covering no event waits to be saved.
const QUIET_SAVE: Duration = Duration::from_secs(1);

/// The first wait after the update stream fails; it grows by this much per
/// failure in a row, up to [`MAX_RETRY_STEPS`] times.
const STREAM_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY_STEPS: u32 = 30;

/// Why the inbound pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("cannot store inbound events: {0}")]
    Store(#[from] QueueError),
    #[error("cannot save the update state: {0}")]
    Session(#[from] SessionError),
    #[error("the inbound pipeline stopped unexpectedly")]
    Stopped,
    #[error("Telegram signed the session out ({0})")]
    SignedOut(String),
}

/// What the pipeline works with.
#[derive(Clone)]
pub struct Inbound {
    pub bot_id: i64,
    /// Scoped to the bot ([`EventStore::scoped`]): events are stored as its.
    pub events: EventStore,
    /// For the telegate message id of a clicked message.
    pub queue: Queue,
    pub session: Arc<SessionStore>,
    pub callbacks: CallbackAnswerer,
}

/// One update as the reader passes it on.
struct Taken {
    update: tl::enums::Update,
    state: State,
    peers: PeerMap,
}

/// What the reader hands the recorder, in stream order.
enum Passed {
    /// Boxed: an update is kilobytes, and the backlog holds thousands.
    Update(Box<Taken>),
    /// The stream had nothing more ready: every update that shares a state
    /// with one passed on so far has been passed on too.
    Settled,
}

/// Runs until the store fails, Telegram signs the session out, or `stop`
/// (other stream failures are retried). At `stop` the reader takes no
/// more updates and the recorder commits what it was handed and saves the
/// settled state that covers it before this returns; nothing runs on after
/// it. Dropping the future instead loses nothing either (what was not
/// recorded is fetched again on the next start).
pub async fn run(
    mut stream: UpdateStream,
    inbound: Inbound,
    stop: CancellationToken,
) -> Result<(), InboundError> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let recorder = record(rx, inbound.clone());
    // Owns the sending half: when it ends, the recorder drains and ends.
    let read = async move {
        let mut failures = 0u32;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let pending = stream.next_raw();
            tokio::pin!(pending);
            let next = match ready_now(pending.as_mut()).await {
                Some(next) => next,
                None => {
                    if tx.send(Passed::Settled).await.is_err() {
                        return Ok::<(), InboundError>(());
                    }
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => return Ok(()),
                        next = pending => next,
                    }
                }
            };
            let (update, state, peers) = match next {
                Ok(next) => {
                    failures = 0;
                    next
                }
                Err(InvocationError::Rpc(rpc)) if rpc.code == 401 => {
                    return Err(InboundError::SignedOut(rpc.name));
                }
                Err(error) => {
                    // A lost connection or a failed getDifference: grammers
                    // reconnects on the next call and fills the gap.
                    failures = failures.saturating_add(1);
                    let delay = STREAM_RETRY.saturating_mul(failures.min(MAX_RETRY_STEPS));
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "update stream failed");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if let tl::enums::Update::BotCallbackQuery(query) = &update {
                inbound.callbacks.take(click_query(query));
            }
            let taken = Taken {
                update,
                state,
                peers,
            };
            if tx.send(Passed::Update(Box::new(taken))).await.is_err() {
                return Ok(());
            }
        }
    };
    let (read, recorded) = tokio::join!(read, recorder);
    recorded.and(read)
}

/// Answers the clicks copied off the wire as they arrive and records their
/// events at once, until `clicks` ends. Clicks need no update state (they
/// are in no message box), so recording one out of the stream's order
/// loses nothing; when the stream brings it again it is neither answered
/// nor stored twice (the answerer knows its query id, the store its event
/// id).
pub async fn answer_live_clicks(mut clicks: LiveClicks, inbound: Inbound) {
    while let Some(query) = clicks.recv().await {
        if !inbound.callbacks.take(click_query(&query)) {
            continue;
        }
        let (event, click) = inbound.click_event(&query).await;
        let clicks = click.map(|click| (0, click)).into_iter().collect();
        if let Err(error) = inbound.commit(vec![event], clicks).await {
            // The stream brings the click again and the recorder retries.
            tracing::warn!(%error, "cannot store a click event yet");
        }
    }
}

/// The output of `future` if it is ready at its first poll, else `None`
/// (the future is left to be awaited on).
async fn ready_now<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// The recorder: events first, then the state that covers them.
///
/// A state is saved once every update it covers is recorded, never before:
/// only states a [`Passed::Settled`] mark has settled, once everything
/// before the mark is committed. A batch with such events saves at once;
/// one with none (the echoes of the bot's own sends, one per message sent)
/// may wait up to [`QUIET_SAVE`] to be saved with later ones, so a busy
/// sender does not cost a session write per message. What such a wait
/// loses in a crash is only updates that make no event, fetched again and
/// dropped again.
async fn record(mut rx: mpsc::Receiver<Passed>, inbound: Inbound) -> Result<(), InboundError> {
    let mut batch = Vec::with_capacity(BATCH);
    // The states of what was passed on since the last mark.
    let mut unsettled = Covered::default();
    // Settled states, not saved yet; none of them until the commit.
    let mut settled = Covered::default();
    let mut unsaved_since: Option<Instant> = None;
    loop {
        let received = match unsaved_since {
            Some(since) => {
                let next = rx.recv_many(&mut batch, BATCH);
                match tokio::time::timeout_at(since + QUIET_SAVE, next).await {
                    Ok(received) => received,
                    Err(_quiet) => {
                        std::mem::take(&mut settled).save(&inbound.session).await?;
                        unsaved_since = None;
                        continue;
                    }
                }
            }
            None => rx.recv_many(&mut batch, BATCH).await,
        };
        if received == 0 {
            break;
        }
        let mut events = Vec::with_capacity(batch.len());
        let mut clicks = Vec::new();
        for passed in batch.drain(..) {
            match passed {
                Passed::Update(taken) => {
                    let found = inbound.event_for(&taken).await;
                    unsettled.add(&taken.state, found.is_some());
                    if let Some((event, click)) = found {
                        if let Some(click) = click {
                            clicks.push((events.len(), click));
                        }
                        events.push(event);
                    }
                }
                Passed::Settled => settled.absorb(std::mem::take(&mut unsettled)),
            }
        }
        let count = events.len();
        inbound.commit(events, clicks).await?;
        if !settled.is_empty() {
            let since = *unsaved_since.get_or_insert_with(Instant::now);
            if settled.events > 0 || since.elapsed() >= QUIET_SAVE {
                std::mem::take(&mut settled).save(&inbound.session).await?;
                unsaved_since = None;
            }
        }
        tracing::trace!(events = count, "inbound events recorded");
    }
    // What was passed on after the last mark may be part of a difference
    // still being handed out: its state stays unsaved.
    settled.save(&inbound.session).await?;
    Ok(())
}

/// Applies the `on_click`s of a batch's clicks (each with the index of its
/// event) in the commit that records the events, flags the events of
/// repeated clicks, and returns each click's decision (repeat or not).
fn apply_clicks(
    conn: &crate::store::Conn,
    bot: &str,
    clicks: &[(usize, after_click::ButtonClick)],
    events: &mut [NewEvent],
    jobs: &mut Vec<crate::queue::JobEvent>,
) -> Result<Vec<(i64, bool)>, QueueError> {
    let now = Timestamp::now();
    let mut decisions = Vec::with_capacity(clicks.len());
    for (index, click) in clicks {
        let repeat = after_click::apply(conn, bot, click, now, jobs)?;
        if repeat && let Some(event) = events.get_mut(*index) {
            bird::flag_repeat(event);
        }
        decisions.push((click.query_id, repeat));
    }
    Ok(decisions)
}

impl Inbound {
    /// Commits `events`, applying the `on_click`s of `clicks` (each with
    /// the index of its event) in the same commit, and tells the answerer
    /// what each click came to.
    async fn commit(
        &self,
        events: Vec<NewEvent>,
        clicks: Vec<(usize, after_click::ButtonClick)>,
    ) -> Result<(), QueueError> {
        // A full disk holds the pipeline here (the updates after these wait
        // in the channel, then in grammers), never drops or skips them.
        if clicks.is_empty() {
            until_stored("inbound events", || self.events.append(events.clone())).await?;
            return Ok(());
        }
        let (_, decisions) = until_stored("inbound events", || {
            let clicks = clicks.clone();
            self.events
                .append_with(events.clone(), move |conn, bot, events, jobs| {
                    apply_clicks(conn, bot, &clicks, events, jobs)
                })
        })
        .await?;
        for (query_id, repeat) in decisions {
            self.callbacks.decided(query_id, repeat);
        }
        Ok(())
    }

    /// The event for one update (`None`: the bot's own doing), and for a
    /// click on a button with an `on_click`, what that does.
    async fn event_for(
        &self,
        taken: &Taken,
    ) -> Option<(NewEvent, Option<after_click::ButtonClick>)> {
        match &taken.update {
            tl::enums::Update::BotCallbackQuery(query) => Some(self.click_event(query).await),
            _ => self.event_of(taken).await.map(|event| (event, None)),
        }
    }

    /// The event for an update other than a click.
    async fn event_of(&self, taken: &Taken) -> Option<NewEvent> {
        use tl::enums::Update as U;
        let bot_id = self.bot_id;
        // An interaction's place is the pts or qts its update carries: in a
        // difference, every update comes with the slice's final state.
        let place = || own_place(&taken.update).unwrap_or_else(|| place(&taken.state));
        match &taken.update {
            U::NewMessage(tl::types::UpdateNewMessage { message, .. })
            | U::NewChannelMessage(tl::types::UpdateNewChannelMessage { message, .. }) => {
                self.message_event(message, &taken.peers).await
            }
            U::EditMessage(tl::types::UpdateEditMessage { message, .. })
            | U::EditChannelMessage(tl::types::UpdateEditChannelMessage { message, .. }) => {
                edit_event(bot_id, message, &taken.peers, &place())
            }
            U::DeleteMessages(delete) => Some(bird::deleted(
                bot_id,
                None,
                &delete.messages,
                Timestamp::now(),
                &place(),
            )),
            U::DeleteChannelMessages(delete) => Some(bird::deleted(
                bot_id,
                Some(ChatId::from_peer(Peer::Channel(delete.channel_id)).get()),
                &delete.messages,
                Timestamp::now(),
                &place(),
            )),
            U::BotStopped(stop) => Some(bird::blocked(
                bot_id,
                stop.user_id,
                stop.stopped,
                date(stop.date),
                &place(),
            )),
            U::ChatParticipant(_) | U::ChannelParticipant(_) => {
                match bot_membership(bot_id, &taken.update) {
                    Some(change) => bird::membership(bot_id, &change, &place()),
                    None => Some(unsupported(bot_id, &taken.update, &taken.state)),
                }
            }
            U::BotMessageReaction(reaction) => {
                let reaction = bird::ReactionChange {
                    chat: chat_of(&reaction.peer).get(),
                    message_id: reaction.msg_id,
                    user: chat_of(&reaction.actor).get(),
                    now: reaction.new_reactions.iter().map(emoji).collect(),
                    before: reaction.old_reactions.iter().map(emoji).collect(),
                };
                Some(bird::reacted(bot_id, &reaction, Timestamp::now(), &place()))
            }
            U::MessageId(_) | U::BotCallbackQuery(_) => None,
            other => Some(unsupported(bot_id, other, &taken.state)),
        }
    }

    /// The event of a message users sent (`None` for the bot's own).
    async fn message_event(
        &self,
        message: &tl::enums::Message,
        peers: &PeerMap,
    ) -> Option<NewEvent> {
        let bot_id = self.bot_id;
        let message = match message {
            tl::enums::Message::Message(message) => message,
            tl::enums::Message::Service(service) => {
                if service.out {
                    return None;
                }
                let origin = origin(
                    bot_id,
                    &service.peer_id,
                    service.from_id.as_ref(),
                    service.id,
                    service.date,
                    peers,
                );
                let body = Body::Unsupported(tl_name(&service.action));
                return Some(bird::message(&origin, &body, &MessageContext::default()));
            }
            tl::enums::Message::Empty(_) => return None,
        };
        let origin = user_origin(bot_id, message, peers)?;
        let context = MessageContext {
            reply_to: self.reply_to(&origin, message).await,
            start_payload: Some(&message.message)
                .filter(|_| message.media.is_none())
                .and_then(|text| start_payload(text)),
        };
        Some(bird::message(&origin, &body_of(message, &origin), &context))
    }

    /// The message `message` replies to, with the job that sent it if
    /// telegate did.
    async fn reply_to(&self, origin: &Origin, message: &tl::types::Message) -> Option<ReplyTo> {
        let Some(tl::enums::MessageReplyHeader::Header(header)) = &message.reply_to else {
            return None;
        };
        let message_id = header.reply_to_msg_id?;
        let bot = self.events.bot().unwrap_or(crate::queue::DEFAULT_BOT);
        let chat = ChatId::new(origin.chat).ok()?;
        let sent = match self
            .queue
            .sent_message(bot, chat, i64::from(message_id))
            .await
        {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "cannot look up a replied-to message");
                None
            }
        };
        let sent = sent.map(|sent| {
            let (reference, metadata) = crate::send_options::correlation(&sent.payload);
            SentBy {
                job_id: sent.job_id.get(),
                message_id: sent.message_id,
                reference,
                metadata,
            }
        });
        Some(ReplyTo { message_id, sent })
    }

    async fn click_event(
        &self,
        query: &tl::types::UpdateBotCallbackQuery,
    ) -> (NewEvent, Option<after_click::ButtonClick>) {
        let chat = chat_of(&query.peer);
        let bot = self.events.bot().unwrap_or(crate::queue::DEFAULT_BOT);
        let sent = match self
            .queue
            .sent_message(bot, chat, i64::from(query.msg_id))
            .await
        {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "cannot look up a clicked message");
                None
            }
        };
        let (reference, job_metadata) = sent.as_ref().map_or((None, None), |sent| {
            crate::send_options::correlation(&sent.payload)
        });
        let data = query.data.clone().unwrap_or_default();
        let click = sent
            .as_ref()
            .filter(|sent| sent.kind == JobKind::Interactive)
            .and_then(|sent| {
                let request = InteractiveRequest::from_stored(&sent.payload)
                    .inspect_err(|error| {
                        tracing::warn!(job = %sent.job_id, %error, "clicked message's job is unreadable; no on_click");
                    })
                    .ok()?;
                request.on_click(&data)?;
                Some(after_click::ButtonClick {
                    query_id: query.query_id,
                    chat,
                    msg_id: query.msg_id,
                    data: data.clone(),
                    message_id: sent.message_id,
                    request,
                })
            });
        let event = bird::clicked(&bird::Click {
            bot_id: self.bot_id,
            chat: chat.get(),
            user_id: query.user_id,
            query_id: query.query_id,
            msg_id: query.msg_id,
            data,
            message_id: sent.map(|sent| sent.message_id),
            reference,
            job_metadata,
            at: Timestamp::now(),
        });
        (event, click)
    }
}

/// The click a callback query is.
fn click_query(query: &tl::types::UpdateBotCallbackQuery) -> ClickQuery {
    ClickQuery {
        query_id: query.query_id,
        chat: chat_of(&query.peer),
        msg_id: query.msg_id,
        data: query.data.clone().unwrap_or_default(),
    }
}

/// The Bot API chat id of a peer.
pub fn chat_of(peer: &tl::enums::Peer) -> ChatId {
    ChatId::from_peer(match peer {
        tl::enums::Peer::User(user) => Peer::User(user.user_id),
        tl::enums::Peer::Chat(chat) => Peer::Group(chat.chat_id),
        tl::enums::Peer::Channel(channel) => Peer::Channel(channel.channel_id),
    })
}

/// The `edited` event of a user's edit (`None` for the bot's own).
fn edit_event(
    bot_id: i64,
    message: &tl::enums::Message,
    peers: &PeerMap,
    place: &str,
) -> Option<NewEvent> {
    let tl::enums::Message::Message(message) = message else {
        return None;
    };
    let origin = user_origin(bot_id, message, peers)?;
    let at = date(message.edit_date.unwrap_or(message.date));
    Some(bird::edited(&origin, &body_of(message, &origin), at, place))
}

/// Where a user's message came from (`None` for the bot's own).
fn user_origin(bot_id: i64, message: &tl::types::Message, peers: &PeerMap) -> Option<Origin> {
    if message.out {
        return None;
    }
    Some(origin(
        bot_id,
        &message.peer_id,
        message.from_id.as_ref(),
        message.id,
        message.date,
        peers,
    ))
}

/// A Telegram date (seconds) as a timestamp.
fn date(seconds: i32) -> Timestamp {
    Timestamp::from_millis(i64::from(seconds) * 1000)
}

/// The payload of a `/start PAYLOAD` deep link (`/start@bot PAYLOAD` in a
/// group), in a text without media.
fn start_payload(text: &str) -> Option<String> {
    let (command, payload) = text.split_once(' ')?;
    let is_start = command == "/start" || command.starts_with("/start@");
    let payload = payload.trim();
    (is_start && !payload.is_empty()).then(|| payload.to_owned())
}

/// A change of the bot's own membership in a group (`None`: another
/// member's, or not a participant update).
fn bot_membership(bot_id: i64, update: &tl::enums::Update) -> Option<Membership> {
    let (chat, actor, before, after, at) = match update {
        tl::enums::Update::ChatParticipant(change) if change.user_id == bot_id => (
            Peer::Group(change.chat_id),
            change.actor_id,
            chat_standing(change.prev_participant.as_ref()),
            chat_standing(change.new_participant.as_ref()),
            change.date,
        ),
        tl::enums::Update::ChannelParticipant(change) if change.user_id == bot_id => (
            Peer::Channel(change.channel_id),
            change.actor_id,
            channel_standing(change.prev_participant.as_ref()),
            channel_standing(change.new_participant.as_ref()),
            change.date,
        ),
        _ => return None,
    };
    Some(Membership {
        chat: ChatId::from_peer(chat).get(),
        actor,
        before,
        after,
        at: date(at),
    })
}

fn chat_standing(participant: Option<&tl::enums::ChatParticipant>) -> Standing {
    use tl::enums::ChatParticipant as P;
    match participant {
        None => Standing::Out,
        Some(P::Participant(_)) => Standing::Member,
        Some(P::Creator(_) | P::Admin(_)) => Standing::Admin,
    }
}

fn channel_standing(participant: Option<&tl::enums::ChannelParticipant>) -> Standing {
    use tl::enums::ChannelParticipant as P;
    match participant {
        None | Some(P::Banned(_) | P::Left(_)) => Standing::Out,
        Some(P::Participant(_) | P::ParticipantSelf(_)) => Standing::Member,
        Some(P::Creator(_) | P::Admin(_)) => Standing::Admin,
    }
}

/// A reaction as text: its emoji (custom emoji by document id).
fn emoji(reaction: &tl::enums::Reaction) -> String {
    match reaction {
        tl::enums::Reaction::Emoji(emoji) => emoji.emoticon.clone(),
        tl::enums::Reaction::CustomEmoji(custom) => format!("custom:{}", custom.document_id),
        other => tl_name(other).to_owned(),
    }
}

fn origin(
    bot_id: i64,
    peer: &tl::enums::Peer,
    from: Option<&tl::enums::Peer>,
    message_id: i32,
    date: i32,
    peers: &PeerMap,
) -> Origin {
    let chat = chat_of(peer).get();
    let sender = from.map_or(chat, |from| chat_of(from).get());
    let person = PeerId::user(sender)
        .and_then(|id| peers.get(id))
        .map_or_else(Person::default, person);
    let chat_type = match peer {
        tl::enums::Peer::User(_) => ChatType::Private,
        tl::enums::Peer::Chat(_) => ChatType::Group,
        tl::enums::Peer::Channel(channel) => {
            match PeerId::channel(channel.channel_id).and_then(|id| peers.get(id)) {
                Some(PeerInfo::Channel(_)) => ChatType::Channel,
                _ => ChatType::Supergroup,
            }
        }
    };
    Origin {
        bot_id,
        chat,
        chat_type,
        sender,
        person,
        message_id,
        date: self::date(date),
    }
}

/// What a sender's profile says about them.
fn person(peer: &PeerInfo) -> Person {
    let PeerInfo::User(user) = peer else {
        return Person {
            name: peer.name().map(str::to_owned),
            ..Person::default()
        };
    };
    let premium = match &user.raw {
        tl::enums::User::User(raw) => raw.premium,
        tl::enums::User::Empty(_) => false,
    };
    Person {
        name: Some(user.full_name()),
        first_name: user.first_name().map(str::to_owned),
        last_name: user.last_name().map(str::to_owned),
        username: user.username().map(str::to_owned),
        lang_code: user.lang_code().map(str::to_owned),
        premium: Some(premium),
    }
}

/// Where a message's media can be fetched from telegate.
pub fn media_url(chat: i64, message_id: i32) -> String {
    format!("/api/v1/media/{chat}:{message_id}")
}

fn body_of(message: &tl::types::Message, origin: &Origin) -> Body {
    use tl::enums::MessageMedia as M;
    let caption = Some(message.message.clone()).filter(|c| !c.is_empty());
    let media_url = || media_url(origin.chat, origin.message_id);
    match &message.media {
        None | Some(M::Empty) => Body::Text(message.message.clone()),
        Some(M::Photo(_)) => Body::Image {
            media_url: media_url(),
            caption,
        },
        Some(M::Document(media)) => document_body(media, media_url(), caption),
        Some(M::Venue(venue)) => match &venue.geo {
            tl::enums::GeoPoint::Point(point) => Body::Venue {
                latitude: point.lat,
                longitude: point.long,
                title: venue.title.clone(),
                address: venue.address.clone(),
            },
            tl::enums::GeoPoint::Empty => Body::Unsupported("geoPointEmpty"),
        },
        Some(M::Poll(poll)) => {
            let tl::enums::Poll::Poll(poll) = &poll.poll;
            let text = |text: &tl::enums::TextWithEntities| {
                let tl::enums::TextWithEntities::Entities(text) = text;
                text.text.clone()
            };
            Body::Poll {
                question: text(&poll.question),
                options: poll
                    .answers
                    .iter()
                    .map(|answer| match answer {
                        tl::enums::PollAnswer::Answer(answer) => text(&answer.text),
                        tl::enums::PollAnswer::InputPollAnswer(answer) => text(&answer.text),
                    })
                    .collect(),
            }
        }
        Some(M::Dice(dice)) => Body::Dice {
            emoji: dice.emoticon.clone(),
            value: dice.value,
        },
        Some(M::Geo(geo)) => match &geo.geo {
            tl::enums::GeoPoint::Point(point) => Body::Location {
                latitude: point.lat,
                longitude: point.long,
            },
            tl::enums::GeoPoint::Empty => Body::Unsupported("geoPointEmpty"),
        },
        Some(M::Contact(contact)) => Body::Contact {
            phone_number: contact.phone_number.clone(),
            first_name: contact.first_name.clone(),
            last_name: contact.last_name.clone(),
            user_id: Some(contact.user_id).filter(|id| *id != 0),
        },
        Some(other) => Body::Unsupported(tl_name(other)),
    }
}

/// A document as what apps show it as: a sticker, or a file of its kind
/// (voice, audio, video, video note, animation, any other).
fn document_body(
    media: &tl::types::MessageMediaDocument,
    media_url: String,
    caption: Option<String>,
) -> Body {
    use tl::enums::DocumentAttribute as A;
    let document = match &media.document {
        Some(tl::enums::Document::Document(document)) => Some(document),
        _ => None,
    };
    let content_type = document.map_or_else(
        || "application/octet-stream".to_owned(),
        |d| d.mime_type.clone(),
    );
    let attributes = document.map_or(&[][..], |d| &d.attributes[..]);
    let mut kind = FileKind::Document;
    let mut duration = None;
    for attribute in attributes {
        match attribute {
            A::Sticker(sticker) => {
                return Body::Sticker {
                    media_url,
                    content_type,
                    emoji: sticker.alt.clone(),
                };
            }
            A::Audio(audio) => {
                kind = if audio.voice {
                    FileKind::Voice
                } else {
                    FileKind::Audio
                };
                duration = Some(f64::from(audio.duration));
            }
            A::Video(video) => {
                if kind == FileKind::Document {
                    kind = if video.round_message {
                        FileKind::VideoNote
                    } else {
                        FileKind::Video
                    };
                }
                duration = Some(video.duration);
            }
            A::Animated => kind = FileKind::Animation,
            _ => {}
        }
    }
    if media.voice {
        kind = FileKind::Voice;
    } else if media.round {
        kind = FileKind::VideoNote;
    }
    Body::File {
        media_url,
        content_type,
        filename: document.and_then(file_name),
        caption,
        kind,
        duration,
    }
}

fn file_name(document: &tl::types::Document) -> Option<String> {
    document
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            tl::enums::DocumentAttribute::Filename(name) => Some(name.file_name.clone()),
            _ => None,
        })
}

/// An update telegate has no event shape for, kept under its TL name.
fn unsupported(bot_id: i64, update: &tl::enums::Update, state: &State) -> NewEvent {
    let name = tl_name(update);
    // An update without its own pts or qts shares the state with whatever
    // else came in its difference slice: its bytes tell it apart, and are
    // the same when Telegram delivers it again.
    let id = match own_place(update) {
        Some(place) => format!("telegram:{bot_id}:{name}:{place}"),
        None => format!(
            "telegram:{bot_id}:{name}:{}:{:016x}",
            place(state),
            fingerprint(update)
        ),
    };
    let now = Timestamp::now().to_string();
    NewEvent {
        id: id.clone(),
        chat: 0,
        body: serde_json::json!({
            "id": id,
            "receiver": {"connector": {"identifierValue": bot_id.to_string()}},
            "body": {"type": "unsupported", "unsupported": {"tl": name}},
            "direction": "incoming",
            "createdAt": now,
        }),
    }
}

/// FNV-1a over an update's TL bytes: stable across runs and releases, so a
/// replayed update gets the id it had.
fn fingerprint(update: &tl::enums::Update) -> u64 {
    use tl::Serializable;
    update
        .to_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Where an update says it is in its box (`pts7`, `qts3`, `channel5pts9`),
/// for the updates that carry their own pts or qts.
fn own_place(update: &tl::enums::Update) -> Option<String> {
    use tl::enums::Update as U;
    let channel = |message: &tl::enums::Message, pts| match message {
        tl::enums::Message::Message(tl::types::Message {
            peer_id: tl::enums::Peer::Channel(channel),
            ..
        }) => Some(format!("channel{}pts{pts}", channel.channel_id)),
        _ => None,
    };
    Some(match update {
        U::EditMessage(edit) => format!("pts{}", edit.pts),
        U::EditChannelMessage(edit) => channel(&edit.message, edit.pts)?,
        U::DeleteMessages(delete) => format!("pts{}", delete.pts),
        U::DeleteChannelMessages(delete) => {
            format!("channel{}pts{}", delete.channel_id, delete.pts)
        }
        U::BotStopped(stop) => format!("qts{}", stop.qts),
        U::ChatParticipant(change) => format!("qts{}", change.qts),
        U::ChannelParticipant(change) => format!("qts{}", change.qts),
        U::BotMessageReaction(reaction) => format!("qts{}", reaction.qts),
        _ => return None,
    })
}

/// Where an update is in its box (`pts7`, `qts3`, `channel5pts9`): with
/// the chat, what makes the id of an event that is not a new message.
fn place(state: &State) -> String {
    match state.message_box {
        Some(MessageBox::Common { pts }) => format!("pts{pts}"),
        Some(MessageBox::Secondary { qts }) => format!("qts{qts}"),
        Some(MessageBox::Channel { channel_id, pts }) => format!("channel{channel_id}pts{pts}"),
        // Not covered by any update state: never replayed, so unique is
        // enough.
        None => format!("r{:016x}", rand::random::<u64>()),
    }
}

/// The newest update state some updates carry, per message box, and how
/// many events they made.
#[derive(Default)]
struct Covered {
    primary: Option<(i32, i32, i32)>,
    qts: Option<i32>,
    channels: HashMap<i64, i32>,
    events: usize,
}

impl Covered {
    fn add(&mut self, state: &State, event: bool) {
        self.events += usize::from(event);
        match state.message_box {
            Some(MessageBox::Common { pts }) => self.primary = Some((pts, state.date, state.seq)),
            Some(MessageBox::Secondary { qts }) => self.qts = Some(qts),
            Some(MessageBox::Channel { channel_id, pts }) => {
                self.channels.insert(channel_id, pts);
            }
            None => {}
        }
    }

    /// Takes in the states of updates that came after these.
    fn absorb(&mut self, later: Covered) {
        self.primary = later.primary.or(self.primary);
        self.qts = later.qts.or(self.qts);
        self.channels.extend(later.channels);
        self.events += later.events;
    }

    fn is_empty(&self) -> bool {
        self.primary.is_none() && self.qts.is_none() && self.channels.is_empty()
    }

    /// Writes it to the session (after the events are durable), retrying
    /// while the storage refuses.
    async fn save(self, session: &SessionStore) -> Result<(), SessionError> {
        until_stored("the update state", || self.write(session)).await
    }

    async fn write(&self, session: &SessionStore) -> Result<(), SessionError> {
        if let Some((pts, date, seq)) = self.primary {
            session
                .set_update_state(UpdateState::Primary { pts, date, seq })
                .await?;
        }
        if let Some(qts) = self.qts {
            session
                .set_update_state(UpdateState::Secondary { qts })
                .await?;
        }
        for (&id, &pts) in &self.channels {
            session
                .set_update_state(UpdateState::Channel { id, pts })
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_updates_in_one_slice_get_ids_of_their_own() {
        let state = State {
            date: 0,
            seq: 0,
            message_box: Some(MessageBox::Common { pts: 40 }),
        };
        let status = |user_id| -> tl::enums::Update {
            tl::types::UpdateUserStatus {
                user_id,
                status: tl::enums::UserStatus::Empty,
            }
            .into()
        };
        let first = unsupported(1, &status(5), &state);
        let second = unsupported(1, &status(6), &state);
        assert_ne!(first.id, second.id);
        assert_eq!(first.id, unsupported(1, &status(5), &state).id);
        assert!(first.id.starts_with("telegram:1:updateUserStatus:pts40:"));
    }

    #[test]
    fn an_interactions_place_is_its_updates_own_pts_or_qts() {
        let stopped = tl::types::UpdateBotStopped {
            user_id: 5,
            date: 0,
            stopped: true,
            qts: 7,
        };
        assert_eq!(own_place(&stopped.into()).as_deref(), Some("qts7"));
        let deleted = tl::types::UpdateDeleteChannelMessages {
            channel_id: 4,
            messages: vec![1],
            pts: 9,
            pts_count: 1,
        };
        assert_eq!(own_place(&deleted.into()).as_deref(), Some("channel4pts9"));
        let deleted = tl::types::UpdateDeleteMessages {
            messages: vec![1, 2],
            pts: 12,
            pts_count: 2,
        };
        assert_eq!(own_place(&deleted.into()).as_deref(), Some("pts12"));
    }

    #[test]
    fn a_deep_link_payload_follows_start_and_nothing_else() {
        assert_eq!(start_payload("/start promo-1").as_deref(), Some("promo-1"));
        assert_eq!(
            start_payload("/start@telegate_bot ref_2 ").as_deref(),
            Some("ref_2")
        );
        assert_eq!(start_payload("/start"), None);
        assert_eq!(start_payload("/start "), None);
        assert_eq!(start_payload("/started x"), None);
        assert_eq!(start_payload("hello /start x"), None);
    }

    #[tokio::test]
    async fn ready_now_tells_a_ready_future_from_one_still_waiting() {
        assert_eq!(ready_now(std::future::ready(7)).await, Some(7));
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        tokio::pin!(rx);
        assert_eq!(ready_now(rx.as_mut()).await, None, "nothing sent yet");
        tx.send(3).unwrap();
        assert_eq!(rx.await, Ok(3), "the future is still there to await");
    }

    #[test]
    fn later_states_win_and_events_add_up() {
        let state = |message_box| State {
            date: 1,
            seq: 2,
            message_box: Some(message_box),
        };
        let mut settled = Covered::default();
        assert!(settled.is_empty());
        settled.add(&state(MessageBox::Common { pts: 5 }), true);
        settled.add(
            &state(MessageBox::Channel {
                channel_id: 9,
                pts: 3,
            }),
            false,
        );
        let mut later = Covered::default();
        later.add(&state(MessageBox::Common { pts: 8 }), true);
        later.add(&state(MessageBox::Secondary { qts: 4 }), true);
        settled.absorb(later);
        assert_eq!(settled.primary, Some((8, 1, 2)));
        assert_eq!(settled.qts, Some(4));
        assert_eq!(settled.channels, HashMap::from([(9, 3)]));
        assert_eq!(settled.events, 3);
    }
}
