//! OpenSSH's allowed-signers file (`ssh-keygen(1)`, ALLOWED SIGNERS), read as `sshsig.c`
//! reads it: `principals [options] keytype base64 [comment]`. Every line that is neither
//! blank nor a comment must parse; one that does not is an error naming the file and the
//! line, never skipped. Pure: takes the text, and a way to read local times.

use std::path::{Path, PathBuf};

use ssh_key::PublicKey;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::pattern::{ListMatch, match_pattern_list};

/// One usable line of the file.
#[derive(Debug, Clone)]
pub struct SignerEntry {
    /// 1-based line number in the file.
    pub line: usize,
    /// The principals pattern list as written (quotes removed): `a@x,b@x`, `*@x,!m@x`.
    pub principals: String,
    /// `namespaces="…"`: a pattern list; `None` allows every namespace (as OpenSSH does).
    pub namespaces: Option<String>,
    pub valid_after: Option<OffsetDateTime>,
    pub valid_before: Option<OffsetDateTime>,
    pub key: PublicKey,
}

impl SignerEntry {
    /// The principals this line names: its positive patterns, in order, without repeats.
    /// (`!pat` only excludes identities a positive pattern would admit.)
    pub fn named_principals(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in self.principals.split(',') {
            if !p.starts_with('!') && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Whether this line lets its key sign in `namespace`.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some(list) => match_pattern_list(namespace, list) == ListMatch::Positive,
        }
    }

    /// Whether `now` lies in the line's validity: OpenSSH refuses `now < valid-after`
    /// and `now > valid-before` (both ends inclusive).
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.valid_after.is_none_or(|t| now >= t) && self.valid_before.is_none_or(|t| now <= t)
    }
}

/// A parsed allowed-signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    /// The file as named (for messages).
    pub path: PathBuf,
    pub entries: Vec<SignerEntry>,
}

/// Why a line was refused: the line number and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Turns a local date and time (a timestamp written without `Z`) into an instant, as
/// OpenSSH's `mktime` does; `None` when the local time does not exist or is unknown.
pub type LocalTime<'a> = &'a dyn Fn(PrimitiveDateTime) -> Option<OffsetDateTime>;

impl AllowedSigners {
    /// Parse the file's bytes. `path` only names the file in the result.
    pub fn parse(bytes: &[u8], path: &Path, local: LocalTime<'_>) -> Result<Self, LineError> {
        let mut entries = Vec::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let text = std::str::from_utf8(raw).map_err(|_| LineError {
                line,
                reason: "the line is not UTF-8 text".into(),
            })?;
            let parsed = parse_line(text, local).map_err(|reason| LineError { line, reason })?;
            if let Some(mut entry) = parsed {
                entry.line = line;
                entries.push(entry);
            }
        }
        Ok(AllowedSigners {
            path: path.to_path_buf(),
            entries,
        })
    }
}

/// OpenSSH's field separators (`WHITESPACE` in misc.h).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn parse_line(text: &str, local: LocalTime<'_>) -> Result<Option<SignerEntry>, String> {
    let rest = text.trim_start_matches(is_space);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = split_principals(rest)?;
    if principals.is_empty() {
        return Err("the principals field is empty".into());
    }
    if principals.split(',').all(|p| p.starts_with('!')) {
        return Err(format!(
            "the principals `{principals}` name no one (only `!` exclusions)"
        ));
    }
    let (options, key_text) = split_options(rest)?;
    let options = match options {
        Some(text) => parse_options(text, local)?,
        None => Options::default(),
    };
    let key = parse_key(key_text)?;
    Ok(Some(SignerEntry {
        line: 0,
        principals: principals.to_string(),
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key,
    }))
}

/// The principals field: up to the first whitespace, or a leading `"…"` (which may hold
/// spaces). A quote anywhere else is refused rather than guessed at.
fn split_principals(rest: &str) -> Result<(&str, &str), String> {
    let (principals, after) = if let Some(quoted) = rest.strip_prefix('"') {
        let Some(end) = quoted.find('"') else {
            return Err("the principals field has no closing quote".into());
        };
        let after = &quoted[end + 1..];
        if !after.is_empty() && !after.starts_with(is_space) {
            return Err("the quoted principals field must be followed by a space".into());
        }
        (&quoted[..end], after)
    } else {
        let end = rest.find(is_space).unwrap_or(rest.len());
        let principals = &rest[..end];
        if principals.contains('"') {
            return Err("a quote inside the principals field (quote the whole field)".into());
        }
        (principals, &rest[end..])
    };
    let after = after.trim_start_matches(is_space);
    if after.is_empty() {
        return Err("no public key after the principals".into());
    }
    Ok((principals, after))
}

/// Whether a word names a key type (so no options stand before the key).
fn is_key_type(word: &str) -> bool {
    word.parse::<ssh_key::Algorithm>().is_ok() || word.ends_with("-cert-v01@openssh.com")
}

/// Options, when present, run to the first whitespace outside quotes (`\"` escapes a
/// quote), as `sshkey_advance_past_options` reads them; the key follows.
fn split_options(rest: &str) -> Result<(Option<&str>, &str), String> {
    let first = rest.split(is_space).next().unwrap_or("");
    if is_key_type(first) {
        return Ok((None, rest));
    }
    let mut quoted = false;
    let mut end = rest.len();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' && chars.peek().map(|&(_, n)| n) == Some('"') {
            chars.next();
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && is_space(c) {
            end = i;
            break;
        }
    }
    if quoted {
        return Err("an option's value has no closing quote".into());
    }
    let key = rest[end..].trim_start_matches(is_space);
    if key.is_empty() {
        return Err(format!(
            "no public key after the options (`{}` is not a key type)",
            &rest[..end]
        ));
    }
    Ok((Some(&rest[..end]), key))
}

fn parse_key(text: &str) -> Result<PublicKey, String> {
    let key_type = text.split(is_space).next().unwrap_or("");
    if key_type.ends_with("-cert-v01@openssh.com") {
        return Err(format!(
            "`{key_type}` is a certificate; certificates are not supported: list the approver's own public key"
        ));
    }
    if !is_key_type(key_type) {
        return Err(format!("`{key_type}` is not a public key type"));
    }
    // `from_openssh` reads `type base64 [comment]`; tabs separate fields too.
    let normalised: String = text.trim_end_matches(is_space).replace('\t', " ");
    PublicKey::from_openssh(&normalised).map_err(|e| format!("the public key cannot be read: {e}"))
}

#[derive(Debug, Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<OffsetDateTime>,
    valid_before: Option<OffsetDateTime>,
}

/// `sshsigopt_parse`: comma-separated options, names case-insensitive, values quoted.
fn parse_options(text: &str, local: LocalTime<'_>) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut rest = text;
    loop {
        let (name, after) = match rest.find(['=', ',']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if name.eq_ignore_ascii_case("cert-authority") {
            return Err("`cert-authority` lines are not supported: provision verifies plain keys only; list each approver's own public key".into());
        }
        let Some(value_text) = after.strip_prefix('=') else {
            return Err(format!("unsupported option `{name}`"));
        };
        let (value, after) = dequote(value_text)
            .map_err(|what| format!("the value of `{name}` {what} (write {name}=\"…\")"))?;
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => {
                if opts.namespaces.is_some() {
                    return Err("`namespaces` is given twice".into());
                }
                opts.namespaces = Some(value);
            }
            "valid-after" => {
                if opts.valid_after.is_some() {
                    return Err("`valid-after` is given twice".into());
                }
                opts.valid_after = Some(parse_time(&value, local, "valid-after")?);
            }
            "valid-before" => {
                if opts.valid_before.is_some() {
                    return Err("`valid-before` is given twice".into());
                }
                opts.valid_before = Some(parse_time(&value, local, "valid-before")?);
            }
            _ => return Err(format!("unsupported option `{name}`")),
        }
        if after.is_empty() {
            break;
        }
        let Some(next) = after.strip_prefix(',') else {
            return Err(format!("unexpected `{after}` after an option"));
        };
        if next.is_empty() {
            return Err("the options end with a comma".into());
        }
        rest = next;
    }
    if let (Some(after), Some(before)) = (opts.valid_after, opts.valid_before)
        && before <= after
    {
        return Err("`valid-before` is not after `valid-after`".into());
    }
    Ok(opts)
}

/// `opt_dequote`: a value in double quotes, `\"` standing for a quote. Returns the value
/// and what follows the closing quote.
fn dequote(text: &str) -> Result<(String, &str), &'static str> {
    let Some(body) = text.strip_prefix('"') else {
        return Err("is not quoted");
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if body[i + 1..].starts_with('"') => {
                chars.next();
                value.push('"');
            }
            '"' => return Ok((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    Err("has no closing quote")
}

/// OpenSSH's `parse_absolute_time`: `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, in
/// UTC with a trailing `Z` or `UTC` (any case), else in local time.
fn parse_time(text: &str, local: LocalTime<'_>, option: &str) -> Result<OffsetDateTime, String> {
    let bad = || {
        format!(
            "`{option}=\"{text}\"` is not a time: write YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, with a trailing Z for UTC"
        )
    };
    let lower = text.to_ascii_lowercase();
    let (digits, utc) = if let Some(d) = lower.strip_suffix('z').filter(|d| !d.is_empty()) {
        (d, true)
    } else if let Some(d) = lower.strip_suffix("utc").filter(|d| !d.is_empty()) {
        (d, true)
    } else {
        (lower.as_str(), false)
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, String> {
        digits
            .get(range)
            .unwrap_or("0")
            .parse::<u32>()
            .map_err(|_| bad())
    };
    let year = i32::try_from(num(0..4)?).map_err(|_| bad())?;
    let month = Month::try_from(u8::try_from(num(4..6)?).map_err(|_| bad())?).map_err(|_| bad())?;
    let day = u8::try_from(num(6..8)?).map_err(|_| bad())?;
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (num(8..10)?, num(10..12)?, 0),
        _ => (num(8..10)?, num(10..12)?, num(12..14)?),
    };
    let date = Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    let time = Time::from_hms(
        u8::try_from(hour).map_err(|_| bad())?,
        u8::try_from(minute).map_err(|_| bad())?,
        u8::try_from(second).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let at = PrimitiveDateTime::new(date, time);
    let instant = if utc {
        at.assume_utc()
    } else {
        local(at).ok_or_else(|| {
            format!(
                "`{option}=\"{text}\"` is a local time that cannot be read here; add a trailing Z to give it in UTC"
            )
        })?
    };
    // OpenSSH refuses a time at or before the epoch (its 0 means "not set").
    if instant.unix_timestamp() <= 0 {
        return Err(bad());
    }
    Ok(instant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::UtcOffset;
    use time::macros::datetime;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK91RNwOOvm3e4ISgBrcTuRCm7ol6AmKvkjWVloSjnVA";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM2FrTyCtyXvdkamjWofnGT2YxGva5LWZlLfKq5Yv+rZ";

    fn utc_local(at: PrimitiveDateTime) -> Option<OffsetDateTime> {
        Some(at.assume_offset(UtcOffset::from_hms(2, 0, 0).ok()?))
    }

    fn parse(text: &str) -> Result<AllowedSigners, LineError> {
        AllowedSigners::parse(text.as_bytes(), Path::new("allowed_signers"), &utc_local)
    }

    fn err(text: &str) -> LineError {
        parse(text).unwrap_err()
    }

    #[test]
    fn reads_principals_options_keys_comments_and_blank_lines() {
        let text = format!(
            "# approvers\n\n   \nalice@example.com {ED} alice's laptop\n\
             bob@example.com,bob@corp.example.com namespaces=\"provision-plan,git\",valid-after=\"20260101\",VALID-BEFORE=\"202701011230Z\" {ED2}\n\
             \t\"carol smith\"\t{ED}\r\n"
        );
        let signers = parse(&text).unwrap();
        let e = &signers.entries;
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].line, e[0].principals.as_str()),
            (4, "alice@example.com")
        );
        assert_eq!(e[0].key.comment(), "alice's laptop");
        assert_eq!(e[0].namespaces, None);
        assert_eq!(e[1].line, 5);
        assert_eq!(
            e[1].named_principals(),
            vec!["bob@example.com", "bob@corp.example.com"]
        );
        assert_eq!(e[1].namespaces.as_deref(), Some("provision-plan,git"));
        assert_eq!(e[1].valid_after, Some(datetime!(2026-01-01 00:00 +02:00)));
        assert_eq!(e[1].valid_before, Some(datetime!(2027-01-01 12:30 UTC)));
        assert_eq!((e[2].line, e[2].principals.as_str()), (6, "carol smith"));
        assert_eq!(e[2].key.key_data(), e[0].key.key_data());
    }

    #[test]
    fn timestamps_take_openssh_forms() {
        let at = |s: &str| parse_time(s, &utc_local, "valid-after");
        assert_eq!(at("20260315").unwrap(), datetime!(2026-03-15 00:00 +02:00));
        assert_eq!(
            at("202603151045Z").unwrap(),
            datetime!(2026-03-15 10:45 UTC)
        );
        assert_eq!(
            at("20260315104530utc").unwrap(),
            datetime!(2026-03-15 10:45:30 UTC)
        );
        for bad in [
            "2026031",
            "2026-03-15",
            "20261315",
            "20260230",
            "202603152460Z",
            "Z",
            "19700101Z",
            "+0260315",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
        let no_local = |_: PrimitiveDateTime| None;
        let e = parse_time("20260315", &no_local, "valid-before").unwrap_err();
        assert!(e.contains("add a trailing Z"), "{e}");
    }

    #[test]
    fn namespaces_and_validity_are_applied_as_openssh_does() {
        let text = format!(
            "a namespaces=\"git,!provision-*\" {ED}\nb namespaces=\"provision-*\",valid-after=\"20260101Z\",valid-before=\"20260201Z\" {ED}\n"
        );
        let s = parse(&text).unwrap();
        assert!(!s.entries[0].allows_namespace("provision-plan"));
        assert!(s.entries[0].allows_namespace("git"));
        assert!(s.entries[1].allows_namespace("provision-plan"));
        assert!(!s.entries[1].valid_at(datetime!(2025-12-31 23:59:59 UTC)));
        assert!(s.entries[1].valid_at(datetime!(2026-01-01 00:00 UTC)));
        assert!(s.entries[1].valid_at(datetime!(2026-02-01 00:00 UTC)));
        assert!(!s.entries[1].valid_at(datetime!(2026-02-01 00:00:01 UTC)));
    }

    #[test]
    fn negated_principals_are_not_named() {
        let s = parse(&format!(
            "*@example.com,!mallory@example.com,*@example.com {ED}\n"
        ))
        .unwrap();
        assert_eq!(s.entries[0].named_principals(), vec!["*@example.com"]);
    }

    #[test]
    fn every_bad_line_is_an_error_naming_its_line() {
        let cases: Vec<(String, &str)> = vec![
            (
                format!("alice cert-authority {ED}"),
                "`cert-authority` lines are not supported",
            ),
            (
                format!("alice CERT-AUTHORITY,namespaces=\"x\" {ED}"),
                "`cert-authority`",
            ),
            ("alice".into(), "no public key after the principals"),
            ("alice ssh-ed25519".into(), "the public key cannot be read"),
            (
                "alice ssh-ed25519 AAAAnotbase64!".into(),
                "the public key cannot be read",
            ),
            (
                format!("alice no-touch-required {ED}"),
                "unsupported option `no-touch-required`",
            ),
            (
                format!("alice namespaces=provision-plan {ED}"),
                "is not quoted",
            ),
            (
                format!("alice namespaces=\"provision-plan {ED}"),
                "no closing quote",
            ),
            (
                format!("alice namespaces=\"a\",namespaces=\"b\" {ED}"),
                "given twice",
            ),
            (
                format!("alice namespaces=\"a\", {ED}"),
                "the options end with a comma",
            ),
            (format!("alice namespaces=\"a\"x {ED}"), "unexpected `x`"),
            (format!("alice valid-after=\"2026\" {ED}"), "is not a time"),
            (
                format!("alice valid-after=\"20260201Z\",valid-before=\"20260101Z\" {ED}"),
                "`valid-before` is not after `valid-after`",
            ),
            (format!("\"alice {ED}"), "no closing quote"),
            (
                format!("al\"ice\" {ED}"),
                "a quote inside the principals field",
            ),
            (format!("!alice {ED}"), "name no one"),
            (
                format!("alice frobnicate {ED}"),
                "unsupported option `frobnicate`",
            ),
            (
                "alice ssh-ed25519-cert-v01@openssh.com AAAA".into(),
                "certificates are not supported",
            ),
        ];
        for (line, expected) in cases {
            let text = format!("# ok\n{}\n", line);
            let e = err(&text);
            assert_eq!(e.line, 2, "{line}");
            assert!(e.reason.contains(expected), "{line}: {}", e.reason);
        }
        let e = AllowedSigners::parse(b"# a\n\xff\n", Path::new("f"), &utc_local).unwrap_err();
        assert_eq!(
            (e.line, e.reason.as_str()),
            (2, "the line is not UTF-8 text")
        );
    }
}
