//! The model table: burndown and maximum output tokens per Bedrock model family, and the
//! reservation and settlement arithmetic on them. Sources: the [module docs](super).
//!
//! Unknown models get [`ModelSpec::UNKNOWN`] — the largest burndown and output maximum in the
//! table, so an unknown model is over-reserved rather than throttled — and one `tracing`
//! warning per model id.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::ConfigError;

/// How a model's calls count against its token quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    /// Quota tokens one output token spends (5 on recent Claude models, 1 elsewhere).
    pub burndown: u32,
    /// The model's maximum output tokens: what Bedrock reserves for a call without `maxTokens`.
    pub max_output_tokens: u64,
}

impl ModelSpec {
    /// What a model the table does not know is taken to be: burndown 5 and 128,000 output
    /// tokens, the largest of each in the built-in table (over-reserving beats being
    /// throttled by a quota the client thought had room).
    pub const UNKNOWN: ModelSpec = ModelSpec::new(5, 128_000);

    /// A spec with this burndown and output maximum (checked when added to a table).
    pub const fn new(burndown: u32, max_output_tokens: u64) -> Self {
        ModelSpec {
            burndown,
            max_output_tokens,
        }
    }

    /// What Bedrock reserves against the quota when a call starts: its input tokens, its
    /// cache-read and cache-write tokens, and its `max_tokens` — the model's maximum when the
    /// call sets none. Saturating, never overflowing.
    ///
    /// ```
    /// use tower_headroom::bedrock::ModelSpec;
    ///
    /// let sonnet4 = ModelSpec::new(5, 64_000);
    /// assert_eq!(sonnet4.reservation(1_000, 0, 0, Some(500)), 1_500);
    /// // No maxTokens: the model's maximum is reserved.
    /// assert_eq!(sonnet4.reservation(1_000, 200, 100, None), 65_300);
    /// ```
    pub const fn reservation(
        &self,
        input: u64,
        cache_read: u64,
        cache_write: u64,
        max_tokens: Option<u64>,
    ) -> u64 {
        let max_tokens = match max_tokens {
            Some(tokens) => tokens,
            None => self.max_output_tokens,
        };
        input
            .saturating_add(cache_read)
            .saturating_add(cache_write)
            .saturating_add(max_tokens)
    }

    /// What the call is charged when it ends, and what its reservation is settled to: its input
    /// tokens, its cache-write tokens and its output tokens times the burndown. Cache-read
    /// tokens are not charged (they were in the reservation and are released). Saturating.
    ///
    /// ```
    /// use tower_headroom::bedrock::ModelSpec;
    ///
    /// let sonnet4 = ModelSpec::new(5, 64_000);
    /// assert_eq!(sonnet4.settlement(1_000, 100, 300), 2_600);
    /// ```
    pub const fn settlement(&self, input: u64, cache_write: u64, output: u64) -> u64 {
        input
            .saturating_add(cache_write)
            .saturating_add(output.saturating_mul(self.burndown as u64))
    }

    /// Checks the spec: a zero burndown or a zero maximum is a [`ConfigError`] naming it.
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        if self.burndown == 0 {
            return Err(ConfigError::new(
                "burndown",
                self.burndown,
                "must be at least 1",
            ));
        }
        if self.max_output_tokens == 0 {
            return Err(ConfigError::new(
                "max_output_tokens",
                self.max_output_tokens,
                "must be at least 1",
            ));
        }
        Ok(self)
    }
}

/// The built-in families: a base-model-id prefix and its spec. The longest matching prefix wins.
///
/// A family whose later versions have other numbers is listed by its dated id (Opus 4 is
/// `anthropic.claude-opus-4-20250514`, not `anthropic.claude-opus-4`), so that a version
/// the table does not know yet falls to [`ModelSpec::UNKNOWN`] (over-reserved, with a warning)
/// rather than to an older version's smaller maximum.
const BUILTIN: &[(&str, ModelSpec)] = &[
    // Anthropic, burndown 5.
    ("anthropic.claude-3-7-sonnet", ModelSpec::new(5, 64_000)),
    (
        "anthropic.claude-sonnet-4-20250514",
        ModelSpec::new(5, 64_000),
    ),
    ("anthropic.claude-sonnet-4-5", ModelSpec::new(5, 64_000)),
    ("anthropic.claude-sonnet-4-6", ModelSpec::new(5, 64_000)),
    ("anthropic.claude-haiku-4-5", ModelSpec::new(5, 64_000)),
    (
        "anthropic.claude-opus-4-20250514",
        ModelSpec::new(5, 32_000),
    ),
    ("anthropic.claude-opus-4-1", ModelSpec::new(5, 32_000)),
    ("anthropic.claude-opus-4-5", ModelSpec::new(5, 64_000)),
    ("anthropic.claude-opus-4-6", ModelSpec::new(5, 128_000)),
    ("anthropic.claude-opus-4-7", ModelSpec::new(5, 128_000)),
    // Anthropic, burndown 1.
    ("anthropic.claude-3-5-sonnet", ModelSpec::new(1, 8_192)),
    ("anthropic.claude-3-5-haiku", ModelSpec::new(1, 8_192)),
    ("anthropic.claude-3-haiku", ModelSpec::new(1, 4_096)),
    ("anthropic.claude-3-sonnet", ModelSpec::new(1, 4_096)),
    ("anthropic.claude-3-opus", ModelSpec::new(1, 4_096)),
    // Amazon Nova.
    ("amazon.nova-micro", ModelSpec::new(1, 10_000)),
    ("amazon.nova-lite", ModelSpec::new(1, 10_000)),
    ("amazon.nova-pro", ModelSpec::new(1, 10_000)),
    ("amazon.nova-premier", ModelSpec::new(1, 32_000)),
    // Meta Llama, Mistral.
    ("meta.llama", ModelSpec::new(1, 2_048)),
    ("mistral.", ModelSpec::new(1, 8_192)),
];

/// At most this many unknown model ids are remembered as warned about; past it, an unknown id
/// is not remembered (nor warned about again), so ids read from requests cannot grow the set
/// without bound.
const MAX_WARNED: usize = 256;

/// Geography prefixes of cross-region inference-profile ids (`us.anthropic.…`).
const GEOGRAPHIES: &[&str] = &["us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"];

/// The base model id in a model id, inference-profile id or ARN: the part after an ARN's
/// last `/`, without a geography prefix (`us.`, `eu.`, `apac.`, `global.`, …).
///
/// ```
/// use tower_headroom::bedrock::base_model_id;
///
/// let id = "anthropic.claude-sonnet-4-20250514-v1:0";
/// assert_eq!(base_model_id(id), id);
/// assert_eq!(base_model_id("eu.anthropic.claude-sonnet-4-20250514-v1:0"), id);
/// assert_eq!(
///     base_model_id(
///         "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0"
///     ),
///     id,
/// );
/// ```
pub fn base_model_id(model_id: &str) -> &str {
    let id = match model_id.strip_prefix("arn:") {
        Some(arn) => arn.rsplit_once('/').map_or(arn, |(_, resource)| resource),
        None => model_id,
    };
    match id.split_once('.') {
        Some((geo, rest)) if GEOGRAPHIES.contains(&geo) => rest,
        _ => id,
    }
}

/// Burndown and maximum output tokens per model: the built-in families, overridable.
///
/// Cheap to clone (shared); lookups take no lock unless the model is unknown.
#[derive(Clone)]
pub struct ModelTable {
    entries: Arc<[(Box<str>, ModelSpec)]>,
    unknown: ModelSpec,
    /// Model ids already warned about, so each unknown id warns once.
    warned: Arc<Mutex<HashSet<Box<str>>>>,
}

impl fmt::Debug for ModelTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelTable")
            .field("entries", &self.entries.len())
            .field("unknown", &self.unknown)
            .finish_non_exhaustive()
    }
}

impl Default for ModelTable {
    fn default() -> Self {
        ModelTable::builtin()
    }
}

impl ModelTable {
    /// The built-in families (see the [module docs](super) for where each number comes from):
    /// Claude 3.7 Sonnet, Sonnet 4, 4.5, 4.6, Haiku 4.5, Opus 4, 4.1, 4.5, 4.6, 4.7 (burndown
    /// 5); Claude 3 and 3.5, Amazon Nova Micro, Lite, Pro, Premier, Meta Llama, Mistral
    /// (burndown 1).
    pub fn builtin() -> Self {
        ModelTable {
            entries: BUILTIN
                .iter()
                .map(|(prefix, spec)| (Box::from(*prefix), *spec))
                .collect(),
            unknown: ModelSpec::UNKNOWN,
            warned: Arc::default(),
        }
    }

    /// This table with `prefix` (a base model id or a prefix of one, e.g.
    /// `anthropic.claude-sonnet-4-20250514`) mapped to `spec`, replacing an entry with the same
    /// prefix. The longest matching prefix wins, so a shorter prefix does not override a
    /// longer built-in one: give the built-in entry's own prefix to replace it.
    ///
    /// An empty prefix, a prefix with a geography or an ARN, a zero burndown or a zero output
    /// maximum is a [`ConfigError`].
    pub fn with_model(self, prefix: &str, spec: ModelSpec) -> Result<Self, ConfigError> {
        let spec = spec.validate()?;
        if prefix.trim().is_empty() {
            return Err(ConfigError::new("model", prefix, "must not be empty"));
        }
        if base_model_id(prefix) != prefix {
            return Err(ConfigError::new(
                "model",
                prefix,
                "must be a base model id (no ARN, no geography prefix such as `us.`)",
            ));
        }
        let mut entries: Vec<_> = self
            .entries
            .iter()
            .filter(|(p, _)| &**p != prefix)
            .cloned()
            .collect();
        entries.push((Box::from(prefix), spec));
        Ok(ModelTable {
            entries: entries.into(),
            unknown: self.unknown,
            warned: Arc::default(),
        })
    }

    /// This table with `spec` for models it does not know (default [`ModelSpec::UNKNOWN`]).
    pub fn with_unknown(self, spec: ModelSpec) -> Result<Self, ConfigError> {
        Ok(ModelTable {
            unknown: spec.validate()?,
            ..self
        })
    }

    /// The spec this table gives models it does not know.
    pub const fn unknown(&self) -> ModelSpec {
        self.unknown
    }

    /// The spec of `model_id` if the table knows it (longest matching prefix).
    pub fn lookup(&self, model_id: &str) -> Option<ModelSpec> {
        let base = base_model_id(model_id);
        self.entries
            .iter()
            .filter(|(prefix, _)| base.starts_with(&**prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, spec)| *spec)
    }

    /// The spec of `model_id`, or the unknown-model spec with a `tracing` warning (once per
    /// model id, for the first 256 unknown ids; later ones are not warned about, so ids read
    /// from requests cannot grow the table's memory without bound).
    pub fn spec(&self, model_id: &str) -> ModelSpec {
        if let Some(spec) = self.lookup(model_id) {
            return spec;
        }
        let first = self
            .warned
            .lock()
            .map(|mut warned| warned.len() < MAX_WARNED && warned.insert(Box::from(model_id)))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                model = model_id,
                burndown = self.unknown.burndown,
                max_output_tokens = self.unknown.max_output_tokens,
                "bedrock model not in the model table; reserving with the conservative defaults"
            );
        }
        self.unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let t = ModelTable::builtin();
        assert_eq!(
            t.spec("anthropic.claude-opus-4-20250514-v1:0")
                .max_output_tokens,
            32_000
        );
        assert_eq!(
            t.spec("global.anthropic.claude-opus-4-5-20251101-v1:0")
                .max_output_tokens,
            64_000
        );
        assert_eq!(
            t.spec("anthropic.claude-3-5-sonnet-20240620-v1:0").burndown,
            1
        );
    }

    #[test]
    fn unknown_models_get_the_conservative_spec() {
        let t = ModelTable::builtin();
        assert_eq!(t.lookup("acme.model-v1"), None);
        assert_eq!(t.spec("acme.model-v1"), ModelSpec::UNKNOWN);
        assert_eq!(t.spec("acme.model-v1"), ModelSpec::UNKNOWN);
    }

    #[test]
    fn unknown_ids_remembered_are_bounded() {
        let t = ModelTable::builtin();
        for i in 0..(4 * MAX_WARNED) {
            assert_eq!(t.spec(&format!("acme.model-{i}")), ModelSpec::UNKNOWN);
        }
        assert_eq!(t.warned.lock().unwrap().len(), MAX_WARNED);
    }

    #[test]
    fn bad_entries_are_config_errors() {
        let t = ModelTable::builtin();
        assert_eq!(
            t.clone()
                .with_model("x", ModelSpec::new(0, 1))
                .unwrap_err()
                .field(),
            "burndown"
        );
        assert_eq!(
            t.clone()
                .with_model("us.anthropic.x", ModelSpec::new(1, 1))
                .unwrap_err()
                .field(),
            "model"
        );
        assert!(t.with_model("", ModelSpec::new(1, 1)).is_err());
    }
}
