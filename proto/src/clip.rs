//! Showing a value a client or a user typed, in an error or a log line:
//! quoted, with control and invisible characters escaped (`\n`, `\u{1b}`,
//! `\u{202e}`), and cut after a number of characters, with the full length
//! given, so no value can forge a line, drive a terminal, or make a message
//! as long as itself.

use std::fmt;

/// Characters of a value shown before it is cut.
pub const SHOWN_CHARS: usize = 256;

/// `value` quoted and escaped, cut after `max_chars` characters.
pub fn clip(value: &str, max_chars: usize) -> String {
    Clipped(value, max_chars).to_string()
}

/// `value` as [`clip`] shows it with [`SHOWN_CHARS`], without allocating:
/// for `format!` and tracing fields (`host = %clipped(&name)`).
pub fn clipped(value: &str) -> Clipped<'_> {
    Clipped(value, SHOWN_CHARS)
}

/// `value` escaped as [`clip`] does, but unquoted: for text that is
/// already set apart (an audit line's `local HOST:PORT`).
pub fn bare(value: &str, max_chars: usize) -> String {
    let head = head(value, max_chars);
    let mut out: String = head.unwrap_or(value).escape_debug().collect();
    if head.is_some() {
        out.push_str(&cut_note(value));
    }
    out
}

/// `text` with every control or invisible character escaped (`\n`,
/// `\u{1b}`), and cut after `max_chars` characters with its length noted;
/// unchanged (and not copied) when there is nothing to do. For a whole log
/// field whose parts were not all clipped at their source.
pub fn escape_controls(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c.is_control() || invisible(c);
    let head = head(text, max_chars);
    if head.is_none() && !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let kept = head.unwrap_or(text);
    let mut out = String::with_capacity(kept.len() + 16);
    for c in kept.chars() {
        if needs(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if head.is_some() {
        out.push_str(&cut_note(text));
    }
    std::borrow::Cow::Owned(out)
}

/// `value`'s first `max_chars` characters when it has more, else `None`.
fn head(value: &str, max_chars: usize) -> Option<&str> {
    value
        .char_indices()
        .nth(max_chars)
        .map(|(end, _)| &value[..end])
}

/// What follows a value that was cut: its whole length.
fn cut_note(value: &str) -> String {
    format!("… ({} bytes in all)", value.len())
}

/// Characters that change how a terminal shows the text around them
/// (zero-width and bidirectional controls).
fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A value shown quoted, escaped and cut; see [`clip`].
#[derive(Clone, Copy)]
pub struct Clipped<'a>(pub &'a str, pub usize);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Clipped(value, max) = *self;
        match head(value, max) {
            None => write!(f, "{value:?}"),
            Some(head) => write!(f, "{head:?}{}", cut_note(value)),
        }
    }
}

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_written() {
        let forged = "db\n2026-12-04T10:00:00Z  INFO tunneld: forged\u{1b}[2J\u{202e}";
        let shown = clip(forged, SHOWN_CHARS);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert!(
            shown.contains("\\n2026")
                && shown.contains("\\u{1b}[2J")
                && shown.contains("\\u{202e}")
        );
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "h".repeat(1 << 20);
        let shown = clip(&long, SHOWN_CHARS);
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.ends_with("… (1048576 bytes in all)"), "{shown}");
        assert_eq!(clip("db", 2), "\"db\"");
        assert_eq!(clip("ééé", 2), "\"éé\"… (6 bytes in all)");
        assert_eq!(bare("db\n", 8), "db\\n");
        assert_eq!(bare(&long, 4), "hhhh… (1048576 bytes in all)");
    }

    #[test]
    fn whole_fields_are_escaped_and_cut() {
        assert!(matches!(
            escape_controls("plain", 10),
            std::borrow::Cow::Borrowed("plain")
        ));
        assert_eq!(
            escape_controls("a\nb\u{1b}[0m\u{202e}", 100),
            "a\\nb\\u{1b}[0m\\u{202e}"
        );
        assert_eq!(escape_controls("abcdef", 3), "abc… (6 bytes in all)");
    }
}
