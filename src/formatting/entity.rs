//! One formatting entity, in the Bot API's JSON shape (`MessageEntity`) and
//! as the MTProto constructor it is sent as.

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::interactive::{Json, Object, Path, as_i64};

/// What an entity does to its stretch of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Mention,
    Hashtag,
    Cashtag,
    BotCommand,
    Url,
    Email,
    PhoneNumber,
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    Blockquote,
    ExpandableBlockquote,
    Code,
    Pre,
    TextLink,
    TextMention,
    CustomEmoji,
}

impl EntityKind {
    const ALL: [EntityKind; 19] = [
        EntityKind::Mention,
        EntityKind::Hashtag,
        EntityKind::Cashtag,
        EntityKind::BotCommand,
        EntityKind::Url,
        EntityKind::Email,
        EntityKind::PhoneNumber,
        EntityKind::Bold,
        EntityKind::Italic,
        EntityKind::Underline,
        EntityKind::Strikethrough,
        EntityKind::Spoiler,
        EntityKind::Blockquote,
        EntityKind::ExpandableBlockquote,
        EntityKind::Code,
        EntityKind::Pre,
        EntityKind::TextLink,
        EntityKind::TextMention,
        EntityKind::CustomEmoji,
    ];

    /// The Bot API's name (`"bold"`, `"text_link"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Mention => "mention",
            EntityKind::Hashtag => "hashtag",
            EntityKind::Cashtag => "cashtag",
            EntityKind::BotCommand => "bot_command",
            EntityKind::Url => "url",
            EntityKind::Email => "email",
            EntityKind::PhoneNumber => "phone_number",
            EntityKind::Bold => "bold",
            EntityKind::Italic => "italic",
            EntityKind::Underline => "underline",
            EntityKind::Strikethrough => "strikethrough",
            EntityKind::Spoiler => "spoiler",
            EntityKind::Blockquote => "blockquote",
            EntityKind::ExpandableBlockquote => "expandable_blockquote",
            EntityKind::Code => "code",
            EntityKind::Pre => "pre",
            EntityKind::TextLink => "text_link",
            EntityKind::TextMention => "text_mention",
            EntityKind::CustomEmoji => "custom_emoji",
        }
    }

    /// Bold, italic, underline, strikethrough and spoiler mix with
    /// anything but code.
    fn is_style(self) -> bool {
        matches!(
            self,
            EntityKind::Bold
                | EntityKind::Italic
                | EntityKind::Underline
                | EntityKind::Strikethrough
                | EntityKind::Spoiler
        )
    }

    fn is_quote(self) -> bool {
        matches!(
            self,
            EntityKind::Blockquote | EntityKind::ExpandableBlockquote
        )
    }

    /// The Bot API's nesting rules, from the outer entity's side: styles
    /// contain and are contained by anything except `pre` and `code`;
    /// blockquotes are not nested; all others contain nothing else.
    pub(super) fn may_contain(self, inner: EntityKind) -> bool {
        match self {
            EntityKind::Pre | EntityKind::Code => false,
            outer if outer.is_quote() => !inner.is_quote(),
            outer if outer.is_style() => true,
            // Links and mentions may carry styles.
            _ => inner.is_style(),
        }
    }
}

/// A user named by a `text_mention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityUser {
    pub id: i64,
}

/// One entity: a kind over `length` UTF-16 units from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: EntityKind,
    pub offset: usize,
    pub length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_emoji_id: Option<String>,
}

impl Entity {
    const FIELDS: &[&str] = &[
        "type",
        "offset",
        "length",
        "url",
        "user",
        "language",
        "custom_emoji_id",
    ];

    /// An entity of `kind` whose extent is set later.
    pub(super) fn new(kind: EntityKind) -> Self {
        Entity {
            kind,
            offset: 0,
            length: 0,
            url: None,
            user: None,
            language: None,
            custom_emoji_id: None,
        }
    }

    /// Where the entity ends, in UTF-16 units.
    pub fn end(&self) -> usize {
        self.offset + self.length
    }

    /// Reads a Bot API `MessageEntity` object at `path`.
    pub(crate) fn from_tree(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let name = object.str("type")?;
        let kind = EntityKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = EntityKind::ALL.iter().map(|k| k.as_str()).collect();
                object.path_of("type").unknown_value(name, &names)
            })?;
        let offset = units(&object, "offset", 0)?;
        let length = units(&object, "length", 1)?;
        let mut entity = Entity::new(kind);
        entity.offset = offset;
        entity.length = length;
        entity.url = object.opt_str("url")?.map(str::to_owned);
        entity.language = object.opt_str("language")?.map(str::to_owned);
        entity.custom_emoji_id = object.opt_str("custom_emoji_id")?.map(str::to_owned);
        if let Some(user) = object.get("user") {
            let path = object.path_of("user");
            let user = Object::any_fields(user, &path)?;
            let id = as_i64(user.required("id")?, &user.path_of("id"))?;
            entity.user = Some(EntityUser { id });
        }
        let needs = |field: &'static str, given: bool| {
            if given {
                Ok(())
            } else {
                Err(ApiError {
                    code: ErrorCode::Missing,
                    message: format!(
                        "missing required field: `{}` (a `{name}` entity needs it)",
                        object.path_of(field)
                    ),
                })
            }
        };
        match kind {
            EntityKind::TextLink => needs("url", entity.url.is_some())?,
            EntityKind::TextMention => needs("user", entity.user.is_some())?,
            EntityKind::CustomEmoji => needs("custom_emoji_id", entity.custom_emoji_id.is_some())?,
            _ => {}
        }
        Ok(entity)
    }

    /// The MTProto entity sent with the text.
    pub fn to_tl(&self) -> tl::enums::MessageEntity {
        // Offsets beyond i32 cannot pass the 4096-unit text limit.
        let offset = i32::try_from(self.offset).unwrap_or(i32::MAX);
        let length = i32::try_from(self.length).unwrap_or(i32::MAX);
        use tl::types as t;
        match self.kind {
            EntityKind::Mention => t::MessageEntityMention { offset, length }.into(),
            EntityKind::Hashtag => t::MessageEntityHashtag { offset, length }.into(),
            EntityKind::Cashtag => t::MessageEntityCashtag { offset, length }.into(),
            EntityKind::BotCommand => t::MessageEntityBotCommand { offset, length }.into(),
            EntityKind::Url => t::MessageEntityUrl { offset, length }.into(),
            EntityKind::Email => t::MessageEntityEmail { offset, length }.into(),
            EntityKind::PhoneNumber => t::MessageEntityPhone { offset, length }.into(),
            EntityKind::Bold => t::MessageEntityBold { offset, length }.into(),
            EntityKind::Italic => t::MessageEntityItalic { offset, length }.into(),
            EntityKind::Underline => t::MessageEntityUnderline { offset, length }.into(),
            EntityKind::Strikethrough => t::MessageEntityStrike { offset, length }.into(),
            EntityKind::Spoiler => t::MessageEntitySpoiler { offset, length }.into(),
            EntityKind::Blockquote | EntityKind::ExpandableBlockquote => {
                t::MessageEntityBlockquote {
                    collapsed: self.kind == EntityKind::ExpandableBlockquote,
                    offset,
                    length,
                }
                .into()
            }
            EntityKind::Code => t::MessageEntityCode { offset, length }.into(),
            EntityKind::Pre => t::MessageEntityPre {
                offset,
                length,
                language: self.language.clone().unwrap_or_default(),
            }
            .into(),
            EntityKind::TextLink => t::MessageEntityTextUrl {
                offset,
                length,
                url: self.url.clone().unwrap_or_default(),
            }
            .into(),
            EntityKind::TextMention => t::InputMessageEntityMentionName {
                offset,
                length,
                user_id: t::InputUser {
                    user_id: self.user.as_ref().map_or(0, |user| user.id),
                    access_hash: 0,
                }
                .into(),
            }
            .into(),
            EntityKind::CustomEmoji => t::MessageEntityCustomEmoji {
                offset,
                length,
                document_id: self
                    .custom_emoji_id
                    .as_deref()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or(0),
            }
            .into(),
        }
    }
}

/// A count of UTF-16 units, at least `min`.
fn units(object: &Object<'_, '_>, key: &'static str, min: i64) -> Result<usize, ApiError> {
    let path = object.path_of(key);
    let value = as_i64(object.required(key)?, &path)?;
    usize::try_from(value)
        .ok()
        .filter(|_| value >= min)
        .ok_or_else(|| path.broken(format_args!("must be at least {min}, got {value}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::interactive::Document;

    fn read(value: serde_json::Value) -> Result<Entity, ApiError> {
        let document = Document::from_value(&value);
        Entity::from_tree(document.root(), &Path::root("entities[0]"))
    }

    #[test]
    fn reads_the_bot_api_shape_and_serializes_it_back() {
        let given = json!({"type": "text_link", "offset": 2, "length": 3, "url": "https://e.com"});
        let entity = read(given.clone()).unwrap();
        assert_eq!(serde_json::to_value(&entity).unwrap(), given);
        assert_eq!(
            entity.to_tl(),
            tl::types::MessageEntityTextUrl {
                offset: 2,
                length: 3,
                url: "https://e.com".into()
            }
            .into()
        );
    }

    #[test]
    fn refuses_unknown_types_missing_fields_and_empty_lengths() {
        let err = read(json!({"type": "blink", "offset": 0, "length": 1})).unwrap_err();
        assert!(err.message.contains("entities[0].type"), "{}", err.message);
        let err = read(json!({"type": "text_link", "offset": 0, "length": 1})).unwrap_err();
        assert!(err.message.contains("entities[0].url"), "{}", err.message);
        let err = read(json!({"type": "bold", "offset": 0, "length": 0})).unwrap_err();
        assert!(err.message.contains("at least 1"), "{}", err.message);
        let err = read(json!({"type": "bold", "offset": -1, "length": 2})).unwrap_err();
        assert!(
            err.message.contains("entities[0].offset"),
            "{}",
            err.message
        );
    }
}
