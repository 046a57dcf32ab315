//! [`SimServiceBuilder`]: what the front serves (Bedrock, DynamoDB and its store, LLM
//! endpoints) and its limits.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::event_stream::StreamFault;
use super::{Inner, SimService, dynamodb};
use crate::ConfigError;
use crate::sim::{BedrockSim, DynamoSim};

/// Builds a [`SimService`].
#[derive(Debug, Default)]
pub struct SimServiceBuilder {
    bedrock: Option<BedrockSim>,
    pub(super) llm: Vec<crate::sim::LlmEndpointSim>,
    dynamo: Option<DynamoSim>,
    upstream: Option<String>,
    partition_keys: HashMap<String, String>,
    default_region: Option<String>,
    max_body_bytes: Option<usize>,
    stream_fault: Option<StreamFault>,
}

/// Default for [`SimServiceBuilder::default_region`].
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default for [`SimServiceBuilder::max_body_bytes`]: 16 MiB, DynamoDB's request limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

impl SimServiceBuilder {
    /// Serves Bedrock Runtime from `sim`.
    pub fn bedrock(mut self, sim: BedrockSim) -> Self {
        self.bedrock = Some(sim);
        self
    }

    /// Serves DynamoDB with `sim`'s capacity accounting.
    pub fn dynamodb(mut self, sim: DynamoSim) -> Self {
        self.dynamo = Some(sim);
        self
    }

    /// The DynamoDB-compatible store admitted calls are forwarded to, as a base URL
    /// (`http://127.0.0.1:8000`). Without one, data operations are answered with empty
    /// results and table operations are refused.
    pub fn dynamodb_upstream(mut self, url: impl Into<String>) -> Self {
        self.upstream = Some(url.into());
        self
    }

    /// Names `table`'s partition key attribute. Needed only without a store (with one, the
    /// front learns it from `CreateTable` or asks with `DescribeTable`).
    pub fn partition_key(mut self, table: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.partition_keys.insert(table.into(), attribute.into());
        self
    }

    /// The region of Bedrock requests whose `Authorization` header names none (default
    /// `us-east-1`).
    pub fn default_region(mut self, region: impl Into<String>) -> Self {
        self.default_region = Some(region.into());
        self
    }

    /// The largest request body accepted (default 16 MiB); larger ones get a 400
    /// `ValidationException`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Makes every streamed Bedrock reply (ConverseStream, InvokeModelWithResponseStream) that
    /// the simulator served break after its first content event with an error inside the
    /// stream: an `exception` message whose `:exception-type` is `exception_type` (Bedrock
    /// spells them in lower camelCase: `throttlingException`, `serviceUnavailableException`,
    /// `modelStreamErrorException`, `modelTimeoutException`, `internalServerException`,
    /// `validationException`) and whose payload is `{"message": message}`. The HTTP status stays
    /// `200` and the simulator has counted the call as served, as Bedrock's would have. For
    /// testing how clients handle mid-stream errors; off by default.
    ///
    /// `build` refuses a type that is empty, longer than 128 bytes or not ASCII letters and
    /// digits.
    pub fn stream_exception(
        mut self,
        exception_type: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.stream_fault = Some(StreamFault {
            exception_type: exception_type.into(),
            message: message.into(),
        });
        self
    }

    /// Checks the settings and builds the service.
    ///
    /// Must be called inside a tokio runtime when a DynamoDB upstream is set (its HTTP client
    /// spawns connection tasks on first use, not here, but the same runtime must run them).
    pub fn build(self) -> Result<SimService, ConfigError> {
        let default_region = self.default_region.unwrap_or_else(|| DEFAULT_REGION.into());
        if super::bedrock_wire::region_from_authorization(&format!(
            "Credential=a/b/{default_region}/c"
        )) != Some(default_region.as_str())
        {
            return Err(ConfigError::new(
                "default_region",
                &default_region,
                "must be a region name: lowercase letters, digits and dashes",
            ));
        }
        self.stream_fault
            .as_ref()
            .map(StreamFault::check)
            .transpose()?;
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", 0, "must be at least 1"));
        }
        let upstream = self
            .upstream
            .map(|url| dynamodb::Upstream::new(&url))
            .transpose()?;
        let dynamo = match (self.dynamo, upstream) {
            (None, None) => None,
            (sim, upstream) => Some(dynamodb::DynamoFront::new(
                sim,
                upstream,
                self.partition_keys,
            )),
        };
        Ok(SimService {
            inner: Arc::new(Inner {
                bedrock: self.bedrock,
                llm: self.llm,
                dynamo,
                default_region: default_region.into(),
                max_body_bytes,
                prompt_cache: Mutex::default(),
                next_request: AtomicU64::new(1),
                stream_fault: self.stream_fault,
            }),
        })
    }
}
