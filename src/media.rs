//! Media sent by URL, as the Telegram fact sheet describes them.
//!
//! A client names a file by `mediaName`, `mediaUri` and `mimeType` (the fact
//! sheet's `richContent.conversation[].media` shape). telegate never downloads
//! it: Telegram fetches the URL itself. This module is the one place that
//! knows the fact sheet's table — which MIME types make which kind of media,
//! which file extensions fit them, how large each kind may be — and what each
//! kind becomes on the wire:
//!
//! | kind | MIME types | limit | `InputMedia` |
//! | --- | --- | --- | --- |
//! | image | `image/jpeg`, `image/png`, `image/webp` | 5 MB | `inputMediaPhotoExternal` |
//! | animation | `image/gif`, `video/mpeg` (without sound) | 20 MB | `inputMediaDocumentExternal` |
//! | video | `video/mp4` | 20 MB | `inputMediaDocumentExternal` |
//! | audio | `audio/mpeg` | 20 MB | `inputMediaDocumentExternal` |
//! | sticker | `image/webp` with `"sticker": true`, `application/x-tgsticker` (`.tgs`) | 20 MB | `inputMediaDocumentExternal` |
//! | document | anything else (other video types too) | 20 MB | `inputMediaDocumentExternal` |
//!
//! `inputMediaDocumentExternal` has no MIME type and no document attributes
//! in this layer (those exist only for uploaded files): Telegram tells an
//! animation, a video, an audio file or a sticker apart by the bytes it
//! fetches. The kind is therefore telegate's promise to the client — checked
//! here (extension, size) and stored with the job — not a field on the wire.

use grammers_tl_types as tl;
use serde::Serialize;

use crate::error::ApiError;
use crate::interactive::{self, Json, Object, Path};

/// One MiB; the fact sheet's "MB".
const MB: u64 = 1024 * 1024;
/// Largest image Telegram fetches by URL.
pub const IMAGE_MAX_BYTES: u64 = 5 * MB;
/// Largest file of any other kind Telegram fetches by URL.
pub const FILE_MAX_BYTES: u64 = 20 * MB;

/// The MIME type of Telegram's animated stickers (`.tgs`).
pub const TGS_MIME: &str = "application/x-tgsticker";

/// What a media item is, as the fact sheet sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Animation,
    Video,
    Audio,
    Sticker,
    Document,
}

impl MediaKind {
    /// The largest file of this kind, in bytes.
    pub fn max_bytes(self) -> u64 {
        match self {
            MediaKind::Image => IMAGE_MAX_BYTES,
            _ => FILE_MAX_BYTES,
        }
    }

    /// The kind a MIME type (lower case, without parameters) makes;
    /// `sticker` is the client's flag.
    pub fn of(mime: &str, sticker: bool) -> Self {
        match mime {
            "image/webp" if sticker => MediaKind::Sticker,
            TGS_MIME => MediaKind::Sticker,
            "image/jpeg" | "image/png" | "image/webp" => MediaKind::Image,
            "image/gif" | "video/mpeg" => MediaKind::Animation,
            "video/mp4" => MediaKind::Video,
            "audio/mpeg" => MediaKind::Audio,
            _ => MediaKind::Document,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Animation => "animation",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Sticker => "sticker",
            MediaKind::Document => "document",
        }
    }
}

/// The file extensions (lower case, without the dot) that fit a MIME type,
/// for the types telegate knows; `None` for a type it does not, whose name
/// then only needs some extension.
pub fn extensions(mime: &str) -> Option<&'static [&'static str]> {
    const TABLE: &[(&str, &[&str])] = &[
        ("image/jpeg", &["jpg", "jpeg", "jpe", "jfif"]),
        ("image/png", &["png"]),
        ("image/webp", &["webp"]),
        ("image/gif", &["gif"]),
        ("video/mpeg", &["mpeg", "mpg", "mpe", "m1v", "m2v"]),
        ("video/mp4", &["mp4", "m4v"]),
        ("video/quicktime", &["mov", "qt"]),
        ("video/webm", &["webm"]),
        ("video/x-msvideo", &["avi"]),
        ("video/x-matroska", &["mkv"]),
        ("audio/mpeg", &["mp3", "mpga", "mp2"]),
        ("audio/ogg", &["ogg", "oga", "opus"]),
        ("audio/mp4", &["m4a", "mp4"]),
        ("audio/wav", &["wav"]),
        ("audio/x-wav", &["wav"]),
        (TGS_MIME, &["tgs"]),
        ("application/pdf", &["pdf"]),
        ("application/zip", &["zip"]),
        ("application/json", &["json"]),
        ("application/xml", &["xml"]),
        ("application/msword", &["doc", "dot"]),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            &["docx"],
        ),
        ("application/vnd.ms-excel", &["xls"]),
        (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &["xlsx"],
        ),
        ("application/vnd.ms-powerpoint", &["ppt"]),
        (
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            &["pptx"],
        ),
        ("text/plain", &["txt", "text", "log"]),
        ("text/csv", &["csv"]),
        ("text/html", &["html", "htm"]),
    ];
    TABLE
        .iter()
        .find(|(known, _)| *known == mime)
        .map(|(_, extensions)| *extensions)
}

/// A validated media item, in the normal form the queue stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Media {
    #[serde(rename = "mediaName")]
    name: String,
    #[serde(rename = "mediaUri")]
    uri: String,
    /// Lower case, without parameters.
    #[serde(rename = "mimeType")]
    mime_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sticker: bool,
    /// Derived; stored so that a reader of the job sees what it sends.
    kind: MediaKind,
}

impl Media {
    /// The fields of a media object.
    pub const FIELDS: &[&str] = &[
        "mediaName",
        "mediaUri",
        "mimeType",
        "size",
        "sticker",
        "kind",
    ];

    /// Reads and checks one media object at `path`. A `kind` field (as the
    /// stored form has) must agree with what the MIME type makes.
    pub(crate) fn from_tree(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let name = object.str("mediaName")?;
        let uri = object.str("mediaUri")?;
        let mime_type = mime_type(object.str("mimeType")?, &object.path_of("mimeType"))?;
        let sticker = object.flag("sticker")?;
        let kind = MediaKind::of(&mime_type, sticker);
        if sticker && kind != MediaKind::Sticker {
            return Err(object.path_of("sticker").broken(format_args!(
                "is true, but only `image/webp` or `{TGS_MIME}` (.tgs) media can be stickers, \
                 not `{mime_type}`"
            )));
        }
        file_name(name, &mime_type, &object)?;
        interactive::http_url(uri, &object.path_of("mediaUri"))?;
        let size = object
            .get("size")
            .map(|size| file_size(size, kind, &object.path_of("size")))
            .transpose()?;
        if let Some(stored) = object.opt_str("kind")?
            && stored != kind.as_str()
        {
            return Err(object.path_of("kind").broken(format_args!(
                "is `{}`, but `{mime_type}` makes `{}`",
                interactive::echo(stored),
                kind.as_str()
            )));
        }
        Ok(Media {
            name: name.to_owned(),
            uri: uri.to_owned(),
            mime_type,
            size,
            sticker,
            kind,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn mime_type(&self) -> &str {
        &self.mime_type
    }

    pub fn size(&self) -> Option<u64> {
        self.size
    }

    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    /// What `messages.sendMedia` sends: the URL for Telegram to fetch, as a
    /// photo for images and as a document for everything else.
    pub fn to_tl(&self) -> tl::enums::InputMedia {
        let url = self.uri.clone();
        match self.kind {
            MediaKind::Image => tl::types::InputMediaPhotoExternal {
                spoiler: false,
                url,
                ttl_seconds: None,
            }
            .into(),
            _ => tl::types::InputMediaDocumentExternal {
                spoiler: false,
                url,
                ttl_seconds: None,
                video_cover: None,
                video_timestamp: None,
            }
            .into(),
        }
    }
}

/// `mimeType`: `type/subtype`, read case-insensitively; parameters
/// (`; charset=...`) are dropped.
fn mime_type(text: &str, path: &Path<'_>) -> Result<String, ApiError> {
    let essence = text.split(';').next().unwrap_or("").trim();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) => Ok(essence.to_ascii_lowercase()),
        _ => Err(path.broken(format_args!(
            "is `{}`, which is not a MIME type like `image/jpeg`",
            interactive::echo(text)
        ))),
    }
}

/// `mediaName`: not blank, and ending in an extension that fits the MIME
/// type (any extension, for a type telegate does not know).
fn file_name(name: &str, mime: &str, object: &Object<'_, '_>) -> Result<(), ApiError> {
    let path = object.path_of("mediaName");
    interactive::not_blank(name, &path)?;
    let extension = name
        .rsplit_once('.')
        .map(|(stem, extension)| (stem, extension.to_ascii_lowercase()))
        .filter(|(stem, extension)| !stem.is_empty() && !extension.is_empty())
        .map(|(_, extension)| extension);
    let fits = match (&extension, extensions(mime)) {
        (Some(extension), Some(allowed)) => allowed.contains(&extension.as_str()),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if fits {
        return Ok(());
    }
    let expected = match extensions(mime) {
        Some(allowed) => format!("one of .{}", allowed.join(", .")),
        None => "a file extension".to_owned(),
    };
    Err(path.broken(format_args!(
        "is `{}`, which does not end in an extension that fits `mimeType` `{mime}`; \
         expected {expected}",
        interactive::echo(name)
    )))
}

/// `size`: the file's length in bytes, at least 1 and at most the kind's
/// limit.
fn file_size(value: Json<'_>, kind: MediaKind, path: &Path<'_>) -> Result<u64, ApiError> {
    let size = interactive::as_i64(value, path)?;
    let max = kind.max_bytes();
    match u64::try_from(size) {
        Ok(size) if (1..=max).contains(&size) => Ok(size),
        _ => Err(path.broken(format_args!(
            "is {size} bytes; {} media must be 1 to {max} bytes ({} MB) when fetched by URL",
            kind.as_str(),
            max / MB
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::interactive::Document;

    fn read(json: &str) -> Result<Media, ApiError> {
        let document = Document::parse(json.as_bytes()).unwrap();
        let root = Path::root("media[0]");
        Media::from_tree(document.root(), &root)
    }

    fn item(name: &str, mime: &str) -> String {
        format!(
            r#"{{"mediaName":"{name}","mediaUri":"https://cdn.example.com/f","mimeType":"{mime}"}}"#
        )
    }

    #[test]
    fn each_mime_type_makes_its_kind() {
        for (name, mime, kind) in [
            ("a.jpg", "image/jpeg", MediaKind::Image),
            ("a.PNG", "image/png", MediaKind::Image),
            ("a.webp", "image/webp", MediaKind::Image),
            ("a.gif", "image/gif", MediaKind::Animation),
            ("a.mpeg", "video/mpeg", MediaKind::Animation),
            ("a.mp4", "video/mp4", MediaKind::Video),
            ("a.mov", "video/quicktime", MediaKind::Document),
            ("a.mp3", "audio/mpeg", MediaKind::Audio),
            ("a.ogg", "audio/ogg", MediaKind::Document),
            ("a.tgs", "application/x-tgsticker", MediaKind::Sticker),
            ("a.pdf", "application/pdf", MediaKind::Document),
            ("a.bin", "application/x-made-up", MediaKind::Document),
            ("a.jpg", "Image/JPEG; q=1", MediaKind::Image),
        ] {
            let media = read(&item(name, mime)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(media.kind(), kind, "{name} {mime}");
        }
        let sticker = read(
            r#"{"mediaName":"s.webp","mediaUri":"https://x.example/s","mimeType":"image/webp","sticker":true}"#,
        )
        .unwrap();
        assert_eq!(sticker.kind(), MediaKind::Sticker);
        assert_eq!(sticker.mime_type(), "image/webp");
    }

    #[test]
    fn images_go_as_photos_and_the_rest_as_documents_by_url() {
        let photo = read(&item("a.jpg", "image/jpeg")).unwrap();
        assert_eq!(
            photo.to_tl(),
            tl::types::InputMediaPhotoExternal {
                spoiler: false,
                url: "https://cdn.example.com/f".into(),
                ttl_seconds: None
            }
            .into()
        );
        for (name, mime) in [
            ("a.gif", "image/gif"),
            ("a.mp4", "video/mp4"),
            ("a.pdf", "application/pdf"),
        ] {
            let tl::enums::InputMedia::DocumentExternal(document) =
                read(&item(name, mime)).unwrap().to_tl()
            else {
                panic!("{name} is not a document");
            };
            assert_eq!(document.url, "https://cdn.example.com/f");
        }
    }

    #[test]
    fn the_name_must_end_in_an_extension_of_the_mime_type() {
        for (name, mime) in [
            ("photo.png", "image/jpeg"),
            ("photo", "image/jpeg"),
            (".jpg", "image/jpeg"),
            ("photo.", "image/jpeg"),
            ("clip.mp4", "video/mpeg"),
            ("s.webp", "application/x-tgsticker"),
            ("noext", "application/x-made-up"),
        ] {
            let err = read(&item(name, mime)).unwrap_err();
            assert_eq!(err.code, ErrorCode::Rejected, "{name}");
            assert!(
                err.message.starts_with("`media[0].mediaName`"),
                "{}",
                err.message
            );
            assert!(
                err.message.contains(name) && err.message.contains(mime),
                "{}",
                err.message
            );
        }
        let blank = read(&item(" ", "image/jpeg")).unwrap_err();
        assert_eq!(blank.code, ErrorCode::Rejected);
    }

    #[test]
    fn mime_types_uris_and_flags_are_checked() {
        let err = read(&item("a.jpg", "jpeg")).unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
        assert!(
            err.message.contains("`media[0].mimeType`"),
            "{}",
            err.message
        );

        let err = read(
            r#"{"mediaName":"a.jpg","mediaUri":"ftp://x.example/a.jpg","mimeType":"image/jpeg"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
        assert!(
            err.message.contains("`media[0].mediaUri`"),
            "{}",
            err.message
        );

        let err = read(r#"{"mediaName":"a.gif","mediaUri":"https://x.example/a","mimeType":"image/gif","sticker":true}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
        assert!(
            err.message.contains("`media[0].sticker`"),
            "{}",
            err.message
        );

        let err = read(r#"{"mediaName":"a.gif","mediaUri":"https://x.example/a","mimeType":"image/gif","url":"x"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.contains("`media[0].url`"), "{}", err.message);

        let err = read(r#"{"mediaUri":"https://x.example/a","mimeType":"image/gif"}"#).unwrap_err();
        assert_eq!(err, ApiError::missing("media[0].mediaName"));

        let err = read(r#"{"mediaName":"a.gif","mediaUri":"https://x.example/a","mimeType":"image/gif","kind":"video"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
    }

    #[test]
    fn sizes_are_limited_by_kind() {
        let sized = |name: &str, mime: &str, size: i64| {
            read(&format!(
                r#"{{"mediaName":"{name}","mediaUri":"https://x.example/f","mimeType":"{mime}","size":{size}}}"#
            ))
        };
        assert_eq!(
            sized("a.jpg", "image/jpeg", 5 * 1024 * 1024)
                .unwrap()
                .size(),
            Some(5 * MB)
        );
        let err = sized("a.jpg", "image/jpeg", 5 * 1024 * 1024 + 1).unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
        assert!(
            err.message.contains("`media[0].size`") && err.message.contains("5 MB"),
            "{}",
            err.message
        );
        assert!(sized("a.gif", "image/gif", 20 * 1024 * 1024).is_ok());
        assert!(sized("a.gif", "image/gif", 20 * 1024 * 1024 + 1).is_err());
        assert!(sized("a.pdf", "application/pdf", 6 * 1024 * 1024).is_ok());
        assert!(sized("a.pdf", "application/pdf", 0).is_err());
        assert!(sized("a.pdf", "application/pdf", -1).is_err());
        let err = read(r#"{"mediaName":"a.pdf","mediaUri":"https://x.example/a","mimeType":"application/pdf","size":"1"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
    }

    #[test]
    fn the_stored_form_reads_back_the_same() {
        let media = read(
            r#"{"mediaName":"s.WEBP","mediaUri":"https://x.example/s","mimeType":"IMAGE/webp","sticker":true,"size":10}"#,
        )
        .unwrap();
        let stored = serde_json::to_string(&media).unwrap();
        assert_eq!(
            stored,
            r#"{"mediaName":"s.WEBP","mediaUri":"https://x.example/s","mimeType":"image/webp","size":10,"sticker":true,"kind":"sticker"}"#
        );
        assert_eq!(read(&stored).unwrap(), media);
    }
}
