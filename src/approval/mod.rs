//! Approvals: OpenSSH `SSHSIG` signatures over a plan's digest (`"<digest>\n"`, namespace
//! `provision-plan`), checked against an allowed-signers file and counted once per
//! principal. No terminal I/O and no clock: callers pass `now`. Cryptography is
//! RustCrypto's `ssh-key`; nothing here signs or hashes by hand.

pub mod allowed_signers;
pub mod pattern;
pub mod sign;

use std::fmt;
use std::path::{Path, PathBuf};

use ssh_key::{Fingerprint, HashAlg, PublicKey, SshSig};
use time::OffsetDateTime;

pub use allowed_signers::{AllowedSigners, LineError, LocalTime, SignerEntry};
use pattern::{ListMatch, match_pattern_list};

use crate::error::Error;
use crate::regular_file::read_bounded;

/// The SSHSIG namespace of a plan approval.
pub const NAMESPACE: &str = "provision-plan";

/// An approval file is a few hundred bytes; anything past this is not one.
pub const MAX_APPROVAL_BYTES: u64 = 64 * 1024;

/// An allowed-signers file of a few thousand approvers stays far below this.
pub const MAX_ALLOWED_SIGNERS_BYTES: u64 = 4 * 1024 * 1024;

/// The message an approval signs: the plan's digest and one newline.
pub fn signed_message(digest: &str) -> String {
    format!("{digest}\n")
}

/// What an apply of a plan file requires, resolved from flags and the policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// The allowed-signers file; needed whenever `required` > 0 or approvals are shown.
    pub allowed_signers: Option<PathBuf>,
    /// Distinct approvers needed; 0 means approvals are not required.
    pub required: u32,
}

/// An approval as read from its file: the signature, or why it could not be read.
#[derive(Debug, Clone)]
pub struct ApprovalFile {
    pub path: PathBuf,
    pub signature: Result<SshSig, Refusal>,
}

impl ApprovalFile {
    /// Read an approval file: a regular file of at most [`MAX_APPROVAL_BYTES`] holding one
    /// armored SSH signature. Problems become the approval's refusal, not an error: the
    /// other approvals may still be enough.
    pub fn read(path: &Path) -> ApprovalFile {
        let signature = read_bounded(path, MAX_APPROVAL_BYTES)
            .map_err(Refusal::Unreadable)
            .and_then(|bytes| parse_signature(&bytes));
        ApprovalFile {
            path: path.to_path_buf(),
            signature,
        }
    }

    /// An approval from bytes already in hand (`path` names it in reports).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> ApprovalFile {
        ApprovalFile {
            path: path.to_path_buf(),
            signature: parse_signature(bytes),
        }
    }
}

fn parse_signature(bytes: &[u8]) -> Result<SshSig, Refusal> {
    // Tickets and mail turn line ends into CRLF; the armor means the same either way.
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Refusal::Malformed("not text".into()))?
        .replace("\r\n", "\n");
    let sig = SshSig::from_pem(text.trim()).map_err(|e| Refusal::Malformed(e.to_string()))?;
    // The decoder tolerates some altered length prefixes that OpenSSH refuses; an
    // approval counts only in the one encoding both read the same way.
    let canonical = sig
        .to_pem(ssh_key::LineEnding::LF)
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    if armor_payload(&canonical) != armor_payload(&text) {
        return Err(Refusal::Malformed(
            "its data is not in OpenSSH's encoding (the file was altered)".into(),
        ));
    }
    Ok(sig)
}

/// The base64 between the armor lines, without line breaks or other whitespace.
fn armor_payload(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("-----"))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect()
}

/// Read and parse an allowed-signers file; `local` reads timestamps written without `Z`.
pub fn load_allowed_signers(path: &Path, local: LocalTime<'_>) -> Result<AllowedSigners, Error> {
    let bytes =
        read_bounded(path, MAX_ALLOWED_SIGNERS_BYTES).map_err(|reason| Error::ReadFile {
            path: path.to_path_buf(),
            reason,
        })?;
    AllowedSigners::parse(&bytes, path, local).map_err(|e| Error::AllowedSignersLine {
        path: path.to_path_buf(),
        line: e.line,
        reason: e.reason,
    })
}

/// At most this many `--approval` files: a change ticket has a handful.
pub const MAX_APPROVALS: usize = 100;

/// Read the approvals and the allowed-signers file named by `policy`, and count them
/// for `digest` at `now`. `None` when there is nothing to check (no approval required
/// and none given). An approval file that cannot be read is a refusal in the report;
/// an allowed-signers file that cannot be read or parsed is an error.
pub fn evaluate(
    digest: &str,
    approvals: &[PathBuf],
    policy: &ApprovalPolicy,
    now: OffsetDateTime,
    local: LocalTime<'_>,
) -> Result<Option<ApprovalReport>, Error> {
    if policy.required == 0 && approvals.is_empty() {
        return Ok(None);
    }
    let Some(signers_path) = &policy.allowed_signers else {
        return Err(Error::ApprovalsNeedSigners);
    };
    if approvals.len() > MAX_APPROVALS {
        return Err(Error::BadFlag {
            flag: "--approval",
            reason: format!(
                "at most {MAX_APPROVALS} approvals, {} given",
                approvals.len()
            ),
        });
    }
    let signers = load_allowed_signers(signers_path, local)?;
    let files: Vec<ApprovalFile> = approvals.iter().map(|p| ApprovalFile::read(p)).collect();
    Ok(Some(count_approvals(
        digest,
        &files,
        &signers,
        now,
        policy.required,
    )))
}

/// `Ok` when the report has enough approvals; else the refusal naming each approval that
/// did not count and why.
pub fn enforce(report: &ApprovalReport) -> Result<(), Error> {
    if report.is_satisfied() {
        return Ok(());
    }
    let mut details = String::new();
    for c in &report.counted {
        details.push_str(&format!(
            "  counted: `{}` approved by `{}` ({})\n",
            c.path.display(),
            c.principal,
            c.fingerprint
        ));
    }
    for n in &report.not_counted {
        details.push_str(&format!("  not counted: {}\n", not_counted_line(n)));
    }
    Err(Error::ApprovalsMissing {
        counted: report.counted.len(),
        required: report.required,
        details,
    })
}

/// `` `a.sig` (SHA256:…): why `` — one approval that did not count, in words.
pub fn not_counted_line(n: &NotCounted) -> String {
    match &n.fingerprint {
        Some(fp) => format!("`{}` ({fp}): {}", n.path.display(), n.refusal),
        None => format!("`{}`: {}", n.path.display(), n.refusal),
    }
}

/// The approvals section of `show`: who approved, what did not count, what is missing.
pub fn report_text(report: &ApprovalReport) -> String {
    let mut out = if report.required > 0 {
        format!(
            "Approvals: {} of {} required\n",
            report.counted.len(),
            report.required
        )
    } else {
        format!("Approvals: {}\n", report.counted.len())
    };
    for c in &report.counted {
        out.push_str(&format!(
            "  approved by {} ({}) in `{}`\n",
            c.principal,
            c.fingerprint,
            c.path.display()
        ));
    }
    for n in &report.not_counted {
        out.push_str(&format!("  not counted: {}\n", not_counted_line(n)));
    }
    let missing = (report.required as usize).saturating_sub(report.counted.len());
    if missing > 0 {
        out.push_str(&format!(
            "  missing: {missing} more approval{} from {} principal{} in the allowed-signers file\n",
            if missing == 1 { "" } else { "s" },
            if missing == 1 { "another" } else { "other" },
            if missing == 1 { "" } else { "s" },
        ));
    }
    out
}

/// Why an approval did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The file could not be read (missing, not a regular file, too large).
    Unreadable(String),
    /// The file is not one armored SSH signature.
    Malformed(String),
    /// Signed for another purpose (`-n`).
    OtherNamespace(String),
    /// The signature does not verify for this plan's digest. A signature over another
    /// plan's digest and a damaged one cannot be told apart without the other message.
    BadSignature,
    /// The signing key is on no line of the allowed-signers file.
    UnknownKey,
    /// The key's lines all restrict it to other namespaces (`namespaces="…"`).
    NamespaceNotAllowed,
    /// Every line listing the key is outside its `valid-after`/`valid-before` now.
    OutsideValidity {
        valid_after: Option<OffsetDateTime>,
        valid_before: Option<OffsetDateTime>,
    },
    /// Its principal already counted through another approval.
    SamePrincipal { principal: String, counted: PathBuf },
}

impl Refusal {
    /// A stable code for JSON outputs.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unreadable(_) => "unreadable",
            Refusal::Malformed(_) => "malformed",
            Refusal::OtherNamespace(_) => "other_namespace",
            Refusal::BadSignature => "bad_signature",
            Refusal::UnknownKey => "unknown_key",
            Refusal::NamespaceNotAllowed => "namespace_not_allowed",
            Refusal::OutsideValidity { .. } => "outside_validity",
            Refusal::SamePrincipal { .. } => "same_principal",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unreadable(reason) => write!(f, "cannot be read: {reason}"),
            Refusal::Malformed(reason) => {
                write!(
                    f,
                    "is not an SSH signature (`-----BEGIN SSH SIGNATURE-----`): {reason}"
                )
            }
            Refusal::OtherNamespace(ns) => write!(
                f,
                "is signed for the namespace `{ns}`, not `{NAMESPACE}` (sign with `-n {NAMESPACE}`)"
            ),
            Refusal::BadSignature => write!(
                f,
                "bad signature: it does not verify for this plan's digest (it approves another plan, or it was altered)"
            ),
            Refusal::UnknownKey => write!(f, "its key is not in the allowed-signers file"),
            Refusal::NamespaceNotAllowed => write!(
                f,
                "its key is not allowed to sign `{NAMESPACE}` (see `namespaces=` in the allowed-signers file)"
            ),
            Refusal::OutsideValidity {
                valid_after,
                valid_before,
            } => {
                write!(f, "its key is outside its validity")?;
                let fmt_time = |t: &OffsetDateTime| crate::planfile::format_time(*t);
                match (valid_after, valid_before) {
                    (Some(a), Some(b)) => write!(f, " ({} to {})", fmt_time(a), fmt_time(b)),
                    (Some(a), None) => write!(f, " (valid from {})", fmt_time(a)),
                    (None, Some(b)) => write!(f, " (valid until {})", fmt_time(b)),
                    (None, None) => Ok(()),
                }
            }
            Refusal::SamePrincipal { principal, counted } => write!(
                f,
                "same principal twice: `{principal}` already approved with `{}`",
                counted.display()
            ),
        }
    }
}

/// An approval that counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub path: PathBuf,
    /// The principal it counted for (as the allowed-signers file names it).
    pub principal: String,
    /// `SHA256:…` of the signing key.
    pub fingerprint: String,
}

/// An approval that did not count, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCounted {
    pub path: PathBuf,
    /// `SHA256:…` of the signing key, when the file could be read.
    pub fingerprint: Option<String>,
    pub refusal: Refusal,
}

/// The verdict on a plan's approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalReport {
    pub digest: String,
    pub required: u32,
    /// In the order the approvals were given.
    pub counted: Vec<Counted>,
    /// In the order the approvals were given.
    pub not_counted: Vec<NotCounted>,
}

impl ApprovalReport {
    /// Whether enough distinct principals approved.
    pub fn is_satisfied(&self) -> bool {
        self.counted.len() >= self.required as usize
    }

    /// The principals that approved, in the order given.
    pub fn approved_by(&self) -> Vec<String> {
        self.counted.iter().map(|c| c.principal.clone()).collect()
    }

    /// The fingerprints of the keys that counted, in the same order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.counted.iter().map(|c| c.fingerprint.clone()).collect()
    }
}

/// `SHA256:<base64>` of a key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &ssh_key::public::KeyData) -> String {
    Fingerprint::new(HashAlg::Sha256, key).to_string()
}

/// A verified approval waiting to be counted: the principals its key is listed for,
/// each with the pattern list of the line that names it.
struct Candidate<'a> {
    index: usize,
    fingerprint: String,
    principals: Vec<(&'a str, &'a str)>,
}

/// Check every approval against `digest` and `signers` at `now`, and count them: one
/// per principal, one principal per approval (a key listed for several principals
/// counts once). The count is a maximum matching of approvals to principals, so the
/// order approvals are given in never lowers it.
///
/// Principals are compared as OpenSSH would accept one for the other: two names are the
/// same principal when they are equal or one's pattern admits the other (a key listed
/// for `*@example.com` could be alice@example.com's, unless that line says
/// `!alice@example.com`). When in doubt, fewer count.
pub fn count_approvals(
    digest: &str,
    approvals: &[ApprovalFile],
    signers: &AllowedSigners,
    now: OffsetDateTime,
    required: u32,
) -> ApprovalReport {
    let message = signed_message(digest);
    let mut refused: Vec<(usize, Option<String>, Refusal)> = Vec::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for (index, approval) in approvals.iter().enumerate() {
        let sig = match &approval.signature {
            Ok(sig) => sig,
            Err(refusal) => {
                refused.push((index, None, refusal.clone()));
                continue;
            }
        };
        let fp = fingerprint(sig.public_key());
        match check(sig, message.as_bytes(), signers, now) {
            Ok(principals) => candidates.push(Candidate {
                index,
                fingerprint: fp,
                principals,
            }),
            Err(refusal) => refused.push((index, Some(fp), refusal)),
        }
    }

    let groups = principal_groups(&candidates);
    let assigned = match_principals(&groups);
    let mut counted: Vec<(usize, Counted)> = Vec::new();
    for (c, cand) in candidates.iter().enumerate() {
        let path = approvals[cand.index].path.clone();
        match assigned[c] {
            Some(group) => {
                let principal = principal_in_group(cand, &groups[c], group);
                counted.push((
                    cand.index,
                    Counted {
                        path,
                        principal,
                        fingerprint: cand.fingerprint.clone(),
                    },
                ));
            }
            None => {
                // Every group it holds is taken: name the first and who took it.
                let group = groups[c].first().copied().unwrap_or_default();
                let owner = (0..candidates.len()).find(|&o| assigned[o] == Some(group));
                let counted_path = owner
                    .map(|o| approvals[candidates[o].index].path.clone())
                    .unwrap_or_default();
                refused.push((
                    cand.index,
                    Some(cand.fingerprint.clone()),
                    Refusal::SamePrincipal {
                        principal: principal_in_group(cand, &groups[c], group),
                        counted: counted_path,
                    },
                ));
            }
        }
    }
    counted.sort_by_key(|(i, _)| *i);
    refused.sort_by_key(|(i, _, _)| *i);
    ApprovalReport {
        digest: digest.to_string(),
        required,
        counted: counted.into_iter().map(|(_, c)| c).collect(),
        not_counted: refused
            .into_iter()
            .map(|(i, fingerprint, refusal)| NotCounted {
                path: approvals[i].path.clone(),
                fingerprint,
                refusal,
            })
            .collect(),
    }
}

/// One approval on its own: the principals (with their lines' pattern lists) it may
/// count for, or why it cannot count at all.
fn check<'a>(
    sig: &SshSig,
    message: &[u8],
    signers: &'a AllowedSigners,
    now: OffsetDateTime,
) -> Result<Vec<(&'a str, &'a str)>, Refusal> {
    if sig.namespace() != NAMESPACE {
        return Err(Refusal::OtherNamespace(sig.namespace().to_string()));
    }
    let key = PublicKey::from(sig.public_key().clone());
    if key.verify(NAMESPACE, message, sig).is_err() {
        return Err(Refusal::BadSignature);
    }
    let lines: Vec<&SignerEntry> = signers
        .entries
        .iter()
        .filter(|e| e.key.key_data() == sig.public_key())
        .collect();
    if lines.is_empty() {
        return Err(Refusal::UnknownKey);
    }
    let in_namespace: Vec<&SignerEntry> = lines
        .into_iter()
        .filter(|e| e.allows_namespace(NAMESPACE))
        .collect();
    let Some(first) = in_namespace.first() else {
        return Err(Refusal::NamespaceNotAllowed);
    };
    let valid: Vec<&SignerEntry> = in_namespace
        .iter()
        .copied()
        .filter(|e| e.valid_at(now))
        .collect();
    if valid.is_empty() {
        return Err(Refusal::OutsideValidity {
            valid_after: first.valid_after,
            valid_before: first.valid_before,
        });
    }
    let mut principals: Vec<(&str, &str)> = Vec::new();
    for entry in valid {
        for name in entry.named_principals() {
            if !principals.iter().any(|(n, _)| *n == name) {
                principals.push((name, entry.principals.as_str()));
            }
        }
    }
    Ok(principals)
}

/// For each candidate, the group of each of its principals (parallel to
/// `principals`): names joined when equal or when one matches the other's line (a
/// union-find).
fn principal_groups(candidates: &[Candidate<'_>]) -> Vec<Vec<usize>> {
    let names: Vec<(&str, &str)> = candidates
        .iter()
        .flat_map(|c| c.principals.iter().copied())
        .collect();
    let mut parent: Vec<usize> = (0..names.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            let ((na, la), (nb, lb)) = (names[a], names[b]);
            let same = na == nb || admits(nb, lb, na) || admits(na, la, nb);
            if same {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra] = rb;
            }
        }
    }
    let mut next = 0;
    candidates
        .iter()
        .map(|c| {
            let groups: Vec<usize> = (next..next + c.principals.len())
                .map(|i| root(&mut parent, i))
                .collect();
            next += c.principals.len();
            groups
        })
        .collect()
}

/// Whether the pattern `pattern`, on a line whose principals are `line`, admits `name`:
/// it matches, and no `!` exclusion on that line excludes it.
fn admits(pattern: &str, line: &str, name: &str) -> bool {
    pattern::match_pattern(name, pattern) && match_pattern_list(name, line) != ListMatch::Negated
}

/// A maximum matching of candidates to principal groups (Kuhn's augmenting paths, in the
/// order given): each group approves once, each approval counts once.
fn match_principals(groups: &[Vec<usize>]) -> Vec<Option<usize>> {
    let mut owner: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    fn augment(
        c: usize,
        groups: &[Vec<usize>],
        owner: &mut std::collections::HashMap<usize, usize>,
        seen: &mut Vec<usize>,
    ) -> bool {
        for &g in &groups[c] {
            if seen.contains(&g) {
                continue;
            }
            seen.push(g);
            let free = match owner.get(&g) {
                None => true,
                Some(&other) => augment(other, groups, owner, seen),
            };
            if free {
                owner.insert(g, c);
                return true;
            }
        }
        false
    }
    for c in 0..groups.len() {
        let mut seen = Vec::new();
        augment(c, groups, &mut owner, &mut seen);
    }
    let mut assigned = vec![None; groups.len()];
    for (g, c) in owner {
        assigned[c] = Some(g);
    }
    assigned
}

/// The candidate's first principal name that falls in `group`.
fn principal_in_group(cand: &Candidate<'_>, groups: &[usize], group: usize) -> String {
    cand.principals
        .iter()
        .zip(groups)
        .find(|(_, g)| **g == group)
        .map(|((name, _), _)| name.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssh_key::private::Ed25519Keypair;
    use ssh_key::{LineEnding, PrivateKey};
    use time::macros::datetime;

    const DIGEST: &str = "sha256:3f0c4a0d9e0b7c4d8f1e2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f";

    fn now() -> OffsetDateTime {
        datetime!(2026-11-29 07:00 UTC)
    }

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn public(seed: u8) -> String {
        key(seed).public_key().to_openssh().unwrap()
    }

    fn pem(seed: u8, namespace: &str, hash: HashAlg, message: &str) -> String {
        key(seed)
            .sign(namespace, hash, message.as_bytes())
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    fn approval(name: &str, seed: u8) -> ApprovalFile {
        let text = pem(seed, NAMESPACE, HashAlg::Sha512, &signed_message(DIGEST));
        ApprovalFile::from_bytes(Path::new(name), text.as_bytes())
    }

    fn signers(text: &str) -> AllowedSigners {
        let utc = |at: time::PrimitiveDateTime| Some(at.assume_utc());
        AllowedSigners::parse(text.as_bytes(), Path::new("allowed_signers"), &utc).unwrap()
    }

    fn count(approvals: &[ApprovalFile], signers_text: &str, required: u32) -> ApprovalReport {
        count_approvals(DIGEST, approvals, &signers(signers_text), now(), required)
    }

    fn reasons(report: &ApprovalReport) -> Vec<(String, Refusal)> {
        report
            .not_counted
            .iter()
            .map(|n| (n.path.display().to_string(), n.refusal.clone()))
            .collect()
    }

    #[test]
    fn distinct_principals_count_and_say_who_approved() {
        let text = format!(
            "alice@example.com {}\nbob@example.com {}\n",
            public(1),
            public(2)
        );
        let report = count(&[approval("a.sig", 1), approval("b.sig", 2)], &text, 2);
        assert!(report.is_satisfied());
        assert_eq!(
            report.approved_by(),
            vec!["alice@example.com", "bob@example.com"]
        );
        assert_eq!(
            report.fingerprints(),
            vec![
                key(1).public_key().fingerprint(HashAlg::Sha256).to_string(),
                key(2).public_key().fingerprint(HashAlg::Sha256).to_string()
            ]
        );
        assert!(report.fingerprints()[0].starts_with("SHA256:"));
        assert!(report.not_counted.is_empty());
    }

    #[test]
    fn sha256_signatures_count_too() {
        let text = pem(1, NAMESPACE, HashAlg::Sha256, &signed_message(DIGEST));
        let a = ApprovalFile::from_bytes(Path::new("a.sig"), text.as_bytes());
        let report = count(&[a], &format!("alice {}\n", public(1)), 1);
        assert_eq!(report.approved_by(), vec!["alice"]);
    }

    #[test]
    fn crlf_line_ends_do_not_change_an_approval() {
        let text =
            pem(1, NAMESPACE, HashAlg::Sha512, &signed_message(DIGEST)).replace('\n', "\r\n");
        let a = ApprovalFile::from_bytes(Path::new("a.sig"), text.as_bytes());
        let report = count(&[a], &format!("alice {}\n", public(1)), 1);
        assert_eq!(report.approved_by(), vec!["alice"]);
    }

    #[test]
    fn every_approval_that_does_not_count_says_why() {
        let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let mut tampered = pem(1, NAMESPACE, HashAlg::Sha512, &signed_message(DIGEST));
        // A different base64 character inside the signature's last line of data.
        let pos = tampered.rfind("-----END").unwrap() - 6;
        let c = tampered.as_bytes()[pos];
        tampered.replace_range(pos..pos + 1, if c == b'A' { "B" } else { "A" });
        let text = format!(
            "alice {}\nbob namespaces=\"git\" {}\ncarol valid-after=\"20270101Z\" {}\ndave valid-before=\"20260101Z\" {}\n",
            public(1),
            public(2),
            public(3),
            public(4)
        );
        let approvals = vec![
            ApprovalFile::from_bytes(
                Path::new("other-digest.sig"),
                pem(1, NAMESPACE, HashAlg::Sha512, &signed_message(other)).as_bytes(),
            ),
            ApprovalFile::from_bytes(Path::new("tampered.sig"), tampered.as_bytes()),
            ApprovalFile::from_bytes(
                Path::new("no-newline.sig"),
                pem(1, NAMESPACE, HashAlg::Sha512, DIGEST).as_bytes(),
            ),
            ApprovalFile::from_bytes(
                Path::new("git.sig"),
                pem(1, "git", HashAlg::Sha512, &signed_message(DIGEST)).as_bytes(),
            ),
            approval("unknown.sig", 9),
            approval("bob.sig", 2),
            approval("carol.sig", 3),
            approval("dave.sig", 4),
            ApprovalFile::from_bytes(Path::new("junk.sig"), b"hello"),
            ApprovalFile::read(Path::new("/nonexistent/approval.sig")),
            approval("alice.sig", 1),
            approval("alice-again.sig", 1),
        ];
        let report = count(&approvals, &text, 2);
        assert!(!report.is_satisfied());
        assert_eq!(report.approved_by(), vec!["alice"]);
        let got = reasons(&report);
        let codes: Vec<(&str, &str)> = got.iter().map(|(p, r)| (p.as_str(), r.code())).collect();
        assert_eq!(
            codes,
            vec![
                ("other-digest.sig", "bad_signature"),
                ("tampered.sig", "bad_signature"),
                ("no-newline.sig", "bad_signature"),
                ("git.sig", "other_namespace"),
                ("unknown.sig", "unknown_key"),
                ("bob.sig", "namespace_not_allowed"),
                ("carol.sig", "outside_validity"),
                ("dave.sig", "outside_validity"),
                ("junk.sig", "malformed"),
                ("/nonexistent/approval.sig", "unreadable"),
                ("alice-again.sig", "same_principal"),
            ]
        );
        assert_eq!(
            got[6].1.to_string(),
            "its key is outside its validity (valid from 2027-01-01T00:00:00Z)"
        );
        assert_eq!(
            got[10].1.to_string(),
            "same principal twice: `alice` already approved with `alice.sig`"
        );
        assert_eq!(
            got[3].1.to_string(),
            "is signed for the namespace `git`, not `provision-plan` (sign with `-n provision-plan`)"
        );
        // Those whose file was read name their key.
        assert!(report.not_counted[0].fingerprint.is_some());
        assert!(report.not_counted[8].fingerprint.is_none());
    }

    #[test]
    fn an_altered_length_prefix_is_malformed_though_the_decoder_reads_past_it() {
        // `AAAAMwAA…`: the public key's length prefix 0x33 turned into 0x7033, which
        // ssh-key's decoder would read as the same signature and OpenSSH refuses.
        let text = pem(1, NAMESPACE, HashAlg::Sha512, &signed_message(DIGEST));
        let altered = text.replacen("AAAAAQAAADMA", "AAAAAQAAcDMA", 1);
        assert_ne!(altered, text);
        let a = ApprovalFile::from_bytes(Path::new("a.sig"), altered.as_bytes());
        let report = count(&[a], &format!("alice {}\n", public(1)), 1);
        assert_eq!(
            reasons(&report),
            vec![(
                "a.sig".to_string(),
                Refusal::Malformed(
                    "its data is not in OpenSSH's encoding (the file was altered)".into()
                )
            )]
        );
    }

    #[test]
    fn too_few_approvals_is_exit_3_and_lists_each_verdict() {
        let text = format!("alice {}\n", public(1));
        let report = count(&[approval("a.sig", 1), approval("x.sig", 9)], &text, 2);
        let e = enforce(&report).unwrap_err();
        assert_eq!(e.exit(), crate::error::Exit::Refused);
        assert_eq!(
            e.to_string(),
            format!(
                "error: the plan has 1 of the 2 approvals it needs; nothing was changed\n  counted: `a.sig` approved by `alice` ({})\n  not counted: `x.sig` ({}): its key is not in the allowed-signers file\nCollect approvals with `provision approve PLAN` from approvers in the allowed-signers file, and pass each with `--approval FILE`.",
                fingerprint(key(1).public_key().key_data()),
                fingerprint(key(9).public_key().key_data()),
            )
        );
        assert_eq!(
            report_text(&report),
            format!(
                "Approvals: 1 of 2 required\n  approved by alice ({}) in `a.sig`\n  not counted: `x.sig` ({}): its key is not in the allowed-signers file\n  missing: 1 more approval from another principal in the allowed-signers file\n",
                fingerprint(key(1).public_key().key_data()),
                fingerprint(key(9).public_key().key_data()),
            )
        );
        let enough = count(&[approval("a.sig", 1)], &text, 1);
        assert!(enforce(&enough).is_ok());
    }

    #[test]
    fn a_key_listed_for_several_principals_counts_once() {
        let text = format!(
            "alice@example.com,alice@corp.example.com {}\nali {}\n",
            public(1),
            public(1)
        );
        let report = count(&[approval("a.sig", 1)], &text, 2);
        assert_eq!(report.approved_by(), vec!["alice@example.com"]);
        assert!(!report.is_satisfied());
    }

    #[test]
    fn the_count_is_the_best_assignment_whatever_the_order() {
        // Key 1 is listed for both alice and bob; keys 2 and 3 for one each.
        let text = format!(
            "alice,bob {}\nalice {}\nbob {}\n",
            public(1),
            public(2),
            public(3)
        );
        let orders = [[1u8, 2, 3], [2, 1, 3], [3, 2, 1], [1, 3, 2]];
        for order in orders {
            let approvals: Vec<ApprovalFile> = order
                .iter()
                .map(|&s| approval(&format!("{s}.sig"), s))
                .collect();
            let report = count(&approvals, &text, 2);
            assert_eq!(report.counted.len(), 2, "{order:?}");
            assert_eq!(report.not_counted.len(), 1, "{order:?}");
            assert_eq!(report.not_counted[0].refusal.code(), "same_principal");
        }
        // Key 1 with key 2: 1 counts as bob, 2 as alice.
        let report = count(&[approval("1.sig", 1), approval("2.sig", 2)], &text, 2);
        assert_eq!(report.approved_by(), vec!["bob", "alice"]);
    }

    #[test]
    fn a_wildcard_principal_is_the_same_principal_as_a_name_it_matches() {
        let text = format!(
            "alice@example.com {}\n*@example.com {}\n",
            public(1),
            public(2)
        );
        let report = count(&[approval("1.sig", 1), approval("2.sig", 2)], &text, 2);
        assert_eq!(report.counted.len(), 1);
        assert_eq!(reasons(&report)[0].1.code(), "same_principal");
        // Excluding alice from the wildcard line makes them two principals.
        let text = format!(
            "alice@example.com {}\n*@example.com,!alice@example.com {}\n",
            public(1),
            public(2)
        );
        let report = count(&[approval("1.sig", 1), approval("2.sig", 2)], &text, 2);
        assert_eq!(
            report.approved_by(),
            vec!["alice@example.com", "*@example.com"]
        );
    }

    #[test]
    fn a_line_outside_its_validity_gives_way_to_one_inside() {
        let text = format!(
            "alice valid-before=\"20250101Z\" {}\nalice valid-after=\"20260101Z\" {}\n",
            public(1),
            public(1)
        );
        let report = count(&[approval("a.sig", 1)], &text, 1);
        assert_eq!(report.approved_by(), vec!["alice"]);
    }

    fn plan_value() -> serde_json::Value {
        let plan = crate::planfile::tests::sample_plan();
        serde_json::from_str(&plan.to_pretty_json()).unwrap()
    }

    fn without_digest(mut v: serde_json::Value) -> serde_json::Value {
        if let Some(obj) = v.as_object_mut() {
            obj.remove("digest");
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// An edit to the plan, re-digested so that the plan itself stays valid, is
        /// another plan: the approval of the original does not count for it.
        #[test]
        fn an_approval_does_not_count_for_an_edited_plan(pos in any::<prop::sample::Index>(), pick in any::<prop::sample::Index>()) {
            let plan = crate::planfile::tests::sample_plan();
            let text = plan.to_pretty_json();
            let original = without_digest(plan_value());
            let mut bytes = text.into_bytes();
            // Any letter or digit of the file (keys, emails, ids, counts, times) replaced
            // by another: most such edits still parse, so few cases are thrown away
            // (a random bit flip mostly breaks the JSON and starves the test).
            let candidates: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i].is_ascii_alphanumeric()).collect();
            let i = candidates[pos.index(candidates.len())];
            let others: Vec<u8> = (b'0'..=b'9').chain(b'a'..=b'z').chain(b'A'..=b'Z').filter(|&b| b != bytes[i]).collect();
            bytes[i] = others[pick.index(others.len())];
            let edited: Option<serde_json::Value> = std::str::from_utf8(&bytes).ok().and_then(|t| serde_json::from_str(t).ok());
            prop_assume!(edited.is_some());
            let edited = without_digest(edited.unwrap_or_default());
            let new_digest = crate::planfile::digest_of(&edited);
            let sig = pem(1, NAMESPACE, HashAlg::Sha512, &signed_message(&plan.digest));
            let approvals = [ApprovalFile::from_bytes(Path::new("a.sig"), sig.as_bytes())];
            let report = count_approvals(&new_digest, &approvals, &signers(&format!("alice {}\n", public(1))), now(), 1);
            // Only an edit that leaves every value as it was (none, in practice) keeps it.
            prop_assert_eq!(report.is_satisfied(), edited == original);
            prop_assert_eq!(report.is_satisfied(), new_digest == plan.digest);
        }

        /// Any byte of the armored signature changed (line breaks aside) and the
        /// approval does not count.
        #[test]
        fn a_changed_signature_byte_never_counts(pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
            let sig = pem(1, NAMESPACE, HashAlg::Sha512, &signed_message(DIGEST));
            let mut bytes = sig.into_bytes();
            let candidates: Vec<usize> = (0..bytes.len()).filter(|&i| !bytes[i].is_ascii_whitespace()).collect();
            let i = candidates[pos.index(candidates.len())];
            bytes[i] ^= mask;
            prop_assume!(!bytes[i].is_ascii_whitespace());
            let approvals = [ApprovalFile::from_bytes(Path::new("a.sig"), &bytes)];
            let report = count(&approvals, &format!("alice {}\n", public(1)), 1);
            prop_assert!(!report.is_satisfied(), "byte {} ^ {:#x}: {:?}", i, mask, report.counted);
        }
    }
}
