//! Plain HTTP LLM endpoints as OpenAI- and Anthropic-style APIs answer (feature `llm-http`):
//! what their error bodies say, read for the classifier, and their server-sent-event streams,
//! settled from the usage in their final events.
//!
//! - [`vendor`]: the error types of both vendors' JSON error bodies (`insufficient_quota`,
//!   `rate_limit_exceeded`, `overloaded_error`, context-length errors) as outcomes;
//! - [`sse`]: settling a streamed answer's reservation from its usage event.

pub mod sse;
pub mod vendor;
