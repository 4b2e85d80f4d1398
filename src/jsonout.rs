//! JSON text for every JSON output (the plan file, `plan`/`show --format json`, `apply
//! --format json`, `--log`): serde_json's text with every character `sanitize` would
//! escape — C0 and C1 controls, U+2028/U+2029, bidi and zero-width formatting characters
//! — written as `\u` escapes, so no viewer of the file is fooled. Imports only the leaf
//! escaper's character list.
//!
//! The escaping is done on the text: in valid JSON such characters can only stand inside
//! strings (they are not JSON whitespace), where `\uXXXX` means the same character, so
//! the decoded values — and the plan's digest, computed over them — are unchanged.

use std::fmt::Write as _;

use serde::Serialize;

use crate::sanitize::needs_escape;

/// `value` as compact JSON, escaped.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_string(value) {
        Ok(text) => escape_owned(text),
        // Values of strings, numbers and maps with string keys always serialise.
        Err(e) => unreachable!("serialising a JSON output failed: {e}"),
    }
}

/// `value` as pretty JSON (2 spaces), escaped.
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(text) => escape_owned(text),
        Err(e) => unreachable!("serialising a JSON output failed: {e}"),
    }
}

/// Valid JSON text with each character `needs_escape` names written as `\uXXXX` (a
/// surrogate pair above U+FFFF). serde_json has already escaped the C0 controls (as `\n`,
/// `\t` or `\u00XX`); this catches DEL, C1, and the format characters it leaves raw.
pub fn escape_text(json: &str) -> String {
    if clean(json) {
        return json.to_string();
    }
    escape_chars(json)
}

/// `escape_text` without a copy when there is nothing to escape.
fn escape_owned(json: String) -> String {
    if clean(&json) {
        return json;
    }
    escape_chars(&json)
}

/// Nothing to escape. Every such character is a C0 control, DEL or non-ASCII: a plan of
/// plain ASCII (the usual case, tens of MB at 100k users) is passed by a byte scan.
fn clean(json: &str) -> bool {
    let suspect = |b: u8| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b >= 0x7f;
    !json.bytes().any(suspect) || !json.chars().any(escaped)
}

fn escape_chars(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 32);
    for c in json.chars() {
        if escaped(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters to escape. Tab, line feed and carriage return are left alone: in valid
/// JSON they stand raw only as whitespace between tokens (inside strings they must
/// already be escaped), and there they are the pretty-printer's layout.
fn escaped(c: char) -> bool {
    needs_escape(c) && !matches!(c, '\t' | '\n' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_bidi_and_zero_width_become_u_escapes() {
        let raw = "a\u{1}\u{7f}\u{85}\u{9b}\u{2028}\u{2029}\u{202e}\u{2066}\u{200b}\u{feff}\u{e0041}é\"\\\n";
        let text = to_string(&serde_json::json!({ "k\u{202e}": raw }));
        assert_eq!(
            text,
            r#"{"k\u202e":"a\u0001\u007f\u0085\u009b\u2028\u2029\u202e\u2066\u200b\ufeff\udb40\udc41é\"\\\n"}"#
        );
        // The same values come back.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, serde_json::json!({ "k\u{202e}": raw }));
        assert!(!text.chars().any(needs_escape));
        // Layout whitespace stays as it is.
        let pretty = to_string_pretty(&serde_json::json!({ "a": "\u{2028}" }));
        assert_eq!(pretty, "{\n  \"a\": \"\\u2028\"\n}");
    }

    #[test]
    fn text_without_such_characters_is_unchanged() {
        let v = serde_json::json!({"email": "josé@exämple.com", "n": [1, 2]});
        assert_eq!(
            to_string_pretty(&v),
            serde_json::to_string_pretty(&v).unwrap()
        );
    }
}
