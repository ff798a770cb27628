//! Many bots behind one socket: a request's API key names its bot, and
//! everything it reaches is that bot's. The API over a real store and
//! socket, without Telegram (the daemon end to end is in `bots_daemon.rs`).

#[path = "worker_support/store.rs"]
mod store_support;

use std::time::Duration;

use axum::http::Method;
use bytes::Bytes;
use serde_json::{Value, json};
use telegate::api::Services;
use telegate::api::client::{Answer, Client};
use telegate::api::socket;
use telegate::bots::Bots;
use telegate::config::{ApiConfig, Config};
use telegate::queue::{JobError, Queue, Timestamp};
use tokio_util::sync::CancellationToken;

const INTERACTIVE: &str = "/api/v1/telegram/interactive";
const MESSAGES: &str = "/api/v1/telegram/messages";

const CONFIG: &str = r#"
[api]
admin_keys = ["op-key"]

[[bots]]
name = "alpha"
bot_token = "1:a"
api_keys = ["alpha-key"]
deprecated_api_keys = ["alpha-old"]

[[bots]]
name = "beta"
bot_token = "2:b"
api_keys = ["beta-key"]
interactive = false
respond = "sent"

[[bots]]
name = "gamma"
bot_token = "3:c"
api_keys = ["gamma-key"]
enabled = false
"#;

struct Api {
    _dir: tempfile::TempDir,
    queue: Queue,
    socket: std::path::PathBuf,
    stop: CancellationToken,
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(CONFIG).unwrap();
        config.check().unwrap();
        let queue = Queue::open_at(&store_support::location(dir.path())).unwrap();
        let services = Services {
            bots: Bots::from_config(&config),
            ..Services::new(queue.clone())
        };
        let path = dir.path().join("telegate.sock");
        let (listener, socket_file) = socket::bind(&path).await.unwrap();
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                let _socket = socket_file;
                telegate::api::serve_services(
                    listener,
                    services,
                    &ApiConfig {
                        respond_timeout_s: 30,
                        ..ApiConfig::default()
                    },
                    stop.cancelled_owned(),
                )
                .await
                .unwrap();
            }
        });
        Api {
            _dir: dir,
            queue,
            socket: path,
            stop,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut connection = Client::new(&self.socket).connect().await.unwrap();
        connection
            .send(method, path, headers, Bytes::from(body.to_owned()))
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, key: &str) -> Answer {
        self.send(Method::GET, path, &[("x-octopods-auth", key)], "")
            .await
    }

    async fn post(&self, path: &str, key: &str, body: &str) -> Answer {
        self.send(Method::POST, path, &[("x-octopods-auth", key)], body)
            .await
    }

    /// Enqueues a job as `key`'s bot; its id (`?wait=0`: answered at once
    /// whatever the bot's response mode).
    async fn enqueue(&self, key: &str, text: &str) -> i64 {
        let answer = self
            .post(&format!("{MESSAGES}?wait=0"), key, &message(text))
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.json().unwrap()["job_id"].as_i64().unwrap()
    }

    /// telegate's message id of job `id`'s first part.
    async fn message_id(&self, id: i64) -> i64 {
        let job = self
            .queue
            .job(telegate::queue::JobId::new(id))
            .await
            .unwrap()
            .unwrap();
        job.parts[0].message_id
    }

    async fn job_ids(&self, path: &str, key: &str) -> Vec<i64> {
        let answer = self.get(path, key).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.json().unwrap()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|job| job["job_id"].as_i64().unwrap())
            .collect()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn interactive(text: &str) -> String {
    json!({
        "destination_user_id": "1000001",
        "telegram_interactive_message": {
            "type": "highlight_reply", "text": text, "reply_markup": {"force_reply": true}
        }
    })
    .to_string()
}

fn message(text: &str) -> String {
    json!({"destination_user_id": "1000001", "text": text}).to_string()
}

/// The error body: JSON with the request id, no key in it.
fn error_of(answer: &Answer) -> Value {
    let body = answer.json().unwrap();
    assert!(
        body["request_id"].as_str().unwrap().starts_with("req_"),
        "{body}"
    );
    let text = body.to_string();
    for key in [
        "alpha-key",
        "alpha-old",
        "beta-key",
        "gamma-key",
        "op-key",
        "nope",
    ] {
        assert!(!text.contains(key), "{text}");
    }
    body
}

#[tokio::test]
async fn the_key_decides_the_bot_and_refusals_follow_the_seed() {
    let api = Api::start().await;
    let answer = api
        .send(Method::POST, INTERACTIVE, &[], &interactive("hi"))
        .await;
    assert_eq!(answer.status, 401);
    assert!(
        error_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("X-Octopods-Auth")
    );
    let answer = api.post(INTERACTIVE, "nope", &interactive("hi")).await;
    assert_eq!(answer.status, 401);
    error_of(&answer);

    let answer = api.post(INTERACTIVE, "alpha-old", &interactive("hi")).await;
    assert_eq!(answer.status, 400);
    let body = error_of(&answer);
    assert_eq!(body["error_code"], 6, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("deprecated"),
        "{body}"
    );

    let answer = api.post(MESSAGES, "gamma-key", &message("hi")).await;
    assert_eq!(answer.status, 403);
    assert!(
        error_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );

    // beta takes plain messages but not interactive ones.
    let answer = api.post(INTERACTIVE, "beta-key", &interactive("hi")).await;
    assert_eq!(answer.status, 403);
    assert!(
        error_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("interactive")
    );
    let beta = api.enqueue("beta-key", "plain").await;

    // Nothing refused was queued: the store holds beta's job alone.
    let all = api.job_ids("/api/v1/jobs", "op-key").await;
    assert_eq!(all, [beta]);

    let answer = api
        .send(
            Method::POST,
            INTERACTIVE,
            &[("authorization", "Bearer alpha-key")],
            &interactive("hi"),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.json().unwrap()["job_id"].as_i64().unwrap();
    let job = api.get(&format!("/api/v1/jobs/{id}"), "alpha-key").await;
    assert_eq!(job.json().unwrap()["bot"], "alpha");
    // healthz needs no key.
    let answer = api.send(Method::GET, "/healthz", &[], "").await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn a_bots_key_reaches_nothing_of_another_bot() {
    let api = Api::start().await;
    let alpha = api.enqueue("alpha-key", "for alpha").await;
    let beta = api.enqueue("beta-key", "for beta").await;

    // One job.
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{beta}"), "alpha-key")
            .await
            .status,
        404
    );
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{alpha}"), "beta-key")
            .await
            .status,
        404
    );
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{beta}"), "beta-key")
            .await
            .status,
        200
    );
    // Listings.
    assert_eq!(api.job_ids("/api/v1/jobs", "alpha-key").await, [alpha]);
    assert_eq!(api.job_ids("/api/v1/jobs", "beta-key").await, [beta]);
    let answer = api.get("/api/v1/jobs?bot=beta", "alpha-key").await;
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    assert_eq!(
        api.job_ids("/api/v1/jobs?bot=alpha", "alpha-key").await,
        [alpha]
    );
    // The operator sees all, and filters.
    assert_eq!(api.job_ids("/api/v1/jobs", "op-key").await, [alpha, beta]);
    assert_eq!(api.job_ids("/api/v1/jobs?bot=beta", "op-key").await, [beta]);

    // Events: both jobs fail, each result is its bot's event.
    for bot in ["alpha", "beta"] {
        let taken = api
            .queue
            .claim_due(bot, Timestamp::now(), 10)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
        let error = JobError::telegram("USER_IS_BLOCKED", "blocked");
        api.queue
            .mark_failed(taken[0].id, error, Timestamp::now())
            .await
            .unwrap();
    }
    let event_jobs = |answer: Answer| -> Vec<String> {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        String::from_utf8(answer.body.to_vec())
            .unwrap()
            .lines()
            .map(|line| {
                let line: Value = serde_json::from_str(line).unwrap();
                line["event"]["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let seen = event_jobs(api.get("/api/v1/events?after=0", "alpha-key").await);
    assert_eq!(seen, [format!("job:{alpha}:failed")]);
    let seen = event_jobs(api.get("/api/v1/events?after=0", "beta-key").await);
    assert_eq!(seen, [format!("job:{beta}:failed")]);
    let seen = event_jobs(api.get("/api/v1/events?after=0", "op-key").await);
    assert_eq!(seen.len(), 2);
    let seen = event_jobs(api.get("/api/v1/events?after=0&bot=beta", "op-key").await);
    assert_eq!(seen, [format!("job:{beta}:failed")]);
    let answer = api
        .get("/api/v1/events?after=0&bot=beta", "alpha-key")
        .await;
    assert_eq!(answer.status, 403);

    // Clicks, webhook and media go through the key's own bot (with no
    // connection here: nothing to answer, nothing configured, no files).
    let answer = api
        .post("/api/v1/callbacks/77/answer", "alpha-key", "{}")
        .await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    let answer = api
        .post("/api/v1/callbacks/77/answer?bot=beta", "alpha-key", "{}")
        .await;
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    let answer = api.get("/api/v1/webhook?bot=beta", "alpha-key").await;
    assert_eq!(answer.status, 403);
    let answer = api.get("/api/v1/webhook", "alpha-key").await;
    assert_eq!(answer.json().unwrap()["configured"], false);
    let answer = api.get("/api/v1/media/5:1?bot=beta", "alpha-key").await;
    assert_eq!(answer.status, 403);

    // Bots: a bot's key sees itself; the operator all, with queue depth.
    let answer = api.get("/api/v1/bots", "alpha-key").await;
    let bots = answer.json().unwrap()["bots"].clone();
    assert_eq!(bots.as_array().unwrap().len(), 1, "{bots}");
    assert_eq!(bots[0]["name"], "alpha");
    let answer = api.get("/api/v1/bots", "op-key").await;
    let bots = answer.json().unwrap()["bots"].clone();
    let names: Vec<&str> = bots
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    assert_eq!(bots[2]["state"], "disabled");
    assert_eq!(bots[0]["queue_depth"], 0);
    assert!(!bots.to_string().contains("1:a"), "{bots}");
    assert_eq!(
        api.post("/api/v1/reload", "alpha-key", "").await.status,
        403
    );
}

#[tokio::test]
async fn the_operator_names_the_bot_and_idempotency_keys_are_per_bot() {
    let api = Api::start().await;
    let answer = api.post(MESSAGES, "op-key", &message("x")).await;
    assert_eq!(answer.status, 400);
    assert!(
        error_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("?bot=NAME")
    );
    let answer = api
        .post(&format!("{MESSAGES}?bot=nobody"), "op-key", &message("x"))
        .await;
    assert_eq!(answer.status, 404);
    let answer = api
        .post(&format!("{MESSAGES}?bot=gamma"), "op-key", &message("x"))
        .await;
    assert_eq!(answer.status, 403);
    let id = api.enqueue_as_operator("alpha").await;
    let job = api.get(&format!("/api/v1/jobs/{id}"), "alpha-key").await;
    assert_eq!(job.status, 200);

    let first = api.enqueue_once("alpha-key").await;
    assert_eq!(api.enqueue_once("alpha-key").await, first);
    let other = api.enqueue_once("beta-key").await;
    assert_ne!(other, first);
    tokio::time::timeout(Duration::from_secs(5), api.queue.close())
        .await
        .unwrap();
}

impl Api {
    /// `POST /v1.0/message` with `body` and no key header.
    async fn cm(&self, body: &str) -> Answer {
        self.send(Method::POST, "/v1.0/message", &[], body).await
    }

    /// Enqueues with the idempotency key `same`.
    async fn enqueue_once(&self, key: &str) -> i64 {
        let headers = [("x-octopods-auth", key), ("idempotency-key", "same")];
        let answer = self
            .send(
                Method::POST,
                &format!("{MESSAGES}?wait=0"),
                &headers,
                &message("once"),
            )
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.json().unwrap()["job_id"].as_i64().unwrap()
    }

    async fn enqueue_as_operator(&self, bot: &str) -> i64 {
        let answer = self
            .post(
                &format!("{MESSAGES}?bot={bot}&wait=0"),
                "op-key",
                &message("by op"),
            )
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.json().unwrap()["job_id"].as_i64().unwrap()
    }
}

#[tokio::test]
async fn a_bots_own_respond_overrides_the_apis() {
    let api = Api::start().await;
    // A stand-in for the worker: sends whatever is due, as Telegram id 77.
    let done = CancellationToken::new();
    let sender = tokio::spawn({
        let queue = api.queue.clone();
        let done = done.clone();
        async move {
            while !done.is_cancelled() {
                for bot in ["alpha", "beta"] {
                    for job in queue.claim_due(bot, Timestamp::now(), 10).await.unwrap() {
                        queue
                            .mark_sent(job.id, vec![Some(77)], Timestamp::now())
                            .await
                            .unwrap();
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    // beta (`respond = "sent"`) answers as the Octopods seed once sent.
    let answer = api.post(MESSAGES, "beta-key", &message("for beta")).await;
    let body = answer.json().unwrap();
    assert_eq!(answer.status, 201, "{body}");
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["channel_message_id", "message_id", "request_id"],
        "{body}"
    );
    assert_eq!(body["channel_message_id"], "77");
    // alpha keeps `[api] respond`, "queued": 202 at once.
    let answer = api.post(MESSAGES, "alpha-key", &message("for alpha")).await;
    let body = answer.json().unwrap();
    assert_eq!(answer.status, 202, "{body}");
    assert_eq!(body["status"], "queued", "{body}");
    assert!(body["job_id"].is_i64(), "{body}");
    done.cancel();
    sender.await.unwrap();
}

#[tokio::test]
async fn another_bots_message_can_be_neither_edited_nor_deleted() {
    let api = Api::start().await;
    let alpha = api.enqueue("alpha-key", "for alpha").await;
    let beta = api.enqueue("beta-key", "for beta").await;
    let (alpha_message, beta_message) = (api.message_id(alpha).await, api.message_id(beta).await);
    let edit = |message: i64| format!("/api/v1/telegram/messages/{message}/edit?wait=0");
    let delete = |message: i64| format!("/api/v1/telegram/messages/{message}?wait=0");
    let as_key = |key: &'static str| [("x-octopods-auth", key)];
    // Another bot's message is as unknown as none (its key learns nothing).
    let answer = api
        .post(&edit(beta_message), "alpha-key", r#"{"text":"x"}"#)
        .await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    let error = error_of(&answer);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains(&format!("`{beta_message}`")),
        "{error}"
    );
    let answer = api
        .send(
            Method::DELETE,
            &delete(beta_message),
            &as_key("alpha-key"),
            "",
        )
        .await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    let answer = api
        .post(
            &format!("{}&bot=alpha", edit(beta_message)),
            "op-key",
            r#"{"text":"x"}"#,
        )
        .await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    // Nothing was queued for them.
    assert_eq!(api.job_ids("/api/v1/jobs", "op-key").await, [alpha, beta]);
    // Its own bot's key, and the operator naming that bot, may.
    let answer = api
        .post(&edit(alpha_message), "alpha-key", r#"{"text":"x"}"#)
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let answer = api
        .send(
            Method::DELETE,
            &delete(beta_message),
            &as_key("beta-key"),
            "",
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let answer = api
        .post(
            &format!("{}&bot=beta", edit(beta_message)),
            "op-key",
            r#"{"text":"x"}"#,
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
}

#[tokio::test]
async fn a_cm_product_token_is_its_bots_api_key() {
    let api = Api::start().await;
    let envelope = |token: &str, from: &str| {
        json!({"messages": {"authentication": {"producttoken": token}, "msg": [{
            "from": from, "to": [{"number": "1000001"}],
            "body": {"type": "auto", "content": "Your parcel is on its way"}}]}})
        .to_string()
    };
    // No X-Octopods-Auth on this path: the envelope's token is the key.
    let answer = api.cm(&envelope("alpha-key", "alpha")).await;
    let body = answer.json().unwrap();
    assert_eq!(answer.status, 200, "{body}");
    let job = body["messages"][0]["job_id"].as_i64().unwrap();
    assert_eq!(api.job_ids("/api/v1/jobs", "alpha-key").await, [job]);
    // `from` must be the token's bot.
    let answer = api.cm(&envelope("alpha-key", "beta")).await;
    let body = error_of(&answer);
    assert_eq!(answer.status, 400, "{body}");
    assert_eq!(body["messages"][0]["messageErrorCode"], 301, "{body}");
    let details = body["messages"][0]["messageDetails"].as_str().unwrap();
    assert!(
        details.contains("`beta`") && details.contains("`alpha`"),
        "{details}"
    );
    // A deprecated, a disabled bot's or an unknown key is CM's 101; an
    // operator key sends as the bot `from` names.
    for token in ["alpha-old", "gamma-key", "nope"] {
        let answer = api.cm(&envelope(token, "alpha")).await;
        let body = error_of(&answer);
        assert_eq!(
            (answer.status.as_u16(), &body["errorCode"]),
            (400, &json!(101)),
            "{token}: {body}"
        );
    }
    let answer = api.cm(&envelope("op-key", "beta")).await;
    let body = answer.json().unwrap();
    assert_eq!(answer.status, 200, "{body}");
    let job = body["messages"][0]["job_id"].as_i64().unwrap();
    assert_eq!(api.job_ids("/api/v1/jobs", "beta-key").await, [job]);
}
