//! AWS error codes and messages, as plain strings.
//!
//! The same table serves the AWS SDK adapters (`ProvideErrorMetadata::code()` / `message()`),
//! hand-rolled HTTP clients (the `x-amzn-errortype` header, the `__type` field of a JSON error
//! body) and tests; it needs no SDK crate.
//!
//! ```
//! use tower_headroom::{OutcomeKind, ThrottleScope};
//! use tower_headroom::classify::aws;
//!
//! let kind = aws::classify(
//!     "ThrottlingException",
//!     Some("Too many tokens, please wait before trying again."),
//! );
//! assert_eq!(kind, OutcomeKind::Throttled(ThrottleScope::Tokens));
//!
//! // A spent day is its own class: no per-minute wait cures it.
//! let kind = aws::classify(
//!     "ThrottlingException",
//!     Some("Too many tokens per day, please wait before trying again."),
//! );
//! assert_eq!(kind, OutcomeKind::Throttled(ThrottleScope::Daily));
//!
//! let kind = aws::classify(
//!     "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
//!     None,
//! );
//! assert_eq!(kind, OutcomeKind::Throttled(ThrottleScope::Capacity));
//!
//! // Unknown codes fall back to the HTTP status when there is one.
//! assert_eq!(aws::classify_with_status("SomethingNew", None, 503), OutcomeKind::Unavailable);
//! assert_eq!(aws::classify("SomethingNew", None), OutcomeKind::Fatal);
//! ```
//!
//! # The table
//!
//! Codes are first [normalised](normalize_code): a `namespace#` prefix and a `:suffix` are
//! dropped. The normalised code is matched whole and without regard to ASCII case — an HTTP
//! error says `ThrottlingException`, the same error inside an event stream after a `200` says
//! `throttlingException` ([`ResponseStream`](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ResponseStream.html),
//! [`ConverseStreamOutput`](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html))
//! and both go through this one table. Messages are matched by case-insensitive substrings.
//!
//! | code | outcome |
//! |---|---|
//! | `ProvisionedThroughputExceededException` | `Throttled(Capacity)`; `Throttled(Partition)` when its `ThrottlingReasons` name only key ranges (see below) |
//! | `RequestLimitExceeded`, `TooManyRequestsException`, `RequestThrottled`, `RequestThrottledException`, `SlowDown` | `Throttled(Requests)` unless the message says tokens (`Tokens`) or a day (`Daily`) |
//! | `ThrottlingException`, `Throttling`, `ThrottledException`, `EC2ThrottledException`, `BandwidthLimitExceeded`, `LimitExceededException` | `Throttled`, scope from the message (`Daily` for a spent day), else `Unknown` |
//! | `TransactionInProgressException`, `PriorRequestNotComplete` | `Throttled(Unknown)` (the SDK retries them as throttles; they are not breaker-worthy) |
//! | `ModelNotReadyException` | `Overloaded` |
//! | `ServiceUnavailableException`, `ServiceUnavailable` (incl. "Too many connections") | `Unavailable` |
//! | `ModelTimeoutException`, `RequestTimeout`, `RequestTimeoutException` | `Timeout` |
//! | `InternalServerException`, `InternalServerError`, `InternalFailure`, `InternalError`, `ModelStreamErrorException` | `Transient` |
//! | `ValidationException` whose message says the input is longer than the model takes ("Input is too long for requested model", "prompt is too long") | `TooLarge` (the router moves to the next model) |
//! | `TransactionCanceledException` (DynamoDB) | `Throttled(Capacity)` when its `CancellationReasons` refuse items only for capacity (`ThrottlingError`, `ProvisionedThroughputExceeded`, the other items `None`); else, and without reasons, `Fatal` (see below) |
//! | `ValidationException`, `AccessDeniedException`, `ResourceNotFoundException`, `ServiceQuotaExceededException`, `ModelErrorException`, `UnrecognizedClientException`, `TransactionConflictException`, … (see [`classify_code`]) | `Fatal` |
//! | anything else | the HTTP status if known (see [`classify_with_status`]), else `Fatal` |
//!
//! Messages, for every code except those in the `Fatal` list (so also for unknown codes):
//! - "overloaded" (Bedrock's "Model ... is currently overloaded. Please try again later.") ->
//!   `Overloaded`, whatever the code — Bedrock sends it under `ThrottlingException` and
//!   `ServiceUnavailableException`, and it is a saturated shared model, not your quota;
//! - "per day" or "daily" -> `Daily`, before anything else: Bedrock's "Too many tokens per
//!   day, please wait before trying again." says a per-day quota is spent (see below);
//! - "too many tokens" -> `Tokens`; "too many requests", "rate of requests exceeds"
//!   (DynamoDB), "rate exceeded" -> `Requests` (for throttling codes only).
//!
//! # Daily quotas
//!
//! Bedrock's `bedrock-runtime` endpoint enforces, beside tokens per minute, "Model invocation
//! max tokens per day" per model and Region (by default the per-minute quota × 24 × 60) and
//! an account-wide "Cross-Model Max Tokens Per Day" per Region
//! ([Quotas for the bedrock-runtime endpoint](https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-runtime.html)).
//! Exceeding either is a `ThrottlingException` (HTTP 429); the message callers report for a
//! spent day is "Too many tokens per day, please wait before trying again." (the per-minute
//! one is "Too many tokens, please wait before trying again.",
//! [re:Post: ThrottlingException on Bedrock](https://repost.aws/knowledge-center/bedrock-throttling-error)).
//! AWS documents no separate message for the cross-model quota, so any throttling message
//! that names a day ("per day", "daily") reads as [`ThrottleScope::Daily`]; a per-minute
//! message stays `Tokens` or `Requests`. No header marks a daily throttle, and neither OpenAI
//! nor Anthropic documents a rate-limit header that says a limit is per day, so the HTTP
//! classifier (which reads no body) has no daily rule.
//!
//! # DynamoDB's throttling reasons
//!
//! DynamoDB's `ProvisionedThroughputExceededException`, `ThrottlingException` and
//! `RequestLimitExceeded` carry `ThrottlingReasons`, a list of `{"reason": …, "resource": ARN}`
//! in the awsJson error body
//! ([ThrottlingReason](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html)).
//! [`throttle_reason`] parses one reason into a [`ThrottleReason`](crate::ThrottleReason), [`classify_reasons`]
//! picks the one that decides, and [`with_reason`] refines the code's class with it:
//!
//! | limit | scope | what learns |
//! |---|---|---|
//! | `KeyRangeThroughputExceeded` | `Throttled(Partition)` | nothing of the table's budget: one partition key value is over the partition maximum |
//! | `ProvisionedThroughputExceeded` | `Throttled(Capacity)` | the table's (or index's) read or write budget |
//! | `AccountLimitExceeded` | `Throttled(Capacity)` | the same budget: it is the per-table quota the account sets for on-demand tables |
//! | `MaxOnDemandThroughputExceeded` | `Throttled(Capacity)` | the same budget: the table's configured on-demand maximum |
//!
//! The SDK adapter's classifier (`smithy::classify_response`) reads the list from the raw
//! response body, so it works with SDK versions whose error types have no field for it; the
//! [`Outcome`](crate::Outcome) carries the deciding reason, never the resource ARN.
//!
//! # DynamoDB's cancelled transactions
//!
//! DynamoDB refuses a whole `TransactWriteItems` or `TransactGetItems` with
//! `TransactionCanceledException`, among other causes when "there is insufficient provisioned
//! capacity for the transaction to be completed"; its `CancellationReasons` hold one entry per
//! item, in request order, each with a `Code`: `None` ("No Errors"), `ConditionalCheckFailed`,
//! `ItemCollectionSizeLimitExceeded`, `TransactionConflict`, `ProvisionedThroughputExceeded`
//! (a provisioned table's or index's throughput), `ThrottlingError` (an on-demand table or
//! index while it scales), `ValidationError`
//! ([TransactWriteItems](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html),
//! [TransactGetItems](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactGetItems.html),
//! [CancellationReason](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CancellationReason.html):
//! "If no error occurred for the associated item an error with a Null code and Null message
//! will be present"). The awsJson error body carries the list, e.g.
//! `{"__type": "…#TransactionCanceledException", "CancellationReasons": [{"Code": "None"},
//! {"Code": "ValidationError", "Message": "…"}], "Message": "Transaction cancelled, please refer
//! cancellation reasons for specific reasons [None, ValidationError]"}`
//! ([aws-sdk-net#1292](https://github.com/aws/aws-sdk-net/issues/1292)). [`classify_cancellation`]
//! reads the codes and [`with_cancellation`] refines the code's `Fatal` with them:
//!
//! | reasons | outcome |
//! |---|---|
//! | at least one `ThrottlingError` or `ProvisionedThroughputExceeded`, every other `None` (or no code) | `Throttled(Capacity)`: retried, teaches the table's budget |
//! | any other code beside them (`ConditionalCheckFailed`, `TransactionConflict`, `ValidationError`, …, or one not in this list) | `Fatal`: a retry would fail on that item again |
//! | no list, a list that is not one, no failing item | `Fatal` |
//!
//! Retrying such a transaction is safe: a cancelled transaction made no change ("either all
//! of them succeed, or all of them fail"), and a `TransactWriteItems` with a
//! `ClientRequestToken` — which the AWS SDK fills in when the caller does not, once per call,
//! so every attempt sends the same — is idempotent for 10 minutes: "multiple identical calls
//! have the same effect as one single call". The SDK adapter's classifier
//! (`smithy::classify_response`) reads the list from the raw response body, as it reads
//! `ThrottlingReasons`; only the codes are read, never an entry's `Message` or `Item` (which
//! can hold the item's attribute values), and nothing of the list is kept in the
//! [`Outcome`](crate::Outcome), a log or an error.
//!
//! Decisions worth knowing:
//! - `ModelErrorException` (HTTP 424, "an error while processing the model") is `Fatal`: it is
//!   tied to the request (the model failed on this input), so a retry repeats it;
//!   `ModelStreamErrorException` is `Transient` because AWS documents it as "retry your request".
//! - `TransactionConflictException` (DynamoDB) is `Fatal`, as in the AWS SDKs: another writer
//!   holds the item, and the caller usually has to re-read and decide again; a blind retry loop
//!   under contention only adds load.
//! - `ServiceQuotaExceededException` is `Fatal`: a hard account quota does not refill by
//!   waiting.
//! - Clock-skew codes (`RequestTimeTooSkewed`, `InvalidSignatureException`, …) are `Fatal`:
//!   the SDK retries them only after correcting its clock, which this table cannot do.
//! - The throttling and transient code lists follow the AWS SDK for Rust
//!   (`aws-runtime`'s `THROTTLING_ERRORS` and `TRANSIENT_ERRORS`).
//!
//! Messages are only matched, never logged or stored.

use crate::{OutcomeKind, ThrottleScope};

mod cancellation;
mod reasons;

pub use self::cancellation::{classify_cancellation, is_transaction_canceled, with_cancellation};
pub use self::reasons::{classify_reasons, throttle_reason, with_reason};

/// Strips a `namespace#` prefix and a `:suffix` from an AWS error code.
///
/// `com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException` and
/// `ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/` (as sent in
/// `x-amzn-errortype`) become `ProvisionedThroughputExceededException` and
/// `ThrottlingException`. Surrounding whitespace is trimmed.
///
/// ```
/// use tower_headroom::classify::aws::normalize_code;
///
/// assert_eq!(normalize_code("aws.protocoltests#ThrottlingException:http://x/"), "ThrottlingException");
/// assert_eq!(normalize_code(" SlowDown "), "SlowDown");
/// ```
pub fn normalize_code(code: &str) -> &str {
    let code = code.trim();
    let code = match code.rfind('#') {
        Some(i) => &code[i + 1..],
        None => code,
    };
    match code.find(':') {
        Some(i) => code[..i].trim(),
        None => code.trim(),
    }
}

/// Classifies an AWS error code (and its message, if any). Unknown codes are
/// [`OutcomeKind::Fatal`] (or `Overloaded` if the message says so); use
/// [`classify_with_status`] when the HTTP status is known.
pub fn classify(code: &str, message: Option<&str>) -> OutcomeKind {
    classify_code(code, message).unwrap_or_else(|| unknown(message, OutcomeKind::Fatal))
}

/// Classifies an AWS error code and message, falling back to the HTTP status
/// ([`classify_status`](super::classify_status)) for codes the table does not know. A status
/// below 400 says nothing about an error and falls back to `Fatal`.
///
/// A known code always wins over the status (Bedrock sends `ThrottlingException` with 429 and
/// DynamoDB sends it with 400). An empty code counts as unknown.
pub fn classify_with_status(code: &str, message: Option<&str>, status: u16) -> OutcomeKind {
    classify_code(code, message).unwrap_or_else(|| {
        let by_status = match super::http::classify_status(status) {
            // An error code with a success status (S3 can send a 200 with an error body): the
            // status says nothing, and an unknown error is not retried.
            OutcomeKind::Success => OutcomeKind::Fatal,
            other => other,
        };
        unknown(message, by_status)
    })
}

/// Looks a code up in the table; `None` if the code is unknown.
///
/// `Fatal` codes: `ValidationException`, `AccessDeniedException`, `ResourceNotFoundException`,
/// `ServiceQuotaExceededException`, `ModelErrorException`, `UnrecognizedClientException`,
/// `TransactionConflictException`, `ConditionalCheckFailedException`,
/// `TransactionCanceledException` (by its code alone; its `CancellationReasons` may make it a
/// throttle, [`with_cancellation`]), `ItemCollectionSizeLimitExceededException`,
/// `ResourceInUseException`, `ConflictException`, `IdempotentParameterMismatchException`,
/// `SerializationException`, `UnknownOperationException`, `InvalidParameterValue`,
/// `InvalidParameterCombination`, `MissingParameter`, `MissingAuthenticationToken`,
/// `IncompleteSignature`, `InvalidSignatureException`, `SignatureDoesNotMatch`,
/// `InvalidClientTokenId`, `ExpiredTokenException`, `ExpiredToken`, `RequestExpired`,
/// `RequestTimeTooSkewed`, `AuthFailure`, `NotAuthorized`, `OptInRequired`,
/// `AccessDenied`, `NoSuchKey`, `NoSuchBucket`.
pub fn classify_code(code: &str, message: Option<&str>) -> Option<OutcomeKind> {
    use OutcomeKind::*;
    use ThrottleScope as S;

    let code = normalize_code(code);
    let (_, class) = TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(code))?;
    let kind = match class {
        Class::Capacity => Throttled(S::Capacity),
        Class::Requests => Throttled(throttle_scope(message).unwrap_or(S::Requests)),
        Class::Throttling => Throttled(throttle_scope(message).unwrap_or(S::Unknown)),
        Class::Busy => Throttled(S::Unknown),
        Class::Overloaded => Overloaded,
        Class::Unavailable => Unavailable,
        Class::Timeout => Timeout,
        Class::Transient => Transient,
        // A prompt past the model's context is a request this model cannot take, but another
        // (a larger context) may: the router moves on it.
        Class::Fatal if code.eq_ignore_ascii_case("ValidationException") && too_long(message) => {
            return Some(TooLarge);
        }
        Class::Fatal => return Some(Fatal),
    };
    Some(if is_overloaded(message) {
        Overloaded
    } else {
        kind
    })
}

/// What a code in the [table](TABLE) says, before its message is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// `Throttled(Capacity)`.
    Capacity,
    /// `Throttled`, scope from the message, else `Requests`.
    Requests,
    /// `Throttled`, scope from the message, else `Unknown`.
    Throttling,
    /// `Throttled(Unknown)` whatever the message names (still `Overloaded` if it says so).
    Busy,
    Overloaded,
    Unavailable,
    Timeout,
    Transient,
    /// `Fatal`, whatever the message says.
    Fatal,
}

/// The one table of AWS error codes, matched without regard to ASCII case: HTTP errors send
/// `ThrottlingException`, event-stream exceptions inside a `200` send `throttlingException`
/// (the SDK adapter's stream watcher reads them), and both are the same error.
const TABLE: &[(&str, Class)] = &[
    ("ProvisionedThroughputExceededException", Class::Capacity),
    ("RequestLimitExceeded", Class::Requests),
    ("TooManyRequestsException", Class::Requests),
    ("RequestThrottled", Class::Requests),
    ("RequestThrottledException", Class::Requests),
    ("SlowDown", Class::Requests),
    ("ThrottlingException", Class::Throttling),
    ("Throttling", Class::Throttling),
    ("ThrottledException", Class::Throttling),
    ("EC2ThrottledException", Class::Throttling),
    ("BandwidthLimitExceeded", Class::Throttling),
    ("LimitExceededException", Class::Throttling),
    ("TransactionInProgressException", Class::Busy),
    ("PriorRequestNotComplete", Class::Busy),
    ("ModelNotReadyException", Class::Overloaded),
    ("ServiceUnavailableException", Class::Unavailable),
    ("ServiceUnavailable", Class::Unavailable),
    ("ModelTimeoutException", Class::Timeout),
    ("RequestTimeout", Class::Timeout),
    ("RequestTimeoutException", Class::Timeout),
    ("InternalServerException", Class::Transient),
    ("InternalServerError", Class::Transient),
    ("InternalFailure", Class::Transient),
    ("InternalError", Class::Transient),
    ("ModelStreamErrorException", Class::Transient),
    ("ValidationException", Class::Fatal),
    ("AccessDeniedException", Class::Fatal),
    ("ResourceNotFoundException", Class::Fatal),
    ("ServiceQuotaExceededException", Class::Fatal),
    ("ModelErrorException", Class::Fatal),
    ("UnrecognizedClientException", Class::Fatal),
    ("TransactionConflictException", Class::Fatal),
    ("ConditionalCheckFailedException", Class::Fatal),
    ("TransactionCanceledException", Class::Fatal),
    ("ItemCollectionSizeLimitExceededException", Class::Fatal),
    ("ResourceInUseException", Class::Fatal),
    ("ConflictException", Class::Fatal),
    ("IdempotentParameterMismatchException", Class::Fatal),
    ("SerializationException", Class::Fatal),
    ("UnknownOperationException", Class::Fatal),
    ("InvalidParameterValue", Class::Fatal),
    ("InvalidParameterCombination", Class::Fatal),
    ("MissingParameter", Class::Fatal),
    ("MissingAuthenticationToken", Class::Fatal),
    ("IncompleteSignature", Class::Fatal),
    ("InvalidSignatureException", Class::Fatal),
    ("SignatureDoesNotMatch", Class::Fatal),
    ("InvalidClientTokenId", Class::Fatal),
    ("ExpiredTokenException", Class::Fatal),
    ("ExpiredToken", Class::Fatal),
    ("RequestExpired", Class::Fatal),
    ("RequestTimeTooSkewed", Class::Fatal),
    ("AuthFailure", Class::Fatal),
    ("NotAuthorized", Class::Fatal),
    ("OptInRequired", Class::Fatal),
    ("AccessDenied", Class::Fatal),
    ("NoSuchKey", Class::Fatal),
    ("NoSuchBucket", Class::Fatal),
];

/// An unknown code: the overload message still counts (it is unambiguous, whatever the code or
/// status), else the fallback.
fn unknown(message: Option<&str>, fallback: OutcomeKind) -> OutcomeKind {
    if is_overloaded(message) {
        OutcomeKind::Overloaded
    } else {
        fallback
    }
}

/// Whether a `ValidationException`'s message says the input is longer than the model's context:
/// Bedrock's "Input is too long for requested model", Anthropic's "prompt is too long: N tokens >
/// M maximum" (relayed by Bedrock), "too many input tokens", "maximum context length".
fn too_long(message: Option<&str>) -> bool {
    message.is_some_and(|m| {
        [
            "input is too long",
            "prompt is too long",
            "too many input tokens",
            "maximum context length",
        ]
        .iter()
        .any(|needle| contains_ignore_ascii_case(m, needle))
    })
}

fn is_overloaded(message: Option<&str>) -> bool {
    message.is_some_and(says_overloaded)
}

/// Whether a service message says the model or service is overloaded ("Model … is currently
/// overloaded", Anthropic's `overloaded_error`): ASCII case-insensitive, without allocating.
/// The message family every classifier of this crate reads as [`OutcomeKind::Overloaded`].
///
/// ```
/// use tower_headroom::classify::aws::says_overloaded;
///
/// assert!(says_overloaded("Model anthropic.claude-sonnet is currently OVERLOADED."));
/// assert!(!says_overloaded("Too many requests, please wait before trying again."));
/// ```
pub fn says_overloaded(message: &str) -> bool {
    contains_ignore_ascii_case(message, "overloaded")
}

/// Which limit a throttling message names, if it names one. A day wins over the dimension:
/// "Too many tokens per day" is a spent day, not a spent minute.
fn throttle_scope(message: Option<&str>) -> Option<ThrottleScope> {
    let message = message?;
    if says_daily(message) {
        Some(ThrottleScope::Daily)
    } else if contains_ignore_ascii_case(message, "too many tokens") {
        Some(ThrottleScope::Tokens)
    } else if contains_ignore_ascii_case(message, "too many requests")
        || contains_ignore_ascii_case(message, "rate of requests exceeds")
        || contains_ignore_ascii_case(message, "rate exceeded")
    {
        Some(ThrottleScope::Requests)
    } else {
        None
    }
}

/// Whether a throttling message says a per-day quota is spent ("Too many tokens per day, please
/// wait before trying again."): ASCII case-insensitive, without allocating. The message family
/// every classifier of this crate reads as [`ThrottleScope::Daily`] (for throttling codes).
///
/// ```
/// use tower_headroom::classify::aws::says_daily;
///
/// assert!(says_daily("Too many tokens per day, please wait before trying again."));
/// assert!(!says_daily("Too many tokens, please wait before trying again."));
/// ```
pub fn says_daily(message: &str) -> bool {
    contains_ignore_ascii_case(message, "per day") || contains_ignore_ascii_case(message, "daily")
}

/// ASCII case-insensitive substring search, without allocating. `needle` is lowercase ASCII.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_search_is_case_insensitive_and_bounded() {
        assert!(contains_ignore_ascii_case(
            "Model X is Currently OVERLOADED.",
            "overloaded"
        ));
        assert!(!contains_ignore_ascii_case("overload", "overloaded"));
        assert!(!contains_ignore_ascii_case("", "overloaded"));
        // Multi-byte text never panics.
        assert!(contains_ignore_ascii_case(
            "ümlaut überloaded overloaded",
            "overloaded"
        ));
    }

    #[test]
    fn a_prompt_past_the_context_is_too_large_and_other_validation_errors_fatal() {
        for message in [
            "Input is too long for requested model.",
            "The model returned the following errors: Input is too long for requested model.",
            "prompt is too long: 208310 tokens > 200000 maximum",
            "Too many input tokens. Max input tokens: 8192, request input token count: 9001",
        ] {
            assert_eq!(
                classify("ValidationException", Some(message)),
                OutcomeKind::TooLarge,
                "{message}"
            );
        }
        assert_eq!(
            classify("ValidationException", Some("Malformed input request")),
            OutcomeKind::Fatal
        );
        assert_eq!(classify("ValidationException", None), OutcomeKind::Fatal);
        // Only a validation error: access denied stays fatal whatever it says.
        assert_eq!(
            classify("AccessDeniedException", Some("Input is too long")),
            OutcomeKind::Fatal
        );
    }

    #[test]
    fn a_spent_day_is_daily_and_a_spent_minute_is_not() {
        let daily = OutcomeKind::Throttled(ThrottleScope::Daily);
        for message in [
            "Too many tokens per day, please wait before trying again.",
            "TOO MANY TOKENS PER DAY",
            "Daily token quota exceeded.",
        ] {
            assert_eq!(classify("ThrottlingException", Some(message)), daily);
            assert_eq!(
                classify_with_status("ThrottlingException:http://x/", Some(message), 429),
                daily
            );
            assert_eq!(classify("TooManyRequestsException", Some(message)), daily);
        }
        assert_eq!(
            classify(
                "ThrottlingException",
                Some("Too many tokens, please wait before trying again.")
            ),
            OutcomeKind::Throttled(ThrottleScope::Tokens)
        );
        assert_eq!(
            classify(
                "ThrottlingException",
                Some("Too many requests, please wait before trying again.")
            ),
            OutcomeKind::Throttled(ThrottleScope::Requests)
        );
        // Only throttling codes read the day: a validation error that mentions one is fatal.
        assert_eq!(
            classify(
                "ValidationException",
                Some("max tokens per day must be set")
            ),
            OutcomeKind::Fatal
        );
    }

    #[test]
    fn codes_match_without_regard_to_case_in_one_table() {
        use OutcomeKind::*;
        // Bedrock's event-stream exceptions are lower camelCase; HTTP errors are not.
        for (code, kind) in [
            ("throttlingException", Throttled(ThrottleScope::Unknown)),
            ("serviceUnavailableException", Unavailable),
            ("modelStreamErrorException", Transient),
            ("internalServerException", Transient),
            ("modelTimeoutException", Timeout),
            ("validationException", Fatal),
            ("modelNotReadyException", Overloaded),
            ("THROTTLINGEXCEPTION", Throttled(ThrottleScope::Unknown)),
        ] {
            assert_eq!(classify_code(code, None), Some(kind), "{code}");
        }
        // The message still decides the scope and the overload, whatever the code's case.
        assert_eq!(
            classify("throttlingException", Some("Too many tokens, please wait.")),
            Throttled(ThrottleScope::Tokens)
        );
        assert_eq!(
            classify(
                "serviceUnavailableException",
                Some("Model is currently overloaded.")
            ),
            Overloaded
        );
        // Every code the table names is there once, whatever its case.
        for (i, (a, _)) in TABLE.iter().enumerate() {
            for (b, _) in &TABLE[i + 1..] {
                assert!(!a.eq_ignore_ascii_case(b), "{a} twice");
            }
        }
        assert_eq!(classify_code("throttlingExceptio", None), None);
    }

    #[test]
    fn normalize_edge_cases() {
        assert_eq!(normalize_code(""), "");
        assert_eq!(normalize_code("#"), "");
        assert_eq!(normalize_code(":"), "");
        assert_eq!(
            normalize_code("a#b#ThrottlingException"),
            "ThrottlingException"
        );
    }
}
