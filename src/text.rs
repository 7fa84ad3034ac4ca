//! Showing untrusted text (from a file's header, a key service, an object's metadata) on
//! a terminal without letting it forge output.
//!
//! A context value or key id containing LF, CR or ESC could otherwise print a fake line
//! (`[verified]`), rewrite the current one, or drive the terminal; bidi overrides and
//! invisible characters could make one string look like another. Every text output that
//! shows such a string passes it through [`escape`]. JSON output is not escaped here:
//! `serde_json` escapes control characters and keeps the exact value.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Escapes `s` for one line of terminal output: `\` → `\\`, LF/CR/TAB → `\n` `\r` `\t`,
/// every other control character (C0, DEL, C1), the bidi controls, line/paragraph
/// separators and zero-width characters → `\u{hex}`. Everything else is unchanged, so
/// ordinary text (including non-ASCII letters) reads as before.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_what_can_forge_or_hide_text() {
        assert_eq!(escape("prod"), "prod");
        assert_eq!(escape("café ünï"), "café ünï");
        assert_eq!(escape("a\nb\rc\td\\e"), "a\\nb\\rc\\td\\\\e");
        assert_eq!(escape("\u{1b}[2K\u{7}"), "\\u{1b}[2K\\u{7}");
        assert_eq!(
            escape("\u{0}\u{7f}\u{85}\u{9b}"),
            "\\u{0}\\u{7f}\\u{85}\\u{9b}"
        );
        assert_eq!(escape("a\u{202e}b\u{2066}c"), "a\\u{202e}b\\u{2066}c");
        assert_eq!(
            escape("\u{200b}\u{2028}\u{feff}"),
            "\\u{200b}\\u{2028}\\u{feff}"
        );
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert!(
                !escape(&c.to_string()).chars().any(|e| e.is_control()),
                "{c:?}"
            );
        }
    }
}
