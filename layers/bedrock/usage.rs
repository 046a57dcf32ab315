//! What a Bedrock call really spent, read from its response, and the [`Usage`] it settles to.

use std::sync::Arc;

use super::{ModelSpec, ModelTable};
use crate::admission::{ReadUsage, Usage};

/// The token counts a Bedrock response reports: Converse `usage` (`inputTokens`,
/// `outputTokens`, `cacheReadInputTokens`, `cacheWriteInputTokens`), the `InvokeModel`
/// headers (`X-Amzn-Bedrock-Input-Token-Count`, `…-Output-Token-Count`,
/// `…-Cache-Read-Input-Token-Count`, `…-Cache-Write-Input-Token-Count`), or an Anthropic
/// body's `usage` (`input_tokens`, `output_tokens`, `cache_read_input_tokens`,
/// `cache_creation_input_tokens`). `input` counts the tokens that were neither read from nor
/// written to the cache, as Bedrock reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenCounts {
    /// Input tokens (not read from or written to the cache).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
}

/// The `InvokeModel` response headers of the counts, lower case.
pub(crate) const INPUT_HEADER: &str = "x-amzn-bedrock-input-token-count";
pub(crate) const OUTPUT_HEADER: &str = "x-amzn-bedrock-output-token-count";
pub(crate) const CACHE_READ_HEADER: &str = "x-amzn-bedrock-cache-read-input-token-count";
pub(crate) const CACHE_WRITE_HEADER: &str = "x-amzn-bedrock-cache-write-input-token-count";

impl TokenCounts {
    /// `input` and `output` tokens, no cache.
    pub const fn new(input: u64, output: u64) -> Self {
        TokenCounts {
            input,
            output,
            cache_read: 0,
            cache_write: 0,
        }
    }

    /// Adds the cache-read and cache-write counts.
    pub const fn with_cache(mut self, cache_read: u64, cache_write: u64) -> Self {
        self.cache_read = cache_read;
        self.cache_write = cache_write;
        self
    }

    /// The counts in Bedrock's `InvokeModel` response headers; `None` unless both the input
    /// and the output count are there and are numbers (the cache counts are 0 when absent).
    ///
    /// ```
    /// use tower_headroom::bedrock::TokenCounts;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-amzn-bedrock-input-token-count", "1000".parse().unwrap());
    /// headers.insert("x-amzn-bedrock-output-token-count", "300".parse().unwrap());
    /// headers.insert("x-amzn-bedrock-cache-write-input-token-count", "100".parse().unwrap());
    /// let counts = TokenCounts::from_headers(&headers).unwrap();
    /// assert_eq!(counts, TokenCounts::new(1_000, 300).with_cache(0, 100));
    /// ```
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        // Parsed in place: a stack's success path reads these without allocating.
        let count = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some(TokenCounts {
            input: count(INPUT_HEADER)?,
            output: count(OUTPUT_HEADER)?,
            cache_read: count(CACHE_READ_HEADER).unwrap_or(0),
            cache_write: count(CACHE_WRITE_HEADER).unwrap_or(0),
        })
    }

    /// The counts from a header lookup (`name` is lower case): shared by the Tower reader and
    /// the SDK adapter, whose responses have their own header type.
    #[cfg_attr(not(feature = "bedrock"), allow(dead_code))]
    pub(crate) fn from_header_fn(header: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let count = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
        Some(TokenCounts {
            input: count(INPUT_HEADER)?,
            output: count(OUTPUT_HEADER)?,
            cache_read: count(CACHE_READ_HEADER).unwrap_or(0),
            cache_write: count(CACHE_WRITE_HEADER).unwrap_or(0),
        })
    }

    /// What the call is charged with `spec`: input + cache write + output × burndown
    /// ([`ModelSpec::settlement`]).
    pub const fn charged(&self, spec: ModelSpec) -> u64 {
        spec.settlement(self.input, self.cache_write, self.output)
    }

    /// The [`Usage`] that settles the call's reservation with `spec`.
    pub const fn usage(&self, spec: ModelSpec) -> Usage {
        Usage::units(self.charged(spec))
    }
}

/// Reads a Bedrock `InvokeModel` response's token-count headers (`http::Response`) into the
/// [`Usage`] its reservation settles to, with the burndown of the model that answered.
///
/// In a [`Stack`](crate::stack::Stack) whose targets are labelled with their model id
/// ([`Target::model`](crate::fallback::Target::model)) the model is the attempt's target's;
/// elsewhere it is the one given with [`BedrockUsage::model`], else the table's unknown-model
/// spec. A response without the headers settles at the estimate.
///
/// ```
/// use tower_headroom::admission::{ReadUsage, Usage};
/// use tower_headroom::bedrock::{BedrockUsage, ModelTable};
///
/// let read = BedrockUsage::new(ModelTable::builtin())
///     .model("us.anthropic.claude-sonnet-4-20250514-v1:0");
/// let res = http::Response::builder()
///     .header("x-amzn-bedrock-input-token-count", "1000")
///     .header("x-amzn-bedrock-output-token-count", "300")
///     .header("x-amzn-bedrock-cache-read-input-token-count", "5000")
///     .body(())
///     .unwrap();
/// // 1,000 + 300 × 5: the 5,000 cache-read tokens are released.
/// assert_eq!(read.read_usage(&res), Usage::units(2_500));
/// // The same response from Claude 3 Haiku (burndown 1).
/// assert_eq!(
///     read.read_usage_for(&res, "anthropic.claude-3-haiku-20240307-v1:0"),
///     Usage::units(1_300)
/// );
/// ```
#[derive(Clone, Debug)]
pub struct BedrockUsage {
    table: ModelTable,
    model: Option<Arc<str>>,
}

impl BedrockUsage {
    /// Reads with the specs of `table`.
    pub fn new(table: ModelTable) -> Self {
        BedrockUsage { table, model: None }
    }

    /// The model of responses whose model the caller does not name (outside a stack, or a
    /// target without a model label).
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    fn spec(&self, model: Option<&str>) -> ModelSpec {
        match model.or(self.model.as_deref()) {
            Some(model) => self.table.spec(model),
            None => self.table.unknown(),
        }
    }

    fn read(&self, headers: &http::HeaderMap, model: Option<&str>) -> Usage {
        TokenCounts::from_headers(headers).map_or(Usage::UNKNOWN, |c| c.usage(self.spec(model)))
    }
}

impl<B> ReadUsage<http::Response<B>> for BedrockUsage {
    fn read_usage(&self, res: &http::Response<B>) -> Usage {
        self.read(res.headers(), None)
    }

    fn read_usage_for(&self, res: &http::Response<B>, model: &str) -> Usage {
        self.read(res.headers(), Some(model))
    }

    fn read_tokens(&self, res: &http::Response<B>) -> Option<TokenCounts> {
        TokenCounts::from_headers(res.headers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_need_both_counts_and_ignore_garbage() {
        let mut headers = http::HeaderMap::new();
        headers.insert(INPUT_HEADER, "12".parse().unwrap());
        assert_eq!(TokenCounts::from_headers(&headers), None);
        headers.insert(OUTPUT_HEADER, " 30 ".parse().unwrap());
        headers.insert(CACHE_READ_HEADER, "-4".parse().unwrap());
        assert_eq!(
            TokenCounts::from_headers(&headers),
            Some(TokenCounts::new(12, 30))
        );
        headers.insert(OUTPUT_HEADER, "x".parse().unwrap());
        assert_eq!(TokenCounts::from_headers(&headers), None);
    }

    #[test]
    fn charged_saturates() {
        let counts = TokenCounts::new(u64::MAX, u64::MAX).with_cache(1, 1);
        assert_eq!(counts.charged(ModelSpec::new(5, 1)), u64::MAX);
    }
}
