//! Table and property tests for the classifiers: the AWS code table, the HTTP status table, the
//! error chain, and every retry header, including malformed ones.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Response};
use proptest::prelude::*;
use tower_headroom::classify::retry_after::{
    self, MAX_SERVER_DELAY, RateLimit, RateLimits, RetryHints, parse_go_duration, parse_millis,
    parse_retry_after, parse_rfc3339_reset, rate_limits,
};
use tower_headroom::classify::{aws, classify_error, classify_status};
use tower_headroom::{Classify, HttpClassifier, Outcome, OutcomeKind, ThrottleScope};

use OutcomeKind::{Fatal, Overloaded, Success, Throttled, Timeout, Transient, Unavailable};
use ThrottleScope::{Capacity, Requests, Tokens, Unknown};

/// 2023-11-14T22:13:20Z, a Tuesday.
const NOW_UNIX: u64 = 1_700_000_000;

/// Header name/value pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn response(status: u16, pairs: &[(&str, &str)]) -> Response<()> {
    let mut res = Response::new(());
    *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
    *res.headers_mut() = headers(pairs);
    res
}

fn classify_at(status: u16, pairs: &[(&str, &str)]) -> Outcome {
    HttpClassifier::new().classify_response(&response(status, pairs), now())
}

// ---------------------------------------------------------------------------------------------
// retry_after: single parsers
// ---------------------------------------------------------------------------------------------

#[test]
fn retry_after_seconds_and_dates() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("0", Some(Duration::ZERO)),
        ("1", Some(secs(1))),
        ("120", Some(secs(120))),
        (" 7 ", Some(secs(7))),
        ("007", Some(secs(7))),
        ("1.5", Some(Duration::from_millis(1500))),
        ("0.0000000001", Some(Duration::from_nanos(1))), // rounded up, never down
        ("86400", Some(MAX_SERVER_DELAY)),
        ("86401", Some(MAX_SERVER_DELAY)),
        ("99999999999999999999", Some(MAX_SERVER_DELAY)),
        (
            "999999999999999999999999999999999999999999999999",
            Some(MAX_SERVER_DELAY),
        ),
        // IMF-fixdate, RFC 850 and asctime forms of NOW + 120 s.
        ("Tue, 14 Nov 2023 22:15:20 GMT", Some(secs(120))),
        ("Tuesday, 14-Nov-23 22:15:20 GMT", Some(secs(120))),
        ("Tue Nov 14 22:15:20 2023", Some(secs(120))),
        // Now, and in the past: zero, never negative.
        ("Tue, 14 Nov 2023 22:13:20 GMT", Some(Duration::ZERO)),
        ("Tue, 14 Nov 2023 21:13:20 GMT", Some(Duration::ZERO)),
        ("Thu, 01 Jan 1970 00:00:00 GMT", Some(Duration::ZERO)),
        // Far future: clamped.
        ("Wed, 18 Dec 2024 22:13:20 GMT", Some(MAX_SERVER_DELAY)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", Some(MAX_SERVER_DELAY)),
        // Garbage.
        ("", None),
        ("   ", None),
        ("-1", None),
        ("-0", None),
        ("+5", None),
        ("1e3", None),
        ("1.", None),
        (".5", None),
        ("1.5.5", None),
        ("NaN", None),
        ("inf", None),
        ("infinity", None),
        ("soon", None),
        ("5 seconds", None),
        ("0x10", None),
        ("Tue, 14 Nov 2023 22:15:20", None),
        ("Tue, 32 Nov 2023 22:15:20 GMT", None),
        ("Tue, 14 Nov 10000 22:15:20 GMT", None),
        ("2023-11-14T22:15:20Z", None),
    ];
    for &(value, want) in cases {
        assert_eq!(
            parse_retry_after(value, now()),
            want,
            "retry-after: {value:?}"
        );
    }
}

#[test]
fn retry_after_non_utf8_and_non_ascii_bytes() {
    for bytes in [
        &b"\xff\xfe"[..],
        b"12\xff",
        b"\xe2\x82\xac5",
        "Tue, 14 Nov 2023 22:15:20 GMT\u{00e9}".as_bytes(),
        b"1\x002",
    ] {
        assert_eq!(parse_retry_after(bytes, now()), None, "{bytes:?}");
        assert_eq!(parse_millis(bytes), None, "{bytes:?}");
        assert_eq!(parse_go_duration(bytes), None, "{bytes:?}");
        assert_eq!(parse_rfc3339_reset(bytes, now()), None, "{bytes:?}");
    }
    // Through a real HeaderValue, which admits obs-text bytes.
    let value = HeaderValue::from_bytes(b"\x80\xff 30").unwrap();
    assert_eq!(parse_retry_after(&value, now()), None);
    let map = {
        let mut m = HeaderMap::new();
        m.insert("retry-after", value.clone());
        m.insert("retry-after-ms", value.clone());
        m.insert("x-amz-retry-after", value.clone());
        m.insert("x-ms-retry-after-ms", value.clone());
        m.insert("x-ratelimit-limit-tokens", value.clone());
        m.insert("x-ratelimit-remaining-tokens", value.clone());
        m.insert("x-ratelimit-reset-tokens", value.clone());
        m.insert("anthropic-ratelimit-tokens-reset", value);
        m
    };
    assert_eq!(
        retry_after::from_headers(&map, None, now()),
        RetryHints::default()
    );
    // Present but unreadable: a reading with every field `None`.
    assert_eq!(
        rate_limits(&map, now()),
        RateLimits {
            requests: None,
            tokens: Some(RateLimit::default()),
        }
    );
}

#[test]
fn millis_headers() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("0", Some(Duration::ZERO)),
        ("1500", Some(Duration::from_millis(1500))),
        ("5000", Some(secs(5))),
        ("20.5", Some(Duration::from_micros(20_500))),
        ("0.000001", Some(Duration::from_nanos(1))),
        ("0.0000001", Some(Duration::from_nanos(1))), // 0.1 ns, rounded up
        ("86400000", Some(MAX_SERVER_DELAY)),
        ("86400001", Some(MAX_SERVER_DELAY)),
        ("99999999999999999999", Some(MAX_SERVER_DELAY)),
        ("", None),
        ("-100", None),
        ("NaN", None),
        ("nan", None),
        ("Infinity", None),
        ("1e5", None),
        ("100ms", None),
        ("1,000", None),
        ("abc", None),
    ];
    for &(value, want) in cases {
        assert_eq!(parse_millis(value), want, "ms: {value:?}");
    }
}

#[test]
fn go_durations() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("6m0s", Some(secs(360))),
        ("1s", Some(secs(1))),
        ("20ms", Some(Duration::from_millis(20))),
        ("1h2m3.5s", Some(Duration::from_millis(3_723_500))),
        ("0s", Some(Duration::ZERO)),
        ("0", Some(Duration::ZERO)),
        ("17", Some(secs(17))),
        ("1.5", Some(Duration::from_millis(1500))),
        ("7.66s", Some(Duration::from_millis(7660))),
        ("12ms", Some(Duration::from_millis(12))),
        ("250us", Some(Duration::from_micros(250))),
        ("250µs", Some(Duration::from_micros(250))),
        ("250μs", Some(Duration::from_micros(250))),
        ("5ns", Some(Duration::from_nanos(5))),
        ("1m30s", Some(secs(90))),
        ("2h", Some(secs(7200))),
        ("24h", Some(MAX_SERVER_DELAY)),
        ("25h", Some(MAX_SERVER_DELAY)),
        ("99999999999999999999h", Some(MAX_SERVER_DELAY)),
        ("0.1ns", Some(Duration::from_nanos(1))),
        (" 6m0s ", Some(secs(360))),
        ("", None),
        ("s", None),
        ("-1s", None),
        ("+1s", None),
        ("1x", None),
        ("1s2", None), // a bare number only on its own
        ("6 m", None),
        ("6m 0s", None),
        ("1.s", None),
        (".5s", None),
        ("1d", None),
        ("NaN", None),
        ("inf", None),
    ];
    for &(value, want) in cases {
        assert_eq!(parse_go_duration(value), want, "go duration: {value:?}");
    }
}

#[test]
fn rfc3339_resets() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("2023-11-14T22:13:50Z", Some(secs(30))),
        ("2023-11-14t22:13:50z", Some(secs(30))),
        ("2023-11-14 22:13:50Z", Some(secs(30))),
        ("2023-11-14T22:13:20.25Z", Some(Duration::from_millis(250))),
        (
            "2023-11-14T22:13:20.0000000001Z",
            Some(Duration::from_nanos(1)),
        ),
        ("2023-11-15T00:13:50+02:00", Some(secs(30))),
        ("2023-11-14T17:13:50-05:00", Some(secs(30))),
        ("2023-11-14T22:13:50+00:00", Some(secs(30))),
        (
            "2023-11-14T22:13:59.999999999Z",
            Some(Duration::new(39, 999_999_999)),
        ),
        // Leap second: 23:59:60 is the next midnight.
        ("2023-11-14T23:59:60Z", Some(secs(6400))),
        // Leap day.
        ("2024-02-29T00:00:00Z", Some(MAX_SERVER_DELAY)),
        // Past and now.
        ("2023-11-14T22:13:20Z", Some(Duration::ZERO)),
        ("2023-11-14T22:13:19.999Z", Some(Duration::ZERO)),
        ("1970-01-01T00:00:00Z", Some(Duration::ZERO)),
        ("0000-01-01T00:00:00Z", Some(Duration::ZERO)),
        // Far future.
        ("2023-11-15T22:13:21Z", Some(MAX_SERVER_DELAY)),
        ("9999-12-31T23:59:59Z", Some(MAX_SERVER_DELAY)),
        // Malformed.
        ("", None),
        ("2023-11-14T22:13:50", None),
        ("2023-11-14", None),
        ("2023-02-29T00:00:00Z", None),
        ("2023-02-30T00:00:00Z", None),
        ("2023-13-01T00:00:00Z", None),
        ("2023-00-01T00:00:00Z", None),
        ("2023-11-00T00:00:00Z", None),
        ("2023-11-14T24:00:00Z", None),
        ("2023-11-14T22:60:00Z", None),
        ("2023-11-14T22:13:61Z", None),
        ("2023-11-14T22:13:50+24:00", None),
        ("2023-11-14T22:13:50+02", None),
        ("2023-11-14T22:13:50+0200", None),
        ("2023-11-14T22:13:50.Z", None),
        ("2023-11-14T22:13:50ZZ", None),
        ("2023-11-14X22:13:50Z", None),
        ("+2023-11-14T22:13:50Z", None),
        ("-2023-11-14T22:13:50Z", None),
        ("20231114T221350Z", None),
        ("Tue, 14 Nov 2023 22:15:20 GMT", None),
        ("30", None),
        ("2023-1１-14T22:13:50Z", None),
    ];
    for &(value, want) in cases {
        assert_eq!(
            parse_rfc3339_reset(value, now()),
            want,
            "rfc3339: {value:?}"
        );
    }
}

#[test]
fn rfc3339_before_the_epoch_clock_does_not_panic() {
    let before_epoch = UNIX_EPOCH - secs(10);
    assert_eq!(
        parse_rfc3339_reset("1970-01-01T00:00:05Z", before_epoch),
        Some(secs(15))
    );
    assert_eq!(
        parse_rfc3339_reset("1969-12-31T23:59:40Z", before_epoch),
        Some(Duration::ZERO)
    );
}

// ---------------------------------------------------------------------------------------------
// retry_after: from_headers
// ---------------------------------------------------------------------------------------------

#[test]
fn explicit_delays_take_the_largest() {
    let cases: &[(Pairs, Option<Duration>)] = &[
        (&[], None),
        (&[("retry-after", "3")], Some(secs(3))),
        (
            &[("retry-after-ms", "1500")],
            Some(Duration::from_millis(1500)),
        ),
        (&[("x-amz-retry-after", "5000")], Some(secs(5))),
        // Azure OpenAI.
        (
            &[("x-ms-retry-after-ms", "2500")],
            Some(Duration::from_millis(2500)),
        ),
        (
            &[("x-ms-retry-after-ms", "2500"), ("retry-after", "3")],
            Some(secs(3)),
        ),
        (
            &[
                ("x-ms-retry-after-ms", "4000.5"),
                ("retry-after-ms", "4000"),
            ],
            Some(Duration::from_micros(4_000_500)),
        ),
        (
            &[("x-ms-retry-after-ms", "soon"), ("retry-after-ms", "4000")],
            Some(secs(4)),
        ),
        (
            &[("retry-after", "2"), ("retry-after-ms", "2500")],
            Some(Duration::from_millis(2500)),
        ),
        (
            &[("retry-after", "3"), ("retry-after-ms", "2500")],
            Some(secs(3)),
        ),
        (
            &[("retry-after", "garbage"), ("x-amz-retry-after", "700")],
            Some(Duration::from_millis(700)),
        ),
        // Several values of one header: the largest.
        (&[("retry-after", "1"), ("retry-after", "4")], Some(secs(4))),
        (
            &[
                ("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT"),
                ("retry-after", "60"),
            ],
            Some(secs(120)),
        ),
        (&[("retry-after", "-5")], None),
        (
            &[("retry-after", "99999999999999999999")],
            Some(MAX_SERVER_DELAY),
        ),
    ];
    for &(pairs, want) in cases {
        let hints = retry_after::from_headers(&headers(pairs), None, now());
        assert_eq!(hints.delay, want, "{pairs:?}");
        assert_eq!(hints.scope, None, "{pairs:?}");
    }
}

const OPENAI_REQ_EXHAUSTED: &[(&str, &str)] = &[
    ("x-ratelimit-remaining-requests", "0"),
    ("x-ratelimit-reset-requests", "1s"),
    ("x-ratelimit-remaining-tokens", "149984"),
    ("x-ratelimit-reset-tokens", "6m0s"),
];

const OPENAI_TOK_EXHAUSTED: &[(&str, &str)] = &[
    ("x-ratelimit-remaining-requests", "59"),
    ("x-ratelimit-reset-requests", "1s"),
    ("x-ratelimit-remaining-tokens", "0"),
    ("x-ratelimit-reset-tokens", "6m0s"),
];

#[test]
fn openai_remaining_headers_name_the_scope() {
    let cases: &[(Pairs, Option<ThrottleScope>, RetryHints)] = &[
        (
            OPENAI_REQ_EXHAUSTED,
            None,
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Requests),
            },
        ),
        (
            OPENAI_TOK_EXHAUSTED,
            None,
            RetryHints {
                delay: Some(secs(360)),
                scope: Some(Tokens),
            },
        ),
        // The caller's Unknown is refined by the headers.
        (
            OPENAI_TOK_EXHAUSTED,
            Some(Unknown),
            RetryHints {
                delay: Some(secs(360)),
                scope: Some(Tokens),
            },
        ),
        // The caller's known scope wins, and its reset applies too (largest of both).
        (
            OPENAI_REQ_EXHAUSTED,
            Some(Tokens),
            RetryHints {
                delay: Some(secs(360)),
                scope: Some(Tokens),
            },
        ),
        (
            OPENAI_REQ_EXHAUSTED,
            Some(Capacity),
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Capacity),
            },
        ),
        // Both exhausted: the later reset is the binding limit.
        (
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "20ms"),
            ],
            None,
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Requests),
            },
        ),
        (
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-remaining-tokens", "0"),
            ],
            None,
            RetryHints {
                delay: None,
                scope: Some(Unknown),
            },
        ),
        // Nothing exhausted and no scope: resets describe a refill, not a wait.
        (
            &[
                ("x-ratelimit-remaining-requests", "3"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            None,
            RetryHints {
                delay: None,
                scope: None,
            },
        ),
        (
            &[("x-ratelimit-reset-tokens", "6m0s")],
            Some(Unknown),
            RetryHints {
                delay: None,
                scope: Some(Unknown),
            },
        ),
        // ...but with a known scope they do.
        (
            &[("x-ratelimit-reset-tokens", "6m0s")],
            Some(Tokens),
            RetryHints {
                delay: Some(secs(360)),
                scope: Some(Tokens),
            },
        ),
        // An explicit delay replaces the resets, whether longer or shorter than they are; the
        // scope still comes from the remaining headers.
        (
            &[
                ("retry-after", "20"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(20)),
                scope: Some(Requests),
            },
        ),
        (
            &[
                ("retry-after", "1"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Tokens),
            },
        ),
        (
            &[("retry-after", "1"), ("x-ratelimit-reset-tokens", "6m0s")],
            Some(Tokens),
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Tokens),
            },
        ),
        // Malformed remaining values do not count as exhausted.
        (
            &[
                ("x-ratelimit-remaining-tokens", "-0"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            None,
            RetryHints::default(),
        ),
        (
            &[
                ("x-ratelimit-remaining-tokens", "0.5"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            None,
            RetryHints::default(),
        ),
        (
            &[
                ("x-ratelimit-remaining-tokens", ""),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            None,
            RetryHints::default(),
        ),
        (
            &[
                ("x-ratelimit-remaining-tokens", "000"),
                ("x-ratelimit-reset-tokens", "garbage"),
            ],
            None,
            RetryHints {
                delay: None,
                scope: Some(Tokens),
            },
        ),
    ];
    for (pairs, scope, want) in cases {
        assert_eq!(
            retry_after::from_headers(&headers(pairs), *scope, now()),
            *want,
            "{pairs:?} with {scope:?}"
        );
    }
}

#[test]
fn anthropic_remaining_headers_name_the_scope() {
    let base = [
        ("anthropic-ratelimit-requests-remaining", "10"),
        ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:21Z"),
        ("anthropic-ratelimit-tokens-remaining", "5000"),
        ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:40Z"),
        ("anthropic-ratelimit-input-tokens-remaining", "4000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2023-11-14T22:13:50Z",
        ),
        ("anthropic-ratelimit-output-tokens-remaining", "1000"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            "2023-11-14T22:14:20Z",
        ),
    ];
    let with_zero = |name: &str| {
        let mut pairs = base.to_vec();
        for pair in &mut pairs {
            if pair.0 == name {
                pair.1 = "0";
            }
        }
        headers(&pairs)
    };
    let cases = [
        ("anthropic-ratelimit-requests-remaining", Requests, secs(1)),
        ("anthropic-ratelimit-tokens-remaining", Tokens, secs(20)),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            Tokens,
            secs(30),
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining",
            Tokens,
            secs(60),
        ),
    ];
    for (exhausted, scope, delay) in cases {
        let hints = retry_after::from_headers(&with_zero(exhausted), None, now());
        assert_eq!(hints.scope, Some(scope), "{exhausted}");
        assert_eq!(hints.delay, Some(delay), "{exhausted}");
    }
    // Nothing exhausted, no scope: no delay.
    assert_eq!(
        retry_after::from_headers(&headers(&base), None, now()),
        RetryHints::default()
    );
    // A known token scope takes the latest of the token resets.
    assert_eq!(
        retry_after::from_headers(&headers(&base), Some(Tokens), now()).delay,
        Some(secs(60))
    );
    assert_eq!(
        retry_after::from_headers(&headers(&base), Some(Requests), now()).delay,
        Some(secs(1))
    );
    // Resets in the past mean "now", far-future ones are clamped.
    let past = headers(&[
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2020-01-01T00:00:00Z"),
    ]);
    assert_eq!(
        retry_after::from_headers(&past, None, now()).delay,
        Some(Duration::ZERO)
    );
    let far = headers(&[
        ("anthropic-ratelimit-tokens-remaining", "0"),
        ("anthropic-ratelimit-tokens-reset", "2099-01-01T00:00:00Z"),
    ]);
    assert_eq!(
        retry_after::from_headers(&far, None, now()).delay,
        Some(MAX_SERVER_DELAY)
    );
}

// ---------------------------------------------------------------------------------------------
// retry_after: explicit delays over resets, resets as refill rates
// ---------------------------------------------------------------------------------------------

/// An OpenAI 429 for tokens, as the API sends it, without an explicit delay. The tokens limit
/// is full again in 50 s; requests are far from their limit.
const OPENAI_429_TOKENS: &[(&str, &str)] = &[
    ("x-ratelimit-limit-requests", "500"),
    ("x-ratelimit-remaining-requests", "499"),
    ("x-ratelimit-reset-requests", "120ms"),
    ("x-ratelimit-remaining-tokens", "0"),
    ("x-ratelimit-reset-tokens", "50s"),
];

/// `pairs` with more pairs appended.
fn with<'a>(pairs: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().chain(more).copied().collect()
}

#[test]
fn openai_429_honours_the_explicit_delay_not_the_reset() {
    for explicit in [("retry-after", "5"), ("retry-after-ms", "5000")] {
        let pairs = with(OPENAI_429_TOKENS, &[explicit]);
        assert_eq!(
            retry_after::from_headers(&headers(&pairs), None, now()),
            RetryHints {
                delay: Some(secs(5)),
                scope: Some(Tokens),
            },
            "{explicit:?}"
        );
        assert_eq!(
            classify_at(429, &pairs),
            Outcome::throttled(Tokens).with_retry_after(secs(5)),
            "{explicit:?}"
        );
    }
    // Without it, the reset is all there is, and with no tokens limit to derive a rate from,
    // the whole of it applies.
    assert_eq!(
        classify_at(429, OPENAI_429_TOKENS),
        Outcome::throttled(Tokens).with_retry_after(secs(50))
    );
    // An explicit delay longer than the refill is honoured too: it is the server's minimum.
    let pairs = with(
        OPENAI_429_TOKENS,
        &[("x-ratelimit-limit-tokens", "30000"), ("retry-after", "20")],
    );
    assert_eq!(
        classify_at(429, &pairs),
        Outcome::throttled(Tokens).with_retry_after(secs(20))
    );
}

/// An Anthropic 429 for tokens, as the API sends it (`now` is 2023-11-14T22:13:20Z): the
/// tokens limit, and the input-tokens limit it includes, are full again in 45 s.
const ANTHROPIC_429_TOKENS: &[(&str, &str)] = &[
    ("anthropic-ratelimit-requests-limit", "50"),
    ("anthropic-ratelimit-requests-remaining", "49"),
    (
        "anthropic-ratelimit-requests-reset",
        "2023-11-14T22:13:21.200Z",
    ),
    ("anthropic-ratelimit-tokens-remaining", "0"),
    ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:14:05Z"),
    ("anthropic-ratelimit-input-tokens-limit", "30000"),
    ("anthropic-ratelimit-input-tokens-remaining", "0"),
    (
        "anthropic-ratelimit-input-tokens-reset",
        "2023-11-14T22:14:05Z",
    ),
    ("anthropic-ratelimit-output-tokens-limit", "8000"),
    ("anthropic-ratelimit-output-tokens-remaining", "8000"),
    (
        "anthropic-ratelimit-output-tokens-reset",
        "2023-11-14T22:13:20Z",
    ),
    ("request-id", "req_018EeWyXxfu5pfWkrYcMdjWG"),
];

#[test]
fn anthropic_429_honours_the_explicit_delay_not_the_reset() {
    let tokens_limit = ("anthropic-ratelimit-tokens-limit", "40000");
    // Whether the refill would be longer (45 s, no tokens limit) or shorter (4.5 s), the
    // explicit delay is the delay.
    for extra in [&[][..], &[tokens_limit][..]] {
        let pairs = with(&with(ANTHROPIC_429_TOKENS, extra), &[("retry-after", "7")]);
        assert_eq!(
            retry_after::from_headers(&headers(&pairs), None, now()),
            RetryHints {
                delay: Some(secs(7)),
                scope: Some(Tokens),
            },
            "{extra:?}"
        );
        assert_eq!(
            classify_at(429, &pairs),
            Outcome::throttled(Tokens).with_retry_after(secs(7)),
            "{extra:?}"
        );
    }
    // Without one: the combined tokens limit has no `-limit` header, so its full 45 s reset
    // applies (the input tokens' would be 4.5 s: the largest wait wins).
    assert_eq!(
        classify_at(429, ANTHROPIC_429_TOKENS),
        Outcome::throttled(Tokens).with_retry_after(secs(45))
    );
    // With it, a tenth of each limit refills in 4.5 s.
    assert_eq!(
        classify_at(429, &with(ANTHROPIC_429_TOKENS, &[tokens_limit])),
        Outcome::throttled(Tokens).with_retry_after(Duration::from_millis(4500))
    );
}

#[test]
fn azure_openai_429_honours_x_ms_retry_after_ms() {
    let azure = [
        ("x-ms-retry-after-ms", "2500"),
        ("x-ratelimit-remaining-requests", "9"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "60s"),
        ("apim-request-id", "7f1e4d2c-0000-4000-8000-000000000000"),
    ];
    assert_eq!(
        classify_at(429, &azure),
        Outcome::throttled(Tokens).with_retry_after(Duration::from_millis(2500))
    );
    // Azure also sends `retry-after-ms` and `retry-after`: the largest explicit delay.
    let pairs = with(&azure, &[("retry-after-ms", "2400"), ("retry-after", "3")]);
    assert_eq!(
        classify_at(429, &pairs),
        Outcome::throttled(Tokens).with_retry_after(secs(3))
    );
}

#[test]
fn without_an_explicit_delay_resets_are_refill_rates() {
    let cases: &[(Pairs, Option<ThrottleScope>, RetryHints)] = &[
        // (c) 60 requests refilling over 60 s: one is back in 1 s.
        (
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "60s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Requests),
            },
        ),
        (
            &[
                ("anthropic-ratelimit-requests-limit", "60"),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2023-11-14T22:14:20Z"),
            ],
            None,
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Requests),
            },
        ),
        // (d) Tokens exhausted: with the limit, until a tenth of it is back...
        (
            &[
                ("x-ratelimit-limit-tokens", "30000"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "50s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(5)),
                scope: Some(Tokens),
            },
        ),
        // ...without it, the full reset.
        (
            &[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "50s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(50)),
                scope: Some(Tokens),
            },
        ),
        (
            &[
                ("anthropic-ratelimit-tokens-limit", "40000"),
                ("anthropic-ratelimit-tokens-remaining", "0"),
                ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:14:05Z"),
            ],
            None,
            RetryHints {
                delay: Some(Duration::from_millis(4500)),
                scope: Some(Tokens),
            },
        ),
        (
            &[
                ("anthropic-ratelimit-tokens-remaining", "0"),
                ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:14:05Z"),
            ],
            None,
            RetryHints {
                delay: Some(secs(45)),
                scope: Some(Tokens),
            },
        ),
        // An unreadable limit is no limit: the full reset.
        (
            &[
                ("x-ratelimit-limit-requests", "sixty"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "60s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(60)),
                scope: Some(Requests),
            },
        ),
        // An unreadable explicit delay is no explicit delay: the resets apply.
        (
            &[
                ("retry-after", "soon"),
                ("x-ms-retry-after-ms", "-1"),
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "60s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Requests),
            },
        ),
        // Both exhausted: the longest wait. The scope is still the later full reset's.
        (
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "60s"),
                ("x-ratelimit-limit-tokens", "150000"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "30s"),
            ],
            None,
            RetryHints {
                delay: Some(secs(3)),
                scope: Some(Requests),
            },
        ),
        // The caller's scope pulls in its limits' resets, as refill rates too: 30 of 60 in use
        // refill over 30 s, one request per second.
        (
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "30"),
                ("x-ratelimit-reset-requests", "30s"),
            ],
            Some(Requests),
            RetryHints {
                delay: Some(secs(1)),
                scope: Some(Requests),
            },
        ),
        // A missing remaining reads as nothing left.
        (
            &[
                ("x-ratelimit-limit-tokens", "100000"),
                ("x-ratelimit-reset-tokens", "60s"),
            ],
            Some(Tokens),
            RetryHints {
                delay: Some(secs(6)),
                scope: Some(Tokens),
            },
        ),
        // Almost nothing in use: a tenth of the limit takes longer than the reset; capped.
        (
            &[
                ("x-ratelimit-limit-tokens", "150000"),
                ("x-ratelimit-remaining-tokens", "149984"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            Some(Tokens),
            RetryHints {
                delay: Some(secs(360)),
                scope: Some(Tokens),
            },
        ),
        // Neither exhausted nor in the caller's scope: ignored, limits or not.
        (
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "30"),
                ("x-ratelimit-reset-requests", "30s"),
                ("x-ratelimit-limit-tokens", "150000"),
                ("x-ratelimit-remaining-tokens", "100"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            Some(Capacity),
            RetryHints {
                delay: None,
                scope: Some(Capacity),
            },
        ),
        (
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "30"),
                ("x-ratelimit-reset-requests", "30s"),
            ],
            Some(Tokens),
            RetryHints {
                delay: None,
                scope: Some(Tokens),
            },
        ),
    ];
    for (pairs, scope, want) in cases {
        assert_eq!(
            retry_after::from_headers(&headers(pairs), *scope, now()),
            *want,
            "{pairs:?} with {scope:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// retry_after: rate_limits
// ---------------------------------------------------------------------------------------------

#[test]
fn rate_limits_read_openai_headers() {
    let pairs = with(
        OPENAI_429_TOKENS,
        &[("x-ratelimit-limit-tokens", "30000"), ("retry-after", "5")],
    );
    assert_eq!(
        rate_limits(&headers(&pairs), now()),
        RateLimits {
            requests: Some(RateLimit {
                limit: Some(500),
                remaining: Some(499),
                reset: Some(Duration::from_millis(120)),
            }),
            tokens: Some(RateLimit {
                limit: Some(30_000),
                remaining: Some(0),
                reset: Some(secs(50)),
            }),
        }
    );
}

#[test]
fn rate_limits_read_anthropic_headers() {
    let map = headers(&with(
        ANTHROPIC_429_TOKENS,
        &[("anthropic-ratelimit-tokens-limit", "40000")],
    ));
    assert_eq!(
        rate_limits(&map, now()),
        RateLimits {
            requests: Some(RateLimit {
                limit: Some(50),
                remaining: Some(49),
                reset: Some(Duration::from_millis(1200)),
            }),
            // The combined tokens limit, not the input tokens'.
            tokens: Some(RateLimit {
                limit: Some(40_000),
                remaining: Some(0),
                reset: Some(secs(45)),
            }),
        }
    );

    // Without the combined tokens headers: the input tokens'. Output tokens are never read.
    let input_only: Vec<_> = ANTHROPIC_429_TOKENS
        .iter()
        .copied()
        .filter(|(name, _)| !name.starts_with("anthropic-ratelimit-tokens-"))
        .collect();
    assert_eq!(
        rate_limits(&headers(&input_only), now()).tokens,
        Some(RateLimit {
            limit: Some(30_000),
            remaining: Some(0),
            reset: Some(secs(45)),
        })
    );
    let output_only = headers(&[
        ("anthropic-ratelimit-output-tokens-limit", "8000"),
        ("anthropic-ratelimit-output-tokens-remaining", "0"),
    ]);
    assert_eq!(rate_limits(&output_only, now()), RateLimits::default());

    // One combined tokens header is enough to be read alone, without the input tokens' fields.
    let partial = headers(&[
        ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:30Z"),
        ("anthropic-ratelimit-input-tokens-limit", "30000"),
        ("anthropic-ratelimit-input-tokens-remaining", "10"),
    ]);
    assert_eq!(
        rate_limits(&partial, now()).tokens,
        Some(RateLimit {
            limit: None,
            remaining: None,
            reset: Some(secs(10)),
        })
    );
}

#[test]
fn rate_limits_take_one_family_and_never_mix() {
    // OpenAI's family comes first, even when Anthropic's has more fields.
    let map = headers(&[
        ("x-ratelimit-limit-requests", "500"),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "49"),
    ]);
    assert_eq!(
        rate_limits(&map, now()).requests,
        Some(RateLimit {
            limit: Some(500),
            remaining: None,
            reset: None,
        })
    );
    // Explicit delays and unrelated headers are no rate-limit state.
    let map = headers(&[
        ("retry-after", "5"),
        ("retry-after-ms", "5000"),
        ("x-ratelimit-limit", "100"),
        ("content-type", "application/json"),
    ]);
    assert_eq!(rate_limits(&map, now()), RateLimits::default());
    assert_eq!(rate_limits(&HeaderMap::new(), now()), RateLimits::default());
}

#[test]
fn rate_limits_read_malformed_values_as_none() {
    let unreadable = RateLimits {
        requests: Some(RateLimit::default()),
        tokens: Some(RateLimit::default()),
    };
    // Counts are plain decimal integers that fit a u64.
    for bad in [
        "",
        " ",
        "-1",
        "-0",
        "+5",
        "1.5",
        "1e3",
        "NaN",
        "5k",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        let pairs = [
            ("x-ratelimit-limit-tokens", bad),
            ("x-ratelimit-remaining-tokens", bad),
            ("anthropic-ratelimit-requests-limit", bad),
            ("anthropic-ratelimit-requests-remaining", bad),
        ];
        assert_eq!(rate_limits(&headers(&pairs), now()), unreadable, "{bad:?}");
    }
    // Resets: a Go duration (OpenAI), an RFC 3339 time (Anthropic).
    for bad in [
        "",
        "-1s",
        "6 minutes",
        "1.5.5s",
        "2023-02-30T00:00:00Z",
        "2023-11-14T22:14:05",
        "Tue, 14 Nov 2023 22:15:20 GMT",
    ] {
        let pairs = [
            ("x-ratelimit-reset-tokens", bad),
            ("anthropic-ratelimit-requests-reset", bad),
        ];
        assert_eq!(rate_limits(&headers(&pairs), now()), unreadable, "{bad:?}");
    }
    // Edges that do read: the largest u64, zeros, padding, a past reset, a far one.
    let map = headers(&[
        ("x-ratelimit-limit-tokens", "18446744073709551615"),
        ("x-ratelimit-remaining-tokens", " 000 "),
        ("x-ratelimit-reset-tokens", "999999h"),
        ("anthropic-ratelimit-requests-reset", "2020-01-01T00:00:00Z"),
    ]);
    assert_eq!(
        rate_limits(&map, now()),
        RateLimits {
            requests: Some(RateLimit {
                limit: None,
                remaining: None,
                reset: Some(Duration::ZERO),
            }),
            tokens: Some(RateLimit {
                limit: Some(u64::MAX),
                remaining: Some(0),
                reset: Some(MAX_SERVER_DELAY),
            }),
        }
    );
}

// ---------------------------------------------------------------------------------------------
// aws
// ---------------------------------------------------------------------------------------------

const TOO_MANY_REQUESTS: &str = "Too many requests, please wait before trying again.";
const TOO_MANY_TOKENS: &str = "Too many tokens, please wait before trying again.";
const OVERLOADED: &str =
    "Model anthropic.claude-3-sonnet is currently overloaded. Please try again later.";

#[test]
fn aws_code_table() {
    let cases: &[(&str, Option<&str>, OutcomeKind)] = &[
        // Bedrock.
        (
            "ThrottlingException",
            Some(TOO_MANY_REQUESTS),
            Throttled(Requests),
        ),
        (
            "ThrottlingException",
            Some(TOO_MANY_TOKENS),
            Throttled(Tokens),
        ),
        (
            "ThrottlingException",
            Some("TOO MANY TOKENS, please wait"),
            Throttled(Tokens),
        ),
        (
            "ThrottlingException",
            Some("Something else"),
            Throttled(Unknown),
        ),
        ("ThrottlingException", Some(""), Throttled(Unknown)),
        ("ThrottlingException", None, Throttled(Unknown)),
        ("ThrottlingException", Some(OVERLOADED), Overloaded),
        (
            "ThrottlingException",
            Some("MODEL X IS CURRENTLY OVERLOADED"),
            Overloaded,
        ),
        ("ServiceUnavailableException", Some(OVERLOADED), Overloaded),
        ("ServiceUnavailableException", None, Unavailable),
        (
            "ServiceUnavailableException",
            Some("Too many connections"),
            Unavailable,
        ),
        (
            "ServiceUnavailableException",
            Some("Service temporarily unavailable"),
            Unavailable,
        ),
        ("ServiceUnavailable", None, Unavailable),
        ("ModelNotReadyException", None, Overloaded),
        ("ModelTimeoutException", None, Timeout),
        ("ModelTimeoutException", Some(OVERLOADED), Overloaded),
        ("InternalServerException", None, Transient),
        ("InternalServerException", Some(OVERLOADED), Overloaded),
        ("InternalServerError", None, Transient),
        ("InternalFailure", None, Transient),
        ("InternalError", None, Transient),
        ("ModelStreamErrorException", None, Transient),
        ("ModelErrorException", None, Fatal),
        ("ServiceQuotaExceededException", None, Fatal),
        (
            "ServiceQuotaExceededException",
            Some(TOO_MANY_TOKENS),
            Fatal,
        ),
        ("ValidationException", None, Fatal),
        ("ValidationException", Some(OVERLOADED), Fatal),
        ("AccessDeniedException", None, Fatal),
        ("ResourceNotFoundException", None, Fatal),
        ("UnrecognizedClientException", None, Fatal),
        // DynamoDB.
        (
            "ProvisionedThroughputExceededException",
            None,
            Throttled(Capacity),
        ),
        (
            "ProvisionedThroughputExceededException",
            Some("The level of configured provisioned throughput for the table was exceeded."),
            Throttled(Capacity),
        ),
        ("RequestLimitExceeded", None, Throttled(Requests)),
        (
            "RequestLimitExceeded",
            Some("Throughput exceeds the current throughput limit for your account."),
            Throttled(Requests),
        ),
        (
            "ThrottlingException",
            Some("Rate of requests exceeds the allowed throughput."),
            Throttled(Requests),
        ),
        (
            "ThrottlingException",
            Some("Rate exceeded"),
            Throttled(Requests),
        ),
        ("TransactionInProgressException", None, Throttled(Unknown)),
        ("TransactionConflictException", None, Fatal),
        ("ConditionalCheckFailedException", None, Fatal),
        ("TransactionCanceledException", None, Fatal),
        ("ItemCollectionSizeLimitExceededException", None, Fatal),
        ("ResourceInUseException", None, Fatal),
        ("IdempotentParameterMismatchException", None, Fatal),
        // SDK generic throttling and transient codes.
        ("Throttling", None, Throttled(Unknown)),
        ("Throttling", Some(TOO_MANY_TOKENS), Throttled(Tokens)),
        ("ThrottledException", None, Throttled(Unknown)),
        ("EC2ThrottledException", None, Throttled(Unknown)),
        ("BandwidthLimitExceeded", None, Throttled(Unknown)),
        ("LimitExceededException", None, Throttled(Unknown)),
        (
            "LimitExceededException",
            Some(TOO_MANY_REQUESTS),
            Throttled(Requests),
        ),
        ("TooManyRequestsException", None, Throttled(Requests)),
        (
            "TooManyRequestsException",
            Some(TOO_MANY_TOKENS),
            Throttled(Tokens),
        ),
        ("TooManyRequestsException", Some(OVERLOADED), Overloaded),
        ("RequestThrottled", None, Throttled(Requests)),
        ("RequestThrottledException", None, Throttled(Requests)),
        ("SlowDown", None, Throttled(Requests)),
        ("PriorRequestNotComplete", None, Throttled(Unknown)),
        ("RequestTimeout", None, Timeout),
        ("RequestTimeoutException", None, Timeout),
        // Other fatal codes.
        ("ConflictException", None, Fatal),
        ("SerializationException", None, Fatal),
        ("UnknownOperationException", None, Fatal),
        ("InvalidParameterValue", None, Fatal),
        ("InvalidParameterCombination", None, Fatal),
        ("MissingParameter", None, Fatal),
        ("MissingAuthenticationToken", None, Fatal),
        ("IncompleteSignature", None, Fatal),
        ("InvalidSignatureException", None, Fatal),
        ("SignatureDoesNotMatch", None, Fatal),
        ("InvalidClientTokenId", None, Fatal),
        ("ExpiredTokenException", None, Fatal),
        ("ExpiredToken", None, Fatal),
        ("RequestExpired", None, Fatal),
        ("RequestTimeTooSkewed", None, Fatal),
        ("AuthFailure", None, Fatal),
        ("NotAuthorized", None, Fatal),
        ("OptInRequired", None, Fatal),
        ("AccessDenied", None, Fatal),
        ("NoSuchKey", None, Fatal),
        ("NoSuchBucket", None, Fatal),
        // Unknown codes, no status: Fatal unless the message says overloaded.
        ("SomethingNewException", None, Fatal),
        ("SomethingNewException", Some(TOO_MANY_TOKENS), Fatal),
        ("SomethingNewException", Some(OVERLOADED), Overloaded),
        ("", None, Fatal),
        // Codes match without regard to case: Bedrock's event-stream exceptions are spelled
        // in lower camelCase (`throttlingException`), its HTTP errors are not.
        ("throttlingexception", None, Throttled(Unknown)),
        (
            "throttlingException",
            Some(TOO_MANY_TOKENS),
            Throttled(Tokens),
        ),
        ("serviceUnavailableException", None, Unavailable),
        ("modelStreamErrorException", None, Transient),
        ("modelTimeoutException", None, Timeout),
        ("validationException", None, Fatal),
        ("THROTTLINGEXCEPTIONS", None, Fatal),
        // Namespaces and suffixes.
        (
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            None,
            Throttled(Capacity),
        ),
        (
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            Some(TOO_MANY_TOKENS),
            Throttled(Tokens),
        ),
        (
            "aws.protocoltests#ServiceUnavailableException:http://internal.amazon.com/",
            None,
            Unavailable,
        ),
        ("  ModelNotReadyException  ", None, Overloaded),
    ];
    for &(code, message, want) in cases {
        assert_eq!(aws::classify(code, message), want, "{code:?} / {message:?}");
    }
}

#[test]
fn aws_unknown_codes_fall_back_to_status() {
    let cases: &[(&str, Option<&str>, u16, OutcomeKind)] = &[
        ("SomethingNew", None, 429, Throttled(Unknown)),
        ("SomethingNew", None, 500, Transient),
        ("SomethingNew", None, 502, Unavailable),
        ("SomethingNew", None, 503, Unavailable),
        ("SomethingNew", None, 504, Unavailable),
        ("SomethingNew", None, 529, Overloaded),
        ("SomethingNew", None, 408, Timeout),
        ("SomethingNew", None, 400, Fatal),
        ("SomethingNew", None, 501, Fatal),
        ("SomethingNew", Some(OVERLOADED), 400, Overloaded),
        ("SomethingNew", Some(OVERLOADED), 503, Overloaded),
        // An error with a success (or no) status: the status says nothing.
        ("SomethingNew", None, 200, Fatal),
        ("SomethingNew", None, 0, Fatal),
        ("", None, 503, Unavailable),
        // Known codes win over the status.
        (
            "ThrottlingException",
            Some(TOO_MANY_TOKENS),
            400,
            Throttled(Tokens),
        ),
        ("ValidationException", None, 503, Fatal),
        ("InternalError", None, 200, Transient),
    ];
    for &(code, message, status, want) in cases {
        assert_eq!(
            aws::classify_with_status(code, message, status),
            want,
            "{code:?} / {message:?} / {status}"
        );
    }
    assert_eq!(aws::classify_code("SomethingNew", None), None);
    assert_eq!(
        aws::classify_code("SlowDown", None),
        Some(Throttled(Requests))
    );
}

// ---------------------------------------------------------------------------------------------
// http
// ---------------------------------------------------------------------------------------------

#[test]
fn http_status_table() {
    let cases: &[(u16, OutcomeKind)] = &[
        (100, Success),
        (101, Success),
        (200, Success),
        (201, Success),
        (204, Success),
        (299, Success),
        (301, Success),
        (304, Success),
        (399, Success),
        (400, Fatal),
        (401, Fatal),
        (403, Fatal),
        (404, Fatal),
        (408, Timeout),
        (409, Fatal),
        (413, Fatal),
        (422, Fatal),
        (424, Fatal),
        (429, Throttled(Unknown)),
        (499, Fatal),
        (500, Transient),
        (501, Fatal),
        (502, Unavailable),
        (503, Unavailable),
        (504, Unavailable),
        (505, Fatal),
        (506, Transient),
        (507, Transient),
        (520, Transient),
        (529, Overloaded),
        (599, Transient),
        (600, Fatal),
        (999, Fatal),
    ];
    for &(status, want) in cases {
        assert_eq!(classify_status(status), want, "{status}");
        assert_eq!(classify_at(status, &[]).kind, want, "{status}");
        assert_eq!(classify_at(status, &[]).retry_after, None, "{status}");
        let res = response(status, &[]);
        assert_eq!(
            HttpClassifier::new().classify(Ok(&res)).kind,
            want,
            "{status}"
        );
    }
}

#[test]
fn http_429_scope_and_delay_from_headers() {
    let outcome = classify_at(429, OPENAI_TOK_EXHAUSTED);
    assert_eq!(
        outcome,
        Outcome::throttled(Tokens).with_retry_after(secs(360))
    );

    let outcome = classify_at(429, OPENAI_REQ_EXHAUSTED);
    assert_eq!(
        outcome,
        Outcome::throttled(Requests).with_retry_after(secs(1))
    );

    let outcome = classify_at(429, &[("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT")]);
    assert_eq!(
        outcome,
        Outcome::throttled(Unknown).with_retry_after(secs(120))
    );

    let outcome = classify_at(
        429,
        &[
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2023-11-14T22:13:50Z",
            ),
            ("retry-after", "12"),
        ],
    );
    // The explicit 12 s, not the 30 s until the input-tokens limit is full again.
    assert_eq!(
        outcome,
        Outcome::throttled(Tokens).with_retry_after(secs(12))
    );

    let outcome = classify_at(429, &[("retry-after", "soon")]);
    assert_eq!(outcome, Outcome::throttled(Unknown));
}

#[test]
fn http_retry_after_on_other_statuses() {
    let cases: &[(u16, Pairs, Outcome)] = &[
        (
            503,
            &[("retry-after", "30")],
            Outcome::new(Unavailable).with_retry_after(secs(30)),
        ),
        (
            529,
            &[("retry-after-ms", "250")],
            Outcome::new(Overloaded).with_retry_after(Duration::from_millis(250)),
        ),
        (
            500,
            &[("x-amz-retry-after", "100")],
            Outcome::new(Transient).with_retry_after(Duration::from_millis(100)),
        ),
        (
            503,
            &[("retry-after", "99999999999999999999")],
            Outcome::new(Unavailable).with_retry_after(MAX_SERVER_DELAY),
        ),
        (
            503,
            &[("retry-after", "Tue, 14 Nov 2023 21:13:20 GMT")],
            Outcome::new(Unavailable).with_retry_after(Duration::ZERO),
        ),
        // Not retryable: no delay attached.
        (400, &[("retry-after", "30")], Outcome::FATAL),
        // Not an error: headers are not read.
        (200, &[("retry-after", "30")], Outcome::SUCCESS),
        (301, &[("retry-after", "30")], Outcome::SUCCESS),
    ];
    for (status, pairs, want) in cases {
        assert_eq!(classify_at(*status, pairs), *want, "{status} {pairs:?}");
    }
}

#[test]
fn http_amzn_errortype_header_uses_the_aws_table() {
    let cases: &[(u16, &str, Outcome)] = &[
        (
            429,
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            Outcome::throttled(Unknown),
        ),
        (
            400,
            "ProvisionedThroughputExceededException",
            Outcome::throttled(Capacity),
        ),
        (
            400,
            "com.amazonaws.dynamodb.v20120810#ThrottlingException",
            Outcome::throttled(Unknown),
        ),
        (400, "ValidationException", Outcome::FATAL),
        (400, "TransactionConflictException", Outcome::FATAL),
        (403, "AccessDeniedException", Outcome::FATAL),
        (429, "ServiceQuotaExceededException", Outcome::FATAL),
        (424, "ModelErrorException", Outcome::FATAL),
        (408, "ModelTimeoutException", Outcome::new(Timeout)),
        (424, "ModelNotReadyException", Outcome::new(Overloaded)),
        (
            503,
            "ServiceUnavailableException",
            Outcome::new(Unavailable),
        ),
        (500, "InternalServerException", Outcome::new(Transient)),
        // Unknown code: the status decides.
        (503, "BrandNewException", Outcome::new(Unavailable)),
        (400, "BrandNewException", Outcome::FATAL),
        (429, "BrandNewException", Outcome::throttled(Unknown)),
        // Success statuses are never inspected.
        (200, "ValidationException", Outcome::SUCCESS),
    ];
    for (status, code, want) in cases {
        assert_eq!(
            classify_at(*status, &[("x-amzn-errortype", code)]),
            *want,
            "{status} {code}"
        );
    }
    // With an AWS delay header.
    assert_eq!(
        classify_at(
            400,
            &[
                ("x-amzn-errortype", "ProvisionedThroughputExceededException"),
                ("x-amz-retry-after", "5000")
            ]
        ),
        Outcome::throttled(Capacity).with_retry_after(secs(5))
    );
    // A non-UTF-8 (obs-text) errortype is ignored: the status decides.
    let mut res = response(503, &[]);
    res.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_bytes(b"Validation\xffException").unwrap(),
    );
    assert_eq!(
        HttpClassifier::new().classify_response(&res, now()),
        Outcome::new(Unavailable)
    );
}

#[test]
fn http_classifier_errors_go_through_classify_error() {
    let classifier = HttpClassifier::default();
    let error = io::Error::from(io::ErrorKind::ConnectionRefused);
    let outcome = Classify::<Response<()>>::classify(&classifier, Err(&error));
    assert_eq!(outcome.kind, Transient);
    let error = tower::timeout::error::Elapsed::new();
    let outcome = Classify::<Response<String>>::classify(&classifier, Err(&error));
    assert_eq!(outcome.kind, Timeout);
}

// ---------------------------------------------------------------------------------------------
// error
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Context {
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("while calling the backend")
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

fn wrapped(inner: impl Error + Send + Sync + 'static) -> Context {
    Context {
        source: Some(Box::new(Context {
            source: Some(Box::new(inner)),
        })),
    }
}

#[tokio::test(start_paused = true)]
async fn error_table() {
    use io::ErrorKind as K;
    let kinds = [
        (K::ConnectionReset, Transient),
        (K::ConnectionRefused, Transient),
        (K::ConnectionAborted, Transient),
        (K::BrokenPipe, Transient),
        (K::NotConnected, Transient),
        (K::UnexpectedEof, Transient),
        (K::NetworkUnreachable, Transient),
        (K::HostUnreachable, Transient),
        (K::NetworkDown, Transient),
        (K::TimedOut, Timeout),
        (K::Other, Fatal),
        (K::InvalidData, Fatal),
        (K::InvalidInput, Fatal),
        (K::PermissionDenied, Fatal),
        (K::NotFound, Fatal),
        (K::WouldBlock, Fatal),
    ];
    for (kind, want) in kinds {
        let error = io::Error::from(kind);
        assert_eq!(classify_error(&error), Outcome::new(want), "{kind:?}");
        assert_eq!(
            classify_error(&wrapped(io::Error::from(kind))),
            Outcome::new(want),
            "wrapped {kind:?}"
        );
        // An io::Error carrying a message.
        let error = io::Error::new(kind, "details that must not matter");
        assert_eq!(classify_error(&error).kind, want, "custom {kind:?}");
    }

    let tokio_elapsed =
        tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>())
            .await
            .unwrap_err();
    assert_eq!(classify_error(&tokio_elapsed).kind, Timeout);
    assert_eq!(classify_error(&wrapped(tokio_elapsed)).kind, Timeout);

    let tower_elapsed = tower::timeout::error::Elapsed::new();
    assert_eq!(classify_error(&tower_elapsed).kind, Timeout);
    assert_eq!(
        classify_error(&wrapped(tower::timeout::error::Elapsed::new())).kind,
        Timeout
    );

    // Through a BoxError, as the layers hand it over.
    let boxed: tower_headroom::BoxError = Box::new(wrapped(io::Error::from(K::BrokenPipe)));
    assert_eq!(classify_error(&*boxed).kind, Transient);

    // An io::Error wrapping a timeout keeps it visible.
    let io_timeout = io::Error::other(tower::timeout::error::Elapsed::new());
    assert_eq!(classify_error(&io_timeout).kind, Timeout);
    let io_reset = io::Error::other(wrapped(io::Error::from(K::ConnectionReset)));
    assert_eq!(classify_error(&io_reset).kind, Transient);

    // The outermost recognised error wins.
    let outer_timeout = io::Error::new(K::TimedOut, io::Error::from(K::ConnectionReset));
    assert_eq!(classify_error(&outer_timeout).kind, Timeout);

    // Unrecognised: fatal.
    assert_eq!(classify_error(&Context { source: None }), Outcome::FATAL);
    assert_eq!(classify_error(&fmt::Error), Outcome::FATAL);
    let parse = "x".parse::<u32>().unwrap_err();
    assert_eq!(classify_error(&wrapped(parse)), Outcome::FATAL);
}

// ---------------------------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------------------------

/// The explicit-delay headers.
const EXPLICIT_NAMES: [&str; 4] = [
    "retry-after",
    "retry-after-ms",
    "x-ms-retry-after-ms",
    "x-amz-retry-after",
];

/// The rate-limit headers, without their `*-limit`s.
const RATE_LIMIT_NAMES: [&str; 12] = [
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
];

/// The rate limits' `*-limit` headers.
const LIMIT_NAMES: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-output-tokens-limit",
];

/// Every header name the classifiers read, and one they do not.
const HEADER_NAMES: [&str; 24] = [
    EXPLICIT_NAMES[0],
    EXPLICIT_NAMES[1],
    EXPLICIT_NAMES[2],
    EXPLICIT_NAMES[3],
    "x-amzn-errortype",
    RATE_LIMIT_NAMES[0],
    RATE_LIMIT_NAMES[1],
    RATE_LIMIT_NAMES[2],
    RATE_LIMIT_NAMES[3],
    RATE_LIMIT_NAMES[4],
    RATE_LIMIT_NAMES[5],
    RATE_LIMIT_NAMES[6],
    RATE_LIMIT_NAMES[7],
    RATE_LIMIT_NAMES[8],
    RATE_LIMIT_NAMES[9],
    RATE_LIMIT_NAMES[10],
    RATE_LIMIT_NAMES[11],
    LIMIT_NAMES[0],
    LIMIT_NAMES[1],
    LIMIT_NAMES[2],
    LIMIT_NAMES[3],
    LIMIT_NAMES[4],
    LIMIT_NAMES[5],
    "date",
];

/// Values under some of `names`: plausible and garbage, text and raw bytes.
fn header_values(
    names: &'static [&'static str],
) -> impl Strategy<Value = Vec<(&'static str, String, Vec<u8>)>> {
    proptest::collection::vec(
        (
            proptest::sample::select(names),
            header_text(),
            proptest::collection::vec(any::<u8>(), 0..20),
        ),
        0..12,
    )
}

/// A header map of `values`, each value added as text and as raw bytes where valid.
fn header_map(values: &[(&'static str, String, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, text, bytes) in values {
        let name = HeaderName::from_static(name);
        for raw in [text.as_bytes(), &bytes[..]] {
            if let Ok(value) = HeaderValue::from_bytes(raw) {
                map.append(name.clone(), value);
            }
        }
    }
    map
}

const SCOPES: [Option<ThrottleScope>; 5] = [
    None,
    Some(Requests),
    Some(Tokens),
    Some(Capacity),
    Some(Unknown),
];

/// Header-ish strings: mostly plausible fragments, sometimes anything at all.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,25}",
        "-?[0-9]{1,5}(\\.[0-9]{0,12})?",
        "([0-9]{1,4}(\\.[0-9]{1,3})?(h|m|s|ms|us|µs|ns)){0,4}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "(Mon|Tue|Sun), [0-9]{2} (Jan|Feb|Nov) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        "[A-Za-z#:./ ]{0,40}",
        any::<String>(),
    ]
}

fn unix_time(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No string and no byte sequence panics any parser, and nothing exceeds the maximum.
    #[test]
    fn parsers_never_panic(text in header_text(), bytes in proptest::collection::vec(any::<u8>(), 0..40), now_secs in 0u64..20_000_000_000) {
        let now = unix_time(now_secs, 0);
        for input in [text.as_bytes(), &bytes[..]] {
            for delay in [
                parse_retry_after(input, now),
                parse_millis(input),
                parse_go_duration(input),
                parse_rfc3339_reset(input, now),
            ].into_iter().flatten() {
                prop_assert!(delay <= MAX_SERVER_DELAY);
            }
        }
    }

    /// Any header values, under every known name, through `from_headers`, `rate_limits` and
    /// the classifier.
    #[test]
    fn header_maps_never_panic(
        values in header_values(&HEADER_NAMES),
        status in 100u16..1000,
        now_secs in 0u64..20_000_000_000,
    ) {
        let now = unix_time(now_secs, 0);
        let map = header_map(&values);
        for scope in SCOPES {
            let hints = retry_after::from_headers(&map, scope, now);
            prop_assert!(hints.delay.is_none_or(|d| d <= MAX_SERVER_DELAY));
        }
        let limits = rate_limits(&map, now);
        for limit in [limits.requests, limits.tokens].into_iter().flatten() {
            prop_assert!(limit.reset.is_none_or(|d| d <= MAX_SERVER_DELAY));
        }
        let mut res = Response::new(());
        *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
        *res.headers_mut() = map;
        let outcome = HttpClassifier::new().classify_response(&res, now);
        prop_assert_eq!(outcome.kind == Success, status < 400);
        prop_assert!(outcome.retry_after.is_none_or(|d| d <= MAX_SERVER_DELAY));
        if !outcome.kind.is_retryable() {
            prop_assert_eq!(outcome.retry_after, None);
        }
    }

    /// With an explicit delay, the delay is exactly that, whatever the rate-limit headers say.
    #[test]
    fn an_explicit_delay_is_the_delay(
        values in header_values(&HEADER_NAMES[5..23]),
        explicit in 0..EXPLICIT_NAMES.len(),
        millis in 0u64..200_000_000,
    ) {
        let mut map = header_map(&values);
        let (value, want) = if explicit == 0 {
            (millis.div_ceil(1000).to_string(), Duration::from_secs(millis.div_ceil(1000)))
        } else {
            (millis.to_string(), Duration::from_millis(millis))
        };
        map.insert(EXPLICIT_NAMES[explicit], HeaderValue::from_str(&value).unwrap());
        for scope in SCOPES {
            let hints = retry_after::from_headers(&map, scope, now());
            prop_assert_eq!(hints.delay, Some(want.min(MAX_SERVER_DELAY)), "{:?}", scope);
        }
    }

    /// A `*-limit` header only ever shortens the wait a reset makes (never below nothing, and
    /// the scope stays the same).
    #[test]
    fn a_limit_header_never_lengthens_the_wait(
        values in header_values(&RATE_LIMIT_NAMES),
        limits in header_values(&LIMIT_NAMES),
    ) {
        let without = header_map(&values);
        let mut all = values.clone();
        all.extend(limits);
        let with_limits = header_map(&all);
        for scope in SCOPES {
            let short = retry_after::from_headers(&with_limits, scope, now());
            let long = retry_after::from_headers(&without, scope, now());
            prop_assert_eq!(short.scope, long.scope);
            prop_assert_eq!(short.delay.is_some(), long.delay.is_some());
            prop_assert!(short.delay <= long.delay, "{:?}: {:?} > {:?}", scope, short, long);
        }
    }

    /// An exhausted requests limit waits for exactly one request's worth, rounded up; an
    /// exhausted tokens limit, for a tenth of the limit.
    #[test]
    fn exhausted_limits_wait_for_their_refill(
        limit in 1u64..=u64::MAX,
        reset_ms in 0u64..=MAX_SERVER_DELAY.as_millis() as u64,
        anthropic in any::<bool>(),
    ) {
        let reset = Duration::from_millis(reset_ms);
        let reset_value = if anthropic {
            let at = now() + reset;
            let since = at.duration_since(UNIX_EPOCH).unwrap();
            format_rfc3339(since.as_secs() as i64, since.subsec_nanos(), 0)
        } else {
            format!("{reset_ms}ms")
        };
        let limit_value = limit.to_string();
        let family = if anthropic { "anthropic-ratelimit-" } else { "x-ratelimit-" };
        for scope in ["requests", "tokens"] {
            let name = |field: &str| if anthropic {
                format!("{family}{scope}-{field}")
            } else {
                format!("{family}{field}-{scope}")
            };
            let map = headers(&[
                (&name("limit"), &limit_value),
                (&name("remaining"), "0"),
                (&name("reset"), &reset_value),
            ]);
            let hints = retry_after::from_headers(&map, None, now());
            let wait = hints.delay.unwrap().as_nanos();
            let reset = reset.as_nanos();
            if scope == "requests" {
                prop_assert_eq!(hints.scope, Some(Requests));
                // wait = ceil(reset / limit)
                prop_assert!(wait * u128::from(limit) >= reset);
                prop_assert!(wait == 0 || (wait - 1) * u128::from(limit) < reset);
            } else {
                prop_assert_eq!(hints.scope, Some(Tokens));
                prop_assert_eq!(wait, reset.div_ceil(10));
            }
        }
    }

    /// A valid delay-seconds value is honoured exactly, or clamped to the maximum: never less
    /// than the server asked, unless that is beyond the maximum.
    #[test]
    fn retry_after_seconds_never_early(seconds in any::<u64>(), pad in 0usize..3) {
        let value = format!("{}{seconds}", "0".repeat(pad));
        let parsed = parse_retry_after(&value, now()).unwrap();
        prop_assert_eq!(parsed, Duration::from_secs(seconds).min(MAX_SERVER_DELAY));
        let mut map = HeaderMap::new();
        map.insert("retry-after", HeaderValue::from_str(&value).unwrap());
        let outcome = classify_at_map(503, map);
        prop_assert!(outcome.retry_after.unwrap() >= Duration::from_secs(seconds).min(MAX_SERVER_DELAY));
    }

    /// Fractional milliseconds are rounded up, never down.
    #[test]
    fn millis_never_early(int in 0u64..100_000_000, frac in "[0-9]{1,15}") {
        let value = format!("{int}.{frac}");
        let parsed = parse_millis(&value).unwrap();
        // parsed >= (int + frac / 10^len) ms, in exact integer arithmetic.
        let scale = 10u128.pow(frac.len() as u32);
        let stated_scaled_nanos = (u128::from(int) * scale + frac.parse::<u128>().unwrap()) * 1_000_000;
        let max = MAX_SERVER_DELAY.as_nanos() * scale;
        prop_assert!(parsed.as_nanos() * scale >= stated_scaled_nanos.min(max));
        // ...and by less than a nanosecond.
        prop_assert!(parsed.as_nanos() * scale < stated_scaled_nanos + scale || parsed == MAX_SERVER_DELAY);
    }

    /// Go durations sum their components exactly.
    #[test]
    fn go_durations_sum(h in 0u64..30, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
        let value = format!("{h}h{m}m{s}s{ms}ms");
        let want = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
        prop_assert_eq!(parse_go_duration(&value), Some(want.min(MAX_SERVER_DELAY)));
    }

    /// An HTTP-date `d` seconds ahead of (or behind) now reads as `d` (or zero), clamped.
    #[test]
    fn http_dates_relative_to_now(now_secs in 0u64..200_000_000_000, offset in -1_000_000i64..1_000_000) {
        let now = unix_time(now_secs.min(253_402_300_799 - 1_000_001), 0);
        let at = if offset >= 0 { now + secs(offset as u64) } else { now - secs(offset.unsigned_abs()) };
        prop_assume!(at >= UNIX_EPOCH);
        let value = httpdate::fmt_http_date(at);
        let want = if offset <= 0 { Duration::ZERO } else { secs(offset as u64).min(MAX_SERVER_DELAY) };
        prop_assert_eq!(parse_retry_after(&value, now), Some(want));
    }

    /// RFC 3339 timestamps at any offset read as the time left until them.
    #[test]
    fn rfc3339_relative_to_now(
        target in 0i64..253_402_300_799,
        nanos in 0u32..1_000_000_000,
        offset_min in -1439i64..=1439,
        now_delta in -200_000i64..200_000,
    ) {
        let local = target + offset_min * 60;
        prop_assume!((0..253_402_300_800).contains(&local));
        let value = format_rfc3339(local, nanos, offset_min);
        let now_secs = (target - now_delta).max(0) as u64;
        let now = unix_time(now_secs, 0);
        let target_nanos = i128::from(target) * 1_000_000_000 + i128::from(nanos);
        let left = target_nanos - i128::from(now_secs) * 1_000_000_000;
        let want = if left <= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(left as u64).min(MAX_SERVER_DELAY)
        };
        prop_assert_eq!(parse_rfc3339_reset(&value, now), Some(want), "{}", value);
    }
}

fn classify_at_map(status: u16, map: HeaderMap) -> Outcome {
    let mut res = Response::new(());
    *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
    *res.headers_mut() = map;
    HttpClassifier::new().classify_response(&res, now())
}

/// Formats local wall-clock seconds (UTC + offset) as RFC 3339, independently of the parser
/// (civil-from-days, the inverse algorithm).
fn format_rfc3339(local_secs: i64, nanos: u32, offset_min: i64) -> String {
    let days = local_secs.div_euclid(86_400);
    let rem = local_secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let offset = if offset_min == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_min > 0 { '+' } else { '-' };
        let abs = offset_min.abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}{offset}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// allocation: classifying never allocates (counted per thread, so parallel tests do not mix)
// ---------------------------------------------------------------------------------------------

mod support;

#[global_allocator]
static ALLOCATOR: support::Counting = support::Counting;

#[test]
fn classifying_does_not_allocate() {
    // The counter itself works.
    let (_, n) = support::allocations(|| std::hint::black_box(vec![1u8; 8]));
    assert!(n >= 1);

    let classifier = HttpClassifier::new();
    let mut all_headers: Vec<(&str, &str)> = OPENAI_TOK_EXHAUSTED.to_vec();
    all_headers.extend([
        ("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT"),
        ("retry-after-ms", "1500.5"),
        ("x-amz-retry-after", "5000"),
        ("x-ms-retry-after-ms", "5000"),
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("anthropic-ratelimit-tokens-limit", "40000"),
        ("anthropic-ratelimit-tokens-remaining", "0"),
        (
            "anthropic-ratelimit-tokens-reset",
            "2023-11-14T22:13:50+00:00",
        ),
        (
            "x-amzn-errortype",
            "ThrottlingException:http://internal.amazon.com/",
        ),
    ]);
    let ok = response(200, &all_headers);
    let throttled = response(429, &all_headers);
    let unavailable = response(503, &[("retry-after", "garbage")]);

    let (outcome, n) = support::allocations(|| classifier.classify(Ok(&ok)));
    assert_eq!((outcome, n), (Outcome::SUCCESS, 0));

    let (outcome, n) = support::allocations(|| classifier.classify_response(&throttled, now()));
    // The largest explicit delay (the HTTP-date, 120 s away); the resets are not read for it.
    assert_eq!(
        outcome,
        Outcome::throttled(Tokens).with_retry_after(secs(120))
    );
    assert_eq!(n, 0, "429 with every header");

    // Without the explicit delays, the resets are read as refill rates: still no allocation.
    let resets_only: Vec<(&str, &str)> = all_headers
        .iter()
        .copied()
        .filter(|(name, _)| !name.contains("retry-after"))
        .collect();
    let throttled = response(429, &resets_only);
    let (outcome, n) = support::allocations(|| classifier.classify_response(&throttled, now()));
    // OpenAI tokens: a tenth of 150000 refills in 36 s of the 6m0s; Anthropic tokens: a tenth
    // of 40000 in 3 s of the 30 s.
    assert_eq!(
        outcome,
        Outcome::throttled(Tokens).with_retry_after(secs(36))
    );
    assert_eq!(n, 0, "429 with resets only");

    let (limits, n) = support::allocations(|| rate_limits(throttled.headers(), now()));
    assert_eq!(n, 0, "rate_limits");
    assert_eq!(
        limits.tokens,
        Some(RateLimit {
            limit: Some(150_000),
            remaining: Some(0),
            reset: Some(secs(360)),
        })
    );

    let (outcome, n) = support::allocations(|| classifier.classify(Ok(&unavailable)));
    assert_eq!((outcome, n), (Outcome::new(Unavailable), 0));

    let (kind, n) = support::allocations(|| {
        aws::classify(
            "com.amazonaws.bedrock#ThrottlingException",
            Some(TOO_MANY_TOKENS),
        )
    });
    assert_eq!((kind, n), (Throttled(Tokens), 0));

    let error = wrapped(io::Error::from(io::ErrorKind::ConnectionReset));
    let (outcome, n) = support::allocations(|| classify_error(&error));
    assert_eq!((outcome, n), (Outcome::new(Transient), 0));
}

#[test]
fn the_crates_own_retry_errors_are_recognised() {
    use tower::ServiceExt;
    use tower_headroom::retry::RetryPolicy;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = |kind| {
            let policy = RetryPolicy::builder()
                .max_attempts(2)
                .no_budget()
                .seed(1)
                .build()
                .unwrap();
            tower::ServiceBuilder::new()
                .layer(tower_headroom::RetryLayer::new(
                    policy,
                    tower_headroom::HttpClassifier::new(),
                ))
                .service(tower::service_fn(move |_: http::Request<()>| async move {
                    Err::<http::Response<()>, _>(std::io::Error::from(kind))
                }))
        };
        let err = layer(std::io::ErrorKind::ConnectionReset)
            .oneshot(http::Request::new(()))
            .await
            .unwrap_err();
        assert_eq!(classify_error(&*err).kind, OutcomeKind::Transient);
        let err = layer(std::io::ErrorKind::PermissionDenied)
            .oneshot(http::Request::new(()))
            .await
            .unwrap_err();
        assert_eq!(classify_error(&*err), Outcome::FATAL);
    });
}

#[test]
fn layer_errors_classify_with_their_retry_hints() {
    use std::time::Duration;
    use tokio::time::Instant;
    use tower_headroom::admission::{Cost, Limit, Quota, RejectReason};
    use tower_headroom::breaker::CircuitOpen;
    use tower_headroom::fallback::{Exhaustion, NoTargetAvailable};
    use tower_headroom::observe::Labels;

    let open = CircuitOpen::new(Duration::from_secs(30), Labels::none());
    let o = classify_error(&open);
    assert_eq!(
        (o.kind, o.retry_after),
        (Unavailable, Some(Duration::from_secs(30)))
    );
    let none = NoTargetAvailable {
        retry_in: Some(Duration::from_secs(4)),
        cause: Exhaustion::BreakerOpen,
    };
    let o = classify_error(&none);
    assert_eq!(
        (o.kind, o.retry_after),
        (Unavailable, Some(Duration::from_secs(4)))
    );
    // No quota could admit in time: a throttle to wait out, not a sick backend.
    let no_quota = NoTargetAvailable {
        retry_in: Some(Duration::from_secs(4)),
        cause: Exhaustion::NoHeadroom,
    };
    let o = classify_error(&no_quota);
    assert_eq!(
        (o.kind, o.retry_after),
        (
            OutcomeKind::Throttled(ThrottleScope::Unknown),
            Some(Duration::from_secs(4))
        )
    );

    let limit = Limit::per_window(Duration::from_secs(60))
        .units(1_000)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let now = Instant::now();
    let too_large = quota
        .reserve(&"m", Cost::units(1_000_000), now)
        .unwrap_err();
    assert_eq!(too_large.reason, RejectReason::CostTooLarge);
    // Never sent: fatal, and a refusal of this client's own.
    assert_eq!(classify_error(&too_large), Outcome::FATAL.refused_locally());
    let _held = quota.reserve(&"m", Cost::units(1_000), now).unwrap();
    let ask = tower_headroom::admission::Ask::new(Cost::units(1_000)).deadline(
        tower_headroom::Deadline::from_now(now, Duration::from_secs(1)),
    );
    if let Err(rejected) = quota.reserve_ask(&"m", &ask, now) {
        let o = classify_error(&rejected);
        assert_eq!(o.kind, Throttled(ThrottleScope::Unknown));
        assert_eq!(o.retry_after, rejected.retry_in);
    } else {
        panic!("a full window with a 1 s deadline rejects");
    }
}
