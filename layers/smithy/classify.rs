//! An attempt's [`Outcome`], read from the orchestrator's [`InterceptorContext`]: the modeled
//! error code and message, the HTTP status and headers, and transport errors.

use std::error::Error;
use std::time::SystemTime;

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::retry::ErrorKind;

use crate::classify::{aws, classify_error_with, classify_status, retry_after};
use crate::{Outcome, OutcomeKind, ThrottleReason, ThrottleScope};

/// The outcome of the attempt `ctx` holds; `None` while it holds no result.
///
/// A response that failed is read on the wire, so one table serves every service and protocol:
/// the error code from `x-amzn-errortype` (restJson1) or the body's `__type` / `code`
/// (awsJson), the message from the body's `message` / `Message`, then
/// [`aws::classify_with_status`], refined by DynamoDB's `ThrottlingReasons` and, for a
/// `TransactionCanceledException`, its `CancellationReasons` (see [`aws`]'s module docs),
/// with `Retry-After` and its relatives from the headers. A
/// failure without a response walks the error's `source()` chain: this crate's own errors
/// first (a shed call, an open circuit), then the SDK's connector and timeout errors, then
/// I/O errors.
pub fn classify_context(ctx: &InterceptorContext) -> Option<Outcome> {
    let error = match ctx.output_or_error()? {
        Ok(_) => return Some(Outcome::SUCCESS),
        Err(error) => error,
    };
    if error.is_operation_error() || error.is_response_error() {
        if let Some(response) = ctx.response() {
            if response.status().as_u16() >= 400 {
                return Some(classify_response(response, SystemTime::now()));
            }
        }
    }
    if error.is_timeout_error() {
        return Some(Outcome::new(OutcomeKind::Timeout));
    }
    if error.is_response_error() {
        // The response could not be read or parsed: worth another attempt.
        return Some(Outcome::new(OutcomeKind::Transient));
    }
    let outcome = classify_error_with(error, connector_error);
    if outcome.kind != OutcomeKind::Fatal {
        return Some(outcome);
    }
    // A connector error of another kind, with nothing recognisable below it: its retry kind.
    let kind = crate::classify::find::<ConnectorError>(error)
        .and_then(ConnectorError::as_other)
        .map(|kind| match kind {
            ErrorKind::ThrottlingError => OutcomeKind::Throttled(ThrottleScope::Unknown),
            ErrorKind::TransientError => OutcomeKind::Transient,
            ErrorKind::ServerError => OutcomeKind::Unavailable,
            _ => OutcomeKind::Fatal,
        });
    Some(kind.map_or(outcome, Outcome::new))
}

/// Classifies a failed HTTP response (status 400 or more) by code, message, status and headers.
pub fn classify_response(response: &HttpResponse, now: SystemTime) -> Outcome {
    let status = response.status().as_u16();
    let body = response.body().bytes().and_then(error_fields);
    let header_code = response.headers().get("x-amzn-errortype");
    let code = header_code.or(body.as_ref().and_then(|b| b.code.as_deref()));
    let message = body.as_ref().and_then(|b| b.message.as_deref());
    let reason = body.as_ref().and_then(|b| b.reason);
    let cancellation = body.as_ref().and_then(|b| b.cancellation);
    let kind = match code {
        Some(code) => aws::with_cancellation(
            code,
            aws::classify_with_status(code, message, status),
            cancellation,
        ),
        None => match classify_status(status) {
            OutcomeKind::Fatal if message.is_some_and(aws::says_overloaded) => {
                OutcomeKind::Overloaded
            }
            kind => kind,
        },
    };
    // DynamoDB's `ThrottlingReasons` say which limit: a hot key range is no budget's fault.
    let kind = aws::with_reason(kind, reason);
    let reason = reason.filter(|_| matches!(kind, OutcomeKind::Throttled(_)));
    if !kind.is_retryable() {
        return Outcome::new(kind);
    }
    let known_scope = match kind {
        OutcomeKind::Throttled(scope) => Some(scope),
        _ => None,
    };
    let hints = retry_after::from_headers(&retry_headers(response), known_scope, now);
    let kind = match (kind, hints.scope, reason) {
        // A reason the provider gave wins over what the headers suggest.
        (OutcomeKind::Throttled(_), Some(scope), None) => OutcomeKind::Throttled(scope),
        (kind, ..) => kind,
    };
    Outcome::new(kind)
        .with_retry_after_opt(hints.delay)
        .with_reason(reason)
}

/// The SDK's connector errors: timeouts, I/O, the user's own. "Other" connector errors are
/// left to the links below them (this crate's fast failures carry their own retry delay).
fn connector_error(link: &(dyn Error + 'static)) -> Option<Outcome> {
    let error = link.downcast_ref::<ConnectorError>()?;
    let kind = if error.is_timeout() {
        OutcomeKind::Timeout
    } else if error.is_io() {
        OutcomeKind::Transient
    } else if error.is_user() {
        OutcomeKind::Fatal
    } else {
        return None;
    };
    Some(Outcome::new(kind))
}

/// The code, message and DynamoDB throttling reason of an AWS JSON error body (restJson1 or
/// awsJson).
struct ErrorFields {
    code: Option<String>,
    message: Option<String>,
    /// The deciding entry of `ThrottlingReasons` (`[{"reason": …, "resource": …}]`); the
    /// resource ARN is not kept.
    reason: Option<ThrottleReason>,
    /// What a `TransactionCanceledException`'s `CancellationReasons` (`[{"Code": …}, …]`)
    /// make of it ([`aws::classify_cancellation`]); only the codes are read, never an entry's
    /// `Message` or `Item`. `None` when the body has no such list.
    cancellation: Option<OutcomeKind>,
}

fn error_fields(body: &[u8]) -> Option<ErrorFields> {
    // A body that is not a JSON object (XML, HTML from a proxy, nothing) has no fields.
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let reasons = value
        .get("ThrottlingReasons")
        .and_then(|v| v.as_array())
        .map(|list| {
            aws::classify_reasons(
                list.iter()
                    .filter_map(|entry| entry.get("reason").and_then(|r| r.as_str())),
            )
        });
    let cancellation = value
        .get("CancellationReasons")
        .and_then(|v| v.as_array())
        .map(|list| aws::classify_cancellation(list.iter().map(cancellation_code)));
    Some(ErrorFields {
        code: text("__type").or_else(|| text("code")),
        message: text("message").or_else(|| text("Message")),
        reason: reasons.flatten(),
        cancellation,
    })
}

/// One `CancellationReasons` entry's code, as [`aws::classify_cancellation`] takes it: `None`
/// when absent or null (no error), `Some("")` for an entry that is not an object or a code that
/// is not a string (malformed: an unknown code).
fn cancellation_code(entry: &serde_json::Value) -> Option<&str> {
    use serde_json::Value;
    match entry.as_object().map(|e| e.get("Code")) {
        Some(None | Some(Value::Null)) => None,
        Some(Some(Value::String(code))) => Some(code),
        _ => Some(""),
    }
}

/// The response's headers that may carry a retry delay, as an `http::HeaderMap`.
fn retry_headers(response: &HttpResponse) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in response.headers().iter() {
        let lower = name.to_ascii_lowercase();
        if !(lower.contains("retry") || lower.contains("ratelimit")) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(lower.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// The SDK's retry kind for an outcome class.
pub(crate) fn error_kind(kind: OutcomeKind) -> ErrorKind {
    match kind {
        OutcomeKind::Throttled(_) => ErrorKind::ThrottlingError,
        OutcomeKind::Timeout | OutcomeKind::Transient => ErrorKind::TransientError,
        OutcomeKind::Overloaded | OutcomeKind::Unavailable => ErrorKind::ServerError,
        _ => ErrorKind::ClientError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use std::time::Duration;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        let mut res = HttpResponse::new(
            StatusCode::try_from(status).unwrap(),
            SdkBody::from(body.to_owned()),
        );
        for (k, v) in headers {
            res.headers_mut().insert(k.to_string(), v.to_string());
        }
        res
    }

    #[test]
    fn reads_the_code_from_the_header_or_the_body() {
        let now = SystemTime::now();
        let bedrock = response(
            429,
            &[("x-amzn-errortype", "ThrottlingException:http://internal")],
            r#"{"message":"Too many tokens, please wait before trying again."}"#,
        );
        assert_eq!(
            classify_response(&bedrock, now).kind,
            OutcomeKind::Throttled(ThrottleScope::Tokens)
        );
        let dynamo = response(
            400,
            &[],
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"x"}"#,
        );
        assert_eq!(
            classify_response(&dynamo, now).kind,
            OutcomeKind::Throttled(ThrottleScope::Capacity)
        );
        let overloaded = response(
            503,
            &[("x-amzn-errortype", "ServiceUnavailableException")],
            r#"{"Message":"Model is currently overloaded"}"#,
        );
        assert_eq!(
            classify_response(&overloaded, now).kind,
            OutcomeKind::Overloaded
        );
        let validation = response(400, &[], r#"{"__type":"ValidationException"}"#);
        assert_eq!(classify_response(&validation, now).kind, OutcomeKind::Fatal);
    }

    #[test]
    fn dynamodb_throttling_reasons_decide_the_scope_and_travel_in_the_outcome() {
        use crate::{ThrottleLimit, ThrottledOperation, ThrottledResource};
        let now = SystemTime::now();
        let body = |code: &str, reasons: &[&str]| {
            let list: Vec<String> = reasons
                .iter()
                .map(|r| {
                    format!(
                        r#"{{"reason":"{r}","resource":"arn:aws:dynamodb:us-east-1:123456789012:table/orders"}}"#
                    )
                })
                .collect();
            format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"Throughput exceeds the current capacity for one or more partitions.","ThrottlingReasons":[{}]}}"#,
                list.join(",")
            )
        };
        let hot = response(
            400,
            &[],
            &body(
                "ProvisionedThroughputExceededException",
                &["TableWriteKeyRangeThroughputExceeded"],
            ),
        );
        let outcome = classify_response(&hot, now);
        assert_eq!(
            outcome.kind,
            OutcomeKind::Throttled(ThrottleScope::Partition)
        );
        assert!(!outcome.kind.teaches_quota());
        assert_eq!(
            outcome.reason,
            Some(ThrottleReason {
                resource: ThrottledResource::Table,
                operation: ThrottledOperation::Write,
                limit: ThrottleLimit::KeyRange,
            })
        );
        let provisioned = response(
            400,
            &[],
            &body(
                "ProvisionedThroughputExceededException",
                &["TableReadProvisionedThroughputExceeded"],
            ),
        );
        let outcome = classify_response(&provisioned, now);
        assert_eq!(
            outcome.kind,
            OutcomeKind::Throttled(ThrottleScope::Capacity)
        );
        assert_eq!(
            outcome.reason.map(|r| (r.operation, r.limit)),
            Some((ThrottledOperation::Read, ThrottleLimit::Provisioned))
        );
        // An on-demand table's limits under ThrottlingException teach its budget too.
        for reason in [
            "TableWriteAccountLimitExceeded",
            "IndexReadMaxOnDemandThroughputExceeded",
        ] {
            let on_demand = response(400, &[], &body("ThrottlingException", &[reason]));
            let outcome = classify_response(&on_demand, now);
            assert_eq!(
                outcome.kind,
                OutcomeKind::Throttled(ThrottleScope::Capacity),
                "{reason}"
            );
            assert!(outcome.reason.is_some(), "{reason}");
        }
        // No reasons, or unknown ones: the code decides, and no reason is claimed.
        for reasons in [&[][..], &["SomethingNew"][..]] {
            let plain = response(
                400,
                &[],
                &body("ProvisionedThroughputExceededException", reasons),
            );
            let outcome = classify_response(&plain, now);
            assert_eq!(
                outcome.kind,
                OutcomeKind::Throttled(ThrottleScope::Capacity)
            );
            assert_eq!(outcome.reason, None);
        }
        // A reason never turns a non-throttle into one.
        let odd = response(
            400,
            &[],
            &body(
                "ValidationException",
                &["TableReadKeyRangeThroughputExceeded"],
            ),
        );
        let outcome = classify_response(&odd, now);
        assert_eq!(outcome.kind, OutcomeKind::Fatal);
        assert_eq!(outcome.reason, None);
    }

    #[test]
    fn a_transaction_cancelled_for_capacity_is_a_throttle_and_any_other_is_fatal() {
        let now = SystemTime::now();
        let cancelled = |reasons: &str| {
            response(
                400,
                &[],
                &format!(
                    r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons","CancellationReasons":{reasons}}}"#
                ),
            )
        };
        // An item holding attribute values (`ReturnValuesOnConditionCheckFailure`) beside the
        // code: only the code is read.
        let item = r#""Item":{"pk":{"S":"secret-canary"},"n":{"N":"1"}}"#;
        let throttled = [
            r#"[{"Code":"None"},{"Code":"ThrottlingError","Message":"Throughput exceeds the current capacity of your table or index."}]"#.to_owned(),
            r#"[{"Code":"ProvisionedThroughputExceeded"},{"Code":null},{}]"#.to_owned(),
            format!(r#"[{{"Code":"None",{item}}},{{"Code":"ThrottlingError"}}]"#),
        ];
        for reasons in &throttled {
            let outcome = classify_response(&cancelled(reasons), now);
            assert_eq!(
                outcome.kind,
                OutcomeKind::Throttled(ThrottleScope::Capacity),
                "{reasons}"
            );
            assert!(outcome.kind.is_retryable() && outcome.kind.teaches_quota());
            assert_eq!(outcome.reason, None, "no throttling reason is claimed");
            assert!(!format!("{outcome:?}").contains("secret-canary"));
            assert_eq!(error_kind(outcome.kind), ErrorKind::ThrottlingError);
        }
        let fatal = [
            // Only a failed condition.
            format!(
                r#"[{{"Code":"ConditionalCheckFailed","Message":"The conditional request failed",{item}}}]"#
            ),
            // A failed condition beside a throttle: a retry would fail on it again.
            format!(r#"[{{"Code":"ThrottlingError"}},{{"Code":"ConditionalCheckFailed",{item}}}]"#),
            r#"[{"Code":"TransactionConflict"},{"Code":"ProvisionedThroughputExceeded"}]"#
                .to_owned(),
            // Malformed or empty lists, and entries.
            r#"[]"#.to_owned(),
            r#"[{"Code":"None"}]"#.to_owned(),
            r#"{"Code":"ThrottlingError"}"#.to_owned(),
            r#""ThrottlingError""#.to_owned(),
            r#"null"#.to_owned(),
            r#"[7,{"Code":"ThrottlingError"}]"#.to_owned(),
            r#"[{"Code":5},{"Code":"ThrottlingError"}]"#.to_owned(),
        ];
        for reasons in &fatal {
            let outcome = classify_response(&cancelled(reasons), now);
            assert_eq!(outcome.kind, OutcomeKind::Fatal, "{reasons}");
            assert!(!format!("{outcome:?}").contains("secret-canary"));
        }
        // No list at all.
        let bare = response(
            400,
            &[],
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled"}"#,
        );
        assert_eq!(classify_response(&bare, now).kind, OutcomeKind::Fatal);
        // Reasons under another code change nothing.
        let other = response(
            400,
            &[],
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","CancellationReasons":[{"Code":"ThrottlingError"}]}"#,
        );
        assert_eq!(classify_response(&other, now).kind, OutcomeKind::Fatal);
        // The code may come from the header, the reasons from the body.
        let header = response(
            400,
            &[("x-amzn-errortype", "TransactionCanceledException")],
            r#"{"CancellationReasons":[{"Code":"ThrottlingError"}]}"#,
        );
        assert_eq!(
            classify_response(&header, now).kind,
            OutcomeKind::Throttled(ThrottleScope::Capacity)
        );
    }

    #[test]
    fn a_spent_day_is_daily_whatever_the_per_minute_headers_say() {
        let now = SystemTime::now();
        let daily = response(
            429,
            &[
                ("x-amzn-errortype", "ThrottlingException:http://internal"),
                // A per-minute limit reading zero does not turn a spent day into a minute.
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "20s"),
                ("retry-after", "3600"),
            ],
            r#"{"message":"Too many tokens per day, please wait before trying again."}"#,
        );
        let outcome = classify_response(&daily, now);
        assert_eq!(outcome.kind, OutcomeKind::Throttled(ThrottleScope::Daily));
        assert_eq!(outcome.retry_after, Some(Duration::from_secs(3600)));
        let minute = response(
            429,
            &[("x-amzn-errortype", "ThrottlingException")],
            r#"{"message":"Too many tokens, please wait before trying again."}"#,
        );
        assert_eq!(
            classify_response(&minute, now).kind,
            OutcomeKind::Throttled(ThrottleScope::Tokens)
        );
    }

    #[test]
    fn honours_retry_after_and_survives_garbage() {
        let now = SystemTime::now();
        let throttled = response(429, &[("Retry-After", "7")], "<html>busy</html>");
        let outcome = classify_response(&throttled, now);
        assert_eq!(outcome.kind, OutcomeKind::Throttled(ThrottleScope::Unknown));
        assert_eq!(outcome.retry_after, Some(Duration::from_secs(7)));
        let garbage = response(500, &[("retry-after", "soon")], "\u{0}\u{1}{");
        let outcome = classify_response(&garbage, now);
        assert_eq!(outcome.kind, OutcomeKind::Transient);
        assert_eq!(outcome.retry_after, None);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use proptest::prelude::*;

    proptest! {
        /// No server answer makes classification panic, and a non-retryable class never
        /// carries a delay.
        #[test]
        fn any_error_response_classifies(
            status in 400u16..600,
            body in proptest::collection::vec(any::<u8>(), 0..200),
            code in "[ -~]{0,40}",
            retry_after in "[ -~]{0,20}",
        ) {
            let mut res = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
            res.headers_mut().insert("x-amzn-errortype", code);
            res.headers_mut().insert("retry-after", retry_after);
            let outcome = classify_response(&res, SystemTime::now());
            prop_assert!(outcome.kind.is_retryable() || outcome.retry_after.is_none());
        }
    }
}
