//! The simulator's configuration file (TOML): the front's settings and the simulators' own
//! configuration structs, as `examples/sim.toml` shows.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TOKENS, DEFAULT_REGION};
use crate::ConfigError;
use crate::sim::{BedrockConfig, DynamoConfig};

/// A whole simulator configuration file: `[front]`, `[bedrock]` and `[dynamodb]`.
///
/// `[bedrock]` takes `seed`, `error_latency_ms`, `window_phase_s` (where the first quota
/// window ends after the start; drawn from the seed when left out) and the models.
///
/// ```
/// use tower_headroom::sim::front::SimFile;
///
/// let file = SimFile::from_toml(r#"
///     [front]
///     listen = "127.0.0.1:0"
///
///     [bedrock]
///     seed = 7
///     window_phase_s = 0
///
///     [[bedrock.models]]
///     model_id = "anthropic.claude-3-haiku-20240307-v1:0"
///     region = "us-east-1"
///     rpm = 150
///     tpm = 200000
///
///     [[dynamodb.tables]]
///     name = "orders"
///     rcu = 100
///     wcu = 100
/// "#).unwrap();
/// let bedrock = file.bedrock.unwrap();
/// assert_eq!(bedrock.models[0].rpm, 150);
/// assert_eq!(bedrock.window_phase, Some(std::time::Duration::ZERO));
///
/// let err = SimFile::from_toml("[[bedrock.models]]\nmodel_id = \"m\"\nregion = \"r\"\nrpm = \"lots\"\ntpm = 1\n")
///     .unwrap_err();
/// assert!(err.to_string().contains("rpm"), "{err}");
/// ```
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SimFile {
    /// The front's own settings.
    #[serde(default)]
    pub front: FrontConfig,
    /// The Bedrock models, if any.
    #[serde(default)]
    pub bedrock: Option<BedrockConfig>,
    /// The DynamoDB tables, if any.
    #[serde(default)]
    pub dynamodb: Option<DynamoConfig>,
}

/// The `[front]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FrontConfig {
    /// Where to listen (default `127.0.0.1:4566`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The region of Bedrock requests whose signature names none (default `us-east-1`).
    pub default_region: String,
    /// The largest request body accepted (default 16 MiB).
    pub max_body_bytes: usize,
    /// The output cap reserved for a Converse request without `maxTokens`, for a model with
    /// no `max_output_tokens` (default 4096).
    pub default_max_tokens: u64,
    /// The DynamoDB-compatible store to forward to (default: start dynalite when tables are
    /// configured; `--dynamo-upstream` overrides).
    pub dynamodb_upstream: Option<String>,
    /// Partition key attribute per table, for running without a store.
    pub partition_keys: HashMap<String, String>,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4566)),
            default_region: String::from(DEFAULT_REGION),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            dynamodb_upstream: None,
            partition_keys: HashMap::new(),
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum SimFileError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema; the message shows the line and
    /// the key.
    Parse(toml::de::Error),
    /// A value is out of range.
    Invalid(ConfigError),
}

impl fmt::Display for SimFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimFileError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            SimFileError::Parse(error) => write!(f, "invalid simulator configuration: {error}"),
            SimFileError::Invalid(error) => write!(f, "invalid simulator configuration: {error}"),
        }
    }
}

impl std::error::Error for SimFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimFileError::Io { source, .. } => Some(source),
            SimFileError::Parse(error) => Some(error),
            SimFileError::Invalid(error) => Some(error),
        }
    }
}

impl From<ConfigError> for SimFileError {
    fn from(error: ConfigError) -> Self {
        SimFileError::Invalid(error)
    }
}

impl SimFile {
    /// Parses a configuration file's text and checks every value (the simulators' own
    /// validation included), so a file that loads also builds.
    pub fn from_toml(text: &str) -> Result<SimFile, SimFileError> {
        let file: SimFile = toml::from_str(text).map_err(SimFileError::Parse)?;
        if let Some(bedrock) = &file.bedrock {
            for model in &bedrock.models {
                model.validate()?;
            }
            if let Some(phase) = bedrock.window_phase {
                if phase >= crate::sim::BEDROCK_WINDOW {
                    return Err(ConfigError::new(
                        "bedrock.window_phase_s",
                        phase,
                        "must be under the 60 s window",
                    )
                    .into());
                }
            }
        }
        if let Some(dynamodb) = &file.dynamodb {
            for table in &dynamodb.tables {
                table.validate()?;
            }
        }
        if file.front.max_body_bytes == 0 {
            return Err(ConfigError::new("front.max_body_bytes", 0, "must be at least 1").into());
        }
        if file.front.default_max_tokens == 0 {
            return Err(
                ConfigError::new("front.default_max_tokens", 0, "must be at least 1").into(),
            );
        }
        Ok(file)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<SimFile, SimFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        SimFile::from_toml(&text)
    }

    /// Whether the file configures DynamoDB tables.
    pub fn has_tables(&self) -> bool {
        self.dynamodb.as_ref().is_some_and(|d| !d.tables.is_empty())
    }
}
