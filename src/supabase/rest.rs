//! The roster table through PostgREST (`/rest/v1/{table}`, schema in `Accept-Profile`):
//! a listing verified complete against the exact count, whatever the server's silent
//! `max-rows` cap does to each page.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::auth::MAX_TOTAL;
use super::failure::{Reading, classify};
use super::skim;
use super::{Client, RequestSpec, Retries};
use crate::error::{ApiFailure, Error};
use crate::model::RosterEntry;

/// Rows asked for per request. The server may return fewer (`db-max-rows`, 1000 on
/// Supabase by default, lower on some projects) without saying so except through
/// `Content-Range`, so the offset advances by what actually arrived.
const PAGE_LIMIT: u64 = 1000;

/// Full reads before a count that keeps moving is given up on.
const MAX_READS: usize = 3;

const WHAT: &str = "roster table rows";

/// `Content-Range: 0-99/2500`, `*/0`, `0-99/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    /// `(first, last)`, inclusive; `None` for `*`.
    range: Option<(u64, u64)>,
    /// `None` for `*` (no count asked for, or none given).
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (range, total) = value.trim().split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (first, last) = r.split_once('-')?;
            let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
            if last < first {
                return None;
            }
            Some((first, last))
        }
    };
    Some(ContentRange { range, total })
}

enum Read {
    Complete(Vec<RosterEntry>),
    /// The count moved or pages did not line up: rows changed while reading.
    Inconsistent(String),
}

/// One page's outcome.
enum Page {
    Rows {
        /// Each row's `email` member as given (`None`: none; see `skim::RowsPage`).
        rows: Vec<Option<Value>>,
        range: ContentRange,
    },
    /// 416: the offset is past the end, so rows were deleted while reading.
    PastTheEnd,
}

impl Client {
    /// Every row of `schema.table` (column `email`), verified complete: the rows
    /// received must number exactly the exact count, and the count must not move while
    /// reading. Reads again when it does (up to 3 times), then `Error::IncompleteRead`.
    pub async fn read_roster_table(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Vec<RosterEntry>, Error> {
        if schema.is_empty() || table.is_empty() {
            return Err(Error::BadFlag {
                flag: "--roster-table",
                reason: "the schema and the table must both be named (SCHEMA.TABLE)".into(),
            });
        }
        let profile = HeaderValue::from_str(schema).map_err(|_| Error::BadFlag {
            flag: "--roster-table",
            reason: "the schema name cannot be sent in an HTTP header".into(),
        })?;
        let mut problems = Vec::new();
        for _ in 0..MAX_READS {
            match self.read_table_once(schema, table, &profile).await? {
                Read::Complete(rows) => return Ok(rows),
                Read::Inconsistent(why) => problems.push(why),
            }
        }
        Err(Error::IncompleteRead {
            what: WHAT,
            detail: format!(
                "`{schema}.{table}`: {MAX_READS} reads in a row did not add up (rows are being added or removed while reading?); the last: {}",
                problems.last().map(String::as_str).unwrap_or("unknown")
            ),
        })
    }

    async fn read_table_once(
        &self,
        schema: &str,
        table: &str,
        profile: &HeaderValue,
    ) -> Result<Read, Error> {
        let reading = Reading::RosterTable { schema, table };
        let mut entries = Vec::new();
        let mut total: Option<u64> = None;
        // Pages read ahead, by offset, and the page size the first page showed (see below).
        let mut ahead: HashMap<u64, Page> = HashMap::new();
        let mut step: Option<(u64, u64)> = None;
        loop {
            let offset = entries.len() as u64;
            if let Some((step, page_total)) = step
                && !ahead.contains_key(&offset)
            {
                ahead = self
                    .read_ahead(table, profile, offset, step, page_total)
                    .await
                    .map_err(|f| classify(f, reading))?;
            }
            let page = match ahead.remove(&offset) {
                Some(page) => page,
                None => self
                    .roster_page(table, profile, offset)
                    .await
                    .map_err(|f| classify(f, reading))?,
            };
            let (rows, range) = match page {
                Page::Rows { rows, range } => (rows, range),
                Page::PastTheEnd => {
                    return Ok(Read::Inconsistent(format!(
                        "offset {offset} is past the end: rows were removed while reading"
                    )));
                }
            };
            let Some(page_total) = range.total else {
                return Err(Error::IncompleteRead {
                    what: WHAT,
                    detail: format!(
                        "`{schema}.{table}`: the server sent no exact count (`Content-Range` total), so the listing cannot be checked for completeness"
                    ),
                });
            };
            if page_total > MAX_TOTAL {
                return Err(Error::IncompleteRead {
                    what: WHAT,
                    detail: format!(
                        "`{schema}.{table}`: the server counts {page_total} rows, more than the {MAX_TOTAL} provision reads; a total like that is not believed"
                    ),
                });
            }
            match total {
                None => total = Some(page_total),
                Some(t) if t != page_total => {
                    return Ok(Read::Inconsistent(format!(
                        "the row count moved from {t} to {page_total} while reading"
                    )));
                }
                Some(_) => {}
            }
            let n = rows.len() as u64;
            let lines_up = match range.range {
                Some((first, last)) => first == offset && last - first + 1 == n,
                None => n == 0,
            };
            if !lines_up {
                return Ok(Read::Inconsistent(format!(
                    "the page at offset {offset} held {n} rows but `Content-Range` said {}",
                    range
                        .range
                        .map_or("none".into(), |(f, l)| format!("{f}-{l}"))
                )));
            }
            if n == 0 && offset < page_total {
                return Ok(Read::Inconsistent(format!(
                    "the page at offset {offset} was empty, but the server counts {page_total} rows"
                )));
            }
            for (i, row) in rows.into_iter().enumerate() {
                let number = offset + i as u64 + 1;
                entries.push(roster_entry(row, &format!("{schema}.{table} row {number}")));
            }
            let received = entries.len() as u64;
            if received == page_total {
                return Ok(Read::Complete(entries));
            }
            if received > page_total {
                return Ok(Read::Inconsistent(format!(
                    "{received} rows arrived but the server counts {page_total}"
                )));
            }
            if offset == 0 && n > 0 {
                // The first page tells the count and how many rows the server gives per
                // page (its max-rows cap, when lower than ours): from here the pages are
                // read a window at a time, concurrently, by offset. Each is checked above
                // as it is used, exactly as if read in turn; should one come back short,
                // the pages read ahead past it go unused and the next window starts where
                // the rows stopped. A window, not every page the total names: a lying
                // total costs one window per read, not thousands of requests.
                step = Some((n, page_total));
            }
        }
    }

    /// The pages at offsets `from, from + step, …` below `total`, at most a window of them
    /// (four per request slot), concurrently (the limiter bounds what is in flight).
    async fn read_ahead(
        &self,
        table: &str,
        profile: &HeaderValue,
        from: u64,
        step: u64,
        total: u64,
    ) -> Result<HashMap<u64, Page>, ApiFailure> {
        let window = 4 * self.inner.concurrency.max(1);
        let offsets = (0..)
            .map(|k| from + k * step)
            .take_while(|&offset| offset < total)
            .take(window);
        futures::stream::iter(offsets)
            .map(|offset| async move {
                self.roster_page(table, profile, offset)
                    .await
                    .map(|page| (offset, page))
            })
            .buffer_unordered(self.inner.concurrency)
            .try_collect()
            .await
    }

    /// `GET /rest/v1/{table}?select=email&order=email.asc&limit=1000&offset=N` with an
    /// exact count. Ordering by `email` alone is not unique, but rows with equal emails
    /// are interchangeable here; completeness is checked against the count instead.
    async fn roster_page(
        &self,
        table: &str,
        profile: &HeaderValue,
        offset: u64,
    ) -> Result<Page, ApiFailure> {
        let limit = PAGE_LIMIT.to_string();
        let offset_s = offset.to_string();
        let url = self.endpoint(
            &["rest", "v1", table],
            &[
                ("select", "email"),
                ("order", "email.asc"),
                ("limit", &limit),
                ("offset", &offset_s),
            ],
        );
        let headers = vec![
            (HeaderName::from_static("accept-profile"), profile.clone()),
            (
                HeaderName::from_static("prefer"),
                HeaderValue::from_static("count=exact"),
            ),
        ];
        let spec = self.spec(Method::GET, url, headers, None);
        let answer = match self.send(&spec, Retries::Policy).await {
            Ok(answer) => answer,
            Err(f) if f.status == Some(416) => return Ok(Page::PastTheEnd),
            Err(f) => return Err(f),
        };
        let range = answer
            .headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .ok_or_else(|| self.bad_response(&spec, "no usable `Content-Range` header"))?;
        let rows = self.rows_from_body(&spec, &answer.body)?;
        self.inner.progress.roster_page(rows.len(), range.total);
        Ok(Page::Rows { rows, range })
    }

    fn rows_from_body(
        &self,
        spec: &RequestSpec,
        body: &[u8],
    ) -> Result<Vec<Option<Value>>, ApiFailure> {
        match serde_json::from_slice::<skim::RowsPage>(body) {
            Ok(skim::RowsPage(Some(rows))) => Ok(rows),
            Ok(skim::RowsPage(None)) => {
                Err(self.bad_response(spec, "the answer is not a JSON list of rows"))
            }
            Err(e) => Err(self.bad_response(spec, format!("the answer is not JSON ({e})"))),
        }
    }
}

/// A row's `email` member as given: `null` or missing is no email; a non-string value
/// keeps its JSON text, so the plan's conflict shows what the row really holds. (A row
/// that is not an object — `select=email` always yields objects — has no email.)
fn roster_entry(email: Option<Value>, origin: &str) -> RosterEntry {
    let email = match email {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    RosterEntry {
        email,
        origin: origin.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("0-99/2500"),
            Some(ContentRange {
                range: Some((0, 99)),
                total: Some(2500)
            })
        );
        assert_eq!(
            parse_content_range("*/0"),
            Some(ContentRange {
                range: None,
                total: Some(0)
            })
        );
        assert_eq!(
            parse_content_range("0-24/*"),
            Some(ContentRange {
                range: Some((0, 24)),
                total: None
            })
        );
        for bad in ["", "0-99", "a-b/3", "5-1/10", "0-9/x", "/"] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn row_emails_as_given() {
        let e = |row: Value| {
            let text = Value::Array(vec![row]).to_string();
            let skim::RowsPage(rows) = serde_json::from_str(&text).unwrap();
            let [email] = <[Option<Value>; 1]>::try_from(rows.unwrap()).unwrap();
            roster_entry(email, "s.t row 1").email
        };
        assert_eq!(
            e(json!({"email": " Dana@Example.com"})).as_deref(),
            Some(" Dana@Example.com")
        );
        assert_eq!(e(json!({"email": null})), None);
        assert_eq!(e(json!({})), None);
        assert_eq!(e(json!({"email": 42})).as_deref(), Some("42"));
        assert_eq!(e(json!({"email": true})).as_deref(), Some("true"));
        assert_eq!(e(json!([1])), None);
        assert_eq!(roster_entry(None, "s.t row 1").origin, "s.t row 1");
    }
}
