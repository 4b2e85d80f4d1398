//! Shared test setup: a fresh sandbox per test, started from code or from a fixture.
//! Each test gets its own server on its own port, so tests run in parallel.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use provision::sandbox::{NewUser, RosterRow, Sandbox, SandboxConfig, Seed};

/// A fresh, empty sandbox.
pub fn sandbox() -> Sandbox {
    Sandbox::start()
}

/// A fresh sandbox seeded from `examples/fixtures/<name>`.
pub fn sandbox_from_fixture(name: &str) -> Sandbox {
    let path = fixture_path(name);
    match Sandbox::from_fixture(&path) {
        Ok(sb) => sb,
        Err(e) => panic!("fixture {}: {e}", path.display()),
    }
}

/// `examples/fixtures/<name>` from the package root.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("fixtures")
        .join(name)
}
