//! OpenSSH's pattern lists (`match.c`: `match_pattern`, `match_pattern_list`), as the
//! allowed-signers file uses them for principals and `namespaces="…"`. Pure; imports
//! nothing of ours.

/// What a pattern list says about a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    /// Some positive pattern matched, and no negated one did.
    Positive,
    /// No pattern matched.
    None,
    /// A negated pattern (`!pat`) matched: the string is excluded, whatever else matches.
    Negated,
}

/// OpenSSH's sub-pattern buffer is 1024 bytes; a longer sub-pattern makes the whole list
/// fail to match (`match_pattern_list` returns 0), and so it does here.
const MAX_SUBPATTERN: usize = 1023;

/// `*` matches any run of characters (also none), `?` exactly one, anything else itself;
/// case-sensitive (the allowed-signers file matches with `dolower` = 0).
pub fn match_pattern(s: &str, pattern: &str) -> bool {
    // Bytes, as OpenSSH compares them (`?` is one byte).
    let (s, p) = (s.as_bytes(), pattern.as_bytes());
    // Greedy with one backtrack point (the last `*`): O(len(s) * len(p)) at worst,
    // where OpenSSH's recursion could go exponential on hostile patterns.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && p[pi] == s[si])) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((star_pi, star_si)) = star {
            pi = star_pi + 1;
            si = star_si + 1;
            star = Some((star_pi, star_si + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A comma-separated list of patterns, each optionally negated with a leading `!`
/// (`match_pattern_list`): a matching negated pattern excludes the string at once.
pub fn match_pattern_list(s: &str, list: &str) -> ListMatch {
    let mut positive = false;
    for sub in list.split(',') {
        let (negated, pattern) = match sub.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, sub),
        };
        if pattern.len() > MAX_SUBPATTERN {
            return ListMatch::None;
        }
        if match_pattern(s, pattern) {
            if negated {
                return ListMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        ListMatch::Positive
    } else {
        ListMatch::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_openssh_globs() {
        assert!(match_pattern("alice@example.com", "*@example.com"));
        assert!(match_pattern("alice@example.com", "alice@example.com"));
        assert!(match_pattern("a", "?"));
        assert!(match_pattern("", "*"));
        assert!(match_pattern("abc", "a*c"));
        assert!(match_pattern("abbbc", "a*b*c"));
        assert!(!match_pattern("abc", "a?"));
        assert!(!match_pattern("Alice@example.com", "alice@*"));
        assert!(!match_pattern("alice@example.com.evil", "*@example.com"));
        assert!(!match_pattern("", "?"));
    }

    #[test]
    fn a_negated_pattern_excludes_whatever_else_matches() {
        let list = "*@example.com,!mallory@example.com";
        assert_eq!(
            match_pattern_list("alice@example.com", list),
            ListMatch::Positive
        );
        assert_eq!(
            match_pattern_list("mallory@example.com", list),
            ListMatch::Negated
        );
        assert_eq!(match_pattern_list("bob@corp.com", list), ListMatch::None);
        // Order does not matter: the negation wins even when it comes first.
        assert_eq!(
            match_pattern_list("mallory@example.com", "!mallory@example.com,*"),
            ListMatch::Negated
        );
        // A list of negations alone matches nothing positively.
        assert_eq!(match_pattern_list("bob", "!alice"), ListMatch::None);
    }

    #[test]
    fn empty_entries_match_only_the_empty_string() {
        assert_eq!(match_pattern_list("a", "b,,c"), ListMatch::None);
        assert_eq!(match_pattern_list("", "b,,c"), ListMatch::Positive);
    }

    #[test]
    fn an_overlong_subpattern_makes_the_list_fail() {
        let long = "a".repeat(MAX_SUBPATTERN + 1);
        assert_eq!(
            match_pattern_list(&long, &format!("*,{long}")),
            ListMatch::None
        );
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let s = "a".repeat(5000);
        let p = format!("{}b", "*a".repeat(200));
        assert!(!match_pattern(&s, &p));
    }
}
