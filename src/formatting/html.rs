//! `parse_mode: "HTML"`, by the Bot API's rules: only the tags it lists
//! (`b strong i em u ins s strike del tg-spoiler span.tg-spoiler a tg-emoji
//! code pre blockquote`), `<`, `>` and `&` outside tags only as `&lt;`,
//! `&gt;`, `&amp;` (and `&quot;`) or a numeric entity, a language only on a
//! `<code>` directly inside `<pre>`, closing tags matching what they close.

use super::{Builder, Cursor, Entity, EntityKind, FormattedText, MarkupError, Spot};

/// The user mention link form.
const MENTION_PREFIX: &str = "tg://user?id=";
const LANGUAGE_PREFIX: &str = "language-";

pub(super) fn parse(source: &str) -> Result<FormattedText, MarkupError> {
    let mut out = Builder::new(source.len());
    let mut cursor = Cursor::new(source);
    // Tag names of the open elements, beside `out.open` (a `<code>` that
    // only names a `<pre>`'s language opens no entity of its own).
    let mut elements: Vec<(String, bool)> = Vec::new();
    while let Some(c) = cursor.peek() {
        let at = cursor.spot;
        match c {
            '<' => {
                let tag = read_tag(&mut cursor)?;
                if tag.closing {
                    close(&mut out, &mut elements, &tag, at)?;
                } else {
                    open(&mut out, &mut elements, tag, at)?;
                }
            }
            '&' => {
                let decoded = read_entity(&mut cursor)?;
                out.push(decoded);
            }
            '>' => {
                return Err(at.error("a bare `>` must be written `&gt;`"));
            }
            c => {
                cursor.bump();
                out.push(c);
            }
        }
    }
    if let Some((name, _)) = elements.first() {
        let opened = out.open.first().map_or(Spot::default(), |&(_, spot)| spot);
        return Err(opened.error(format!("<{name}> is never closed")));
    }
    out.finish(|entity| entity.kind.as_str().to_owned())
}

struct Tag {
    name: String,
    closing: bool,
    attrs: Vec<(String, Option<String>)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<Option<&str>> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_deref())
    }
}

fn open(
    out: &mut Builder,
    elements: &mut Vec<(String, bool)>,
    tag: Tag,
    at: Spot,
) -> Result<(), MarkupError> {
    let no_attrs = |tag: &Tag, allowed: &[&str]| match tag
        .attrs
        .iter()
        .find(|(n, _)| !allowed.contains(&n.as_str()))
    {
        Some((name, _)) => Err(at.error(format!("<{}> takes no attribute `{name}`", tag.name))),
        None => Ok(()),
    };
    let kind = match tag.name.as_str() {
        "b" | "strong" => EntityKind::Bold,
        "i" | "em" => EntityKind::Italic,
        "u" | "ins" => EntityKind::Underline,
        "s" | "strike" | "del" => EntityKind::Strikethrough,
        "tg-spoiler" => EntityKind::Spoiler,
        "span" => match tag.attr("class") {
            Some(Some("tg-spoiler")) => EntityKind::Spoiler,
            _ => {
                return Err(at.error("<span> is only supported as <span class=\"tg-spoiler\">"));
            }
        },
        "a" => match tag.attr("href") {
            Some(Some(href)) if href.starts_with(MENTION_PREFIX) => EntityKind::TextMention,
            Some(Some(href)) if !href.is_empty() => EntityKind::TextLink,
            _ => return Err(at.error("<a> needs a non-empty href")),
        },
        "tg-emoji" => EntityKind::CustomEmoji,
        "code" => EntityKind::Code,
        "pre" => EntityKind::Pre,
        "blockquote" => {
            if tag.attr("expandable").is_some() {
                EntityKind::ExpandableBlockquote
            } else {
                EntityKind::Blockquote
            }
        }
        other => {
            return Err(at.error(format!(
                "unsupported tag <{other}> (the Bot API knows b, strong, i, em, u, ins, s, \
                 strike, del, tg-spoiler, span class=\"tg-spoiler\", a, tg-emoji, code, pre, \
                 blockquote)"
            )));
        }
    };
    let mut entity = Entity::new(kind);
    match kind {
        EntityKind::TextLink => {
            no_attrs(&tag, &["href"])?;
            entity.url = tag.attr("href").flatten().map(str::to_owned);
        }
        EntityKind::TextMention => {
            no_attrs(&tag, &["href"])?;
            let href = tag.attr("href").flatten().unwrap_or_default();
            let id = href[MENTION_PREFIX.len()..]
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| at.error(format!("`{href}` is not a user mention link")))?;
            entity.user = Some(super::entity::EntityUser { id });
        }
        EntityKind::CustomEmoji => {
            no_attrs(&tag, &["emoji-id"])?;
            let id = tag
                .attr("emoji-id")
                .flatten()
                .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| at.error("<tg-emoji> needs a numeric emoji-id"))?;
            entity.custom_emoji_id = Some(id.to_owned());
        }
        EntityKind::Code => {
            no_attrs(&tag, &["class"])?;
            if let Some(class) = tag.attr("class") {
                let language = class
                    .and_then(|class| class.strip_prefix(LANGUAGE_PREFIX))
                    .filter(|language| !language.is_empty())
                    .ok_or_else(|| at.error("a <code> class must be `language-NAME`"))?;
                // `<pre><code class="language-x">`: the pre's language,
                // nothing of its own.
                match out.innermost() {
                    Some(pre) if pre.kind == EntityKind::Pre && pre.offset == out.units => {
                        let index = out.open.last().map(|&(index, _)| index).unwrap_or(0);
                        if out.entities[index].language.is_some() {
                            return Err(at.error("this <pre> already has a language"));
                        }
                        out.entities[index].language = Some(language.to_owned());
                        elements.push((tag.name, false));
                        return Ok(());
                    }
                    _ => {
                        return Err(at.error(
                            "a language can only be given to a <code> right at the start of a <pre>",
                        ));
                    }
                }
            }
        }
        EntityKind::Spoiler if tag.name == "span" => no_attrs(&tag, &["class"])?,
        EntityKind::Blockquote | EntityKind::ExpandableBlockquote => {
            no_attrs(&tag, &["expandable"])?
        }
        _ => no_attrs(&tag, &[])?,
    }
    out.open(entity, at)?;
    elements.push((tag.name, true));
    Ok(())
}

fn close(
    out: &mut Builder,
    elements: &mut Vec<(String, bool)>,
    tag: &Tag,
    at: Spot,
) -> Result<(), MarkupError> {
    match elements.last() {
        Some((name, _)) if *name == tag.name => {}
        Some((name, _)) => {
            return Err(at.error(format!("</{}> closes <{name}>", tag.name)));
        }
        None => return Err(at.error(format!("</{}> closes nothing", tag.name))),
    }
    let (_, has_entity) = elements.pop().unwrap_or_default();
    if has_entity {
        let kind = out.innermost().map(|entity| entity.kind);
        if let Some(kind) = kind {
            out.close(kind, at)?;
        }
    }
    Ok(())
}

/// `<name attr="value" ...>` or `</name>`, names lowercased.
fn read_tag(cursor: &mut Cursor<'_>) -> Result<Tag, MarkupError> {
    let start = cursor.spot;
    cursor.skip("<");
    let closing = cursor.starts_with("/");
    if closing {
        cursor.skip("/");
    }
    let name = read_name(cursor);
    if name.is_empty() {
        return Err(start.error("a bare `<` must be written `&lt;`"));
    }
    let mut attrs = Vec::new();
    loop {
        skip_space(cursor);
        match cursor.peek() {
            Some('>') => {
                cursor.bump();
                break;
            }
            None => return Err(start.error(format!("the tag <{name}> is not closed with `>`"))),
            Some(_) if closing => {
                return Err(cursor.spot.error(format!("</{name}> takes no attributes")));
            }
            Some(_) => {
                let at = cursor.spot;
                let attr = read_name(cursor);
                if attr.is_empty() {
                    return Err(at.error(format!("unexpected character in the tag <{name}>")));
                }
                skip_space(cursor);
                let value = if cursor.starts_with("=") {
                    cursor.skip("=");
                    skip_space(cursor);
                    Some(read_value(cursor)?)
                } else {
                    None
                };
                if attrs.iter().any(|(n, _)| *n == attr) {
                    return Err(at.error(format!("attribute `{attr}` repeated")));
                }
                attrs.push((attr, value));
            }
        }
    }
    Ok(Tag {
        name,
        closing,
        attrs,
    })
}

fn read_name(cursor: &mut Cursor<'_>) -> String {
    let mut name = String::new();
    while let Some(c) = cursor.peek() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            cursor.bump();
            name.push(c.to_ascii_lowercase());
        } else {
            break;
        }
    }
    name
}

fn skip_space(cursor: &mut Cursor<'_>) {
    while cursor.peek().is_some_and(|c| c.is_ascii_whitespace()) {
        cursor.bump();
    }
}

/// A quoted (`"…"`, `'…'`) or bare attribute value, entities decoded.
fn read_value(cursor: &mut Cursor<'_>) -> Result<String, MarkupError> {
    let start = cursor.spot;
    let quote = match cursor.peek() {
        Some(q @ ('"' | '\'')) => {
            cursor.bump();
            Some(q)
        }
        _ => None,
    };
    let mut value = String::new();
    loop {
        match (cursor.peek(), quote) {
            (None, _) => return Err(start.error("an attribute value is not closed")),
            (Some(c), Some(q)) if c == q => {
                cursor.bump();
                return Ok(value);
            }
            (Some(c), None) if c.is_ascii_whitespace() || c == '>' => return Ok(value),
            (Some('&'), _) => value.push(read_entity(cursor)?),
            (Some(c), _) => {
                cursor.bump();
                value.push(c);
            }
        }
    }
}

/// `&lt;`, `&gt;`, `&amp;`, `&quot;`, `&#NNN;` or `&#xHH;`.
fn read_entity(cursor: &mut Cursor<'_>) -> Result<char, MarkupError> {
    let start = cursor.spot;
    let rest = cursor.rest();
    let Some(end) = rest.find(';').filter(|&end| end <= 12) else {
        return Err(start.error("a bare `&` must be written `&amp;`"));
    };
    let name = &rest[1..end];
    let decoded = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        _ => name.strip_prefix('#').and_then(|number| {
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => number.parse().ok(),
            };
            code.and_then(char::from_u32).filter(|c| *c != '\0')
        }),
    };
    let decoded = decoded.ok_or_else(|| {
        start.error(format!(
            "unsupported HTML entity `&{name};` (the Bot API knows &lt; &gt; &amp; &quot; and numeric ones)"
        ))
    })?;
    for _ in 0..=end {
        cursor.bump();
    }
    Ok(decoded)
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
    fn every_bot_api_tag_becomes_its_entity() {
        let parsed = parse(
            "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s>\
             <strike>k</strike><del>d</del><tg-spoiler>p</tg-spoiler>\
             <span class=\"tg-spoiler\">q</span><a href=\"https://e.com/?a=1&amp;b=2\">l</a>\
             <a href='tg://user?id=42'>m</a><tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji>\
             <code>c</code><pre><code class=\"language-rust\">r</code></pre><pre>x</pre>\
             <blockquote>q</blockquote><blockquote expandable>z</blockquote>",
        )
        .unwrap();
        assert_eq!(parsed.text, "bsieunskdpqlm👍crxqz");
        assert_eq!(
            kinds(&parsed),
            [
                ("bold", 0, 1),
                ("bold", 1, 1),
                ("italic", 2, 1),
                ("italic", 3, 1),
                ("underline", 4, 1),
                ("underline", 5, 1),
                ("strikethrough", 6, 1),
                ("strikethrough", 7, 1),
                ("strikethrough", 8, 1),
                ("spoiler", 9, 1),
                ("spoiler", 10, 1),
                ("text_link", 11, 1),
                ("text_mention", 12, 1),
                ("custom_emoji", 13, 2),
                ("code", 15, 1),
                ("pre", 16, 1),
                ("pre", 17, 1),
                ("blockquote", 18, 1),
                ("expandable_blockquote", 19, 1),
            ]
        );
        assert_eq!(
            parsed.entities[11].url.as_deref(),
            Some("https://e.com/?a=1&b=2")
        );
        assert_eq!(parsed.entities[12].user.as_ref().map(|u| u.id), Some(42));
        assert_eq!(parsed.entities[15].language.as_deref(), Some("rust"));
        assert_eq!(parsed.entities[16].language, None);
    }

    #[test]
    fn entities_and_offsets_count_utf16_units() {
        let parsed = parse("&lt;😀&gt; &amp;&quot;&#65;&#x42; <b>ü😀</b>").unwrap();
        assert_eq!(parsed.text, "<😀> &\"AB ü😀");
        assert_eq!(kinds(&parsed), [("bold", 10, 3)]);
    }

    #[test]
    fn nested_styles_are_fine_but_code_holds_nothing() {
        let parsed = parse("<b>a <i>b <u>c</u></i></b>").unwrap();
        assert_eq!(
            kinds(&parsed),
            [("bold", 0, 5), ("italic", 2, 3), ("underline", 4, 1)]
        );
        let err = parse("<code>a <b>b</b></code>").unwrap_err();
        assert!(err.rule.contains("inside code"), "{}", err.rule);
        let err = parse("<blockquote><blockquote>x</blockquote></blockquote>").unwrap_err();
        assert!(err.rule.contains("blockquote"), "{}", err.rule);
        let err = parse("<a href=\"https://a.b\"><a href=\"https://c.d\">x</a></a>").unwrap_err();
        assert!(
            err.rule.contains("text_link cannot be nested"),
            "{}",
            err.rule
        );
    }

    #[test]
    fn malformed_markup_names_offset_and_rule() {
        let cases = [
            ("a < b", 2, "bare `<`"),
            ("a > b", 2, "bare `>`"),
            ("R&D", 1, "bare `&`"),
            ("&nbsp;", 0, "unsupported HTML entity"),
            ("x<blink>y</blink>", 1, "unsupported tag <blink>"),
            ("<b>x</i>", 4, "</i> closes <b>"),
            ("é<b>x", 1, "never closed"),
            ("<b>x</b></b>", 8, "closes nothing"),
            ("<span>x</span>", 0, "tg-spoiler"),
            ("<a>x</a>", 0, "href"),
            ("<a href=\"tg://user?id=x\">x</a>", 0, "mention"),
            ("<code class=\"language-c\">x</code>", 0, "start of a <pre>"),
            ("<b class=\"x\">x</b>", 0, "no attribute `class`"),
            ("<b", 0, "not closed with `>`"),
            ("<tg-emoji>x</tg-emoji>", 0, "emoji-id"),
        ];
        for (source, offset, rule) in cases {
            let err = parse(source).unwrap_err();
            assert_eq!(err.char_offset, offset, "{source}: {err}");
            assert!(err.rule.contains(rule), "{source}: {err}");
        }
        let err = parse("ü<b>x").unwrap_err();
        assert_eq!((err.char_offset, err.byte_offset), (1, 2));
    }

    #[test]
    fn tag_names_are_case_insensitive_and_empty_entities_dropped() {
        let parsed = parse("<B>x</B><i></i>").unwrap();
        assert_eq!(kinds(&parsed), [("bold", 0, 1)]);
    }
}
