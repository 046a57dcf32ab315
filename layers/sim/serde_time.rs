//! Durations in configuration files: plain numbers of seconds (`*_s`) or milliseconds (`*_ms`),
//! fractions allowed, so a `sim.toml` reads `ttft_ms = 350` rather than serde's default
//! `{ secs, nanos }` table.

use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error};

fn from_number<'de, D: Deserializer<'de>>(
    d: D,
    scale: f64,
    unit: &str,
) -> Result<Duration, D::Error> {
    let value = f64::deserialize(d)?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| {
        D::Error::custom(format_args!(
            "invalid duration {value} {unit}: must be a finite number of {unit}, zero or more"
        ))
    })
}

/// Seconds.
pub(crate) mod secs {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_number(d, 1.0, "seconds")
    }
}

/// Milliseconds.
pub(crate) mod millis {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_number(d, 1e-3, "milliseconds")
    }
}

/// Optional seconds (`None` when the field is absent; pair with `#[serde(default)]`).
pub(crate) mod opt_secs {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        from_number(d, 1.0, "seconds").map(Some)
    }
}
