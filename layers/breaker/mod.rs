//! Placeholder: filled in by the breaker work.
