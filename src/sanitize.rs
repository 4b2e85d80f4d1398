//! The leaf escaper: makes a string safe to show a person (terminal, Markdown, logs).
//! Imports nothing of ours, so the core can escape without knowing how text is rendered.

use std::fmt::Write as _;

/// Escape what a terminal (or a reviewer's eye) could be fooled by: control characters,
/// Unicode bidi overrides and isolates, and invisible format characters, each as
/// `\u{…}` in lower-case hex. Everything else passes through unchanged.
pub fn sanitize(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is one a reader could be fooled by (controls, bidi, invisible format
/// characters): the one list `sanitize` and the JSON outputs (`jsonout`) escape.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{061C}'                    // Arabic letter mark
            | '\u{180E}'                    // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'       // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'       // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates
            | '\u{FEFF}'                    // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tags
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_controls_bidi_and_invisibles_only() {
        assert_eq!(sanitize("ann@example.com"), "ann@example.com");
        assert_eq!(sanitize("josé@exämple.com"), "josé@exämple.com");
        assert_eq!(sanitize("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            sanitize("a\nb\tc\u{7f}\u{85}"),
            "a\\u{a}b\\u{9}c\\u{7f}\\u{85}"
        );
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}', '\u{200b}', '\u{200c}',
            '\u{200d}', '\u{2060}', '\u{feff}',
        ] {
            let s = sanitize(&format!("x{c}y"));
            assert_eq!(s, format!("x\\u{{{:x}}}y", u32::from(c)));
        }
    }
}
