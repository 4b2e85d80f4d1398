//! A port of Go's `time.ParseDuration`, which GoTrue runs on `ban_duration`: the same
//! units (no `d`, no `y`), the same overflow limits and the same error wording, because
//! the error text reaches the client verbatim inside a 400 `validation_failed`.

/// Nanoseconds in each unit Go accepts (`unitMap` in Go's `time/format.go`).
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

const LIMIT: u64 = 1 << 63;

/// Parse a Go duration string into signed nanoseconds, or Go's error message.
pub fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut d: u64 = 0;
    while !s.is_empty() {
        // The next character must be [0-9.].
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let pre = before != s.len();

        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let before = s.len();
            let (x, sc, rest) = leading_fraction(s);
            f = x;
            scale = sc;
            s = rest;
            post = before != s.len();
        }
        if !pre && !post {
            return Err(invalid());
        }

        let i = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if i == 0 {
            return Err(format!("time: missing unit in duration {}", quote(orig)));
        }
        let unit_bytes = &s[..i];
        s = &s[i..];
        let unit_str = String::from_utf8_lossy(unit_bytes);
        let Some(unit) = unit_nanos(&unit_str) else {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                quote_bytes(unit_bytes),
                quote(orig)
            ));
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // Go uses float64 here too, to stay nanosecond-accurate for fractions of hours.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d = d.checked_add(v).ok_or_else(invalid)?;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        // -(1<<63) is representable; Go returns -Duration(d) which wraps identically.
        return Ok((d as i64).wrapping_neg());
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(d as i64)
}

fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(s[i] - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale = 1.0;
    let mut overflow = false;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if !overflow {
            if x > (LIMIT - 1) / 10 {
                overflow = true;
            } else {
                let y = x * 10 + u64::from(s[i] - b'0');
                if y > LIMIT {
                    overflow = true;
                } else {
                    x = y;
                    scale *= 10.0;
                }
            }
        }
        i += 1;
    }
    (x, scale, &s[i..])
}

fn quote(s: &str) -> String {
    quote_bytes(s.as_bytes())
}

/// Go's private `time.quote`: printable ASCII as is (with `"` and `\` escaped), every
/// other byte as `\xNN`.
fn quote_bytes(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        if !(b' '..0x80).contains(&b) {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            if b == b'"' || b == b'\\' {
                out.push('\\');
            }
            out.push(char::from(b));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as p;

    const H: i64 = 3_600_000_000_000;

    #[test]
    fn accepts_what_go_accepts() {
        assert_eq!(p("876000h"), Ok(876_000 * H));
        assert_eq!(p("1h30m"), Ok(H + H / 2));
        assert_eq!(p("1.5h"), Ok(H + H / 2));
        assert_eq!(p("-2h"), Ok(-2 * H));
        assert_eq!(p("+5s"), Ok(5_000_000_000));
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("0s"), Ok(0));
        assert_eq!(p("300ms"), Ok(300_000_000));
        assert_eq!(p("2\u{b5}s"), Ok(2_000));
        assert_eq!(p("2us"), Ok(2_000));
        assert_eq!(p(".5s"), Ok(500_000_000));
        assert_eq!(p("2562047h"), Ok(2_562_047 * H));
    }

    #[test]
    fn refuses_with_go_wording() {
        assert_eq!(
            p("100y"),
            Err(r#"time: unknown unit "y" in duration "100y""#.to_string())
        );
        assert_eq!(
            p("7d"),
            Err(r#"time: unknown unit "d" in duration "7d""#.to_string())
        );
        assert_eq!(
            p("10"),
            Err(r#"time: missing unit in duration "10""#.to_string())
        );
        assert_eq!(p(""), Err(r#"time: invalid duration """#.to_string()));
        assert_eq!(p("h"), Err(r#"time: invalid duration "h""#.to_string()));
        assert_eq!(p(".s"), Err(r#"time: invalid duration ".s""#.to_string()));
        assert_eq!(
            p("2562048h"),
            Err(r#"time: invalid duration "2562048h""#.to_string())
        );
        assert_eq!(
            p("1 h"),
            Err(r#"time: unknown unit " h" in duration "1 h""#.to_string())
        );
    }
}
