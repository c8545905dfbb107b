//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fake_api;
pub mod hostile;
pub mod mock_api;
pub mod server;

use std::path::{Path, PathBuf};

pub fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    project_dir().join("tests/fixtures")
}

/// `../shared`, when this checkout sits beside it (CI always; a fresh clone never).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = project_dir().join("../shared");
    dir.is_dir().then_some(dir)
}

/// The built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_asyncapi-guard"))
}
