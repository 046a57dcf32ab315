//! Simulated tables' configuration: one provisioned table ([`TableConfig`], validated by
//! [`TableConfigBuilder`]) and all of them as a file describes them ([`DynamoConfig`]).

use std::time::Duration;

use super::{MAX_BURST_SECONDS, MAX_CAPACITY, MAX_PARTITIONS, PARTITION_MAX_RCU};
use crate::ConfigError;
use crate::sim::serde_time;

fn default_burst_seconds() -> u64 {
    300
}
pub(super) fn default_latency() -> Duration {
    Duration::from_millis(5)
}

/// One provisioned table.
///
/// Deserialized as `{ name, rcu, wcu, partitions?, burst_seconds?, latency_ms? }`; validated
/// when the simulator is built.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TableConfig {
    /// The table name.
    pub name: String,
    /// Provisioned read capacity units per second.
    pub rcu: u64,
    /// Provisioned write capacity units per second.
    pub wcu: u64,
    /// The partition count (default: computed from throughput, as DynamoDB does).
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Seconds of unused capacity kept as burst credit (default 300).
    #[serde(default = "default_burst_seconds")]
    pub burst_seconds: u64,
    /// How long every answer takes (default 5 ms).
    #[serde(
        rename = "latency_ms",
        with = "serde_time::millis",
        default = "default_latency"
    )]
    pub latency: Duration,
}

impl TableConfig {
    /// A builder for the table `name`; `rcu` and `wcu` must be set.
    pub fn builder(name: impl Into<String>) -> TableConfigBuilder {
        TableConfigBuilder {
            config: TableConfig {
                name: name.into(),
                rcu: 0,
                wcu: 0,
                partitions: None,
                burst_seconds: default_burst_seconds(),
                latency: default_latency(),
            },
        }
    }

    /// Checks every field; the error names the first bad one and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("name", &self.name, "must not be empty"));
        }
        for (field, value) in [("rcu", self.rcu), ("wcu", self.wcu)] {
            if value == 0 {
                return Err(ConfigError::new(field, value, "must be at least 1"));
            }
            if value > MAX_CAPACITY {
                return Err(ConfigError::new(field, value, "must be at most 10,000,000"));
            }
        }
        if let Some(p) = self.partitions
            && !(1..=MAX_PARTITIONS).contains(&p)
        {
            return Err(ConfigError::new(
                "partitions",
                p,
                "must be between 1 and 10,000",
            ));
        }
        if self.burst_seconds > MAX_BURST_SECONDS {
            return Err(ConfigError::new(
                "burst_seconds",
                self.burst_seconds,
                "must be at most 86,400",
            ));
        }
        Ok(())
    }

    /// The partition count: the configured one, or `ceil(RCU / 3000 + WCU / 1000)`.
    pub fn partition_count(&self) -> u32 {
        self.partitions.unwrap_or_else(|| {
            let needed = (self.rcu + 3 * self.wcu).div_ceil(PARTITION_MAX_RCU).max(1);
            u32::try_from(needed)
                .unwrap_or(MAX_PARTITIONS)
                .min(MAX_PARTITIONS)
        })
    }
}

/// Builds a validated [`TableConfig`].
#[derive(Clone, Debug)]
pub struct TableConfigBuilder {
    config: TableConfig,
}

impl TableConfigBuilder {
    /// Provisioned read capacity units per second.
    pub fn rcu(mut self, rcu: u64) -> Self {
        self.config.rcu = rcu;
        self
    }
    /// Provisioned write capacity units per second.
    pub fn wcu(mut self, wcu: u64) -> Self {
        self.config.wcu = wcu;
        self
    }
    /// The partition count; capacity is split evenly across them.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.config.partitions = Some(partitions);
        self
    }
    /// Seconds of unused capacity kept as burst credit.
    pub fn burst_seconds(mut self, seconds: u64) -> Self {
        self.config.burst_seconds = seconds;
        self
    }
    /// How long every answer takes.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }
    /// Validates the configuration.
    pub fn build(self) -> Result<TableConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// Simulated DynamoDB tables, as a configuration file describes them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DynamoConfig {
    /// The tables.
    pub tables: Vec<TableConfig>,
}
