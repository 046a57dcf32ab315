//! Retries (placeholder while the module is written).
/// Placeholder.
#[derive(Clone, Debug)]
pub struct RetryPolicy;
/// Placeholder.
#[derive(Clone, Debug)]
pub struct RetryLayer;
/// Placeholder.
#[derive(Clone, Copy, Debug)]
pub enum StopReason {}
