//! Domain types shared by every room: normalised emails, auth users, roster entries and
//! the three kinds of change. Pure data; no I/O, no clock reads. The serde derives give
//! the plan file's members their shape; `planfile` owns the format around them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use time::OffsetDateTime;

/// The longest email the Auth server accepts (`validateEmail` in supabase/auth).
pub const MAX_EMAIL_LEN: usize = 255;

/// A ban that runs at least this many years out counts as a decommission made by us
/// (we ban for `876000h`, about 100 years). A shorter ban was set by someone else.
pub const LONG_BAN_YEARS: i64 = 50;

/// The `ban_duration` a decommission sends: about 100 years, in Go duration syntax
/// (the server has no `d` or `y` units).
pub const BAN_DURATION: &str = "876000h";

/// The `ban_duration` a restore sends: clears `banned_until`.
pub const UNBAN_DURATION: &str = "none";

/// Trim and lower-case: how both sides of the match see an email.
pub fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// An email after trimming and lower-casing that passed the contract's validity rules.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

/// Why a value is not a valid email (the contract's "Valid email" rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidEmail {
    Empty,
    TooLong(usize),
    NotAscii,
    WhitespaceOrControl,
    AtSigns(usize),
    EmptyLocalPart,
    DomainWithoutDot,
}

impl fmt::Display for InvalidEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidEmail::Empty => write!(f, "empty email"),
            InvalidEmail::TooLong(n) => {
                write!(f, "email is {n} characters long (at most {MAX_EMAIL_LEN})")
            }
            InvalidEmail::NotAscii => write!(f, "email has non-ASCII characters"),
            InvalidEmail::WhitespaceOrControl => {
                write!(f, "email has whitespace or control characters")
            }
            InvalidEmail::AtSigns(n) => write!(f, "email must have exactly one `@` (has {n})"),
            InvalidEmail::EmptyLocalPart => write!(f, "email has nothing before the `@`"),
            InvalidEmail::DomainWithoutDot => write!(f, "email domain has no dot"),
        }
    }
}

impl Email {
    /// Normalise (trim, lower-case) then validate.
    pub fn parse(raw: &str) -> Result<Email, InvalidEmail> {
        let email = normalise_email(raw);
        if email.is_empty() {
            return Err(InvalidEmail::Empty);
        }
        if email.len() > MAX_EMAIL_LEN {
            return Err(InvalidEmail::TooLong(email.chars().count()));
        }
        if !email.is_ascii() {
            return Err(InvalidEmail::NotAscii);
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidEmail::WhitespaceOrControl);
        }
        let ats = email.matches('@').count();
        if ats != 1 {
            return Err(InvalidEmail::AtSigns(ats));
        }
        let (local, domain) = email.split_once('@').ok_or(InvalidEmail::AtSigns(0))?;
        if local.is_empty() {
            return Err(InvalidEmail::EmptyLocalPart);
        }
        if !domain.contains('.') {
            return Err(InvalidEmail::DomainWithoutDot);
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Only an already normalised valid email reads back as an `Email`: a stored one that
/// is not was not written by this program.
impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed_member(deserializer, "not a normalised valid email", |raw| {
            Email::parse(raw).ok().filter(|email| email.0 == raw)
        })
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({:?})", self.0)
    }
}

/// One row of `auth.users` as the admin API lists it, reduced to what reconciliation
/// reads (and `last_sign_in_at`, which only `explain` shows). `updated_at` and metadata
/// are deliberately absent; neither they nor the last sign-in are drift or ever written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
    /// As stored (legacy rows may be mixed-case). `None` when the server sent `""`.
    pub email: Option<String>,
    pub banned_until: Option<OffsetDateTime>,
    pub deleted_at: Option<OffsetDateTime>,
    pub is_anonymous: bool,
    /// Shown by `explain`, never decides anything (`None` when absent or unreadable).
    pub last_sign_in_at: Option<OffsetDateTime>,
}

impl AuthUser {
    /// Banned means `banned_until` is present and in the future; an expired value stays
    /// in the row and counts as active.
    pub fn is_banned(&self, now: OffsetDateTime) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }

    /// Banned by a decommission (ours or an equivalent): at least 50 years out.
    pub fn is_long_banned(&self, now: OffsetDateTime) -> bool {
        self.banned_until
            .is_some_and(|until| until >= now + time::Duration::days(365 * LONG_BAN_YEARS))
    }

    /// Soft-deleted users and users without an email are never touched.
    pub fn is_ignored(&self) -> bool {
        self.deleted_at.is_some() || self.email.as_deref().is_none_or(|e| e.trim().is_empty())
    }
}

/// Whether a change's effect is already in place in `user`, read at `now` — the one
/// answer to "is this change already in effect?" that the drift check, the create
/// look-up and the check-read after the writes all use. `user` is, for a create, a user
/// holding the change's (normalised) email; for a ban or a restore, the user with the
/// change's id. Create: that user is active. Ban: banned at least 50 years out (a shorter
/// ban is someone else's). Restore: not banned. A soft-deleted user shows no effect.
pub fn effect_in_place(action: ActionKind, user: &AuthUser, now: OffsetDateTime) -> bool {
    if user.deleted_at.is_some() {
        return false;
    }
    match action {
        ActionKind::Create | ActionKind::Restore => !user.is_banned(now),
        ActionKind::Ban => user.is_long_banned(now),
    }
}

/// The shape of a Supabase user id: a UUID written `8-4-4-4-12` hex digits. Only an id
/// of this shape is ever put in a request path or a plan's change.
pub fn is_uuid_shaped(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// One roster row, as read. `origin` says where it came from for error messages
/// ("row 3 of roster.csv", "activity.organization_people row 12").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// The value as given (`None` when the row has no email at all).
    pub email: Option<String>,
    pub origin: String,
}

/// The three changes `provision` ever makes, in the order plans list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Create,
    Restore,
    Ban,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [ActionKind::Create, ActionKind::Restore, ActionKind::Ban];

    /// The word in the plan file's `action` member.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Create => "create",
            ActionKind::Restore => "restore",
            ActionKind::Ban => "ban",
        }
    }

    pub fn parse(s: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The apply counter this action increments.
    pub fn counter(self) -> &'static str {
        match self {
            ActionKind::Create => "created",
            ActionKind::Restore => "restored",
            ActionKind::Ban => "decommissioned",
        }
    }
}

impl Serialize for ActionKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed_member(deserializer, "`action` is unknown", ActionKind::parse)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One planned change. `user_id` is `None` exactly for creates. `email` is normalised
/// (for a ban it is the auth user's email, which need not pass roster validation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Change {
    pub action: ActionKind,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// Something reconciliation refused to guess at. `email` is the roster value as given
/// for invalid rows, or the normalised email for duplicate auth users.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conflict {
    pub email: String,
    pub reason: String,
    /// Omitted in the plan when no auth user is involved (an invalid roster row).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
}

/// One auth user as fingerprinted: what drift compares. Sorted by email then id; the
/// members stand in the plan file's order (`id`, `email`, `banned`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObservedUser {
    pub id: String,
    /// Normalised (trimmed, lower-cased); not necessarily a valid roster email.
    pub email: String,
    pub banned: bool,
}

impl Ord for ObservedUser {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.email, &self.id, self.banned).cmp(&(&other.email, &other.id, other.banned))
    }
}

impl PartialOrd for ObservedUser {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Exactly what the plan's fingerprints cover (the plan's `observed` member).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Distinct valid normalised roster emails, sorted.
    pub roster: Vec<Email>,
    /// Users that have an email and are not soft-deleted, sorted by email then id.
    pub users: Vec<ObservedUser>,
}

/// The plan's `summary` member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub restore: usize,
    pub ban: usize,
    pub unchanged: usize,
    pub protected: usize,
    pub ignored: usize,
    pub conflicts: usize,
}

impl Summary {
    pub fn has_changes(&self) -> bool {
        self.create + self.restore + self.ban > 0
    }
}

/// Where the roster is read from; recorded in the plan as `table:S.T` or `file:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterSource {
    Table { schema: String, table: String },
    File(String),
}

impl RosterSource {
    pub const DEFAULT_SCHEMA: &str = "activity";
    pub const DEFAULT_TABLE: &str = "organization_people";

    pub fn default_table() -> RosterSource {
        RosterSource::Table {
            schema: Self::DEFAULT_SCHEMA.to_string(),
            table: Self::DEFAULT_TABLE.to_string(),
        }
    }

    /// Parse the plan file's `roster.source` value.
    pub fn parse(s: &str) -> Option<RosterSource> {
        if let Some(t) = s.strip_prefix("table:") {
            let (schema, table) = t.split_once('.')?;
            if schema.is_empty() || table.is_empty() || table.contains('.') {
                return None;
            }
            return Some(RosterSource::Table {
                schema: schema.to_string(),
                table: table.to_string(),
            });
        }
        s.strip_prefix("file:")
            .filter(|p| !p.is_empty())
            .map(|p| RosterSource::File(p.to_string()))
    }
}

impl Serialize for RosterSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RosterSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed_member(
            deserializer,
            "`roster.source` is neither `table:SCHEMA.TABLE` nor `file:PATH`",
            RosterSource::parse,
        )
    }
}

impl fmt::Display for RosterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RosterSource::Table { schema, table } => write!(f, "table:{schema}.{table}"),
            RosterSource::File(path) => write!(f, "file:{path}"),
        }
    }
}

/// A string member of the plan file read through `parse`; when that fails, serde's error
/// says `what` and the value (escaped).
fn parsed_member<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let raw = String::deserialize(deserializer)?;
    parse(&raw).ok_or_else(|| {
        serde::de::Error::custom(format_args!(
            "{what}: `{}`",
            crate::sanitize::sanitize(&raw)
        ))
    })
}

/// Accounts that are never banned: exact emails or whole domains (`@example.com`,
/// that domain exactly, not its subdomains). Matching is case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    pub emails: Vec<String>,
    pub domains: Vec<String>,
}

impl Protection {
    pub fn add(&mut self, spec: &str) {
        let spec = normalise_email(spec);
        match spec.strip_prefix('@') {
            Some(domain) => self.domains.push(domain.to_string()),
            None => self.emails.push(spec),
        }
    }

    /// `email` must already be normalised.
    pub fn covers(&self, email: &str) -> bool {
        self.rule_for(email).is_some()
    }

    /// The rule that covers `email` (normalised), as `--protect` takes it: the email
    /// itself, or `@domain`.
    pub fn rule_for(&self, email: &str) -> Option<String> {
        if self.emails.iter().any(|e| e == email) {
            return Some(email.to_string());
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d)?;
        self.domains
            .iter()
            .any(|d| d == domain)
            .then(|| format!("@{domain}"))
    }

    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.domains.is_empty()
    }
}

/// The first 8 characters of an id and `…`: enough to tell users apart on a screen.
/// Not escaped: the caller sanitises for where it shows it.
pub fn short_id(id: &str) -> String {
    let mut chars = id.chars();
    let head: String = chars.by_ref().take(8).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let e = Email::parse("  Dana@Example.COM \t").unwrap();
        assert_eq!(e.as_str(), "dana@example.com");
        assert_eq!(e.domain(), "example.com");
    }

    #[test]
    fn invalid_emails_are_refused_with_a_reason() {
        assert_eq!(Email::parse("   "), Err(InvalidEmail::Empty));
        assert_eq!(Email::parse("a@b@c.com"), Err(InvalidEmail::AtSigns(2)));
        assert_eq!(Email::parse("nobody"), Err(InvalidEmail::AtSigns(0)));
        assert_eq!(
            Email::parse("@example.com"),
            Err(InvalidEmail::EmptyLocalPart)
        );
        assert_eq!(
            Email::parse("a@localhost"),
            Err(InvalidEmail::DomainWithoutDot)
        );
        assert_eq!(
            Email::parse("jos\u{e9}@example.com"),
            Err(InvalidEmail::NotAscii)
        );
        assert_eq!(
            Email::parse("a b@example.com"),
            Err(InvalidEmail::WhitespaceOrControl)
        );
        assert_eq!(
            Email::parse("a\u{7}b@example.com"),
            Err(InvalidEmail::WhitespaceOrControl)
        );
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(matches!(Email::parse(&long), Err(InvalidEmail::TooLong(_))));
        let exactly = format!("{}@example.com", "a".repeat(255 - 12));
        assert!(Email::parse(&exactly).is_ok());
    }

    #[test]
    fn expired_ban_counts_as_active() {
        let now = datetime!(2026-11-29 07:00 UTC);
        let mut u = AuthUser {
            id: "1".into(),
            email: Some("a@example.com".into()),
            banned_until: Some(datetime!(2026-01-01 00:00 UTC)),
            deleted_at: None,
            is_anonymous: false,
            last_sign_in_at: None,
        };
        assert!(!u.is_banned(now));
        u.banned_until = Some(datetime!(2126-01-01 00:00 UTC));
        assert!(u.is_banned(now));
        assert!(u.is_long_banned(now));
        u.banned_until = Some(datetime!(2027-01-01 00:00 UTC));
        assert!(u.is_banned(now));
        assert!(!u.is_long_banned(now));
    }

    #[test]
    fn uuid_shape_is_8_4_4_4_12_hex() {
        assert!(is_uuid_shaped("9f2e0000-0000-4000-8000-00000000000a"));
        assert!(is_uuid_shaped("9F2E0000-0000-4000-8000-00000000000A"));
        for bad in [
            "",
            ".\t.",
            "..",
            "9f2e0000-0000-4000-8000-00000000000",
            "9f2e0000-0000-4000-8000-00000000000a0",
            "9f2e0000x0000-4000-8000-00000000000a",
            "9f2e0000-0000-4000-8000-00000000000g",
            "9f2e0000-0000-4000-8000/00000000000a",
        ] {
            assert!(!is_uuid_shaped(bad), "{bad:?}");
        }
    }

    #[test]
    fn effect_in_place_per_action() {
        let now = datetime!(2026-11-29 07:00 UTC);
        let user = |banned_until, deleted: bool| AuthUser {
            id: "9f2e0000-0000-4000-8000-00000000000a".into(),
            email: Some("a@example.com".into()),
            banned_until,
            deleted_at: deleted.then_some(now),
            is_anonymous: false,
            last_sign_in_at: None,
        };
        let active = user(None, false);
        let long = user(Some(datetime!(2126-01-01 00:00 UTC)), false);
        let short = user(Some(datetime!(2027-01-01 00:00 UTC)), false);
        // A ban that ended a few hundred milliseconds before the read is over.
        let just_ended = user(Some(now - time::Duration::milliseconds(300)), false);
        let deleted = user(None, true);
        for (u, create, ban, restore) in [
            (&active, true, false, true),
            (&long, false, true, false),
            (&short, false, false, false),
            (&just_ended, true, false, true),
            (&deleted, false, false, false),
        ] {
            assert_eq!(effect_in_place(ActionKind::Create, u, now), create, "{u:?}");
            assert_eq!(effect_in_place(ActionKind::Ban, u, now), ban, "{u:?}");
            assert_eq!(
                effect_in_place(ActionKind::Restore, u, now),
                restore,
                "{u:?}"
            );
        }
    }

    #[test]
    fn protection_matches_exact_domain_not_subdomains() {
        let mut p = Protection::default();
        p.add("@Example.com");
        p.add("Ops@Other.org");
        assert!(p.covers("x@example.com"));
        assert!(!p.covers("x@eu.example.com"));
        assert!(p.covers("ops@other.org"));
        assert!(!p.covers("dev@other.org"));
    }

    #[test]
    fn roster_source_round_trips() {
        for s in ["table:activity.organization_people", "file:roster.yaml"] {
            assert_eq!(RosterSource::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(RosterSource::parse("table:nodot"), None);
        assert_eq!(RosterSource::parse("file:"), None);
        assert_eq!(RosterSource::parse("s3:bucket"), None);
    }
}
