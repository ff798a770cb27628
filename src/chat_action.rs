//! Chat actions ("typing…", "sending a photo…"): ephemeral, so not stored.
//!
//! Telegram shows an action for about 5 seconds, so a longer one is sent
//! again every [`RESEND`] until its `duration_s` ends or the chat's next
//! message goes out (which ends the action on the user's screen anyway).
//! [`Actions`] is the deterministic schedule (it takes `now` and events and
//! says what to send); [`ChatActions`] is the thin async shell that sends
//! `messages.setTyping` and hears about sent messages from the queue.
//!
//! Limits: an action is sent to one chat at most once a second (a repeated
//! request only changes what the next send says), at most
//! [`BOT_PER_SECOND`] a second in all, and for at most [`MAX_CHATS`] chats
//! at a time; none of it touches the send queue's budget, and a skipped
//! send costs nothing but a shorter "typing…".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use grammers_tl_types as tl;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::chat::ChatId;
use crate::queue::{JobEvent, JobState, Queue};
use crate::telegram::Telegram;

/// How often a lasting action is sent again.
pub const RESEND: Duration = Duration::from_secs(4);
/// The longest `duration_s`.
pub const MAX_DURATION_S: u64 = 60;
/// One chat gets an action at most this often.
const PER_CHAT: Duration = Duration::from_secs(1);
/// Action sends a second, bot-wide.
pub const BOT_PER_SECOND: usize = 10;
/// Chats with a lasting action at once.
pub const MAX_CHATS: usize = 1000;

/// What the chat shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatAction {
    Typing,
    UploadPhoto,
    RecordVideo,
    UploadVideo,
    RecordVoice,
    UploadVoice,
    UploadDocument,
    ChooseSticker,
    FindLocation,
    RecordVideoNote,
    UploadVideoNote,
}

impl ChatAction {
    /// The Bot API's names, in order.
    pub const NAMES: &[&str] = &[
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ];
    const ALL: [ChatAction; 11] = [
        ChatAction::Typing,
        ChatAction::UploadPhoto,
        ChatAction::RecordVideo,
        ChatAction::UploadVideo,
        ChatAction::RecordVoice,
        ChatAction::UploadVoice,
        ChatAction::UploadDocument,
        ChatAction::ChooseSticker,
        ChatAction::FindLocation,
        ChatAction::RecordVideoNote,
        ChatAction::UploadVideoNote,
    ];

    /// The action the Bot API calls `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|index| Self::ALL[index])
    }

    /// The MTProto action.
    pub fn to_tl(self) -> tl::enums::SendMessageAction {
        use tl::enums::SendMessageAction as A;
        match self {
            ChatAction::Typing => A::SendMessageTypingAction,
            ChatAction::UploadPhoto => {
                tl::types::SendMessageUploadPhotoAction { progress: 0 }.into()
            }
            ChatAction::RecordVideo => A::SendMessageRecordVideoAction,
            ChatAction::UploadVideo => {
                tl::types::SendMessageUploadVideoAction { progress: 0 }.into()
            }
            ChatAction::RecordVoice => A::SendMessageRecordAudioAction,
            ChatAction::UploadVoice => {
                tl::types::SendMessageUploadAudioAction { progress: 0 }.into()
            }
            ChatAction::UploadDocument => {
                tl::types::SendMessageUploadDocumentAction { progress: 0 }.into()
            }
            ChatAction::ChooseSticker => A::SendMessageChooseStickerAction,
            ChatAction::FindLocation => A::SendMessageGeoLocationAction,
            ChatAction::RecordVideoNote => A::SendMessageRecordRoundAction,
            ChatAction::UploadVideoNote => {
                tl::types::SendMessageUploadRoundAction { progress: 0 }.into()
            }
        }
    }
}

/// Why an action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionRefused {
    #[error("actions run in {MAX_CHATS} chats already; try again when one ends")]
    TooManyChats,
    #[error("chat actions are unavailable: no Telegram connection")]
    Unavailable,
}

struct Lasting {
    action: ChatAction,
    until: Instant,
    /// When this chat may get the action next.
    next: Instant,
}

/// The schedule of lasting actions.
#[derive(Default)]
pub struct Actions {
    chats: HashMap<ChatId, Lasting>,
    /// Recent sends, for the bot-wide rate.
    recent: std::collections::VecDeque<Instant>,
}

impl Actions {
    /// `action` in `chat` for `duration` from `now` (replacing the chat's
    /// current one).
    pub fn start(
        &mut self,
        chat: ChatId,
        action: ChatAction,
        duration: Duration,
        now: Instant,
    ) -> Result<(), ActionRefused> {
        if !self.chats.contains_key(&chat) && self.chats.len() >= MAX_CHATS {
            return Err(ActionRefused::TooManyChats);
        }
        let next = self.chats.get(&chat).map_or(now, |lasting| lasting.next);
        self.chats.insert(
            chat,
            Lasting {
                action,
                until: now + duration,
                next,
            },
        );
        Ok(())
    }

    /// The chat's next message went out: its action is over.
    pub fn message_sent(&mut self, chat: ChatId) {
        self.chats.remove(&chat);
    }

    /// What to send at `now`; forgets actions that are over.
    pub fn due(&mut self, now: Instant) -> Vec<(ChatId, ChatAction)> {
        self.chats.retain(|_, lasting| lasting.until > now);
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        let mut due: Vec<(ChatId, Instant)> = self
            .chats
            .iter()
            .filter(|(_, lasting)| lasting.next <= now)
            .map(|(chat, lasting)| (*chat, lasting.next))
            .collect();
        // The longest waiting first, within the bot-wide rate.
        due.sort_by_key(|(chat, next)| (*next, *chat));
        due.truncate(BOT_PER_SECOND.saturating_sub(self.recent.len()));
        due.into_iter()
            .filter_map(|(chat, _)| {
                let lasting = self.chats.get_mut(&chat)?;
                lasting.next = now + RESEND.min(lasting.until - now).max(PER_CHAT);
                self.recent.push_back(now);
                Some((chat, lasting.action))
            })
            .collect()
    }

    /// When something may be due next.
    pub fn next_wake(&self) -> Option<Instant> {
        let next = self.chats.values().map(|l| l.next.min(l.until)).min()?;
        match self.recent.front() {
            Some(oldest) if self.recent.len() >= BOT_PER_SECOND => {
                Some(next.max(*oldest + Duration::from_secs(1)))
            }
            _ => Some(next),
        }
    }
}

/// A request to the shell.
struct Start {
    chat: ChatId,
    action: ChatAction,
    duration: Duration,
    answer: tokio::sync::oneshot::Sender<Result<(), ActionRefused>>,
}

/// Takes action requests; clones share the one schedule.
#[derive(Clone)]
pub struct ChatActions {
    requests: mpsc::Sender<Start>,
}

impl ChatActions {
    /// The handle and the loop that sends through `telegram` as `bot`,
    /// hearing of that bot's sent messages from `queue`, until `stopping`
    /// turns true. (Only that bot's: another bot's message to the same
    /// person ends nothing of this one's, and a hundred bots' loops do not
    /// each wake for every job of every bot.)
    pub fn new(
        telegram: Arc<Telegram>,
        queue: &Queue,
        bot: &str,
        stopping: watch::Receiver<bool>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (requests, incoming) = mpsc::channel(256);
        let sent = queue.subscribe_bot(bot);
        (
            ChatActions { requests },
            run(telegram, incoming, sent, stopping),
        )
    }

    /// Shows `action` in `chat` for `duration`.
    pub async fn start(
        &self,
        chat: ChatId,
        action: ChatAction,
        duration: Duration,
    ) -> Result<(), ActionRefused> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.requests
            .send(Start {
                chat,
                action,
                duration,
                answer,
            })
            .await
            .map_err(|_| ActionRefused::Unavailable)?;
        answered.await.map_err(|_| ActionRefused::Unavailable)?
    }
}

async fn run(
    telegram: Arc<Telegram>,
    incoming: mpsc::Receiver<Start>,
    sent: broadcast::Receiver<JobEvent>,
    stopping: watch::Receiver<bool>,
) {
    // Each "typing…" goes out on its own task (a lost one is not worth a
    // retry); they end before the loop's future does, none outlives it.
    let sends = TaskTracker::new();
    show(&telegram, &sends, incoming, sent, stopping).await;
    sends.close();
    sends.wait().await;
}

async fn show(
    telegram: &Arc<Telegram>,
    sends: &TaskTracker,
    mut incoming: mpsc::Receiver<Start>,
    mut sent: broadcast::Receiver<JobEvent>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut actions = Actions::default();
    loop {
        for (chat, action) in actions.due(Instant::now()) {
            let telegram = Arc::clone(telegram);
            sends.spawn(async move { send(&telegram, chat, action).await });
        }
        let wake = actions.next_wake();
        tokio::select! {
            start = incoming.recv() => {
                let Some(start) = start else { return };
                let taken = actions.start(start.chat, start.action, start.duration, Instant::now());
                let _ = start.answer.send(taken);
            }
            event = sent.recv() => match event {
                Ok(event) if event.state == JobState::Sent => actions.message_sent(event.chat),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = sleep_until(wake) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `messages.setTyping` with `action` in `chat`.
async fn send(telegram: &Telegram, chat: ChatId, action: ChatAction) {
    let request = tl::functions::messages::SetTyping {
        peer: telegram.input_peer(chat).await,
        top_msg_id: None,
        action: action.to_tl(),
    };
    if let Err(error) = telegram.invoke(&request).await {
        tracing::debug!(chat = chat.get(), %error, "chat action not shown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_lasting_action_is_sent_every_four_seconds_until_it_ends() {
        let t0 = Instant::now();
        let chat = ChatId::user(5);
        let mut actions = Actions::default();
        actions
            .start(chat, ChatAction::Typing, Duration::from_secs(10), t0)
            .unwrap();
        assert_eq!(actions.due(t0), [(chat, ChatAction::Typing)]);
        assert!(actions.due(at(t0, 3999)).is_empty());
        assert_eq!(actions.next_wake(), Some(at(t0, 4000)));
        assert_eq!(actions.due(at(t0, 4000)).len(), 1);
        assert_eq!(actions.due(at(t0, 8000)).len(), 1);
        // 2 s were left: no send beyond the end.
        assert!(actions.due(at(t0, 10_000)).is_empty());
        assert_eq!(actions.next_wake(), None);
    }

    #[test]
    fn the_chats_next_message_ends_it_and_a_repeat_waits_a_second() {
        let t0 = Instant::now();
        let chat = ChatId::user(5);
        let mut actions = Actions::default();
        actions
            .start(chat, ChatAction::Typing, Duration::from_secs(60), t0)
            .unwrap();
        assert_eq!(actions.due(t0).len(), 1);
        // A new request right away changes the action, not the pace.
        actions
            .start(
                chat,
                ChatAction::UploadPhoto,
                Duration::from_secs(60),
                at(t0, 100),
            )
            .unwrap();
        assert!(actions.due(at(t0, 100)).is_empty());
        assert_eq!(actions.due(at(t0, 4000)), [(chat, ChatAction::UploadPhoto)]);
        actions.message_sent(chat);
        assert!(actions.due(at(t0, 8000)).is_empty());
        assert_eq!(actions.next_wake(), None);
    }

    #[test]
    fn the_bot_wide_rate_and_the_chat_cap_hold() {
        let t0 = Instant::now();
        let mut actions = Actions::default();
        for user in 1..=(BOT_PER_SECOND as i64 + 5) {
            actions
                .start(
                    ChatId::user(user),
                    ChatAction::Typing,
                    Duration::from_secs(60),
                    t0,
                )
                .unwrap();
        }
        assert_eq!(actions.due(t0).len(), BOT_PER_SECOND);
        assert!(actions.due(at(t0, 500)).is_empty());
        assert_eq!(actions.next_wake(), Some(at(t0, 1000)));
        assert_eq!(actions.due(at(t0, 1000)).len(), 5);

        let mut full = Actions::default();
        for user in 1..=MAX_CHATS as i64 {
            full.start(
                ChatId::user(user),
                ChatAction::Typing,
                Duration::from_secs(5),
                t0,
            )
            .unwrap();
        }
        assert_eq!(
            full.start(
                ChatId::user(-5),
                ChatAction::Typing,
                Duration::from_secs(5),
                t0
            ),
            Err(ActionRefused::TooManyChats)
        );
        assert!(
            ChatAction::NAMES
                .iter()
                .all(|n| ChatAction::from_name(n).is_some())
        );
        assert_eq!(ChatAction::from_name("dancing"), None);
    }
}
