//! Roster files (`--roster-file`): YAML, JSON or CSV, chosen by extension, read into
//! `RosterEntry`s that say where each came from. Emails are kept as given (trimming,
//! lower-casing and validation are reconciliation's job); only the file's shape is
//! checked here. The roster table is read by `supabase::Client::read_roster_table`.

use std::path::Path;

use serde_json::Value as Json;

use crate::error::Error;
use crate::model::RosterEntry;
use crate::regular_file;

const ACCEPTED: &str = "`.yaml`, `.yml`, `.json` or `.csv`";

/// Read a roster file. Entries without an email (or with `email: null`, or an empty CSV
/// cell) become `RosterEntry { email: None }`: reconciliation reports them as conflicts.
/// A file that cannot be read, parsed, or is not a list of entries is an error naming
/// the file and the row or line.
pub fn read_roster_file(path: &Path) -> Result<Vec<RosterEntry>, Error> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match ext.as_deref() {
        Some("yaml" | "yml") => Format::Yaml,
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        other => {
            return Err(file_error(
                path,
                "",
                match other {
                    Some(ext) => format!("unknown roster file extension `.{ext}`; use {ACCEPTED}"),
                    None => format!("the roster file has no extension; use {ACCEPTED}"),
                },
            ));
        }
    };
    let bytes = regular_file::read_input(path)?;
    // Editors on Windows like to start files with a byte-order mark; no parser wants it.
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
    match format {
        Format::Yaml => from_yaml(path, text(path, bytes)?),
        Format::Json => from_json(path, text(path, bytes)?),
        Format::Csv => from_csv(path, bytes),
    }
}

enum Format {
    Yaml,
    Json,
    Csv,
}

fn file_error(path: &Path, location: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::RosterFile {
        path: path.to_path_buf(),
        location: location.into(),
        reason: reason.into(),
    }
}

fn text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        file_error(path, format!(" line {line}"), "the file is not valid UTF-8")
    })
}

fn origin(path: &Path, row: usize) -> String {
    format!("row {row} of {}", path.display())
}

/// A parser message without the " at line L column C" we already show as the location.
fn without_position(message: String, line: usize, column: usize) -> String {
    message.replacen(&format!(" at line {line} column {column}"), "", 1)
}

const SHAPE: &str = "expected a list of entries, or a list under `people:` or `roster:`";

fn from_yaml(path: &Path, text: &str) -> Result<Vec<RosterEntry>, Error> {
    // Refused before the parser sees it: 100k levels of nesting took the parser 40 s.
    if let Some(line) = yaml_nesting_over(text, MAX_DEPTH) {
        return Err(too_deep(path, format!(" line {line}")));
    }
    let yaml_error = |e: serde_norway::Error| match e.location() {
        Some(loc) => file_error(
            path,
            format!(" line {} column {}", loc.line(), loc.column()),
            without_position(e.to_string(), loc.line(), loc.column()),
        ),
        None => file_error(path, "", e.to_string()),
    };
    let mut value: serde_norway::Value = serde_norway::from_str(text).map_err(yaml_error)?;
    // Merge keys (`<<: *alice`) are honoured, as YAML 1.1 defines them: the row gets the
    // merged mapping's keys (its own win). Read as a plain key instead, a row merging in
    // an email would have none, and its person would be planned for a ban.
    value.apply_merge().map_err(|e| {
        file_error(
            path,
            "",
            format!("a merge key (`<<`) cannot be applied: {e}"),
        )
    })?;
    if has_merge_key(&value) {
        return Err(file_error(
            path,
            "",
            "a merge key (`<<`) is left after merging (a merge that merges another); write the row's keys out in full",
        ));
    }
    // Read into the JSON data model so one function checks the shape of both formats.
    let doc: Json = serde_norway::from_value(value).map_err(yaml_error)?;
    if doc.is_null() {
        return Err(file_error(path, "", format!("the file is empty; {SHAPE}")));
    }
    from_document(path, doc, Format::Yaml)
}

/// The deepest nesting a roster file may have (a roster needs three levels).
const MAX_DEPTH: usize = 64;

fn too_deep(path: &Path, location: String) -> Error {
    file_error(
        path,
        location,
        format!("the file nests deeper than {MAX_DEPTH} levels; a roster is a list of entries"),
    )
}

fn has_merge_key(value: &serde_norway::Value) -> bool {
    use serde_norway::Value as Y;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Y::Mapping(m) => {
                if m.contains_key("<<") {
                    return true;
                }
                stack.extend(m.values());
            }
            Y::Sequence(items) => stack.extend(items),
            Y::Tagged(t) => stack.push(&t.value),
            _ => {}
        }
    }
    false
}

/// The first line (1-based) at which `text` nests deeper than `max`, by a scan that
/// needs no parser: flow brackets (`[`, `{`) outside quotes and comments, block
/// indentation levels, and the `- ` of compact nested sequences. It may under-count odd
/// layouts (the parsed document is checked exactly afterwards); it never over-counts a
/// roster, whose entries sit three levels deep.
fn yaml_nesting_over(text: &str, max: usize) -> Option<usize> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        let mut block = indents.len();
        if flow == 0 && !trimmed.is_empty() && !trimmed.starts_with('#') {
            let indent = line.len() - trimmed.len();
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            let mut rest = trimmed;
            let mut dashes = 0;
            while let Some(r) = rest.strip_prefix("- ") {
                dashes += 1;
                rest = r.trim_start_matches(' ');
            }
            block = indents.len() + dashes;
        }
        let (mut single, mut double, mut escaped) = (false, false, false);
        let mut previous = ' ';
        for c in line.chars() {
            if double {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => double = false,
                    _ => {}
                }
            } else if single {
                single = c != '\'';
            } else {
                match c {
                    '"' => double = true,
                    '\'' => single = true,
                    '#' if previous.is_whitespace() => break,
                    '[' | '{' => flow += 1,
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                }
            }
            if block + flow > max {
                return Some(n + 1);
            }
            previous = c;
        }
        if block + flow > max {
            return Some(n + 1);
        }
    }
    None
}

/// How deeply `value` nests (a scalar is 0, `[1]` is 1), without recursing.
fn depth(value: &Json) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Json::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Json::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

fn from_json(path: &Path, text: &str) -> Result<Vec<RosterEntry>, Error> {
    let doc: Json = serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        file_error(
            path,
            format!(" line {line} column {column}"),
            without_position(e.to_string(), line, column),
        )
    })?;
    from_document(path, doc, Format::Json)
}

/// The shape both YAML and JSON rosters share: a list of entries, or one under `people`
/// or `roster`; each entry a mapping whose `email` is a string, null or absent.
fn from_document(path: &Path, doc: Json, format: Format) -> Result<Vec<RosterEntry>, Error> {
    if depth(&doc) > MAX_DEPTH {
        return Err(too_deep(path, String::new()));
    }
    let kind = |v: &Json| json_kind(v, &format);
    let items = match doc {
        Json::Array(items) => items,
        Json::Object(mut map) => {
            let people = map.remove("people");
            let roster = map.remove("roster");
            match (people, roster) {
                (Some(Json::Array(items)), None) | (None, Some(Json::Array(items))) => items,
                (Some(_), Some(_)) => {
                    return Err(file_error(
                        path,
                        "",
                        "both `people` and `roster` are present; keep one list",
                    ));
                }
                (Some(other), None) | (None, Some(other)) => {
                    return Err(file_error(
                        path,
                        "",
                        format!("{SHAPE}, but the list key holds {}", kind(&other)),
                    ));
                }
                (None, None) => return Err(file_error(path, "", SHAPE)),
            }
        }
        other => {
            return Err(file_error(
                path,
                "",
                format!("{SHAPE}, found {}", kind(&other)),
            ));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let row = i + 1;
            let Json::Object(mut entry) = item else {
                return Err(file_error(
                    path,
                    format!(" row {row}"),
                    format!(
                        "an entry must be {} with an `email` key, found {}",
                        kind(&Json::Object(Default::default())),
                        kind(&item)
                    ),
                ));
            };
            let email = match entry.remove("email") {
                None | Some(Json::Null) => None,
                Some(Json::String(s)) => Some(s),
                Some(other) => {
                    return Err(file_error(
                        path,
                        format!(" row {row}"),
                        format!("`email` must be a string, found {}", kind(&other)),
                    ));
                }
            };
            Ok(RosterEntry {
                email,
                origin: origin(path, row),
            })
        })
        .collect()
}

/// What a value is, in the words of the file's format.
fn json_kind(v: &Json, format: &Format) -> &'static str {
    match (v, format) {
        (Json::Null, Format::Yaml) => "nothing (null)",
        (Json::Null, _) => "null",
        (Json::Bool(_), _) => "a boolean",
        (Json::Number(_), _) => "a number",
        (Json::String(_), _) => "a string",
        (Json::Array(_), _) => "a list",
        (Json::Object(_), Format::Yaml) => "a mapping",
        (Json::Object(_), _) => "an object",
    }
}

fn from_csv(path: &Path, bytes: &[u8]) -> Result<Vec<RosterEntry>, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // A row with a different number of fields than the header is an error, not a
        // guess at which column moved.
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| csv_error(path, &e, None))?
        .clone();
    let email_columns: Vec<usize> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.trim().eq_ignore_ascii_case("email"))
        .map(|(i, _)| i)
        .collect();
    let column = match email_columns.as_slice() {
        [one] => *one,
        [] => {
            return Err(file_error(
                path,
                " line 1",
                "the header row has no `email` column",
            ));
        }
        _ => {
            return Err(file_error(
                path,
                " line 1",
                "the header row has more than one `email` column",
            ));
        }
    };
    let mut entries = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.map_err(|e| csv_error(path, &e, Some(row)))?;
        let email = record
            .get(column)
            .filter(|cell| !cell.is_empty())
            .map(str::to_string);
        entries.push(RosterEntry {
            email,
            origin: origin(path, row),
        });
    }
    Ok(entries)
}

/// A CSV error with the data row (when known) and the file line.
fn csv_error(path: &Path, e: &csv::Error, row: Option<usize>) -> Error {
    let line = e.position().map(|p| p.line());
    let location = match (row, line) {
        (Some(row), Some(line)) => format!(" row {row} (line {line})"),
        (Some(row), None) => format!(" row {row}"),
        (None, Some(line)) => format!(" line {line}"),
        (None, None) => String::new(),
    };
    let reason = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "the row has {len} field{} but the header has {expected_len}",
            if *len == 1 { "" } else { "s" }
        ),
        csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".to_string(),
        _ => e.to_string(),
    };
    file_error(path, location, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn file(name: &str, content: &[u8]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        Fixture { _dir: dir, path }
    }

    fn emails(entries: &[RosterEntry]) -> Vec<Option<&str>> {
        entries.iter().map(|e| e.email.as_deref()).collect()
    }

    /// The error's message, checked to name the file.
    fn error_of(f: &Fixture) -> String {
        let err = read_roster_file(&f.path).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&f.path.display().to_string()),
            "does not name the file: {msg}"
        );
        msg
    }

    #[test]
    fn yaml_top_level_list() {
        let f = file(
            "roster.yaml",
            b"- email: Dana@Example.com\n  name: Dana\n- email: eli@example.com\n- name: no email\n- email: null\n",
        );
        let entries = read_roster_file(&f.path).unwrap();
        assert_eq!(
            emails(&entries),
            vec![
                Some("Dana@Example.com"),
                Some("eli@example.com"),
                None,
                None
            ]
        );
        assert_eq!(entries[2].origin, format!("row 3 of {}", f.path.display()));
    }

    #[test]
    fn yaml_under_people_or_roster() {
        for key in ["people", "roster"] {
            let f = file(
                "r.yml",
                format!("version: 2\n{key}:\n  - email: a@example.com\n    team: core\n")
                    .as_bytes(),
            );
            let entries = read_roster_file(&f.path).unwrap();
            assert_eq!(emails(&entries), vec![Some("a@example.com")]);
        }
        let f = file("empty-list.yaml", b"people: []\n");
        assert!(read_roster_file(&f.path).unwrap().is_empty());
    }

    #[test]
    fn json_shapes() {
        let f = file(
            "roster.json",
            br#"[{"email": "a@example.com", "x": 1}, {"email": null}, {}]"#,
        );
        let entries = read_roster_file(&f.path).unwrap();
        assert_eq!(emails(&entries), vec![Some("a@example.com"), None, None]);
        assert_eq!(entries[0].origin, format!("row 1 of {}", f.path.display()));
        for key in ["people", "roster"] {
            let f = file(
                "roster.json",
                format!(r#"{{"{key}": [{{"email": "b@example.com"}}]}}"#).as_bytes(),
            );
            assert_eq!(
                emails(&read_roster_file(&f.path).unwrap()),
                vec![Some("b@example.com")]
            );
        }
        // A byte-order mark does not break JSON either.
        let f = file("bom.json", b"\xef\xbb\xbf[{\"email\": \"c@example.com\"}]");
        assert_eq!(
            emails(&read_roster_file(&f.path).unwrap()),
            vec![Some("c@example.com")]
        );
    }

    #[test]
    fn csv_with_email_column_among_others() {
        let f = file(
            "roster.csv",
            b"name,Email,team\nDana,dana@example.com,core\n\"Eli, Jr.\",eli@example.com,\"a,b\"\nNo One,,core\n",
        );
        let entries = read_roster_file(&f.path).unwrap();
        assert_eq!(
            emails(&entries),
            vec![Some("dana@example.com"), Some("eli@example.com"), None]
        );
        assert_eq!(entries[1].origin, format!("row 2 of {}", f.path.display()));
        let f = file("header-only.csv", b"email\n");
        assert!(read_roster_file(&f.path).unwrap().is_empty());
    }

    #[test]
    fn csv_with_a_byte_order_mark() {
        let f = file(
            "excel.csv",
            b"\xef\xbb\xbfemail,name\r\na@example.com,A\r\n",
        );
        let entries = read_roster_file(&f.path).unwrap();
        assert_eq!(emails(&entries), vec![Some("a@example.com")]);
    }

    #[test]
    fn extension_is_case_insensitive() {
        let f = file("ROSTER.YAML", b"- email: a@example.com\n");
        assert_eq!(read_roster_file(&f.path).unwrap().len(), 1);
    }

    #[test]
    fn unknown_extension_lists_the_accepted_ones() {
        let f = file("roster.txt", b"a@example.com\n");
        let msg = error_of(&f);
        assert!(msg.contains("`.txt`"), "{msg}");
        assert!(msg.contains(".yaml") && msg.contains(".csv"), "{msg}");
        let f = file("roster", b"");
        assert!(error_of(&f).contains("no extension"));
    }

    #[test]
    fn unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.yaml");
        let err = read_roster_file(&path).unwrap_err();
        assert!(matches!(err, Error::ReadFile { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.yaml"));
    }

    #[test]
    fn yaml_broken_cases_name_file_and_place() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"- email: a@example.com\n- email: [unclosed\n", &["line 2"]),
            (b"email: a@example.com\n", &["expected a list"]),
            (b"just a string\n", &["expected a list", "a string"]),
            (b"", &["empty"]),
            (b"people: 3\n", &["a number"]),
            (b"people: []\nroster: []\n", &["both"]),
            (
                b"- email: a@example.com\n- b@example.com\n",
                &["row 2", "mapping"],
            ),
            (
                b"- email: a@example.com\n- email: 12\n",
                &["row 2", "must be a string"],
            ),
            (
                b"- email: [a@example.com]\n",
                &["row 1", "must be a string"],
            ),
            (b"- email: \xff\n", &["not valid UTF-8", "line 1"]),
        ];
        for (content, wants) in cases {
            let f = file("roster.yaml", content);
            let msg = error_of(&f);
            for want in *wants {
                assert!(
                    msg.contains(want),
                    "{:?}: {msg}",
                    String::from_utf8_lossy(content)
                );
            }
            assert!(matches!(
                read_roster_file(&f.path).unwrap_err(),
                Error::RosterFile { .. }
            ));
        }
    }

    #[test]
    fn json_broken_cases_name_file_and_place() {
        let cases: &[(&[u8], &[&str])] = &[
            (
                b"[{\"email\": \"a@example.com\"},\n {\"email\": }]",
                &["line 2 column"],
            ),
            (b"{\"email\": \"a@example.com\"}", &["expected a list"]),
            (b"\"a@example.com\"", &["a string"]),
            (b"[\"a@example.com\"]", &["row 1", "object"]),
            (
                b"[{}, {\"email\": 5}]",
                &["row 2", "must be a string", "a number"],
            ),
            (
                b"{\"people\": {\"email\": \"a@example.com\"}}",
                &["an object"],
            ),
        ];
        for (content, wants) in cases {
            let f = file("roster.json", content);
            let msg = error_of(&f);
            for want in *wants {
                assert!(
                    msg.contains(want),
                    "{:?}: {msg}",
                    String::from_utf8_lossy(content)
                );
            }
        }
    }

    #[test]
    fn csv_broken_cases_name_file_and_place() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"name,team\nDana,core\n", &["no `email` column", "line 1"]),
            (b"", &["no `email` column"]),
            (b"email,EMAIL\na,b\n", &["more than one"]),
            (
                b"email,name\na@example.com,A\nb@example.com\n",
                &["row 2 (line 3)", "1 field but the header has 2"],
            ),
            (
                b"email,name\na@example.com,A\nb@example.com,B,extra\n",
                &["row 2", "3 fields"],
            ),
            (
                b"email\na@example.com\n\xff@example.com\n",
                &["row 2", "UTF-8"],
            ),
        ];
        for (content, wants) in cases {
            let f = file("roster.csv", content);
            let msg = error_of(&f);
            for want in *wants {
                assert!(
                    msg.contains(want),
                    "{:?}: {msg}",
                    String::from_utf8_lossy(content)
                );
            }
        }
    }

    #[test]
    fn yaml_merge_keys_are_honoured() {
        let f = file(
            "roster.yaml",
            b"defaults: &alice\n  email: alice@example.com\nbase: &team\n  team: core\npeople:\n  - <<: *alice\n    name: Alice\n  - <<: [*team, {email: bob@example.com}]\n  - <<: *alice\n    email: carol@example.com\n",
        );
        let entries = read_roster_file(&f.path).unwrap();
        assert_eq!(
            emails(&entries),
            vec![
                Some("alice@example.com"),
                Some("bob@example.com"),
                // The row's own key wins over the merged one.
                Some("carol@example.com"),
            ]
        );
    }

    #[test]
    fn a_merge_key_that_cannot_be_applied_is_a_clear_error() {
        let f = file("roster.yaml", b"people:\n  - <<: not-a-mapping\n");
        let msg = error_of(&f);
        assert!(
            msg.contains("a merge key (`<<`) cannot be applied"),
            "{msg}"
        );
    }

    #[test]
    fn nesting_deeper_than_64_is_refused_at_once() {
        let started = std::time::Instant::now();
        let flow = "[".repeat(100_000);
        let f = file("deep.yaml", flow.as_bytes());
        let msg = error_of(&f);
        assert!(msg.contains("line 1"), "{msg}");
        assert!(msg.contains("nests deeper than 64 levels"), "{msg}");
        // Block nesting, one level per line.
        let block: String = (0..70)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let f = file("deep.yaml", block.as_bytes());
        let msg = error_of(&f);
        assert!(msg.contains("line 65"), "{msg}");
        // JSON too (its parser stops at 128 on its own; 64 is the limit here).
        let json = format!("{}{}", "[".repeat(70), "]".repeat(70));
        let f = file("deep.json", json.as_bytes());
        assert!(error_of(&f).contains("nests deeper than 64 levels"));
        // At once: the 100k levels took the parser 40 s before.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A realistic roster is far from the limit.
        let f = file(
            "ok.yaml",
            b"# the team\npeople:\n  - email: a@example.com # lead\n    tags: [x, {y: [z]}]\n  - {email: \"o'b@example.com\", note: 'it''s [fine'}\n",
        );
        assert_eq!(read_roster_file(&f.path).unwrap().len(), 2);
    }
}
