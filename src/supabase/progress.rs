//! How far the listings have got, for the progress display: pages and rows read so far,
//! and the totals the server reported. Counters only: nothing here decides anything,
//! and a listing's completeness is still checked where it is read.

use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by a client and its clones; read by the shell while a listing runs.
#[derive(Debug, Default)]
pub struct ReadProgress {
    user_pages: AtomicU64,
    users: AtomicU64,
    users_total: AtomicU64,
    roster_pages: AtomicU64,
    roster_rows: AtomicU64,
    roster_total: AtomicU64,
}

/// A snapshot of `ReadProgress`. A total of `None` is not known (yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub user_pages: u64,
    pub users: u64,
    pub users_total: Option<u64>,
    pub roster_pages: u64,
    pub roster_rows: u64,
    pub roster_total: Option<u64>,
}

impl ReadProgress {
    pub(crate) fn users_page(&self, users: usize, total: Option<u64>) {
        self.user_pages.fetch_add(1, Ordering::Relaxed);
        self.users.fetch_add(users as u64, Ordering::Relaxed);
        if let Some(total) = total {
            self.users_total
                .store(total.saturating_add(1), Ordering::Relaxed);
        }
    }

    pub(crate) fn roster_page(&self, rows: usize, total: Option<u64>) {
        self.roster_pages.fetch_add(1, Ordering::Relaxed);
        self.roster_rows.fetch_add(rows as u64, Ordering::Relaxed);
        if let Some(total) = total {
            self.roster_total
                .store(total.saturating_add(1), Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> ReadCounts {
        // Totals are stored plus one so that zero means "not known".
        let total = |a: &AtomicU64| a.load(Ordering::Relaxed).checked_sub(1);
        ReadCounts {
            user_pages: self.user_pages.load(Ordering::Relaxed),
            users: self.users.load(Ordering::Relaxed),
            users_total: total(&self.users_total),
            roster_pages: self.roster_pages.load(Ordering::Relaxed),
            roster_rows: self.roster_rows.load(Ordering::Relaxed),
            roster_total: total(&self.roster_total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_pages_and_keep_the_last_total() {
        let p = ReadProgress::default();
        assert_eq!(p.counts(), ReadCounts::default());
        p.users_page(1000, Some(2500));
        p.users_page(500, Some(2500));
        p.roster_page(0, Some(0));
        assert_eq!(
            p.counts(),
            ReadCounts {
                user_pages: 2,
                users: 1500,
                users_total: Some(2500),
                roster_pages: 1,
                roster_rows: 0,
                roster_total: Some(0),
            }
        );
    }
}
