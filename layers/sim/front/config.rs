//! The simulator's configuration file (TOML): the front's settings and the simulators' own
//! configuration structs, as `examples/sim.toml` shows.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{DEFAULT_MAX_BODY_BYTES, DEFAULT_REGION};
use crate::ConfigError;
use crate::sim::{BedrockConfig, DynamoConfig, LlmConfig};

/// A whole simulator configuration file: `[front]`, `[bedrock]`, `[dynamodb]`, `[openai]` and
/// `[anthropic]` (see [`LlmConfig`]).
///
/// `[bedrock]` takes `seed`, `error_latency_ms`, `window_phase_s` (where the first quota
/// window ends after the start; drawn from the seed when left out), `account_tpd` (the
/// account-wide tokens per day of each region; none when left out) and the models (`rpm` off
/// and `tpd = tpm × 1440` unless set; `burndown` and `max_output_tokens` from the model table
/// unless set).
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
///     [[bedrock.models]]
///     model_id = "us.anthropic.claude-sonnet-4-20250514-v1:0"
///     region = "us-east-1"
///     tpm = 200000
///     tpd = 50000000
///
///     [[dynamodb.tables]]
///     name = "orders"
///     rcu = 100
///     wcu = 100
/// "#).unwrap();
/// let bedrock = file.bedrock.unwrap();
/// assert_eq!(bedrock.models[0].rpm, Some(150));
/// assert_eq!(bedrock.models[0].tokens_per_day(), 200_000 * 1440);
/// // No RPM unless set; burndown and the output maximum from the model table.
/// let sonnet4 = &bedrock.models[1];
/// assert_eq!((sonnet4.rpm, sonnet4.tpd), (None, Some(50_000_000)));
/// assert_eq!((sonnet4.burndown, sonnet4.max_output_tokens), (5, 64_000));
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
    /// An OpenAI-style endpoint (`/v1/chat/completions`), if any.
    #[serde(default)]
    pub openai: Option<LlmConfig>,
    /// An Anthropic-style endpoint (`/v1/messages`), if any.
    #[serde(default)]
    pub anthropic: Option<LlmConfig>,
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
            bedrock.validate()?;
        }
        if let Some(dynamodb) = &file.dynamodb {
            for table in &dynamodb.tables {
                table.validate()?;
            }
        }
        if file.front.max_body_bytes == 0 {
            return Err(ConfigError::new("front.max_body_bytes", 0, "must be at least 1").into());
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
