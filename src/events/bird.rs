//! Events in the shapes of Bird's Channels API, so consumers written for it
//! read telegate's stream unchanged.
//!
//! Inbound messages are Bird message objects (`body.type` = `text`, `image`,
//! `file`, `location`, `contact`, `unsupported`); a click is the `clicked`
//! postback (`results[]`); job results are outgoing message objects with
//! `status` `sent` or `failed`. Every event carries a top-level `id` derived
//! from what happened, so a replay after a crash repeats the same id.

use serde_json::{Value, json};

use super::NewEvent;
use crate::queue::{Job, JobState, Timestamp};

/// Where a message came from and went to.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub bot_id: i64,
    /// The Bot API chat id.
    pub chat: i64,
    /// Who wrote it (the chat itself in a private chat).
    pub sender: i64,
    pub sender_name: Option<String>,
    pub message_id: i32,
    /// When Telegram says it was sent.
    pub date: Timestamp,
}

impl Origin {
    /// `telegram:{bot_id}:{chat_id}:{message_id}`: also the event id.
    pub fn platform_reference(&self) -> String {
        platform_reference(self.bot_id, self.chat, i64::from(self.message_id))
    }
}

fn platform_reference(bot_id: i64, chat: i64, message_id: i64) -> String {
    format!("telegram:{bot_id}:{chat}:{message_id}")
}

/// The `body` of an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Text(String),
    Image {
        media_url: String,
        caption: Option<String>,
    },
    File {
        media_url: String,
        content_type: String,
        filename: Option<String>,
        caption: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
    },
    Contact {
        phone_number: String,
        first_name: String,
        last_name: String,
        user_id: Option<i64>,
    },
    /// Something telegate does not turn into a message body, by TL name.
    Unsupported(&'static str),
}

impl Body {
    fn to_json(&self) -> Value {
        match self {
            Body::Text(text) => json!({"type": "text", "text": {"text": text}}),
            Body::Image { media_url, caption } => json!({
                "type": "image",
                "image": {"images": [with_caption(json!({"mediaUrl": media_url}), caption)]},
            }),
            Body::File {
                media_url,
                content_type,
                filename,
                caption,
            } => {
                let mut file = json!({"contentType": content_type, "mediaUrl": media_url});
                if let Some(name) = filename {
                    file["filename"] = json!(name);
                    file["altText"] = json!(name);
                }
                json!({"type": "file", "file": {"files": [with_caption(file, caption)]}})
            }
            Body::Location {
                latitude,
                longitude,
            } => json!({
                "type": "location",
                "location": {
                    "coordinates": {"latitude": latitude, "longitude": longitude},
                    "location": {"address": "", "label": label(*latitude, *longitude)},
                },
            }),
            Body::Contact {
                phone_number,
                first_name,
                last_name,
                user_id,
            } => json!({
                "type": "contact",
                "contact": {
                    "phoneNumber": phone_number,
                    "firstName": first_name,
                    "lastName": last_name,
                    "userId": user_id.map(|id| id.to_string()),
                },
            }),
            Body::Unsupported(name) => json!({"type": "unsupported", "unsupported": {"tl": name}}),
        }
    }
}

fn with_caption(mut media: Value, caption: &Option<String>) -> Value {
    if let Some(caption) = caption.as_deref().filter(|c| !c.is_empty()) {
        media["caption"] = json!(caption);
    }
    media
}

/// `52° 22' 38.95" N, 4° 54' 3.69" E`, as the seed labels coordinates.
pub fn label(latitude: f64, longitude: f64) -> String {
    fn dms(value: f64, positive: char, negative: char) -> String {
        let hemisphere = if value < 0.0 { negative } else { positive };
        let value = value.abs();
        let degrees = value.trunc();
        let minutes_total = (value - degrees) * 60.0;
        let minutes = minutes_total.trunc();
        let seconds = (minutes_total - minutes) * 60.0;
        format!("{degrees}° {minutes}' {seconds:.2}\" {hemisphere}")
    }
    format!("{}, {}", dms(latitude, 'N', 'S'), dms(longitude, 'E', 'W'))
}

/// An inbound message event.
pub fn message(origin: &Origin, body: &Body) -> NewEvent {
    let id = origin.platform_reference();
    let at = origin.date.to_string();
    let mut sender = json!({
        "identifierKey": format!("telegram:{}", origin.bot_id),
        "identifierValue": origin.chat.to_string(),
        "annotations": {"name": origin.sender_name},
    });
    if origin.sender != origin.chat {
        sender["platformAddress"] = json!(origin.sender.to_string());
    }
    let event = json!({
        "id": id,
        "channelId": format!("telegram:{}", origin.bot_id),
        "sender": {"contact": sender},
        "receiver": {"connector": {"identifierValue": origin.bot_id.to_string()}},
        "body": body.to_json(),
        "meta": {"extraInformation": {"ChatID": origin.chat.to_string()}},
        "reference": "",
        "parts": [{"platformReference": id}],
        "status": "delivered",
        "reason": "",
        "direction": "incoming",
        "context": {},
        "chargeableUnits": 1,
        "lastStatusAt": at,
        "createdAt": at,
        "updatedAt": at,
        "batchId": null,
    });
    NewEvent {
        id,
        chat: origin.chat,
        body: event,
    }
}

/// A click on an inline button.
#[derive(Debug, Clone, PartialEq)]
pub struct Click {
    pub bot_id: i64,
    pub chat: i64,
    pub user_id: i64,
    pub query_id: i64,
    /// Telegram's id of the message the button is under.
    pub msg_id: i32,
    pub data: Vec<u8>,
    /// telegate's id of that message, when telegate sent it.
    pub message_id: Option<i64>,
    /// The `reference` and `metadata` of the job that sent it.
    pub reference: Option<String>,
    pub job_metadata: Option<Value>,
    pub at: Timestamp,
}

/// The `clicked` postback of a click; its id is `callback:{query_id}`.
pub fn clicked(click: &Click) -> NewEvent {
    let id = format!("callback:{}", click.query_id);
    let payload = String::from_utf8_lossy(&click.data).into_owned();
    let event = json!({
        "id": id,
        "results": [{
            "id": id,
            "type": "clicked",
            "createdAt": click.at.to_string(),
            "messageId": click.message_id.map(|m| m.to_string()),
            "channelId": format!("telegram:{}", click.bot_id),
            "platformId": "telegram",
            "messageReference": platform_reference(click.bot_id, click.chat, i64::from(click.msg_id)),
            "messagePartsCount": 1,
            "sender": {"identifierValue": click.chat.to_string(),
                       "platformAddress": click.user_id.to_string()},
            "receiver": {"contacts": [{
                "id": "00000000-0000-0000-0000-000000000000",
                "identifierKey": "",
                "identifierValue": click.bot_id.to_string(),
                "platformAddress": click.bot_id.to_string(),
            }]},
            "details": format!("{payload}_clicked"),
            "metadata": {"button": {"payload": payload}, "job": click.job_metadata},
            "reference": click.reference,
            "query_id": click.query_id.to_string(),
        }],
    });
    NewEvent {
        id,
        chat: click.chat,
        body: event,
    }
}

/// Flags a click event as a repeat: a later click of a `once` button, which
/// changed nothing.
pub fn flag_repeat(event: &mut NewEvent) {
    if let Some(result) = event.body["results"].get_mut(0) {
        result["repeat"] = Value::Bool(true);
    }
}

/// The result of an outbound job, `sent` or `failed`; its id is
/// `job:{job_id}:{state}`. `None` for a job that has not settled.
pub fn job_result(job: &Job) -> Option<NewEvent> {
    let status = match job.state {
        JobState::Sent | JobState::Failed | JobState::Cancelled => job.state.as_str(),
        JobState::Queued | JobState::Sending => return None,
    };
    let id = format!("job:{}:{status}", job.id.get());
    let chat = job.chat.get();
    let parts: Vec<Value> = job
        .parts
        .iter()
        .map(|part| {
            json!({
                "messageId": part.message_id.to_string(),
                "channelMessageId": part.channel_message_id.map(|id| id.to_string()),
            })
        })
        .collect();
    let at = job.updated_at.to_string();
    // The client's own `reference` if it gave one, else the enqueue's
    // request id.
    let (reference, metadata) = crate::send_options::correlation(&job.payload);
    let event = json!({
        "id": id,
        "jobId": job.id.get().to_string(),
        "reference": reference.unwrap_or_else(|| job.request_id.clone()),
        "metadata": metadata,
        "receiver": {"contacts": [{"identifierValue": chat.to_string()}]},
        "meta": {"extraInformation": {"ChatID": chat.to_string()}},
        "parts": parts,
        "status": status,
        "reason": job.error.as_ref().map_or("", |e| e.message.as_str()),
        "error": job.error,
        "direction": "outgoing",
        "createdAt": job.created_at.to_string(),
        "lastStatusAt": at,
        "updatedAt": at,
    });
    Some(NewEvent {
        id,
        chat,
        body: event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            bot_id: 7933779519,
            chat: 1033247360,
            sender: 1033247360,
            sender_name: Some("Test user".into()),
            message_id: 182,
            date: Timestamp::from_millis(1_728_045_105_000),
        }
    }

    #[test]
    fn a_text_message_has_the_seed_shape() {
        let event = message(&origin(), &Body::Text("Sample text message".into()));
        assert_eq!(event.id, "telegram:7933779519:1033247360:182");
        assert_eq!(event.chat, 1033247360);
        let body = &event.body;
        assert_eq!(body["body"]["text"]["text"], "Sample text message");
        assert_eq!(body["sender"]["contact"]["identifierValue"], "1033247360");
        assert_eq!(
            body["sender"]["contact"]["annotations"]["name"],
            "Test user"
        );
        assert_eq!(
            body["receiver"]["connector"]["identifierValue"],
            "7933779519"
        );
        assert_eq!(
            body["parts"][0]["platformReference"],
            "telegram:7933779519:1033247360:182"
        );
        assert_eq!(body["direction"], "incoming");
        assert_eq!(body["createdAt"], "2024-10-04T12:31:45.000Z");
    }

    #[test]
    fn a_location_is_labelled_like_the_seed() {
        assert_eq!(
            label(52.377486, 4.901026),
            "52° 22' 38.95\" N, 4° 54' 3.69\" E"
        );
        assert_eq!(label(-33.5, -70.25), "33° 30' 0.00\" S, 70° 15' 0.00\" W");
    }

    #[test]
    fn a_click_is_a_clicked_postback_with_its_query_id() {
        let event = clicked(&Click {
            bot_id: 7933779519,
            chat: 1033247360,
            user_id: 1033247360,
            query_id: -42,
            msg_id: 174,
            data: b"postback-payload-2".to_vec(),
            message_id: Some(9),
            reference: Some("order-7".into()),
            job_metadata: Some(json!({"crm": 1})),
            at: Timestamp::from_millis(0),
        });
        assert_eq!(event.id, "callback:-42");
        let result = &event.body["results"][0];
        assert_eq!(result["type"], "clicked");
        assert_eq!(
            result["metadata"]["button"]["payload"],
            "postback-payload-2"
        );
        assert_eq!(
            result["messageReference"],
            "telegram:7933779519:1033247360:174"
        );
        assert_eq!(result["messageId"], "9");
        assert_eq!(result["query_id"], "-42");
        assert_eq!(result["reference"], "order-7");
        assert_eq!(result["metadata"]["job"], json!({"crm": 1}));
    }
}
