//! Answering button clicks in time, exactly once.
//!
//! A user's app shows a spinner on a clicked inline button until the bot
//! answers, and gives up after a few seconds (`BOT_RESPONSE_TIMEOUT`). So a
//! click never waits behind the send queue, the event store or a consumer:
//! each `updateBotCallbackQuery` gets its own task. A clicked button with a
//! stored `answer` is answered with it at once (one indexed store read;
//! a `once` button waits for its click's recorder to say whether the click
//! is its first, then answers `answer` or `answer_after_first`); a
//! button without one waits at most the answer deadline for a consumer's
//! answer (posted to `POST /api/v1/callbacks/{query_id}/answer`), then
//! falls back to an empty answer, and sends it
//! with a raw `messages.setBotCallbackAnswer` (which, unlike grammers'
//! `CallbackQuery::answer`, carries a `url`). Query ids already seen are
//! remembered for a while, so a repeated update is not answered twice and a
//! consumer that is too late learns so.
//!
//! Every click's task runs on the answerer's own [`TaskTracker`]. When the
//! connection closes (its `closing` token), a click still waiting for a
//! consumer is answered at once (empty, unless a consumer answered), so no
//! user is left with a spinner by a stop; [`CallbackAnswerer::answered_all`]
//! waits for the last answer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use grammers_client::Client;
use grammers_mtsender::InvocationError;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::ChatId;
use crate::interactive::{CallbackAnswer, InteractiveRequest};
use crate::queue::{JobKind, Queue};

/// How long an answered query id is remembered (well past Telegram's own
/// validity of a query).
const REMEMBER: Duration = Duration::from_secs(15 * 60);
/// How long after a click its answer is still worth delivering (a user's
/// app gives up after about 10 s; Telegram refuses answers some time later).
const ANSWER_WINDOW: Duration = Duration::from_secs(15);
/// One try at delivering an answer; past it the connection is presumed dead.
const ANSWER_TRY_TIMEOUT: Duration = Duration::from_secs(2);

/// One click to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickQuery {
    pub query_id: i64,
    pub chat: ChatId,
    /// Telegram's id of the message the button is under.
    pub msg_id: i32,
    pub data: Vec<u8>,
}

/// Who gave the answer that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Consumer,
    /// The clicked button's `answer`, stored with the job that sent it.
    Stored,
    Empty,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Consumer => "consumer",
            Source::Stored => "stored",
            Source::Empty => "empty",
        }
    }
}

/// Why a consumer's answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerRefused {
    #[error("no click with query id {0} is known")]
    Unknown(i64),
    #[error(
        "query {query_id} is closed to consumers: telegate already answered it with the \
         {answered_with} answer (a stored answer goes out at once, an empty one after the \
         {deadline_ms} ms deadline)"
    )]
    Late {
        query_id: i64,
        deadline_ms: u128,
        answered_with: &'static str,
    },
    #[error("query {0} was already answered by a consumer")]
    AlreadyAnswered(i64),
}

enum Query {
    /// Waiting for a consumer (while the store is read, and until the
    /// deadline if the button has no stored answer).
    Open(oneshot::Sender<CallbackAnswer>),
    /// telegate answers (or answered) by itself.
    Settled(Source),
    AnsweredByConsumer,
}

/// Whether a click of a `once` button counted, as its recorder decided it.
enum Decision {
    /// The answer waits for it.
    Awaited(oneshot::Sender<bool>),
    /// Decided (`true`: a repeat) before the answer asked.
    Known(bool),
}

struct Queries {
    by_id: HashMap<i64, Query>,
    /// Decisions on clicks of buttons with an `on_click`, by query id.
    decisions: HashMap<i64, Decision>,
    /// Ids in arrival order, to forget old ones.
    seen: VecDeque<(Instant, i64)>,
}

struct Inner {
    client: Client,
    queue: Queue,
    deadline: Duration,
    queries: Mutex<Queries>,
    /// The bot whose clicks these are (its stored answers, its metrics).
    bot: String,
    /// Cancelled when the connection closes: nobody waits for consumers.
    closing: CancellationToken,
    /// Every click's task.
    tasks: TaskTracker,
}

/// Answers clicks; clones share the same queries.
#[derive(Clone)]
pub struct CallbackAnswerer {
    inner: Arc<Inner>,
}

impl CallbackAnswerer {
    /// Answers through `client`, looking stored answers up in `queue`;
    /// consumers have `deadline` to answer.
    pub fn new(client: Client, queue: Queue, deadline: Duration) -> Self {
        let closing = CancellationToken::new();
        Self::for_bot(client, queue, deadline, crate::queue::DEFAULT_BOT, closing)
    }

    /// [`CallbackAnswerer::new`] for the bot named `bot` (in the metrics),
    /// until `closing`: from then on every click is answered without
    /// waiting for a consumer.
    pub fn for_bot(
        client: Client,
        queue: Queue,
        deadline: Duration,
        bot: &str,
        closing: CancellationToken,
    ) -> Self {
        CallbackAnswerer {
            inner: Arc::new(Inner {
                closing,
                tasks: TaskTracker::new(),
                bot: bot.to_owned(),
                client,
                queue,
                deadline,
                queries: Mutex::new(Queries {
                    by_id: HashMap::new(),
                    decisions: HashMap::new(),
                    seen: VecDeque::new(),
                }),
            }),
        }
    }

    /// The deadline consumers have.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Takes a click and answers it in the background; `false` (and
    /// nothing done) when this query id was seen before.
    pub fn take(&self, query: ClickQuery) -> bool {
        let (tx, rx) = oneshot::channel();
        {
            let mut queries = self.queries();
            let now = Instant::now();
            forget_old(&mut queries, now);
            if queries.by_id.contains_key(&query.query_id) {
                tracing::debug!(query_id = query.query_id, "repeated click ignored");
                return false;
            }
            queries.by_id.insert(query.query_id, Query::Open(tx));
            queries.seen.push_back((now, query.query_id));
        }
        let answerer = self.clone();
        let span = tracing::info_span!(
            "click",
            bot = %self.inner.bot,
            chat = %query.chat,
            query_id = query.query_id
        );
        self.inner.tasks.spawn(tracing::Instrument::instrument(
            async move { answerer.answer_in_time(query, rx).await },
            span,
        ));
        true
    }

    /// Waits until every click taken so far is answered (or its answer
    /// given up). Once `closing` is cancelled that is soon: nothing waits
    /// for a consumer, and a failed answer is not retried.
    pub(crate) async fn answered_all(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Clicks taken and not answered yet.
    pub(crate) fn pending(&self) -> usize {
        self.inner.tasks.len()
    }

    /// The recorder's decision on click `query_id` of a button with an
    /// `on_click`, made in the commit that recorded it: `repeat` (a `once`
    /// button clicked before) or counted.
    pub fn decided(&self, query_id: i64, repeat: bool) {
        let mut queries = self.queries();
        match queries.decisions.remove(&query_id) {
            Some(Decision::Awaited(tx)) => {
                let _ = tx.send(repeat);
            }
            _ if queries.by_id.contains_key(&query_id) => {
                queries.decisions.insert(query_id, Decision::Known(repeat));
            }
            // A click recorded again after a restart, answered long ago.
            _ => {}
        }
    }

    /// Whether click `query_id` of a `once` button is a repeat, waiting up
    /// to the deadline for the recorder (which has not decided then: taken
    /// as the first).
    async fn is_repeat(&self, query_id: i64) -> bool {
        let rx = {
            let mut queries = self.queries();
            if let Some(Decision::Known(repeat)) = queries.decisions.get(&query_id) {
                return *repeat;
            }
            let (tx, rx) = oneshot::channel();
            queries.decisions.insert(query_id, Decision::Awaited(tx));
            rx
        };
        matches!(
            tokio::time::timeout(self.inner.deadline, rx).await,
            Ok(Ok(true))
        )
    }

    /// A consumer's answer to `query_id`, taken if the deadline has not
    /// passed.
    pub fn answer(&self, query_id: i64, answer: CallbackAnswer) -> Result<(), AnswerRefused> {
        let mut queries = self.queries();
        let query = queries
            .by_id
            .get_mut(&query_id)
            .ok_or(AnswerRefused::Unknown(query_id))?;
        match std::mem::replace(query, Query::AnsweredByConsumer) {
            Query::Open(tx) => {
                // The task holds the receiver until it has marked the query
                // settled (under this lock), so this cannot be lost.
                let _ = tx.send(answer);
                Ok(())
            }
            Query::Settled(source) => {
                *query = Query::Settled(source);
                crate::metrics::metrics()
                    .callback_answers_late
                    .get_or_create(&crate::metrics::bot_label(&self.inner.bot))
                    .inc();
                Err(AnswerRefused::Late {
                    query_id,
                    deadline_ms: self.inner.deadline.as_millis(),
                    answered_with: source.as_str(),
                })
            }
            Query::AnsweredByConsumer => Err(AnswerRefused::AlreadyAnswered(query_id)),
        }
    }

    async fn answer_in_time(&self, query: ClickQuery, mut rx: oneshot::Receiver<CallbackAnswer>) {
        let clicked = Instant::now();
        let query_id = query.query_id;
        // A button with a stored answer is answered as soon as the store
        // says so; a consumer that answers while the store is read wins.
        let stored = tokio::select! {
            biased;
            consumer = &mut rx => consumer.ok().map(|answer| (answer, Source::Consumer)),
            stored = self.stored_answer(&query) => stored.map(|answer| (answer, Source::Stored)),
        };
        let (answer, source) = match stored {
            Some((answer, Source::Consumer)) => (answer, Source::Consumer),
            Some((answer, source)) => match self.settle(query_id, source, &mut rx) {
                Some(consumer) => (consumer, Source::Consumer),
                None => (answer, source),
            },
            // No stored answer: the consumer has until the deadline (or
            // until the connection closes).
            None => {
                let waited = tokio::select! {
                    waited = tokio::time::timeout(self.inner.deadline, &mut rx) => {
                        waited.ok().and_then(Result::ok)
                    }
                    () = self.inner.closing.cancelled() => None,
                };
                match waited {
                    Some(answer) => (answer, Source::Consumer),
                    None => match self.settle(query_id, Source::Empty, &mut rx) {
                        Some(consumer) => (consumer, Source::Consumer),
                        None => (CallbackAnswer::default(), Source::Empty),
                    },
                }
            }
        };
        let sent = self.send(query_id, &answer).await;
        let metrics = crate::metrics::metrics();
        let bot = &self.inner.bot;
        match sent {
            Ok(()) => {
                tracing::debug!(query_id, source = source.as_str(), "click answered");
                metrics
                    .callback_answers
                    .get_or_create(&[("bot", bot.clone()), ("source", source.as_str().to_owned())])
                    .inc();
                metrics
                    .callback_answer_latency
                    .get_or_create(&[("source", source.as_str().to_owned())])
                    .observe(clicked.elapsed().as_secs_f64());
            }
            Err(error) => {
                tracing::warn!(query_id, source = source.as_str(), %error, "click answer failed");
                metrics
                    .callback_answers_failed
                    .get_or_create(&crate::metrics::bot_label(bot))
                    .inc();
            }
        }
    }

    /// Closes the query to consumers as answered by `source`, unless one
    /// answered in the meantime (then returns that answer).
    fn settle(
        &self,
        query_id: i64,
        source: Source,
        rx: &mut oneshot::Receiver<CallbackAnswer>,
    ) -> Option<CallbackAnswer> {
        let mut queries = self.queries();
        match queries.by_id.get_mut(&query_id) {
            Some(query @ Query::Open(_)) => {
                *query = Query::Settled(source);
                None
            }
            _ => rx.try_recv().ok(),
        }
    }

    /// The clicked button's stored answer: its `answer`, or for a repeated
    /// click of a `once` button, its `answer_after_first`.
    async fn stored_answer(&self, query: &ClickQuery) -> Option<CallbackAnswer> {
        let sent = match self
            .inner
            .queue
            .sent_message(&self.inner.bot, query.chat, i64::from(query.msg_id))
            .await
        {
            Ok(sent) => sent?,
            Err(error) => {
                tracing::warn!(%error, "cannot look up the clicked message; answering empty");
                return None;
            }
        };
        if sent.kind != JobKind::Interactive {
            return None;
        }
        let request = match InteractiveRequest::from_stored(&sent.payload) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(job = %sent.job_id, %error, "clicked message's job is unreadable; answering empty");
                return None;
            }
        };
        if let Some(on_click) = request.on_click(&query.data).filter(|c| c.once())
            && self.is_repeat(query.query_id).await
        {
            return Some(on_click.answer_after_first());
        }
        request.callback_answer(&query.data).cloned()
    }

    /// Delivers `answer`; if Telegram refuses it (a `url` it will not open,
    /// say), delivers it again without the `url`, then empty, so that the
    /// user's spinner stops whatever the answer held. `QUERY_ID_INVALID`
    /// (too late, or answered already) is final.
    async fn send(&self, query_id: i64, answer: &CallbackAnswer) -> Result<(), InvocationError> {
        let give_up = Instant::now() + ANSWER_WINDOW;
        let mut answer = answer.clone();
        loop {
            let error = match self.deliver(query_id, &answer, give_up).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let refused = matches!(&error, InvocationError::Rpc(rpc)
                if rpc.code == 400 && rpc.name != "QUERY_ID_INVALID");
            match answer.degraded() {
                Some(lesser) if refused => {
                    tracing::warn!(query_id, %error, "Telegram refused the click's answer; answering with less");
                    answer = lesser;
                }
                _ => return Err(error),
            }
        }
    }

    /// `messages.setBotCallbackAnswer`, retried while the connection is
    /// down (each try bounded by [`ANSWER_TRY_TIMEOUT`], so a dead
    /// connection that the watchdog replaces does not hold the answer) and
    /// through a `FLOOD_WAIT`, until `give_up` (at most [`ANSWER_WINDOW`]
    /// after the click). Telegram's own refusals are returned at once, and
    /// so is any failure once the connection is closing.
    async fn deliver(
        &self,
        query_id: i64,
        answer: &CallbackAnswer,
        give_up: Instant,
    ) -> Result<(), InvocationError> {
        let request = answer.to_tl(query_id);
        let mut pause = Duration::from_millis(50);
        loop {
            let tried =
                tokio::time::timeout(ANSWER_TRY_TIMEOUT, self.inner.client.invoke(&request)).await;
            let error = match tried {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => error,
                Err(_) => InvocationError::Dropped(crate::telegram::CALL_TIMED_OUT),
            };
            let wait = match &error {
                InvocationError::Rpc(rpc) if rpc.name == "FLOOD_WAIT" => {
                    Duration::from_secs(u64::from(rpc.value.unwrap_or(1)))
                }
                InvocationError::Dropped(_) | InvocationError::Io(_) => pause,
                _ => return Err(error),
            };
            // Closing: one try left, the connection is about to go.
            if Instant::now() + wait >= give_up || self.inner.closing.is_cancelled() {
                return Err(error);
            }
            tracing::debug!(query_id, %error, "click answer not delivered yet; retrying");
            tokio::time::sleep(wait).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn queries(&self) -> MutexGuard<'_, Queries> {
        // A panic while holding the lock leaves consistent data behind.
        self.inner
            .queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn forget_old(queries: &mut Queries, now: Instant) {
    while let Some(&(at, id)) = queries.seen.front() {
        if now.duration_since(at) < REMEMBER {
            break;
        }
        queries.seen.pop_front();
        if !matches!(queries.by_id.get(&id), Some(Query::Open(_))) {
            queries.by_id.remove(&id);
            queries.decisions.remove(&id);
        }
    }
}
