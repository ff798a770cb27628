//! `parse_mode: "MarkdownV2"`, by the Bot API's rules: `*bold*`,
//! `_italic_`, `__underline__` (a `__` is always taken greedily, left to
//! right), `~strikethrough~`, `||spoiler||`, `[text](url)`, `[text](tg://user?id=N)`,
//! `![👍](tg://emoji?id=N)`, `` `code` ``, ```` ```language ```` blocks, `>`
//! block quotation lines (expandable when the last ends in `||`; `**>`, an
//! empty bold, starts a quotation right after another). Any
//! character from code 1 to 126 may be escaped with `\`; outside entities
//! `_*[]()~`>#+-=|{}.!` must be; inside `code`/`pre` every `` ` `` and `\`
//! must be, inside a link's `(…)` every `)` and `\`.

use super::{Builder, Cursor, Entity, EntityKind, FormattedText, MarkupError, Spot};

const RESERVED: &str = "_*[]()~`>#+-=|{}.!";
const MENTION_PREFIX: &str = "tg://user?id=";
const EMOJI_PREFIX: &str = "tg://emoji?id=";

pub(super) fn parse(source: &str) -> Result<FormattedText, MarkupError> {
    let mut out = Builder::new(source.len());
    let mut cursor = Cursor::new(source);
    while cursor.peek().is_some() {
        if cursor.at_line_start() {
            quote_line_start(&mut out, &mut cursor)?;
        }
        let at = cursor.spot;
        let Some(c) = cursor.peek() else {
            break;
        };
        match c {
            '\\' => {
                cursor.bump();
                out.push(escaped(&mut cursor, at)?);
            }
            '\n' => {
                cursor.bump();
                if is_quote(out.innermost()) && !cursor.starts_with(">") {
                    out.close(EntityKind::Blockquote, at)?;
                }
                out.push('\n');
            }
            '*' => {
                cursor.bump();
                toggle(&mut out, EntityKind::Bold, at)?;
            }
            '_' if cursor.starts_with("__") => {
                cursor.skip("__");
                toggle(&mut out, EntityKind::Underline, at)?;
            }
            '_' => {
                cursor.bump();
                toggle(&mut out, EntityKind::Italic, at)?;
            }
            '~' => {
                cursor.bump();
                toggle(&mut out, EntityKind::Strikethrough, at)?;
            }
            '|' if cursor.starts_with("||") => {
                cursor.skip("||");
                let ends_line = matches!(cursor.peek(), None | Some('\n'));
                if ends_line && is_quote(out.innermost()) {
                    // The expandability mark ends the quotation.
                    let index = out.close(EntityKind::Blockquote, at)?;
                    out.entities[index].kind = EntityKind::ExpandableBlockquote;
                } else {
                    toggle(&mut out, EntityKind::Spoiler, at)?;
                }
            }
            '`' if cursor.starts_with("```") => pre(&mut out, &mut cursor, at)?,
            '`' => code(&mut out, &mut cursor, at)?,
            '!' if cursor.peek_second() == Some('[') => {
                cursor.skip("![");
                out.open(Entity::new(EntityKind::CustomEmoji), at)?;
            }
            '[' => {
                cursor.bump();
                out.open(Entity::new(EntityKind::TextLink), at)?;
            }
            ']' => {
                cursor.bump();
                link_end(&mut out, &mut cursor, at)?;
            }
            c if RESERVED.contains(c) => {
                return Err(at.error(format!(
                    "character `{c}` is reserved and must be escaped with a preceding `\\`"
                )));
            }
            c => {
                cursor.bump();
                out.push(c);
            }
        }
    }
    // A quotation ends with the text.
    if is_quote(out.innermost()) {
        out.close(EntityKind::Blockquote, cursor.spot)?;
    }
    out.finish(|entity| format!("the {} entity", entity.kind.as_str()))
}

/// A quotation is open as the innermost entity (it is a `blockquote`
/// until an expandability mark makes it expandable).
fn is_quote(entity: Option<&Entity>) -> bool {
    entity.is_some_and(|e| e.kind == EntityKind::Blockquote)
}

/// At the start of a line: `>` opens a quotation or goes on with the one of
/// the line before; `**>` (an empty bold, then `>`) starts a new one right
/// after another.
fn quote_line_start(out: &mut Builder, cursor: &mut Cursor<'_>) -> Result<(), MarkupError> {
    let at = cursor.spot;
    if cursor.starts_with("**>") {
        cursor.skip("**>");
        return out.open(Entity::new(EntityKind::Blockquote), at);
    }
    if cursor.starts_with(">") {
        cursor.skip(">");
        if !is_quote(out.innermost()) {
            out.open(Entity::new(EntityKind::Blockquote), at)?;
        }
    }
    Ok(())
}

/// Opens `kind`, or closes it if it is open.
fn toggle(out: &mut Builder, kind: EntityKind, at: Spot) -> Result<(), MarkupError> {
    if out.is_open(kind) {
        out.close(kind, at).map(drop)
    } else {
        out.open(Entity::new(kind), at)
    }
}

/// The character after a `\`: anything from code 1 to 126.
fn escaped(cursor: &mut Cursor<'_>, at: Spot) -> Result<char, MarkupError> {
    match cursor.bump() {
        Some(c) if ('\u{1}'..='\u{7e}').contains(&c) => Ok(c),
        Some(c) => Err(at.error(format!(
            "`\\` escapes only characters with codes 1–126, not `{c}`"
        ))),
        None => Err(at.error("the text ends with a lone `\\`")),
    }
}

/// Raw text up to `end` (not included, skipped), where `\` escapes and
/// every `\` and `` ` `` must be escaped.
fn raw_until(
    cursor: &mut Cursor<'_>,
    end: &str,
    what: &str,
    start: Spot,
) -> Result<String, MarkupError> {
    let mut text = String::new();
    loop {
        if cursor.starts_with(end) {
            cursor.skip(end);
            return Ok(text);
        }
        let at = cursor.spot;
        match cursor.bump() {
            None => return Err(start.error(format!("the {what} entity is never closed"))),
            Some('\\') => text.push(escaped(cursor, at)?),
            Some('`') => {
                return Err(at.error(format!("a `` ` `` inside {what} must be escaped")));
            }
            Some(c) => text.push(c),
        }
    }
}

fn code(out: &mut Builder, cursor: &mut Cursor<'_>, at: Spot) -> Result<(), MarkupError> {
    cursor.skip("`");
    out.open(Entity::new(EntityKind::Code), at)?;
    let text = raw_until(cursor, "`", "code", at)?;
    out.push_str(&text);
    out.close(EntityKind::Code, at).map(drop)
}

/// ```` ```language\n…``` ````: the first line names the language.
fn pre(out: &mut Builder, cursor: &mut Cursor<'_>, at: Spot) -> Result<(), MarkupError> {
    cursor.skip("```");
    let mut entity = Entity::new(EntityKind::Pre);
    if let Some(newline) = cursor.rest().find('\n') {
        let first = &cursor.rest()[..newline];
        if !first.contains('`') && !first.contains('\\') {
            if !first.trim().is_empty() {
                entity.language = Some(first.trim().to_owned());
            }
            for _ in 0..=first.chars().count() {
                cursor.bump();
            }
        }
    }
    out.open(entity, at)?;
    let text = raw_until(cursor, "```", "pre", at)?;
    out.push_str(&text);
    out.close(EntityKind::Pre, at).map(drop)
}

/// `](url)` after a link's or custom emoji's text.
fn link_end(out: &mut Builder, cursor: &mut Cursor<'_>, at: Spot) -> Result<(), MarkupError> {
    let kind = match out.innermost().map(|e| e.kind) {
        Some(kind @ (EntityKind::TextLink | EntityKind::CustomEmoji)) => kind,
        _ => {
            return Err(
                at.error("character `]` is reserved and must be escaped with a preceding `\\`")
            );
        }
    };
    if !cursor.starts_with("(") {
        return Err(cursor
            .spot
            .error("a link's `]` must be followed by `(url)`"));
    }
    let open = cursor.spot;
    cursor.skip("(");
    let mut url = String::new();
    loop {
        let here = cursor.spot;
        match cursor.bump() {
            None => return Err(open.error("the link's `(` is never closed with `)`")),
            Some(')') => break,
            Some('\\') => url.push(escaped(cursor, here)?),
            Some(c) => url.push(c),
        }
    }
    let index = out.close(kind, at)?;
    let entity = &mut out.entities[index];
    match kind {
        EntityKind::CustomEmoji => {
            let id = url
                .strip_prefix(EMOJI_PREFIX)
                .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| open.error(format!("`{url}` is not a tg://emoji?id=N link")))?;
            entity.custom_emoji_id = Some(id.to_owned());
        }
        _ if url.starts_with(MENTION_PREFIX) => {
            let id = url[MENTION_PREFIX.len()..]
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| open.error(format!("`{url}` is not a user mention link")))?;
            entity.kind = EntityKind::TextMention;
            entity.user = Some(super::entity::EntityUser { id });
        }
        _ if url.is_empty() => return Err(open.error("a link needs a URL")),
        _ => entity.url = Some(url),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(parsed: &FormattedText) -> Vec<(&'static str, usize, usize)> {
        parsed
            .entities
            .iter()
            .map(|e| (e.kind.as_str(), e.offset, e.length))
            .collect()
    }

    #[test]
    fn the_bot_api_example_parses() {
        // core.telegram.org/bots/api#markdownv2-style, line by line.
        let parsed = parse(concat!(
            "*bold \\*text*\n",
            "_italic \\*text_\n",
            "__underline__\n",
            "~strikethrough~\n",
            "||spoiler||\n",
            "*bold _italic bold ~italic bold strikethrough ||italic bold strikethrough spoiler||~ __underline italic bold___ bold*\n",
            "[inline URL](http://www.example.com/)\n",
            "[inline mention of a user](tg://user?id=123456789)\n",
            "![👍](tg://emoji?id=5368324170671202286)\n",
            "`inline fixed-width code`\n",
            "```\npre-formatted fixed-width code block\n```\n",
            "```python\npre-formatted fixed-width code block written in the Python programming language\n```\n",
            ">Block quotation started\n",
            ">Block quotation continued\n",
            ">The last line of the block quotation\n",
            "**>The expandable block quotation started right after the previous block quotation\n",
            ">It is separated from the previous block quotation by an empty bold entity\n",
            ">The last line of the expandable block quotation with the expandability mark||",
        ))
        .unwrap();
        let names: Vec<&str> = parsed.entities.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            names,
            [
                "bold",
                "italic",
                "underline",
                "strikethrough",
                "spoiler",
                "bold",
                "italic",
                "strikethrough",
                "spoiler",
                "underline",
                "text_link",
                "text_mention",
                "custom_emoji",
                "code",
                "pre",
                "pre",
                "blockquote",
                "expandable_blockquote",
            ]
        );
        assert!(
            parsed
                .text
                .starts_with("bold *text\nitalic *text\nunderline\n")
        );
        let pre = &parsed.entities[15];
        assert_eq!(pre.language.as_deref(), Some("python"));
        let quote = &parsed.entities[16];
        let quoted: String = parsed
            .text
            .encode_utf16()
            .skip(quote.offset)
            .take(quote.length)
            .map(|u| char::from_u32(u32::from(u)).unwrap_or('?'))
            .collect();
        assert_eq!(
            quoted,
            "Block quotation started\nBlock quotation continued\nThe last line of the block quotation"
        );
        assert!(parsed.text.ends_with("with the expandability mark"));
    }

    #[test]
    fn offsets_count_utf16_units_and_escapes_are_literal() {
        let parsed = parse("😀 *b\\_c* \\. `a\\`b`").unwrap();
        assert_eq!(parsed.text, "😀 b_c . a`b");
        assert_eq!(kinds(&parsed), [("bold", 3, 3), ("code", 9, 3)]);
    }

    #[test]
    fn triple_underscore_is_underline_then_italic() {
        let parsed = parse("___italic underline_\r__").unwrap();
        assert_eq!(kinds(&parsed), [("underline", 0, 17), ("italic", 0, 16)]);
    }

    #[test]
    fn malformed_markup_names_offset_and_rule() {
        let cases = [
            ("Hello.", 5, "`.` is reserved"),
            ("a-b", 1, "`-` is reserved"),
            ("*bold", 0, "bold entity is never closed"),
            ("*a _b* c_", 5, "closes bold while italic"),
            ("`code", 0, "code entity is never closed"),
            ("[x](http://a", 3, "never closed with `)`"),
            ("[x] y", 3, "followed by `(url)`"),
            ("a ] b", 2, "`]` is reserved"),
            ("`a *b` \\é", 7, "codes 1–126"),
            ("x |y", 2, "`|` is reserved"),
            ("![x](https://e.com)", 4, "tg://emoji"),
            ("[x](tg://user?id=abc)", 3, "mention"),
        ];
        for (source, offset, rule) in cases {
            let err = parse(source).unwrap_err();
            assert_eq!(err.char_offset, offset, "{source}: {err}");
            assert!(err.rule.contains(rule), "{source}: {err}");
        }
    }

    #[test]
    fn code_holds_no_formatting() {
        let parsed = parse("`*not bold*`").unwrap();
        assert_eq!(parsed.text, "*not bold*");
        assert_eq!(kinds(&parsed), [("code", 0, 10)]);
        let err = parse("[a `b` c](https://e.com)").unwrap_err();
        assert!(
            err.rule.contains("code cannot be nested inside text_link"),
            "{err}"
        );
    }
}
