//! Placeholder: filled in by the admission work.
