//! Prometheus metrics: what an operator graphs and alerts on.
//!
//! One registry per process ([`metrics`]), like the global recorder of the
//! `metrics` crate: the counters are bumped where things happen (enqueue,
//! the sender's report, the callback answerer, the event store, the webhook,
//! the MTProto connection), far apart in the pipeline, and one daemon runs
//! per process. What is a state rather than an event (queue depth, oldest
//! job, webhook backlog) is read from the store when scraped
//! ([`Metrics::render`]). Exposition is `prometheus-client`'s OpenMetrics
//! text, served at `GET /metrics` on the socket and, with
//! `[metrics] listen`, on a loopback TCP port.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::queue::{Queue, QueueError, Timestamp};

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels<const N: usize> = [(&'static str, String); N];
type Counters<const N: usize> = Family<Labels<N>, Counter>;
type Gauges<const N: usize> = Family<Labels<N>, Gauge>;
type GaugesF<const N: usize> = Family<Labels<N>, Gauge<f64, std::sync::atomic::AtomicU64>>;
type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// Every metric telegate exports.
pub struct Metrics {
    registry: Registry,
    pub jobs_enqueued: Counters<1>,
    pub jobs_sent: Counters<1>,
    pub jobs_failed: Counters<2>,
    pub send_attempts: Counters<2>,
    pub send_latency: Histograms<1>,
    pub flood_waits: Counters<2>,
    pub flood_wait_seconds: Counters<1>,
    queue_depth: Gauges<1>,
    queue_oldest_age: GaugesF<1>,
    pub callback_answers: Counters<2>,
    pub callback_answer_latency: Histograms<1>,
    pub callback_answers_late: Counters<1>,
    pub callback_answers_failed: Counters<1>,
    pub events_written: Counters<1>,
    pub webhook_deliveries: Counter,
    pub webhook_failures: Counter,
    pub webhook_dead: Counter,
    webhook_backlog: Gauge,
    pub mtproto_connected: Gauges<1>,
    pub mtproto_reconnects: Counters<1>,
    pub rpc_latency: Histograms<1>,
    pub unsupported_updates: Counters<1>,
    pub http_requests: Counters<1>,
}

fn latency_buckets() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn rpc_buckets() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("telegate");
        macro_rules! register {
            ($name:literal, $help:literal, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, $help, metric.clone());
                metric
            }};
        }
        let latency = || Histograms::new_with_constructor(latency_buckets as fn() -> Histogram);
        Metrics {
            jobs_enqueued: register!(
                "jobs_enqueued",
                "Jobs stored by the API (repeats of an Idempotency-Key not counted), by bot",
                Counters::default()
            ),
            jobs_sent: register!(
                "jobs_sent",
                "Jobs whose every part reached Telegram, by bot",
                Counters::default()
            ),
            jobs_failed: register!(
                "jobs_failed",
                "Jobs that failed for good, by bot and error (Telegram's name, `expired`, `invalid`)",
                Counters::default()
            ),
            send_attempts: register!(
                "send_attempts",
                "Send attempts, by bot and outcome (sent, failed, retry, flood_wait, halt)",
                Counters::default()
            ),
            send_latency: register!("send_latency_seconds", "Enqueue to sent, by bot", latency()),
            flood_waits: register!(
                "flood_waits",
                "FLOOD_WAIT answers, by bot and the scope held (chat, bot)",
                Counters::default()
            ),
            flood_wait_seconds: register!(
                "flood_wait_seconds",
                "Seconds of FLOOD_WAIT Telegram asked for, by bot",
                Counters::default()
            ),
            queue_depth: register!(
                "queue_depth",
                "Jobs queued or sending, by bot",
                Gauges::default()
            ),
            queue_oldest_age: register!(
                "queue_oldest_age_seconds",
                "Age of the oldest job queued or sending, by bot",
                GaugesF::default()
            ),
            callback_answers: register!(
                "callback_answers",
                "Clicks answered, by bot and source (consumer, stored, empty)",
                Counters::default()
            ),
            callback_answer_latency: register!(
                "callback_answer_latency_seconds",
                "Click received to answer sent, by source",
                latency()
            ),
            callback_answers_late: register!(
                "callback_answers_late",
                "Consumer answers refused because the deadline had passed, by bot",
                Counters::default()
            ),
            callback_answers_failed: register!(
                "callback_answers_failed",
                "setBotCallbackAnswer calls that failed, by bot",
                Counters::default()
            ),
            events_written: register!(
                "events_written",
                "Events written to the store, by event type",
                Counters::default()
            ),
            webhook_deliveries: register!(
                "webhook_deliveries",
                "Events the webhook took (2xx)",
                Counter::default()
            ),
            webhook_failures: register!(
                "webhook_failures",
                "Webhook attempts that failed (non-2xx, timeout, connection)",
                Counter::default()
            ),
            webhook_dead: register!(
                "webhook_dead_letters",
                "Events the webhook gave up on (dead letters)",
                Counter::default()
            ),
            webhook_backlog: register!(
                "webhook_backlog",
                "Events handed to the webhook and not yet delivered",
                Gauge::default()
            ),
            mtproto_connected: register!(
                "mtproto_connected",
                "1 while the bot's MTProto connection answers, by bot",
                Gauges::default()
            ),
            mtproto_reconnects: register!(
                "mtproto_reconnects",
                "Times the connection answered again after it had failed, by bot",
                Counters::default()
            ),
            rpc_latency: register!(
                "rpc_duration_seconds",
                "MTProto call duration, by method",
                Histograms::new_with_constructor(rpc_buckets as fn() -> Histogram)
            ),
            unsupported_updates: register!(
                "unsupported_updates",
                "Inbound updates and media telegate does not model, by TL name",
                Counters::default()
            ),
            http_requests: register!(
                "http_requests",
                "Socket API answers, by status code",
                Counters::default()
            ),
            registry,
        }
    }

    /// The exposition text, after reading the gauges that live in the
    /// store. `backlog`: the webhook's undelivered events, if one runs.
    pub async fn render(
        &self,
        queue: &Queue,
        backlog: Option<usize>,
    ) -> Result<String, QueueError> {
        let now = Timestamp::now().as_millis();
        let depths = queue
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT bot, count(*), min(created_at) FROM jobs
                     WHERE state IN ('queued', 'sending') GROUP BY bot",
                )?;
                let rows = statement.query_map(rusqlite::params![], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        self.queue_depth.clear();
        self.queue_oldest_age.clear();
        for (bot, depth, oldest) in depths {
            self.queue_depth.get_or_create(&bot_label(&bot)).set(depth);
            let age = (now.saturating_sub(oldest)).max(0) as f64 / 1000.0;
            self.queue_oldest_age
                .get_or_create(&bot_label(&bot))
                .set(age);
        }
        self.webhook_backlog.set(backlog.unwrap_or(0) as i64);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        Ok(text)
    }
}

/// `{bot="NAME"}`.
pub fn bot_label(bot: &str) -> Labels<1> {
    [("bot", bot.to_owned())]
}

/// Seconds, as histograms take them.
pub fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Records one MTProto call to `method` that took `elapsed`.
pub fn rpc(method: &'static str, elapsed: Duration) {
    metrics()
        .rpc_latency
        .get_or_create(&[("method", method.to_owned())])
        .observe(seconds(elapsed));
}
