//! Parsers for server-provided retry delays.
