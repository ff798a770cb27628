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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use grammers_client::client::UpdateStream;
use grammers_client::peer::{Peer as PeerInfo, PeerMap};
use grammers_session::Session;
use grammers_session::types::{PeerId, UpdateState};
use grammers_session::updates::{MessageBox, State};
use grammers_tl_types as tl;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::after_click;
use crate::callbacks::{CallbackAnswerer, ClickQuery};
use crate::chat::{ChatId, Peer};
use crate::events::bird::{self, Body, Origin};
use crate::events::{EventStore, NewEvent};
use crate::interactive::InteractiveRequest;
use crate::queue::{JobKind, Queue, QueueError, Timestamp, until_stored};
use crate::session::{SessionError, SessionStore};
use crate::telegram::tl_name;

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

/// Runs until the store fails (stream failures are retried); shutting down
/// is dropping the future (everything recorded is durable, the rest is
/// fetched again on the next start).
pub async fn run(mut stream: UpdateStream, inbound: Inbound) -> Result<(), InboundError> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let recorder = tokio::spawn(record(rx, inbound.clone()));
    let read = async {
        let mut failures = 0u32;
        loop {
            let (update, state, peers) = match stream.next_raw().await {
                Ok(next) => {
                    failures = 0;
                    next
                }
                Err(error) => {
                    // A lost connection or a failed getDifference: grammers
                    // reconnects on the next call and fills the gap.
                    failures = failures.saturating_add(1);
                    let delay = STREAM_RETRY.saturating_mul(failures.min(MAX_RETRY_STEPS));
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "update stream failed");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            if let Some(click) = click_query(&update) {
                inbound.callbacks.take(click);
            }
            if tx
                .send(Taken {
                    update,
                    state,
                    peers,
                })
                .await
                .is_err()
            {
                return Ok::<(), InboundError>(());
            }
        }
    };
    let result = read.await;
    drop(tx);
    match recorder.await {
        Ok(Err(error)) => Err(error),
        _ => result,
    }
}

/// The recorder: events first, then the state that covers them.
///
/// A state is saved once every update it covers is recorded, never before.
/// A batch with events saves its state at once; one with none (the echoes
/// of the bot's own sends, one per message sent) may wait up to
/// [`QUIET_SAVE`] to be saved with later ones, so a busy sender does not
/// cost a session write per message. What such a wait loses in a crash is
/// only updates that make no event, fetched again and dropped again.
async fn record(mut rx: mpsc::Receiver<Taken>, inbound: Inbound) -> Result<(), InboundError> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut covered = Covered::default();
    let mut unsaved_since: Option<Instant> = None;
    loop {
        let received = match unsaved_since {
            Some(since) => {
                let next = rx.recv_many(&mut batch, BATCH);
                match tokio::time::timeout_at(since + QUIET_SAVE, next).await {
                    Ok(received) => received,
                    Err(_quiet) => {
                        std::mem::take(&mut covered).save(&inbound.session).await?;
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
        for taken in batch.drain(..) {
            if let Some((event, click)) = inbound.event_for(&taken).await {
                if let Some(click) = click {
                    clicks.push((events.len(), click));
                }
                events.push(event);
            }
            covered.add(&taken.state);
        }
        let count = events.len();
        // A full disk holds the pipeline here (the updates after these wait
        // in the channel, then in grammers), never drops or skips them.
        if clicks.is_empty() {
            until_stored("inbound events", || inbound.events.append(events.clone())).await?;
        } else {
            let (_, decisions) = until_stored("inbound events", || {
                let clicks = clicks.clone();
                inbound
                    .events
                    .append_with(events.clone(), move |conn, bot, events, jobs| {
                        apply_clicks(conn, bot, &clicks, events, jobs)
                    })
            })
            .await?;
            for (query_id, repeat) in decisions {
                inbound.callbacks.decided(query_id, repeat);
            }
        }
        let since = *unsaved_since.get_or_insert_with(Instant::now);
        if count > 0 || since.elapsed() >= QUIET_SAVE {
            std::mem::take(&mut covered).save(&inbound.session).await?;
            unsaved_since = None;
        }
        tracing::trace!(events = count, "inbound events recorded");
    }
    if unsaved_since.is_some() {
        covered.save(&inbound.session).await?;
    }
    Ok(())
}

/// Applies the `on_click`s of a batch's clicks (each with the index of its
/// event) in the commit that records the events, flags the events of
/// repeated clicks, and returns each click's decision (repeat or not).
fn apply_clicks(
    conn: &rusqlite::Connection,
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
    /// The event for one update (`None`: the bot's own doing), and for a
    /// click on a button with an `on_click`, what that does.
    async fn event_for(
        &self,
        taken: &Taken,
    ) -> Option<(NewEvent, Option<after_click::ButtonClick>)> {
        use tl::enums::Update as U;
        let bot_id = self.bot_id;
        match &taken.update {
            U::NewMessage(tl::types::UpdateNewMessage { message, .. })
            | U::NewChannelMessage(tl::types::UpdateNewChannelMessage { message, .. }) => {
                message_event(bot_id, message, &taken.peers).map(|event| (event, None))
            }
            U::BotCallbackQuery(query) => Some(self.click_event(query).await),
            U::MessageId(_) => None,
            other => Some((unsupported(bot_id, other, &taken.state), None)),
        }
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
                let request = InteractiveRequest::from_json(sent.payload.as_bytes()).ok()?;
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

/// The click in `update`, if it is one.
fn click_query(update: &tl::enums::Update) -> Option<ClickQuery> {
    let tl::enums::Update::BotCallbackQuery(query) = update else {
        return None;
    };
    Some(ClickQuery {
        query_id: query.query_id,
        chat: chat_of(&query.peer),
        msg_id: query.msg_id,
        data: query.data.clone().unwrap_or_default(),
    })
}

/// The Bot API chat id of a peer.
pub fn chat_of(peer: &tl::enums::Peer) -> ChatId {
    ChatId::from_peer(match peer {
        tl::enums::Peer::User(user) => Peer::User(user.user_id),
        tl::enums::Peer::Chat(chat) => Peer::Group(chat.chat_id),
        tl::enums::Peer::Channel(channel) => Peer::Channel(channel.channel_id),
    })
}

/// The event of a message users sent (`None` for the bot's own).
fn message_event(bot_id: i64, message: &tl::enums::Message, peers: &PeerMap) -> Option<NewEvent> {
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
            return Some(bird::message(
                &origin,
                &Body::Unsupported(tl_name(&service.action)),
            ));
        }
        tl::enums::Message::Empty(_) => return None,
    };
    if message.out {
        return None;
    }
    let origin = origin(
        bot_id,
        &message.peer_id,
        message.from_id.as_ref(),
        message.id,
        message.date,
        peers,
    );
    Some(bird::message(&origin, &body_of(message, &origin)))
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
    let sender_name =
        PeerId::user(sender)
            .and_then(|id| peers.get(id))
            .and_then(|peer| match peer {
                PeerInfo::User(user) => Some(user.full_name()),
                other => other.name().map(str::to_owned),
            });
    Origin {
        bot_id,
        chat,
        sender,
        sender_name,
        message_id,
        date: Timestamp::from_millis(i64::from(date) * 1000),
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
        Some(M::Document(media)) => {
            let document = match &media.document {
                Some(tl::enums::Document::Document(document)) => Some(document),
                _ => None,
            };
            Body::File {
                media_url: media_url(),
                content_type: document.map_or_else(
                    || "application/octet-stream".to_owned(),
                    |d| d.mime_type.clone(),
                ),
                filename: document.and_then(file_name),
                caption,
            }
        }
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
    let place = match state.message_box {
        Some(MessageBox::Common { pts }) => format!("pts{pts}"),
        Some(MessageBox::Secondary { qts }) => format!("qts{qts}"),
        Some(MessageBox::Channel { channel_id, pts }) => format!("channel{channel_id}pts{pts}"),
        // Not covered by any update state: never replayed, so unique is
        // enough.
        None => format!("r{:016x}", rand::random::<u64>()),
    };
    let id = format!("telegram:{bot_id}:{name}:{place}");
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

/// The newest update state a batch covers, per message box.
#[derive(Default)]
struct Covered {
    primary: Option<(i32, i32, i32)>,
    qts: Option<i32>,
    channels: HashMap<i64, i32>,
}

impl Covered {
    fn add(&mut self, state: &State) {
        match state.message_box {
            Some(MessageBox::Common { pts }) => self.primary = Some((pts, state.date, state.seq)),
            Some(MessageBox::Secondary { qts }) => self.qts = Some(qts),
            Some(MessageBox::Channel { channel_id, pts }) => {
                self.channels.insert(channel_id, pts);
            }
            None => {}
        }
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
