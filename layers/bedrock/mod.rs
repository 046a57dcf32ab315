//! Amazon Bedrock's quota model, in one place: how a model's calls count against its
//! tokens-per-minute and tokens-per-day quotas.
//!
//! [`ModelTable`] maps a model id (a plain id, a `us.`/`eu.`/`apac.`/`global.` inference-profile
//! id, or the ARN of a foundation model or an inference profile) to its [`ModelSpec`]: the
//! output *burndown* (how many quota tokens one output token spends) and the model's maximum
//! output tokens (what Bedrock reserves when a call sets no `maxTokens`). The estimators, the
//! SDK adapter, the router's headroom check and the simulator all read the same table, so a
//! number changes here or nowhere.
//!
//! ```
//! use tower_headroom::bedrock::{ModelSpec, ModelTable};
//!
//! let table = ModelTable::builtin();
//! let sonnet4 = table.spec("us.anthropic.claude-sonnet-4-20250514-v1:0");
//! assert_eq!(sonnet4, ModelSpec::new(5, 64_000));
//! // A model of your own (or a number AWS changed) overrides the built-in entry.
//! let table = table.with_model("anthropic.claude-sonnet-4-20250514", ModelSpec::new(5, 32_000))?;
//! assert_eq!(table.spec("anthropic.claude-sonnet-4-20250514-v1:0").max_output_tokens, 32_000);
//! # Ok::<(), tower_headroom::admission::ConfigError>(())
//! ```

mod models;
mod usage;

pub use self::models::{ModelSpec, ModelTable, base_model_id};
pub use self::usage::{BedrockUsage, TokenCounts};
