//! AWS error codes and messages, as plain strings.
