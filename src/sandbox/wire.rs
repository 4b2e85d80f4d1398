//! Encodings both servers share, written the way Go and Postgres write them: timestamps
//! as Go's RFC 3339 (nanoseconds, trailing zeros trimmed), query strings parsed like
//! Go's `url.ParseQuery` and re-encoded like `url.Values.Encode`.

use time::OffsetDateTime;

/// Go's `time.RFC3339Nano` in UTC: `2024-05-01T12:00:00.1234Z`, no fraction when zero.
pub fn go_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parse an RFC 3339 timestamp (fixtures, the control endpoint).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp: {e}"))
}

/// Go's `url.ParseQuery`: `&`-separated pairs, `+` is a space, `%XX` escapes; a pair
/// with a bad escape or a `;` is skipped (Go reports an error that GoTrue ignores).
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (unescape(k), unescape(v)) {
            out.push((k, v));
        }
    }
    out
}

/// The first value of `name`, like Go's `Values.Get` (which gives "" when absent).
pub fn first<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    // Go keeps invalid UTF-8 as bytes; a lossy string is close enough for matching.
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode`: keys sorted, values in their original order per key.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    let mut keys: Vec<&String> = pairs.iter().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let mut parts = Vec::new();
    for key in keys {
        for (k, v) in pairs.iter().filter(|(k, _)| k == key) {
            parts.push(format!("{}={}", query_escape(k), query_escape(v)));
        }
    }
    parts.join("&")
}

/// Go's `strconv.Quote` for the ASCII strings that reach error messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// SQL `LIKE` (and `ILIKE` when `fold`), with Postgres' default escape character `\`.
/// `%` matches any run, `_` any one character.
pub fn sql_like(text: &str, pattern: &str, fold: bool) -> bool {
    enum Tok {
        Any,
        One,
        Lit(char),
    }
    let norm = |s: &str| -> Vec<char> {
        if fold {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let text = norm(text);
    let pchars = norm(pattern);
    let mut toks = Vec::with_capacity(pchars.len());
    let mut i = 0;
    while i < pchars.len() {
        match pchars[i] {
            '%' => toks.push(Tok::Any),
            '_' => toks.push(Tok::One),
            '\\' if i + 1 < pchars.len() => {
                i += 1;
                toks.push(Tok::Lit(pchars[i]));
            }
            c => toks.push(Tok::Lit(c)),
        }
        i += 1;
    }
    // Greedy matching with backtracking to the last `%`: linear in practice.
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::One) => {
                t += 1;
                p += 1;
            }
            Some(Tok::Lit(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Tok::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while let Some(Tok::Any) = toks.get(p) {
        p += 1;
    }
    p == toks.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_trims_like_rfc3339nano() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_120_000_000).unwrap();
        assert_eq!(go_time(t), "2023-11-14T22:13:20.12Z");
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(go_time(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn query_round_trip_is_sorted_like_go() {
        let q = parse_query(Some("per_page=50&page=1&filter=a%20b+c&bad=%zz"));
        assert_eq!(first(&q, "filter"), Some("a b c"));
        assert_eq!(first(&q, "bad"), None);
        assert_eq!(encode_query(&q), "filter=a+b+c&page=1&per_page=50");
    }

    #[test]
    fn like_has_sql_wildcards() {
        assert!(sql_like("dana@example.com", "%dana%", false));
        assert!(!sql_like("dana@example.com", "%DANA%", false));
        assert!(sql_like("Dana Scully", "%dana%", true));
        assert!(sql_like("dana@example.com", "%d_na%", false));
        assert!(sql_like("dana@example.com", "%%", false));
        assert!(!sql_like("dana@example.com", "%d\\_na%", false));
        assert!(sql_like("a_b", "%\\_%", false));
        assert!(sql_like("aaab", "%a%b", false));
    }
}
