//! The only owner of the plan file's JSON (format_version 1): the domain `Plan`, which is
//! also its serde shape (members in the contract's order), its fingerprints and canonical
//! digest (`canonical` writes any value in byte order of keys), parsing with every refusal
//! the contract names, and the atomic write. Nothing here decides anything.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::canonical;
use crate::error::Error;
use crate::jsonout;
use crate::lookalike::LookAlike;
use crate::model::{
    ActionKind, Change, Conflict, Email, Observed, ObservedUser, RosterSource, Summary,
};
use crate::reconcile::Reconciliation;
use crate::regular_file;
use crate::sanitize::sanitize;

/// The only format this version writes and reads.
pub const FORMAT_VERSION: i64 = 1;

/// The `generator.name` every plan carries.
pub const GENERATOR_NAME: &str = "provision";

/// A plan as the rest of the program sees it, and as the file holds it: the members stand
/// in the contract's order, and a new member is one field here (serde writes it, the
/// digest covers it). Built by [`Plan::new`] (which computes the fingerprints and the
/// digest) or by [`Plan::parse`] (which verifies them); change no field afterwards, or the
/// recorded digest no longer describes the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Always [`FORMAT_VERSION`] (`parse` refuses any other before reading the rest).
    pub format_version: i64,
    pub generator: Generator,
    /// UTC, whole seconds.
    #[serde(with = "utc_seconds")]
    pub created_at: OffsetDateTime,
    /// UTC, whole seconds.
    #[serde(with = "utc_seconds")]
    pub expires_at: OffsetDateTime,
    /// The project URL the plan was made for (the file's `target.url`).
    #[serde(with = "url_member")]
    pub target: String,
    pub roster: RosterFingerprint,
    pub auth_users: AuthUsersFingerprint,
    pub summary: Summary,
    pub changes: Vec<Change>,
    pub conflicts: Vec<Conflict>,
    /// Creates that look like bans in this plan (sorted). Added within format 1: left
    /// out when empty, so plans without any read and hash as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub look_alikes: Vec<LookAlike>,
    pub observed: Observed,
    /// `sha256:` + hex over the canonical form of the whole file without `digest`.
    pub digest: String,
}

/// The program that wrote the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generator {
    pub name: String,
    pub version: String,
}

/// The plan's `roster` member: where the roster was read and what it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterFingerprint {
    pub source: RosterSource,
    /// Distinct valid normalised emails (`observed.roster`'s length).
    pub count: usize,
    /// [`roster_digest`] of `observed.roster`.
    pub digest: String,
}

/// The plan's `auth_users` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthUsersFingerprint {
    /// Users with an email, not soft-deleted (`observed.users`'s length).
    pub count: usize,
    /// [`auth_users_digest`] of `observed.users`.
    pub digest: String,
}

/// What a plan records besides the reconciliation itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMeta {
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub target: String,
    pub roster_source: RosterSource,
    pub generator_version: String,
}

impl Plan {
    /// Write a reconciliation down: counts and fingerprints from `rec.observed`, times in
    /// UTC truncated to whole seconds (as the file holds them), then the digest.
    pub fn new(rec: &Reconciliation, meta: PlanMeta) -> Plan {
        Plan::from_reconciliation(rec.clone(), meta)
    }

    /// Like [`Plan::new`], taking the reconciliation's lists over instead of copying
    /// them (at 100k users, tens of MB).
    pub fn from_reconciliation(rec: Reconciliation, meta: PlanMeta) -> Plan {
        let mut plan = Plan {
            format_version: FORMAT_VERSION,
            generator: Generator {
                name: GENERATOR_NAME.to_string(),
                version: meta.generator_version,
            },
            created_at: whole_seconds_utc(meta.created_at),
            expires_at: whole_seconds_utc(meta.expires_at),
            target: meta.target,
            roster: RosterFingerprint {
                source: meta.roster_source,
                count: rec.observed.roster.len(),
                digest: roster_digest(&rec.observed.roster),
            },
            auth_users: AuthUsersFingerprint {
                count: rec.observed.users.len(),
                digest: auth_users_digest(&rec.observed.users),
            },
            summary: rec.summary,
            changes: rec.changes,
            conflicts: rec.conflicts,
            look_alikes: rec.look_alikes,
            observed: rec.observed,
            digest: String::new(),
        };
        plan.digest = plan.compute_digest();
        plan
    }

    /// The file's text: pretty-printed (2 spaces), members in the contract's order,
    /// controls and bidi/zero-width characters as `\u` escapes (`jsonout`; the digest
    /// covers the decoded values, so it is the same either way), ending with a newline.
    pub fn to_pretty_json(&self) -> String {
        let mut text = jsonout::to_string_pretty(self);
        text.push('\n');
        text
    }

    /// Read a plan from text. `path` only names the file in errors.
    ///
    /// Refusals, in the order they are checked: not JSON, not an object, or no
    /// `format_version` -> `NotAPlan`; an integer `format_version` other than 1 ->
    /// `UnknownFormat`; no string `digest` -> `NotAPlan`; a digest that does not match the
    /// raw document (unknown members included) -> `DigestMismatch`; the wrong shape ->
    /// `NotAPlan` (with serde's line and column); fingerprints that do not match
    /// `observed` -> `DigestMismatch`.
    pub fn parse(text: &str, path: &Path) -> Result<Plan, Error> {
        let not_a_plan = |reason: String| Error::NotAPlan {
            path: path.to_path_buf(),
            reason,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| not_a_plan(format!("not JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(not_a_plan("the top level is not a JSON object".into()));
        };
        match object.get("format_version") {
            None => return Err(not_a_plan("it has no `format_version` member".into())),
            Some(v) => match (v.as_i64(), v.as_u64(), v.as_f64()) {
                (Some(FORMAT_VERSION), _, _) => {}
                (Some(_), _, _) | (None, Some(_), _) => {
                    return Err(Error::UnknownFormat(v.to_string()));
                }
                // An integer past u64 (`2^70`) reaches us as a float: it is a version
                // this program does not know, not a malformed file. A float that fits an
                // integer type (`1.0`) was written as a float and is refused as one.
                (None, None, Some(f)) if f.fract() == 0.0 && f.abs() >= 9.2e18 => {
                    return Err(Error::UnknownFormat(v.to_string()));
                }
                (None, None, _) => {
                    return Err(not_a_plan(format!(
                        "`format_version` is not an integer: {v}"
                    )));
                }
            },
        }
        let recorded = match object.remove("digest") {
            Some(Value::String(d)) => d,
            Some(_) => return Err(not_a_plan("`digest` is not a string".into())),
            None => return Err(not_a_plan("it has no `digest` member".into())),
        };
        let computed = digest_of(&Value::Object(object));
        if recorded != computed {
            return Err(Error::DigestMismatch { recorded, computed });
        }

        // The digest matches, so this is the file as written; now read it into domain
        // types. Parsing the text again (not the Value) keeps serde's line and column.
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| not_a_plan(format!("unexpected shape: {e}")))?;
        plan.check_changes().map_err(not_a_plan)?;

        // The fingerprints are derived from `observed`: a mismatch means the writer was not
        // this program, whatever the digest says.
        for (recorded, computed) in [
            (&plan.roster.digest, roster_digest(&plan.observed.roster)),
            (
                &plan.auth_users.digest,
                auth_users_digest(&plan.observed.users),
            ),
        ] {
            if *recorded != computed {
                return Err(Error::DigestMismatch {
                    recorded: recorded.clone(),
                    computed,
                });
            }
        }
        if plan.roster.count != plan.observed.roster.len()
            || plan.auth_users.count != plan.observed.users.len()
        {
            return Err(Error::NotAPlan {
                path: path.to_path_buf(),
                reason: "its `roster.count` or `auth_users.count` does not match `observed`".into(),
            });
        }
        // Whether the changes follow from `observed` (sorted lists included) is
        // `integrity::check`'s question, asked by every command after this one.
        Ok(plan)
    }

    /// Read and parse a plan file. Unreadable (or not a regular file, or over
    /// `MAX_INPUT_BYTES`) -> `ReadFile`; not UTF-8 -> `NotAPlan`.
    pub fn load(path: &Path) -> Result<Plan, Error> {
        Plan::parse(&Plan::read_text(path)?, path)
    }

    /// A plan file's text, as `load` reads it (`show --format json` prints it as stored).
    pub fn read_text(path: &Path) -> Result<String, Error> {
        let bytes = regular_file::read_input(path)?;
        String::from_utf8(bytes).map_err(|e| Error::NotAPlan {
            path: path.to_path_buf(),
            reason: format!("not UTF-8 text: {e}"),
        })
    }

    /// Write the plan so that readers see either the old file or the whole new one:
    /// a temporary file in the same directory, fsync, rename over `path`. The file is
    /// readable by its owner only (it holds personal data). On failure an existing file
    /// at `path` is left as it was.
    pub fn write_atomic(&self, path: &Path) -> Result<(), Error> {
        let write_error = |e: io::Error| Error::WriteFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let text = self.to_pretty_json();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(name) = path.file_name() else {
            return Err(write_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            )));
        };
        // Only a regular file is ever replaced (a device or FIFO at the path is refused).
        regular_file::check(path).map_err(|reason| Error::WriteFile {
            path: path.to_path_buf(),
            reason,
        })?;
        let (tmp_path, mut file) =
            create_temp(&dir, &name.to_string_lossy()).map_err(write_error)?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| {
                drop(file);
                fs::rename(&tmp_path, path)
            });
        if let Err(e) = written {
            // Best effort: the error that matters is the one already in hand.
            let _ = fs::remove_file(&tmp_path);
            return Err(write_error(e));
        }
        // Make the rename itself durable; not every platform lets a directory be opened.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The digest of the file this plan writes, streamed from the plan itself: the same
    /// bytes `digest_of` hashes for the parsed file (a property test holds the two
    /// together), without building a `Value` per user.
    fn compute_digest(&self) -> String {
        let mut hasher = HashWriter(Sha256::new());
        if let Err(e) = canonical::write(self, Some("digest"), &mut hasher) {
            // Hashing plain structs of strings and integers into memory cannot fail.
            unreachable!("hashing a plan failed: {e}");
        }
        hasher.finish()
    }

    /// Rules about changes serde cannot state. The error is the reason for `NotAPlan`.
    fn check_changes(&self) -> Result<(), String> {
        for (i, c) in self.changes.iter().enumerate() {
            match (c.action, &c.user_id) {
                (ActionKind::Create, Some(_)) => {
                    return Err(format!("`changes[{i}]` is a create with a `user_id`"));
                }
                (ActionKind::Restore | ActionKind::Ban, None) => {
                    return Err(format!(
                        "`changes[{i}]` is a {} without a `user_id`",
                        c.action
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The roster fingerprint: `sha256:` + hex SHA-256 of the canonical JSON array of the
/// distinct valid normalised roster emails in sorted order, e.g. the bytes
/// `["ann@example.com","bob@example.com"]`.
pub fn roster_digest(emails: &[Email]) -> String {
    hash_canonical(emails)
}

/// The auth-user fingerprint: `sha256:` + hex SHA-256 of the canonical JSON array of the
/// observed users (those with an email, not soft-deleted), sorted by email then id, each
/// an object with its keys in byte order, e.g. the bytes
/// `[{"banned":false,"email":"ann@example.com","id":"3f0c…"}]`
/// (email normalised; `banned` as of the moment of reading).
pub fn auth_users_digest(users: &[ObservedUser]) -> String {
    hash_canonical(users)
}

/// The plan digest over a JSON value: `sha256:` + hex of its canonical form. Canonical:
/// object members sorted by key (byte order), no whitespace outside strings, strings (keys
/// included) escaped as serde_json escapes them, numbers as serde_json prints them
/// (integers, in every plan this program writes), UTF-8. `canonical` sorts the members
/// itself rather than trusting `serde_json::Map`, whose order depends on the
/// `preserve_order` feature.
pub(crate) fn digest_of(value: &Value) -> String {
    hash_canonical(value)
}

/// `sha256:` + hex of the canonical form, streamed into the hash in chunks: a million
/// users never sit in one buffer.
fn hash_canonical<T: Serialize + ?Sized>(value: &T) -> String {
    let mut hasher = HashWriter(Sha256::new());
    if let Err(e) = canonical::write(value, None, &mut hasher) {
        // Strings, integers, lists and string-keyed objects always have a canonical form,
        // and hashing into memory cannot fail.
        unreachable!("hashing a canonical form failed: {e}");
    }
    hasher.finish()
}

/// Append the canonical form of `value` to `buf`, handing full chunks to the hash.
#[cfg(test)]
fn write_canonical(buf: &mut Vec<u8>, hasher: &mut HashWriter, value: &Value) {
    if let Err(e) = canonical::write_into(buf, hasher, value, None) {
        unreachable!("a JSON value always has a canonical form: {e}");
    }
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl HashWriter {
    fn finish(self) -> String {
        let bytes = self.0.finalize();
        let mut out = String::with_capacity(7 + 2 * bytes.len());
        out.push_str("sha256:");
        for b in bytes.iter() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn whole_seconds_utc(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t - time::Duration::nanoseconds(i64::from(t.nanosecond()))
}

/// RFC 3339, whole seconds, `Z`: `2026-11-29T07:00:00Z`.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let t = whole_seconds_utc(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(whole_seconds_utc)
        .map_err(|e| format!("`{}` is not an RFC 3339 time: {e}", sanitize(s)))
}

/// `created_at` and `expires_at`: RFC 3339, whole seconds, `Z`.
mod utc_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse_time(&raw).map_err(serde::de::Error::custom)
    }
}

/// `target`: the URL as `{"url": "…"}`, leaving room for more about the target.
mod url_member {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Target<T> {
        url: T,
    }

    pub fn serialize<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
        Target { url }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Target::<String>::deserialize(d).map(|t| t.url)
    }
}

/// Create the temporary file next to the target, owner-only from the first byte.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last_error = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match regular_file::owner_only()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{AuthUser, RosterEntry};
    use crate::reconcile::{Policy, reconcile};
    use time::macros::datetime;

    fn now() -> OffsetDateTime {
        datetime!(2026-11-29 07:00 UTC)
    }

    /// A user, banned for a century or active (shared with the render and drift tests).
    pub(crate) fn user(id: &str, email: &str, banned: bool) -> AuthUser {
        AuthUser {
            id: id.into(),
            email: Some(email.into()),
            banned_until: banned.then(|| now() + time::Duration::days(365 * 100)),
            deleted_at: None,
            is_anonymous: false,
            last_sign_in_at: None,
        }
    }

    /// A reconciliation written down as a plan made at `now()` for a fixed target.
    pub(crate) fn plan_for(rec: &crate::reconcile::Reconciliation) -> Plan {
        Plan::new(
            rec,
            PlanMeta {
                created_at: now(),
                expires_at: now() + time::Duration::days(7),
                target: "https://abcd.supabase.co".into(),
                roster_source: RosterSource::default_table(),
                generator_version: "0.1.0".into(),
            },
        )
    }

    /// A small plan touching every member: a create, a restore, a ban, a conflict.
    pub(crate) fn sample_plan() -> Plan {
        let roster: Vec<RosterEntry> = [
            "ann@example.com",
            "Bob@example.com",
            "dana@example.com",
            "not-an-email",
        ]
        .iter()
        .enumerate()
        .map(|(i, e)| RosterEntry {
            email: Some(e.to_string()),
            origin: format!("row {}", i + 2),
        })
        .collect();
        let users = vec![
            user(
                "0b1e6c4a-0000-4000-8000-000000000001",
                "ann@example.com",
                false,
            ),
            user(
                "0b1e6c4a-0000-4000-8000-000000000002",
                "bob@example.com",
                true,
            ),
            user(
                "0b1e6c4a-0000-4000-8000-000000000003",
                "Carol@example.com",
                false,
            ),
            AuthUser {
                email: None,
                ..user("0b1e6c4a-0000-4000-8000-000000000004", "", false)
            },
        ];
        let rec = reconcile(&roster, &users, now(), &Policy::default());
        Plan::new(
            &rec,
            PlanMeta {
                created_at: now() + time::Duration::milliseconds(1500),
                expires_at: now() + time::Duration::days(7),
                target: "https://abcd.supabase.co".into(),
                roster_source: RosterSource::default_table(),
                generator_version: "0.1.0".into(),
            },
        )
    }

    fn path() -> &'static Path {
        Path::new("plan.json")
    }

    fn value_of(plan: &Plan) -> Value {
        serde_json::from_str(&plan.to_pretty_json()).unwrap()
    }

    /// Re-sign an edited document the way a writer would.
    fn resign(mut v: Value) -> Value {
        let obj = v.as_object_mut().unwrap();
        obj.remove("digest");
        let d = digest_of(&v);
        v.as_object_mut()
            .unwrap()
            .insert("digest".into(), Value::String(d));
        v
    }

    fn canonical(v: &Value) -> String {
        let mut hasher = HashWriter(Sha256::new());
        let mut buf = Vec::new();
        write_canonical(&mut buf, &mut hasher, v);
        String::from_utf8(buf).unwrap()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        let mut h = HashWriter(Sha256::new());
        h.0.update(bytes);
        h.finish()
    }

    #[test]
    fn golden_plan_json() {
        insta::assert_snapshot!(sample_plan().to_pretty_json());
    }

    #[test]
    fn look_alikes_are_recorded_after_conflicts_and_covered_by_the_digest() {
        let roster: Vec<RosterEntry> = ["jon@example.com"]
            .iter()
            .map(|e| RosterEntry {
                email: Some(e.to_string()),
                origin: "row 2".into(),
            })
            .collect();
        let users = vec![user(
            "0b1e6c4a-0000-4000-8000-000000000002",
            "john@example.com",
            false,
        )];
        let plan = plan_for(&reconcile(&roster, &users, now(), &Policy::default()));
        let text = plan.to_pretty_json();
        assert!(
            text.contains(concat!(
                "  \"conflicts\": [],\n",
                "  \"look_alikes\": [\n",
                "    {\n",
                "      \"create\": \"jon@example.com\",\n",
                "      \"ban\": \"john@example.com\"\n",
                "    }\n",
                "  ],\n",
                "  \"observed\": {"
            )),
            "{text}"
        );
        assert_eq!(Plan::parse(&text, path()).unwrap(), plan);
        let mut v = value_of(&plan);
        v["look_alikes"][0]["ban"] = "johnny@example.com".into();
        let err = Plan::parse(&v.to_string(), path()).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        // A plan without look-alikes has no such member, as before the member existed.
        assert!(value_of(&sample_plan()).get("look_alikes").is_none());
    }

    #[test]
    fn round_trips_through_its_text() {
        let plan = sample_plan();
        let text = plan.to_pretty_json();
        assert!(text.ends_with("}\n"));
        assert_eq!(Plan::parse(&text, path()).unwrap(), plan);
    }

    #[test]
    fn times_are_utc_whole_seconds_with_z() {
        let plan = sample_plan();
        let v = value_of(&plan);
        assert_eq!(v["created_at"], "2026-11-29T07:00:01Z");
        assert_eq!(v["expires_at"], "2026-12-06T07:00:00Z");
        let offset = datetime!(2026-11-29 09:00:00.25 +02:00);
        assert_eq!(format_time(offset), "2026-11-29T07:00:00Z");
    }

    #[test]
    fn conflict_user_ids_are_omitted_when_no_user_is_involved() {
        let v = value_of(&sample_plan());
        let conflicts = v["conflicts"].as_array().unwrap();
        assert_eq!(conflicts.len(), 1);
        assert!(conflicts[0].get("user_ids").is_none());
        // And creates carry no user_id.
        assert!(v["changes"][0].get("user_id").is_none());
    }

    #[test]
    fn re_indenting_or_reordering_keeps_the_digest_valid() {
        let plan = sample_plan();
        let v = value_of(&plan);
        let compact = serde_json::to_string(&v).unwrap();
        assert_eq!(Plan::parse(&compact, path()).unwrap(), plan);
        // serde_json's Map sorts keys here, so this is also a reordering of members.
        let reindented = compact.replace(",\"", ",\n        \"");
        assert_eq!(Plan::parse(&reindented, path()).unwrap(), plan);
    }

    #[test]
    fn any_edit_breaks_the_digest() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "change a value",
                Box::new(|v| v["summary"]["ban"] = 0.into()),
            ),
            (
                "change a ban into a restore",
                Box::new(|v| v["changes"][2]["action"] = "restore".into()),
            ),
            (
                "flip an observed state",
                Box::new(|v| v["observed"]["users"][0]["banned"] = true.into()),
            ),
            (
                "add a member",
                Box::new(|v| {
                    v.as_object_mut()
                        .unwrap()
                        .insert("note".into(), "hi".into());
                }),
            ),
            (
                "remove a member",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("conflicts");
                }),
            ),
            (
                "remove a change",
                Box::new(|v| {
                    v["changes"].as_array_mut().unwrap().pop();
                }),
            ),
        ];
        for (what, edit) in edits {
            let mut v = value_of(&sample_plan());
            edit(&mut v);
            let text = serde_json::to_string_pretty(&v).unwrap();
            let err = Plan::parse(&text, path()).unwrap_err();
            assert!(matches!(err, Error::DigestMismatch { .. }), "{what}: {err}");
            assert_eq!(err.exit(), crate::error::Exit::Refused, "{what}");
        }
    }

    #[test]
    fn unknown_members_are_accepted_and_covered_by_the_digest() {
        let plan = sample_plan();
        let mut v = value_of(&plan);
        v.as_object_mut()
            .unwrap()
            .insert("reviewed_by".into(), serde_json::json!({"name": "ops"}));
        v["summary"]
            .as_object_mut()
            .unwrap()
            .insert("extra".into(), 7.into());
        let v = resign(v);
        assert_eq!(
            Plan::parse(&v.to_string(), path()).unwrap().changes,
            plan.changes
        );
        let mut edited = v.clone();
        edited["reviewed_by"]["name"] = "mallory".into();
        assert!(matches!(
            Plan::parse(&edited.to_string(), path()),
            Err(Error::DigestMismatch { .. })
        ));
    }

    #[test]
    fn unknown_format_version_is_refused_with_exit_3() {
        let mut v = value_of(&sample_plan());
        v["format_version"] = 2.into();
        let err = Plan::parse(&v.to_string(), path()).unwrap_err();
        assert!(matches!(&err, Error::UnknownFormat(v) if v == "2"), "{err}");
        assert_eq!(err.exit(), crate::error::Exit::Refused);
        // Even an otherwise broken file: the version decides first.
        let err = Plan::parse(r#"{"format_version": 3}"#, path()).unwrap_err();
        assert!(matches!(&err, Error::UnknownFormat(v) if v == "3"), "{err}");
        // Too large for any integer type: still an unknown version (exit 3).
        for text in [
            r#"{"format_version": 1180591620717411303424}"#,
            r#"{"format_version": -1180591620717411303424}"#,
            r#"{"format_version": 18446744073709551615}"#,
        ] {
            let err = Plan::parse(text, path()).unwrap_err();
            assert!(matches!(err, Error::UnknownFormat(_)), "{text}: {err}");
            assert_eq!(err.exit(), crate::error::Exit::Refused, "{text}");
        }
    }

    #[test]
    fn not_json_or_no_format_version_is_not_a_plan() {
        for (text, needle) in [
            ("", "line 1 column 0"),
            ("{\n  \"format_version\": 1,\n  oops", "line 3 column 3"),
            ("[1, 2]", "not a JSON object"),
            (r#"{"digest": "sha256:00"}"#, "no `format_version`"),
            (r#"{"format_version": "1"}"#, "not an integer"),
            (r#"{"format_version": 1.0}"#, "not an integer"),
            (r#"{"format_version": 1}"#, "no `digest`"),
        ] {
            let err = Plan::parse(text, path()).unwrap_err();
            assert!(matches!(err, Error::NotAPlan { .. }), "{text}: {err}");
            assert!(err.to_string().contains(needle), "{text}: {err}");
            assert_eq!(err.exit(), crate::error::Exit::Error);
        }
    }

    #[test]
    fn wrong_shape_with_a_valid_digest_is_not_a_plan_with_line_and_column() {
        let mut v = value_of(&sample_plan());
        v["summary"]["ban"] = "one".into();
        let text = serde_json::to_string_pretty(&resign(v)).unwrap();
        let err = Plan::parse(&text, path()).unwrap_err();
        assert!(matches!(err, Error::NotAPlan { .. }), "{err}");
        assert!(err.to_string().contains("line"), "{err}");

        let mut v = value_of(&sample_plan());
        v["changes"][0]["action"] = "delete".into();
        let err = Plan::parse(&resign(v).to_string(), path()).unwrap_err();
        assert!(err.to_string().contains("unknown: `delete`"), "{err}");

        let mut v = value_of(&sample_plan());
        v["changes"][2].as_object_mut().unwrap().remove("user_id");
        let err = Plan::parse(&resign(v).to_string(), path()).unwrap_err();
        assert!(err.to_string().contains("without a `user_id`"), "{err}");
    }

    #[test]
    fn the_file_escapes_controls_and_bidi_and_the_digest_is_the_same_either_way() {
        // A hostile email the server holds (bidi override, C1, line separator).
        let evil = "admin\u{202e}moc\u{85}x\u{2028}@evil.com";
        let rec = reconcile(
            &[],
            &[user("0b1e6c4a-0000-4000-8000-000000000009", evil, false)],
            now(),
            &Policy::default(),
        );
        let plan = plan_for(&rec);
        let text = plan.to_pretty_json();
        assert!(
            !text
                .chars()
                .any(|c| crate::sanitize::needs_escape(c) && c != '\n'),
            "{text}"
        );
        assert!(
            text.contains(r#""email": "admin\u202emoc\u0085x\u2028@evil.com""#),
            "{text}"
        );
        // The same document written raw (serde_json leaves these characters as they are).
        let raw = serde_json::to_string_pretty(&plan).unwrap();
        assert!(raw.contains('\u{202e}'));
        assert_eq!(Plan::parse(&text, path()).unwrap(), plan);
        assert_eq!(Plan::parse(&raw, path()).unwrap(), plan);
        assert_eq!(Plan::parse(&raw, path()).unwrap().digest, plan.digest);
    }

    #[test]
    fn fingerprints_must_match_observed() {
        let mut v = value_of(&sample_plan());
        v["observed"]["users"][0]["banned"] = true.into();
        let err = Plan::parse(&resign(v).to_string(), path()).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn canonical_form_sorts_keys_and_escapes_like_serde_json() {
        let v = serde_json::json!({"b": [1, {"z": null, "a": true}], "a": "x\u{1}\"é", "B": -3});
        assert_eq!(
            canonical(&v),
            "{\"B\":-3,\"a\":\"x\\u0001\\\"é\",\"b\":[1,{\"a\":true,\"z\":null}]}"
        );
        assert_eq!(digest_of(&v), sha256_hex(canonical(&v).as_bytes()));
    }

    #[test]
    fn fingerprint_preimages_are_as_documented() {
        let plan = sample_plan();
        assert_eq!(
            plan.roster.digest,
            sha256_hex(br#"["ann@example.com","bob@example.com","dana@example.com"]"#)
        );
        assert_eq!(
            plan.auth_users.digest,
            sha256_hex(
                concat!(
                    r#"[{"banned":false,"email":"ann@example.com","id":"0b1e6c4a-0000-4000-8000-000000000001"},"#,
                    r#"{"banned":true,"email":"bob@example.com","id":"0b1e6c4a-0000-4000-8000-000000000002"},"#,
                    r#"{"banned":false,"email":"carol@example.com","id":"0b1e6c4a-0000-4000-8000-000000000003"}]"#
                )
                .as_bytes()
            )
        );
        assert_eq!(roster_digest(&[]), sha256_hex(b"[]"));
        // The whole-plan digest is the canonical form without `digest`.
        let mut v = value_of(&plan);
        v.as_object_mut().unwrap().remove("digest");
        assert_eq!(plan.digest, sha256_hex(canonical(&v).as_bytes()));
        assert!(plan.digest.starts_with("sha256:") && plan.digest.len() == 7 + 64);
    }

    #[test]
    fn write_atomic_writes_owner_only_and_load_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, "old").unwrap();
        let plan = sample_plan();
        plan.write_atomic(&path).unwrap();
        assert_eq!(Plan::load(&path).unwrap(), plan);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_leaves_the_existing_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: the rename fails after the temporary file was written.
        let path = dir.path().join("plan.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        let err = sample_plan().write_atomic(&path).unwrap_err();
        assert!(matches!(err, Error::WriteFile { .. }), "{err}");
        assert_eq!(std::fs::read(path.join("keep")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A missing directory is a write error too.
        let err = sample_plan()
            .write_atomic(&dir.path().join("no/such/dir/plan.json"))
            .unwrap_err();
        assert!(matches!(err, Error::WriteFile { .. }), "{err}");
    }

    #[test]
    fn load_reports_unreadable_and_non_utf8_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = Plan::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(err, Error::ReadFile { .. }), "{err}");
        let path = dir.path().join("bin.json");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = Plan::load(&path).unwrap_err();
        assert!(matches!(err, Error::NotAPlan { .. }), "{err}");
    }

    proptest::proptest! {
        /// The digest `Plan::new` streams from borrowed data is the one `parse` computes
        /// from the raw document, whatever the strings hold (quotes, controls, non-ASCII).
        #[test]
        fn streamed_digest_matches_the_raw_document(
            strings in proptest::collection::vec(proptest::prelude::any::<String>(), 1..6),
            flags in proptest::collection::vec(proptest::prelude::any::<bool>(), 6),
        ) {
            let s = |i: usize| strings[i % strings.len()].clone();
            let mut users: Vec<ObservedUser> = strings
                .iter()
                .enumerate()
                .map(|(i, e)| ObservedUser { email: e.clone(), id: format!("{i}{}", s(i + 1)), banned: flags[i % 6] })
                .collect();
            users.sort();
            users.dedup_by(|a, b| a.email == b.email && a.id == b.id);
            let rec = Reconciliation {
                changes: vec![
                    Change { action: ActionKind::Create, email: s(0), user_id: None },
                    Change { action: ActionKind::Ban, email: s(1), user_id: Some(s(2)) },
                ],
                conflicts: vec![Conflict { email: s(3), reason: s(4), user_ids: if flags[0] { vec![s(5)] } else { vec![] } }],
                summary: Summary { create: 1, ban: 1, conflicts: 1, ..Summary::default() },
                observed: Observed {
                    roster: vec![Email::parse("ann@example.com").unwrap()],
                    users,
                },
                look_alikes: vec![],
                warnings: vec![],
                active_with_email: 0,
            };
            let plan = Plan::new(&rec, PlanMeta {
                created_at: now(),
                expires_at: now(),
                target: s(1),
                roster_source: RosterSource::File(format!("x{}", s(2))),
                generator_version: s(3),
            });
            let parsed = Plan::parse(&plan.to_pretty_json(), path());
            proptest::prop_assert_eq!(parsed.ok(), Some(plan));
        }
    }
}
