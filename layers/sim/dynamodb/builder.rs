//! [`DynamoSimBuilder`]: validates every table and builds the simulator.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::state::{Inner, State, Table, TableState};
use super::{DEFAULT_ACCOUNT_ID, DEFAULT_REGION, DynamoConfig, DynamoSim, TableConfig};
use crate::ConfigError;
use crate::sim::Callers;

/// Builds a [`DynamoSim`].
#[derive(Clone, Debug, Default)]
pub struct DynamoSimBuilder {
    tables: Vec<TableConfig>,
    start: Option<Instant>,
    region: Option<String>,
    account_id: Option<String>,
}

impl DynamoSimBuilder {
    /// Adds a table.
    pub fn table(mut self, table: TableConfig) -> Self {
        self.tables.push(table);
        self
    }
    /// Adds tables.
    pub fn tables(mut self, tables: impl IntoIterator<Item = TableConfig>) -> Self {
        self.tables.extend(tables);
        self
    }
    /// The simulator's start (default: the moment [`build`](Self::build) runs).
    pub fn start(mut self, start: Instant) -> Self {
        self.start = Some(start);
        self
    }
    /// The region in the tables' ARNs (default [`DEFAULT_REGION`]).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    /// The account id in the tables' ARNs (default [`DEFAULT_ACCOUNT_ID`]).
    pub fn account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }
    /// Validates every table and builds the simulator.
    pub fn build(self) -> Result<DynamoSim, ConfigError> {
        if self.tables.is_empty() {
            return Err(ConfigError::new(
                "tables",
                0,
                "at least one table is needed",
            ));
        }
        for (i, table) in self.tables.iter().enumerate() {
            table.validate()?;
            if self.tables[..i].iter().any(|t| t.name == table.name) {
                return Err(ConfigError::new(
                    "tables",
                    &table.name,
                    "the same table name appears twice",
                ));
            }
        }
        let region = self.region.unwrap_or_else(|| String::from(DEFAULT_REGION));
        let account_id = self
            .account_id
            .unwrap_or_else(|| String::from(DEFAULT_ACCOUNT_ID));
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !plain(&region) {
            return Err(ConfigError::new("region", &region, "must be a region name"));
        }
        if !plain(&account_id) {
            return Err(ConfigError::new(
                "account_id",
                &account_id,
                "must be an account id",
            ));
        }
        let start = self.start.unwrap_or_else(Instant::now);
        let states = self
            .tables
            .iter()
            .map(|t| TableState::new(t, start))
            .collect();
        let tables = self
            .tables
            .into_iter()
            .map(|config| Table {
                name: config.name.as_str().into(),
                arn: config.arn(&region, &account_id).into(),
                partitions: config.partition_count(),
                config,
            })
            .collect();
        Ok(DynamoSim {
            inner: Arc::new(Inner {
                start,
                tables,
                state: Mutex::new(State {
                    tables: states,
                    callers: Callers::default(),
                }),
                inspections: AtomicU64::new(0),
            }),
        })
    }
}

impl DynamoSim {
    /// A builder; add at least one table.
    pub fn builder() -> DynamoSimBuilder {
        DynamoSimBuilder::default()
    }

    /// Builds a simulator from a deserialized configuration, starting now.
    pub fn from_config(config: DynamoConfig) -> Result<Self, ConfigError> {
        DynamoSim::builder()
            .tables(config.tables)
            .region(config.region)
            .account_id(config.account_id)
            .build()
    }
}
