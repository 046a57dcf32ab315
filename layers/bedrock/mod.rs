//! Amazon Bedrock's quota model, in one place: how a model's calls count against its
//! tokens-per-minute and tokens-per-day quotas.
//!
//! [`ModelTable`] maps a model id (a plain id, a `us.`/`eu.`/`apac.`/`global.` inference-profile
//! id, or the ARN of a foundation model or an inference profile) to its [`ModelSpec`]: the
//! output *burndown* (how many quota tokens one output token spends) and the model's maximum
//! output tokens (what Bedrock reserves when a call sets no `maxTokens`). The arithmetic —
//! [`ModelSpec::reservation`] before a call, [`ModelSpec::settlement`] after it — lives here
//! too, and [`TokenCounts`] reads what a response reports. [`LlmEstimator`], the SDK adapter
//! (`SdkHeadroomBuilder::models`), the fallback router's headroom check and the simulator all
//! read the same table, so a number changes here or nowhere.
//!
//! # How Bedrock counts a call
//!
//! From the Amazon Bedrock User Guide, "How tokens are counted in Amazon Bedrock"
//! (<https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-token-burndown.html>) and
//! "Quotas for the bedrock-runtime endpoint"
//! (<https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-runtime.html>), checked
//! 2026-12:
//!
//! - tokens per minute (TPM) and tokens per day (TPD, by default TPM × 24 × 60) are per model
//!   and count input and output tokens together;
//! - when a call starts, Bedrock reserves input + cache-read + cache-write tokens + `max_tokens`
//!   — the model's maximum output when the call sets none, which is why calls without
//!   `maxTokens` are throttled early ([`ModelSpec::reservation`]);
//! - when it ends, the call is charged input + cache-write + output × burndown
//!   (the guide's "Input token count + Cache write input tokens + (Output token count ×
//!   Burndown rate)", [`ModelSpec::settlement`]): cache-read tokens were in the reservation and
//!   are released, not charged;
//! - the burndown is 5 for Claude 3.7 Sonnet, Sonnet 4 and 4.5, Haiku 4.5, Opus 4, 4.1 and 4.5,
//!   and 1 for every other model (input tokens always 1). The guide's list names those models;
//!   Claude Sonnet 4.6 and Opus 4.6/4.7 are taken at 5 like their families (an assumption,
//!   and the conservative side).
//!
//! Bedrock reports the counts in Converse `usage` (`inputTokens`, `outputTokens`,
//! `cacheReadInputTokens`, `cacheWriteInputTokens`: Bedrock API Reference, `TokenUsage`), in a
//! ConverseStream `metadata` event's `usage`, in the last InvokeModelWithResponseStream
//! chunk's `amazon-bedrock-invocationMetrics` (`inputTokenCount`, `outputTokenCount`;
//! Bedrock API Reference, `ResponseStream` / `PayloadPart`), in `InvokeModel` response headers
//! (`X-Amzn-Bedrock-Input-Token-Count`, `X-Amzn-Bedrock-Output-Token-Count`,
//! `X-Amzn-Bedrock-Cache-Read-Input-Token-Count`, `X-Amzn-Bedrock-Cache-Write-Input-Token-Count`)
//! and in Anthropic message bodies (`usage.input_tokens`, `output_tokens`,
//! `cache_read_input_tokens`, `cache_creation_input_tokens`). `inputTokens` there excludes the
//! cached tokens, so input + cache read + cache write is the whole prompt.
//!
//! # Maximum output tokens
//!
//! Per family, from the model cards (see [`ModelTable::builtin`] for the list):
//!
//! | family | burndown | max output | source |
//! |---|---|---|---|
//! | Claude 3.7 Sonnet, Sonnet 4, 4.5, 4.6, Haiku 4.5, Opus 4.5 | 5 | 64,000 | Anthropic, "Models overview" (<https://docs.claude.com/en/docs/about-claude/models/overview>) |
//! | Claude Opus 4, 4.1 | 5 | 32,000 | the same |
//! | Claude Opus 4.6, 4.7 | 5 | 128,000 | the same |
//! | Claude 3.5 Sonnet, 3.5 Haiku | 1 | 8,192 | the same (legacy models) |
//! | Claude 3 Haiku, Sonnet, Opus | 1 | 4,096 | the same (legacy models) |
//! | Amazon Nova Micro, Lite, Pro | 1 | 10,000 | Amazon Nova User Guide, inference parameters (<https://docs.aws.amazon.com/nova/latest/userguide/complete-request-schema.html>) |
//! | Amazon Nova Premier | 1 | 32,000 | the same |
//! | Meta Llama | 1 | 2,048 (`max_gen_len`) | Bedrock User Guide, Meta Llama inference parameters (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-meta.html>) |
//! | Mistral | 1 | 8,192 (`max_tokens`) | Bedrock User Guide, Mistral AI inference parameters (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-mistral.html>) |
//! | anything else | 5 | 128,000 | [`ModelSpec::UNKNOWN`]: the largest of each, with a warning |
//!
//! Families whose later versions have other numbers are listed by dated id (Opus 4 is
//! `anthropic.claude-opus-4-20250514`), so a version the table does not know yet is
//! over-reserved as unknown rather than under-reserved as an older sibling. Numbers change:
//! override any entry, or add a model, with [`ModelTable::with_model`].
//!
//! [`LlmEstimator`]: crate::admission::LlmEstimator
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
