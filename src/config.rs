//! Command line + environment -> `Config`. Every environment read lives here. The
//! service-role key is held in `SecretKey`, whose `Debug` and `Display` are redacted.

use std::fmt;

/// The service-role key. Never printed: `Debug`/`Display` show `[redacted]`. The only
/// way to the bytes is `expose`, used by the HTTP client to build headers.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: String) -> SecretKey {
        SecretKey(key)
    }

    /// The raw key, for request headers only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// New-style `sb_secret_…` keys are not JWTs: sent in `apikey` alone.
    pub fn is_secret_key(&self) -> bool {
        self.0.starts_with("sb_secret_")
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
