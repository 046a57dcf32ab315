//! Test fixture: a dynalite (in-memory DynamoDB-compatible store) per test, on a free loopback
//! port, killed when dropped.
//!
//! `scripts/dynalite` installs it (`scripts/test` runs that first). A machine without it FAILS
//! the test with the command to run: a wire test that silently skipped would prove nothing.

use std::path::Path;

use tower_headroom::sim::front::dynalite::Dynalite;

/// Starts a fresh dynalite, or panics saying how to install it.
pub fn start() -> Dynalite {
    let script = Dynalite::locate(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|error| panic!("{error}"));
    Dynalite::start(&script).unwrap_or_else(|error| panic!("could not start dynalite: {error}"))
}
