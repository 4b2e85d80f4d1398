//! Look-alike emails: two different normalised emails that are probably one person with a
//! typo (the contract's three rules), found through an index rather than by comparing all
//! pairs, and the consistency check of a plan's `look_alikes` member. Pure: no I/O.
//!
//! The rules, for emails `local@domain`:
//! (a) equal domains, local parts within Damerau–Levenshtein distance 2 (distance 1 when
//!     the shorter local part has fewer than 5 characters);
//! (b) equal domains, local parts equal once dots and a `+tag` are removed;
//! (c) equal local parts, domains within distance 1.
//!
//! Only emails of at most 255 characters whose local part has at most 64 (RFC 5321's
//! limits; the Auth server refuses longer ones) are compared: that bounds the work per
//! email, whatever the listing holds.
//!
//! (b) asks for equal domains: read across domains it would make every `ops@` of one
//! domain a look-alike of every `ops@` of another, and (c) would say nothing (b) had not.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::model::{ActionKind, Change, MAX_EMAIL_LEN};

/// A planned create whose email looks like a planned ban's (the plan's `look_alikes`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LookAlike {
    pub create: String,
    pub ban: String,
}

/// Which rule made two emails look alike (the first that holds, in the contract's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// (a) same domain, local parts a small edit apart.
    Typo,
    /// (b) same domain, local parts equal without dots and `+tag`.
    DotsOrTag,
    /// (c) same local part, domains one edit apart.
    DomainTypo,
}

/// The local part shorter than this allows one edit, not two.
const SHORT_LOCAL: usize = 5;

/// The longest local part compared (RFC 5321).
const MAX_LOCAL: usize = 64;

/// `local@domain` when the email is short enough to be compared.
fn split(email: &str) -> Option<(&str, &str)> {
    let (local, domain) = email.rsplit_once('@')?;
    (email.len() <= MAX_EMAIL_LEN && local.len() <= MAX_LOCAL).then_some((local, domain))
}

/// Why `a` and `b` look alike, or `None`. Both are taken as normalised; equal emails,
/// values without an `@` and values too long to compare are never look-alikes.
pub fn rule(a: &str, b: &str) -> Option<Rule> {
    if a == b {
        return None;
    }
    let (la, da) = split(a)?;
    let (lb, db) = split(b)?;
    if da == db {
        let shorter = la.chars().count().min(lb.chars().count());
        let limit = if shorter < SHORT_LOCAL { 1 } else { 2 };
        if strsim::damerau_levenshtein(la, lb) <= limit {
            return Some(Rule::Typo);
        }
        if stripped(la) == stripped(lb) {
            return Some(Rule::DotsOrTag);
        }
        return None;
    }
    (la == lb && strsim::damerau_levenshtein(da, db) <= 1).then_some(Rule::DomainTypo)
}

/// `rule(a, b).is_some()`.
pub fn looks_alike(a: &str, b: &str) -> bool {
    rule(a, b).is_some()
}

/// A local part without its `+tag` and its dots.
fn stripped(local: &str) -> String {
    let base = local.split_once('+').map_or(local, |(base, _)| base);
    base.chars().filter(|c| *c != '.').collect()
}

/// The emails of a set that look like a given email, without comparing all of them:
/// every rule needs equal text somewhere once at most two characters are deleted from
/// each side (an edit of distance d deletes at most d characters per side), so each email
/// is indexed under hashes of those variants, and only the candidates that share one are
/// compared with `rule`.
pub struct Index<'a> {
    emails: Vec<&'a str>,
    /// Variant hash -> the newest entry of its chain in `chain`.
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    /// (email index, previous entry of the same chain, or `u32::MAX`).
    chain: Vec<(u32, u32)>,
}

impl<'a> Index<'a> {
    pub fn new(emails: impl IntoIterator<Item = &'a str>) -> Index<'a> {
        let mut index = Index::empty();
        for email in emails {
            let Some(i) = index.push(email) else {
                break;
            };
            variants(email, |key| index.insert(i, key));
        }
        index
    }

    fn empty() -> Index<'a> {
        Index {
            emails: Vec::new(),
            heads: HashMap::default(),
            chain: Vec::new(),
        }
    }

    /// Add an email (under no key yet); `None` past `u32::MAX` emails.
    fn push(&mut self, email: &'a str) -> Option<u32> {
        let i = u32::try_from(self.emails.len()).ok()?;
        self.emails.push(email);
        Some(i)
    }

    /// File email `i` under `key`.
    fn insert(&mut self, i: u32, key: u64) {
        let entry = u32::try_from(self.chain.len()).unwrap_or(u32::MAX);
        let previous = self.heads.insert(key, entry);
        self.chain.push((i, previous.unwrap_or(u32::MAX)));
    }

    /// Add the emails filed under `key` to `found`.
    fn candidates(&self, key: u64, found: &mut Vec<u32>) {
        let mut entry = self.heads.get(&key).copied().unwrap_or(u32::MAX);
        while let Some(&(i, previous)) = self.chain.get(entry as usize) {
            found.push(i);
            entry = previous;
        }
    }

    /// The candidates that truly look like `email`, each once, in index order.
    fn confirmed(&self, email: &str, mut found: Vec<u32>) -> Vec<&'a str> {
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .filter_map(|i| self.emails.get(i as usize).copied())
            .filter(|other| looks_alike(email, other))
            .collect()
    }

    /// The indexed emails that look like `email`, each once, in index order.
    pub fn matches(&self, email: &str) -> Vec<&'a str> {
        let mut found = Vec::new();
        variants(email, |key| self.candidates(key, &mut found));
        self.confirmed(email, found)
    }
}

/// Every variant key of each email of one side, computed once: `keys[ends[i - 1]..ends[i]]`
/// are email `i`'s.
struct SideKeys {
    keys: Vec<u64>,
    ends: Vec<usize>,
}

impl SideKeys {
    fn of(emails: &[&str]) -> SideKeys {
        let mut side = SideKeys {
            keys: Vec::with_capacity(emails.len() * 64),
            ends: Vec::with_capacity(emails.len()),
        };
        for email in emails {
            variants(email, |key| side.keys.push(key));
            side.ends.push(side.keys.len());
        }
        side
    }

    fn of_email(&self, i: usize) -> &[u64] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.keys[start..self.ends[i]]
    }
}

/// A bit per key hash (a Bloom filter with one hash function): "this side has no such
/// key" for certain, "it may" otherwise. About sixteen bits per key, at most 16 MiB, so
/// that a key absent from a side costs a bit test, not a map probe.
struct KeyBits {
    words: Vec<u64>,
    mask: u64,
}

impl KeyBits {
    const BITS_PER_KEY: usize = 16;
    const MAX_BITS: usize = 1 << 27;

    fn of(keys: &[u64]) -> KeyBits {
        let bits = keys
            .len()
            .saturating_mul(Self::BITS_PER_KEY)
            .clamp(1 << 12, Self::MAX_BITS)
            .next_power_of_two();
        let mut set = KeyBits {
            words: vec![0; bits / 64],
            mask: bits as u64 - 1,
        };
        for key in keys {
            let bit = key & set.mask;
            if let Some(word) = set.words.get_mut((bit / 64) as usize) {
                *word |= 1 << (bit % 64);
            }
        }
        set
    }

    fn may_hold(&self, key: u64) -> bool {
        let bit = key & self.mask;
        self.words
            .get((bit / 64) as usize)
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }
}

/// The emails of the plan's changes of one kind.
fn emails_of(changes: &[Change], kind: ActionKind) -> impl Iterator<Item = &str> {
    changes
        .iter()
        .filter(move |c| c.action == kind)
        .map(|c| c.email.as_str())
}

/// Every pair of a planned create and a planned ban that look alike, sorted and unique.
/// The smaller side is indexed and the other side asks. Each side's keys are computed
/// once and marked in a bit set, so that only keys both sides may hold reach the map: in
/// a plan most keys of one side meet nothing on the other, and this is what keeps
/// detection a small part of planning at 100k users (BENCHMARKS.md).
pub fn pairs(changes: &[Change]) -> Vec<LookAlike> {
    let creates: Vec<&str> = emails_of(changes, ActionKind::Create).collect();
    let bans: Vec<&str> = emails_of(changes, ActionKind::Ban).collect();
    if creates.is_empty() || bans.is_empty() {
        return Vec::new();
    }
    let (indexed, asking, indexed_is_create) = if creates.len() <= bans.len() {
        (creates, bans, true)
    } else {
        (bans, creates, false)
    };
    let (indexed_keys, asking_keys) = (SideKeys::of(&indexed), SideKeys::of(&asking));
    let (indexed_bits, asking_bits) = (
        KeyBits::of(&indexed_keys.keys),
        KeyBits::of(&asking_keys.keys),
    );
    let mut index = Index::empty();
    for (n, &email) in indexed.iter().enumerate() {
        let Some(i) = index.push(email) else {
            break;
        };
        for &key in indexed_keys.of_email(n) {
            if asking_bits.may_hold(key) {
                index.insert(i, key);
            }
        }
    }
    let mut found = Vec::new();
    for (n, &email) in asking.iter().enumerate() {
        let mut candidates = Vec::new();
        for &key in asking_keys.of_email(n) {
            if indexed_bits.may_hold(key) {
                index.candidates(key, &mut candidates);
            }
        }
        for other in index.confirmed(email, candidates) {
            let (create, ban) = if indexed_is_create {
                (other, email)
            } else {
                (email, other)
            };
            found.push(LookAlike {
                create: create.to_string(),
                ban: ban.to_string(),
            });
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// A plan's `look_alikes` must follow from its `changes`: each pair's create a planned
/// create, its ban a planned ban, the two truly look-alikes, the list sorted and free of
/// repeats. (Whether every look-alike pair is listed is not checked: the list warns, it
/// changes no decision.) The error names the first pair that does not follow.
pub fn check(look_alikes: &[LookAlike], changes: &[Change]) -> Result<(), String> {
    let creates: HashSet<&str> = emails_of(changes, ActionKind::Create).collect();
    let bans: HashSet<&str> = emails_of(changes, ActionKind::Ban).collect();
    for (i, pair) in look_alikes.iter().enumerate() {
        if i > 0 && look_alikes[i - 1] >= *pair {
            return Err(format!("`look_alikes[{i}]` is out of order or repeated"));
        }
        if !creates.contains(pair.create.as_str()) {
            return Err(format!("`look_alikes[{i}].create` is not a planned create"));
        }
        if !bans.contains(pair.ban.as_str()) {
            return Err(format!("`look_alikes[{i}].ban` is not a planned ban"));
        }
        if !looks_alike(&pair.create, &pair.ban) {
            return Err(format!(
                "`look_alikes[{i}]` names two emails that do not look alike"
            ));
        }
    }
    Ok(())
}

/// Call `each` with a hash of every variant of `email` one of the rules can meet in
/// another email: for (a) and (b) the domain with the local part less up to two
/// characters, or with its tag and dots removed; for (c) the local part with the domain
/// less up to one character. A deletion inside a run of one character is made once.
/// Each variant's hash costs O(1) (polynomial prefix hashes), not a pass over it.
fn variants(email: &str, mut each: impl FnMut(u64)) {
    let Some((local, domain)) = split(email) else {
        return;
    };
    let l = Prefix::new(local.as_bytes());
    let d = Prefix::new(domain.as_bytes());
    let (lb, db) = (local.as_bytes(), domain.as_bytes());
    let first_of_run = |s: &[u8], i: usize| i == 0 || s[i] != s[i - 1];
    // (a): same domain, local part less 0, 1 or 2 characters.
    let domain_key = d.range(0, db.len());
    each(key(1, domain_key, l.without(&[])));
    for i in (0..lb.len()).filter(|&i| first_of_run(lb, i)) {
        each(key(1, domain_key, l.without(&[i])));
        for j in (i + 1..lb.len()).filter(|&j| j == i + 1 || first_of_run(lb, j)) {
            each(key(1, domain_key, l.without(&[i, j])));
        }
    }
    // (b): same domain, stripped local part.
    let base = stripped(local);
    let s = Prefix::new(base.as_bytes());
    each(key(2, domain_key, s.without(&[])));
    // (c): same local part, domain less 0 or 1 character.
    let local_key = l.range(0, lb.len());
    each(key(3, local_key, d.without(&[])));
    for i in (0..db.len()).filter(|&i| first_of_run(db, i)) {
        each(key(3, local_key, d.without(&[i])));
    }
}

/// Polynomial hashes of every prefix of a short string (at most 255 bytes), and the
/// powers of the base, so that the hash of the string less one or two positions is
/// three look-ups and a few multiplications.
struct Prefix {
    hashes: Vec<u64>,
    powers: Vec<u64>,
}

const BASE: u64 = 0x9e37_79b9_7f4a_7c15;

impl Prefix {
    fn new(bytes: &[u8]) -> Prefix {
        let mut hashes = Vec::with_capacity(bytes.len() + 1);
        let mut powers = Vec::with_capacity(bytes.len() + 1);
        let (mut h, mut p) = (0u64, 1u64);
        hashes.push(h);
        powers.push(p);
        for b in bytes {
            h = h.wrapping_mul(BASE).wrapping_add(u64::from(*b) + 1);
            p = p.wrapping_mul(BASE);
            hashes.push(h);
            powers.push(p);
        }
        Prefix { hashes, powers }
    }

    /// (hash, length) of `bytes[from..to]`.
    fn range(&self, from: usize, to: usize) -> (u64, usize) {
        let h =
            self.hashes[to].wrapping_sub(self.hashes[from].wrapping_mul(self.powers[to - from]));
        (h, to - from)
    }

    /// (hash, length) of the whole string less the (ascending) positions `skip`.
    fn without(&self, skip: &[usize]) -> (u64, usize) {
        let end = self.hashes.len() - 1;
        let (mut h, mut len, mut from) = (0u64, 0usize, 0usize);
        for &at in skip.iter().chain(std::iter::once(&end)) {
            let (part, n) = self.range(from, at);
            h = h.wrapping_mul(self.powers[n]).wrapping_add(part);
            len += n;
            from = at + 1;
        }
        (h, len)
    }
}

/// One index key from a rule's tag, the part that must be equal and the varied part.
fn key(tag: u64, fixed: (u64, usize), varied: (u64, usize)) -> u64 {
    let mut z = varied.0
        ^ fixed.0.rotate_left(23)
        ^ (tag << 60)
        ^ ((varied.1 as u64) << 40)
        ^ ((fixed.1 as u64) << 48);
    // splitmix64's finaliser: the map uses these bits as they are.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The keys are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn change(action: ActionKind, email: &str) -> Change {
        Change {
            action,
            email: email.into(),
            user_id: (action != ActionKind::Create)
                .then(|| "0b1e6c4a-0000-4000-8000-000000000001".into()),
        }
    }

    fn pair(create: &str, ban: &str) -> LookAlike {
        LookAlike {
            create: create.into(),
            ban: ban.into(),
        }
    }

    #[test]
    fn rule_a_one_edit_in_a_short_local_part_two_in_a_long_one() {
        assert_eq!(
            rule("jon@example.com", "john@example.com"),
            Some(Rule::Typo)
        );
        assert_eq!(rule("ann@example.com", "nan@example.com"), Some(Rule::Typo));
        // Transpositions count one.
        assert_eq!(
            rule("mraia@example.com", "maria@example.com"),
            Some(Rule::Typo)
        );
        assert_eq!(
            rule("jonathan@example.com", "jnoathon@example.com"),
            Some(Rule::Typo)
        );
        // Five characters or more: two edits.
        assert_eq!(
            rule("alice@example.com", "alyse@example.com"),
            Some(Rule::Typo)
        );
    }

    #[test]
    fn not_rule_a_two_edits_when_the_shorter_local_part_is_short() {
        // `ann` and `dan`: distance 2, shorter local part of 3 characters.
        assert_eq!(strsim::damerau_levenshtein("ann", "dan"), 2);
        assert_eq!(rule("ann@example.com", "dan@example.com"), None);
        // Four characters: still one edit only.
        assert_eq!(
            rule("anna@example.com", "anne@example.com"),
            Some(Rule::Typo)
        );
        assert_eq!(rule("anna@example.com", "dina@example.com"), None);
        // Three edits apart in long local parts.
        assert_eq!(rule("jonathan@example.com", "jonnothin@example.com"), None);
        // A small edit in another domain is no look-alike.
        assert_eq!(rule("jon@example.com", "john@other.org"), None);
    }

    #[test]
    fn rule_b_dots_and_tag() {
        assert_eq!(
            rule("mary.ann@example.com", "maryann@example.com"),
            Some(Rule::Typo)
        );
        assert_eq!(
            rule("m.a.r.y.a.n.n@example.com", "maryann+ops@example.com"),
            Some(Rule::DotsOrTag)
        );
        assert_eq!(
            rule("john.smith+roster@example.com", "johnsmith@example.com"),
            Some(Rule::DotsOrTag)
        );
    }

    #[test]
    fn not_rule_b_across_domains_or_when_the_base_differs() {
        assert_eq!(
            rule("j.o.h.n.smith@example.com", "johnsmith@other.org"),
            None
        );
        assert_eq!(
            rule("john.smith+a@example.com", "john.smyth.jr+a@example.com"),
            None
        );
    }

    #[test]
    fn rule_c_domain_typos() {
        assert_eq!(
            rule("john@exmaple.com", "john@example.com"),
            Some(Rule::DomainTypo)
        );
        assert_eq!(
            rule("john@example.co", "john@example.com"),
            Some(Rule::DomainTypo)
        );
    }

    #[test]
    fn not_rule_c_two_edits_in_the_domain_or_another_local_part() {
        assert_eq!(rule("john@exmaple.org", "john@example.com"), None);
        assert_eq!(rule("jane@exmaple.com", "john@example.com"), None);
    }

    #[test]
    fn equal_emails_and_values_without_an_at_are_never_look_alikes() {
        assert_eq!(rule("john@example.com", "john@example.com"), None);
        assert_eq!(rule("john", "johm"), None);
        assert_eq!(rule("", "@"), None);
        // Too long to compare (RFC 5321: 64 characters before the `@`).
        let long = |c: &str| format!("{}{c}@example.com", "a".repeat(64));
        assert_eq!(rule(&long(""), &long("b")), None);
        let shorter = |c: &str| format!("{}{c}@example.com", "a".repeat(63));
        assert_eq!(rule(&shorter(""), &shorter("b")), Some(Rule::Typo));
    }

    #[test]
    fn pairs_are_creates_against_bans_only_sorted() {
        let changes = vec![
            change(ActionKind::Create, "jon@example.com"),
            change(ActionKind::Create, "zed@example.com"),
            change(ActionKind::Create, "john@exmaple.com"),
            change(ActionKind::Restore, "joan@example.com"),
            change(ActionKind::Ban, "john@example.com"),
            change(ActionKind::Ban, "ann@example.com"),
        ];
        assert_eq!(
            pairs(&changes),
            vec![
                pair("john@exmaple.com", "john@example.com"),
                pair("jon@example.com", "john@example.com"),
            ]
        );
    }

    #[test]
    fn check_accepts_the_pairs_it_found_and_names_the_first_that_does_not_follow() {
        let changes = vec![
            change(ActionKind::Create, "jon@example.com"),
            change(ActionKind::Create, "zed@example.com"),
            change(ActionKind::Ban, "john@example.com"),
            change(ActionKind::Ban, "joan@example.com"),
        ];
        let found = pairs(&changes);
        assert_eq!(found.len(), 2);
        assert_eq!(check(&found, &changes), Ok(()));
        assert_eq!(check(&[], &changes), Ok(()));
        for (bad, why) in [
            (
                vec![found[1].clone(), found[0].clone()],
                "`look_alikes[1]` is out of order or repeated",
            ),
            (
                vec![found[0].clone(), found[0].clone()],
                "`look_alikes[1]` is out of order or repeated",
            ),
            (
                vec![pair("john@example.com", "jon@example.com")],
                "`look_alikes[0].create` is not a planned create",
            ),
            (
                vec![pair("jon@example.com", "jonny@example.com")],
                "`look_alikes[0].ban` is not a planned ban",
            ),
            (
                vec![pair("zed@example.com", "john@example.com")],
                "`look_alikes[0]` names two emails that do not look alike",
            ),
        ] {
            assert_eq!(check(&bad, &changes), Err(why.to_string()), "{bad:?}");
        }
    }

    fn email() -> impl Strategy<Value = String> {
        (
            "[a-c.+]{1,7}",
            prop::sample::select(vec!["ex.com", "xe.com", "ex.co", "b.org"]),
        )
            .prop_map(|(l, d)| format!("{l}@{d}"))
    }

    proptest! {
        /// The index finds exactly what comparing every pair finds.
        #[test]
        fn index_finds_exactly_the_pairs_a_full_comparison_finds(
            indexed in prop::collection::vec(email(), 0..30),
            asked in prop::collection::vec(email(), 1..10),
        ) {
            let index = Index::new(indexed.iter().map(String::as_str));
            for a in &asked {
                let mut want: Vec<&str> = indexed
                    .iter()
                    .map(String::as_str)
                    .filter(|b| looks_alike(a, b))
                    .collect();
                want.dedup();
                let mut got = index.matches(a);
                got.dedup();
                let (mut want, mut got) = (want, got);
                want.sort_unstable();
                got.sort_unstable();
                want.dedup();
                got.dedup();
                prop_assert_eq!(got, want);
            }
        }

        /// The relation is symmetric, and the pairs of a plan always pass the check,
        /// whichever side is indexed.
        #[test]
        fn look_alikes_are_symmetric_and_pairs_pass_the_check(
            creates in prop::collection::btree_set(email(), 0..12),
            bans in prop::collection::btree_set(email(), 0..12),
        ) {
            let changes: Vec<Change> = creates
                .iter()
                .map(|e| change(ActionKind::Create, e))
                .chain(bans.iter().map(|e| change(ActionKind::Ban, e)))
                .collect();
            let found = pairs(&changes);
            for c in &creates {
                for b in &bans {
                    prop_assert_eq!(looks_alike(c, b), looks_alike(b, c));
                    prop_assert_eq!(
                        looks_alike(c, b),
                        found.contains(&pair(c, b))
                    );
                }
            }
            prop_assert_eq!(check(&found, &changes), Ok(()));
        }
    }
}
