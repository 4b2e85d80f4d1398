//! `provision.toml`, the policy file: its format, validation, and errors that name the
//! file, the line and the key. It reads one file and returns checked values; layering
//! them under the flags is `config.rs`'s job. Nothing here touches the network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::cli::{parse_expires_in, parse_protect, parse_table};
use crate::error::Error;
use crate::model::RosterSource;

/// The file read from the working directory when `--config` is not given.
pub const DEFAULT_NAME: &str = "provision.toml";

/// A policy file is a few lines; anything this large is not one.
const MAX_BYTES: u64 = 1024 * 1024;

/// The checked contents of a policy file. Paths are already joined to the file's
/// directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// The file as named (`provision.toml`, or the `--config` value).
    pub path: PathBuf,
    pub roster: Option<RosterSource>,
    /// Normalised `--protect` values (`ops@example.com`, `@bots.example.com`).
    pub protect: Vec<String>,
    pub max_bans: Option<usize>,
    pub allow_empty_roster: Option<bool>,
    pub expires_in: Option<Duration>,
    pub concurrency: Option<u32>,
    pub timeout: Option<u64>,
    pub approvals: Option<Approvals>,
}

/// The `[approvals]` table: who may approve a plan, and how many must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    /// OpenSSH allowed-signers file, joined to the policy file's directory.
    pub allowed_signers: PathBuf,
    /// Distinct approvers `apply` needs (at least 1).
    pub required: u32,
}

// The wire form. Private: the rest of the code sees `PolicyFile`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    roster: RosterToml,
    #[serde(default)]
    policy: PolicyToml,
    #[serde(default)]
    client: ClientToml,
    approvals: Option<ApprovalsToml>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RosterToml {
    table: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    protect: Option<Vec<Spanned<String>>>,
    max_bans: Option<usize>,
    allow_empty_roster: Option<bool>,
    expires_in: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientToml {
    concurrency: Option<Spanned<i64>>,
    timeout: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsToml {
    allowed_signers: Spanned<String>,
    required: Spanned<i64>,
}

/// Find and read the policy file: `--config FILE` (which must exist), else
/// `provision.toml` in `dir` (the working directory) when it exists.
pub fn load(config: Option<&Path>, dir: &Path) -> Result<Option<PolicyFile>, Error> {
    let (shown, full) = match config {
        Some(path) => {
            let full = dir.join(path);
            if !full.exists() {
                return Err(Error::ConfigMissing {
                    path: path.to_path_buf(),
                });
            }
            (path.to_path_buf(), full)
        }
        None => {
            let full = dir.join(DEFAULT_NAME);
            if !full.exists() {
                return Ok(None);
            }
            (PathBuf::from(DEFAULT_NAME), full)
        }
    };
    let read_err = |reason: String| Error::ReadFile {
        path: shown.clone(),
        reason,
    };
    let meta = std::fs::metadata(&full).map_err(|e| read_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(read_err("not a regular file".into()));
    }
    if meta.len() > MAX_BYTES {
        return Err(read_err(format!(
            "{} bytes is too large for a policy file",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(&full).map_err(|e| read_err(e.to_string()))?;
    parse(&text, &shown).map(Some)
}

/// Parse and check a policy file's text. `path` is the file as named: it appears in
/// errors, and relative paths inside the file are joined to its directory.
pub fn parse(text: &str, path: &Path) -> Result<PolicyFile, Error> {
    let at = |span: Option<std::ops::Range<usize>>, key: &str, reason: String| Error::PolicyFile {
        path: path.to_path_buf(),
        line: span.map(|s| line_of(text, s.start)),
        key: key.to_string(),
        reason,
    };
    let de =
        toml::Deserializer::parse(text).map_err(|e| at(e.span(), "", first_line(e.message())))?;
    let raw: FileToml = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = first_line(inner.message());
        // The path names the key, an unknown one included ("." when there is none).
        let key = if key == "." { String::new() } else { key };
        at(inner.span(), &key, message)
    })?;

    let dir = path.parent().unwrap_or(Path::new(""));
    let mut out = PolicyFile {
        path: path.to_path_buf(),
        ..PolicyFile::default()
    };

    out.roster = match (raw.roster.table, raw.roster.file) {
        (Some(_), Some(file)) => {
            return Err(at(
                Some(file.span()),
                "roster.file",
                "`table` and `file` are both set; keep one roster source".into(),
            ));
        }
        (Some(table), None) => {
            let (schema, name) = parse_table(table.get_ref())
                .map_err(|why| at(Some(table.span()), "roster.table", why))?;
            Some(RosterSource::Table {
                schema,
                table: name,
            })
        }
        (None, Some(file)) => {
            if file.get_ref().trim().is_empty() {
                return Err(at(
                    Some(file.span()),
                    "roster.file",
                    "the path is empty".into(),
                ));
            }
            let joined = dir.join(file.get_ref());
            let joined = joined.to_str().ok_or_else(|| {
                at(
                    Some(file.span()),
                    "roster.file",
                    "the joined path is not valid UTF-8".into(),
                )
            })?;
            Some(RosterSource::File(joined.to_string()))
        }
        (None, None) => None,
    };

    for p in raw.policy.protect.unwrap_or_default() {
        let v =
            parse_protect(p.get_ref()).map_err(|why| at(Some(p.span()), "policy.protect", why))?;
        out.protect.push(v);
    }
    out.max_bans = raw.policy.max_bans;
    out.allow_empty_roster = raw.policy.allow_empty_roster;
    if let Some(e) = raw.policy.expires_in {
        out.expires_in = Some(
            parse_expires_in(e.get_ref())
                .map_err(|why| at(Some(e.span()), "policy.expires_in", why))?,
        );
    }

    if let Some(c) = raw.client.concurrency {
        let v = in_range(*c.get_ref(), 1, 1024).ok_or_else(|| {
            at(
                Some(c.span()),
                "client.concurrency",
                "must be 1 to 1024".into(),
            )
        })?;
        out.concurrency = Some(v as u32);
    }
    if let Some(t) = raw.client.timeout {
        let v = in_range(*t.get_ref(), 1, 3600).ok_or_else(|| {
            at(
                Some(t.span()),
                "client.timeout",
                "must be 1 to 3600 (seconds)".into(),
            )
        })?;
        out.timeout = Some(v as u64);
    }

    if let Some(a) = raw.approvals {
        let signers = a.allowed_signers.get_ref();
        if signers.trim().is_empty() {
            return Err(at(
                Some(a.allowed_signers.span()),
                "approvals.allowed_signers",
                "the path is empty".into(),
            ));
        }
        let required = in_range(*a.required.get_ref(), 1, 1000).ok_or_else(|| {
            at(
                Some(a.required.span()),
                "approvals.required",
                "must be at least 1 (and at most 1000)".into(),
            )
        })?;
        out.approvals = Some(Approvals {
            allowed_signers: dir.join(signers),
            required: required as u32,
        });
    }
    Ok(out)
}

fn in_range(v: i64, min: i64, max: i64) -> Option<i64> {
    (min..=max).contains(&v).then_some(v)
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("ops/provision.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_contract_example_parses() {
        let text = r#"
[roster]
file = "roster.yaml"

[policy]
protect = ["Ops@Example.com", "@bots.example.com"]
max_bans = 20
allow_empty_roster = false
expires_in = "2w"

[client]
concurrency = 4
timeout = 10

[approvals]
allowed_signers = "allowed_signers"
required = 2
"#;
        let p = parse(text, Path::new("ops/provision.toml")).unwrap();
        assert_eq!(
            p,
            PolicyFile {
                path: PathBuf::from("ops/provision.toml"),
                roster: Some(RosterSource::File("ops/roster.yaml".into())),
                protect: vec!["ops@example.com".into(), "@bots.example.com".into()],
                max_bans: Some(20),
                allow_empty_roster: Some(false),
                expires_in: Some(Duration::from_secs(14 * 86_400)),
                concurrency: Some(4),
                timeout: Some(10),
                approvals: Some(Approvals {
                    allowed_signers: PathBuf::from("ops/allowed_signers"),
                    required: 2,
                }),
            }
        );
    }

    #[test]
    fn paths_in_a_file_in_the_working_directory_stay_as_given() {
        let p = parse(
            "[roster]\nfile = \"team/roster.yaml\"\n",
            Path::new("provision.toml"),
        )
        .unwrap();
        assert_eq!(
            p.roster,
            Some(RosterSource::File("team/roster.yaml".into()))
        );
        let p = parse(
            "[roster]\nfile = \"/srv/roster.yaml\"\n",
            Path::new("a/provision.toml"),
        )
        .unwrap();
        assert_eq!(
            p.roster,
            Some(RosterSource::File("/srv/roster.yaml".into()))
        );
        let p = parse(
            "[roster]\ntable = \"hr.people\"\n",
            Path::new("provision.toml"),
        )
        .unwrap();
        assert_eq!(
            p.roster,
            Some(RosterSource::Table {
                schema: "hr".into(),
                table: "people".into()
            })
        );
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let p = parse("", Path::new("provision.toml")).unwrap();
        assert_eq!(
            p,
            PolicyFile {
                path: PathBuf::from("provision.toml"),
                ..PolicyFile::default()
            }
        );
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        assert_eq!(
            err("[policy]\nmax_bans = 3\nprotekt = [\"a@b.co\"]\n"),
            "error: `ops/provision.toml` line 3, key `policy.protekt`: unknown field `protekt`, expected one of `protect`, `max_bans`, `allow_empty_roster`, `expires_in`\n\
             Fix the policy file and run the command again; nothing was read from Supabase."
        );
        assert_eq!(
            err("[policy]\n\nmax_bans = \"ten\"\n"),
            "error: `ops/provision.toml` line 3, key `policy.max_bans`: invalid type: string \"ten\", expected usize\n\
             Fix the policy file and run the command again; nothing was read from Supabase."
        );
        assert_eq!(
            err("[roster]\ntable = \"a.b\"\nfile = \"r.yaml\"\n"),
            "error: `ops/provision.toml` line 3, key `roster.file`: `table` and `file` are both set; keep one roster source\n\
             Fix the policy file and run the command again; nothing was read from Supabase."
        );
        assert_eq!(
            err("[rooster]\n"),
            "error: `ops/provision.toml` line 1, key `rooster`: unknown field `rooster`, expected one of `roster`, `policy`, `client`, `approvals`\n\
             Fix the policy file and run the command again; nothing was read from Supabase."
        );
    }

    #[test]
    fn values_are_checked_as_the_flags_check_them() {
        for (text, key, line) in [
            ("[policy]\nexpires_in = \"7y\"\n", "policy.expires_in", 2),
            (
                "[policy]\nprotect = [\"ok@a.co\",\n \"nobody\"]\n",
                "policy.protect",
                3,
            ),
            ("[roster]\ntable = \"nodot\"\n", "roster.table", 2),
            ("[client]\nconcurrency = 0\n", "client.concurrency", 2),
            ("[client]\ntimeout = -1\n", "client.timeout", 2),
            ("[policy]\nmax_bans = -1\n", "policy.max_bans", 2),
            (
                "[approvals]\nallowed_signers = \"s\"\nrequired = 0\n",
                "approvals.required",
                3,
            ),
            ("[approvals]\nrequired = 1\n", "approvals", 1),
            (
                "[policy]\nallow_empty_roster = \"yes\"\n",
                "policy.allow_empty_roster",
                2,
            ),
        ] {
            let e = parse(text, Path::new("provision.toml")).unwrap_err();
            let Error::PolicyFile {
                key: k, line: l, ..
            } = &e
            else {
                panic!("{text}: {e}")
            };
            assert_eq!((k.as_str(), *l), (key, Some(line)), "{text}: {e}");
        }
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = parse("[policy]\nmax_bans = = 3\n", Path::new("provision.toml")).unwrap_err();
        let Error::PolicyFile { line, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(line, Some(2));
    }

    #[test]
    fn a_missing_config_is_an_error_and_a_missing_default_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(None, dir.path()).unwrap(), None);
        let e = load(Some(Path::new("nope.toml")), dir.path()).unwrap_err();
        assert!(matches!(e, Error::ConfigMissing { .. }), "{e}");
        std::fs::write(dir.path().join(DEFAULT_NAME), "[policy]\nmax_bans = 2\n").unwrap();
        let p = load(None, dir.path()).unwrap().unwrap();
        assert_eq!(p.max_bans, Some(2));
        std::fs::create_dir(dir.path().join("d.toml")).unwrap();
        let e = load(Some(Path::new("d.toml")), dir.path()).unwrap_err();
        assert!(matches!(e, Error::ReadFile { .. }), "{e}");
    }
}
