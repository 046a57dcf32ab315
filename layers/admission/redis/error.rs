//! [`StoreError`]: what can go wrong with the Redis store, mapped from `redis` errors without
//! repeating anything secret.

use std::fmt;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// An error from the Redis store. Messages say what failed and what to check; they never
/// contain the URL (it may carry a password), a key's data or a reply's text beyond the
/// server's error code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The builder was given a value it cannot use.
    Config(crate::ConfigError),
    /// The Redis URL could not be parsed.
    InvalidUrl,
    /// No connection to the server within the connect timeout (refused, unreachable, or the
    /// name did not resolve).
    Unreachable,
    /// The server refused the credentials (wrong password or user, or none given).
    Auth,
    /// A Redis call took longer than the operation timeout.
    Timeout(Duration),
    /// The connection failed during a call.
    Connection,
    /// The server refused the script; `code` is the server's error code (e.g. `WRONGTYPE`
    /// when the quota's key holds something else, `NOPERM`, `ERR`).
    Script {
        /// The server's error code.
        code: String,
    },
    /// The server's reply was not what the script returns.
    Reply,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Config(e) => write!(f, "redis quota store: {e}"),
            StoreError::InvalidUrl => f.write_str(
                "redis quota store: the Redis URL does not parse (expected redis://[user:password@]host:port[/db])",
            ),
            StoreError::Unreachable => f.write_str(
                "redis quota store: cannot connect to Redis (check the host, the port and that the server runs)",
            ),
            StoreError::Auth => f.write_str(
                "redis quota store: Redis refused the credentials (check the password and user in the URL)",
            ),
            StoreError::Timeout(t) => write!(f, "redis quota store: a Redis call took longer than {t:?}"),
            StoreError::Connection => f.write_str("redis quota store: the connection to Redis failed"),
            StoreError::Script { code } => write!(
                f,
                "redis quota store: Redis refused the quota script ({code}); check that nothing else writes the quota's keys"
            ),
            StoreError::Reply => f.write_str("redis quota store: unexpected reply from Redis"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::ConfigError> for StoreError {
    fn from(e: crate::ConfigError) -> Self {
        StoreError::Config(e)
    }
}

impl StoreError {
    /// Maps a `redis` error, keeping only its kind and the server's error code.
    pub(crate) fn from_redis(e: &RedisError) -> Self {
        let code = e.code().unwrap_or_default();
        if e.kind() == ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH") {
            return StoreError::Auth;
        }
        if e.kind() == ErrorKind::InvalidClientConfig {
            return StoreError::InvalidUrl;
        }
        if e.is_timeout() {
            return StoreError::Timeout(Duration::ZERO);
        }
        if e.is_connection_refusal() {
            return StoreError::Unreachable;
        }
        if e.is_io_error() || e.is_connection_dropped() {
            return StoreError::Connection;
        }
        match e.kind() {
            ErrorKind::Server(ServerErrorKind::NoScript) => StoreError::Script {
                code: "NOSCRIPT".into(),
            },
            ErrorKind::Server(_) | ErrorKind::Extension => StoreError::Script {
                code: sanitize(code),
            },
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse => StoreError::Reply,
            _ => StoreError::Connection,
        }
    }

    /// Whether the store should be treated as unavailable (fail open or closed) rather than
    /// misconfigured: every error is, since a call must not wait on a store that cannot
    /// answer; the distinction is for the operator's log.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            StoreError::Config(_) => "config",
            StoreError::InvalidUrl => "invalid_url",
            StoreError::Unreachable => "unreachable",
            StoreError::Auth => "auth",
            StoreError::Timeout(_) => "timeout",
            StoreError::Connection => "connection",
            StoreError::Script { .. } => "script",
            StoreError::Reply => "reply",
        }
    }
}

/// A server error code is one upper-case word; anything else is not repeated.
fn sanitize(code: &str) -> String {
    if !code.is_empty()
        && code.len() <= 32
        && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        code.to_owned()
    } else {
        "ERR".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_are_sanitized() {
        assert_eq!(sanitize("WRONGTYPE"), "WRONGTYPE");
        assert_eq!(sanitize("wrongtype secret"), "ERR");
        let e = StoreError::Script {
            code: "WRONGTYPE".into(),
        };
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    }
}
