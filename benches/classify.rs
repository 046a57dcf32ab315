//! Cost of classifying a response, against a baseline that only reads the status code
//! (measured side by side in the same run; report the ratios).

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use http::Response;
use tower_headroom::classify::aws;
use tower_headroom::{Classify, HttpClassifier, OutcomeKind};

fn response(status: u16, headers: &[(&str, &str)]) -> Response<()> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

fn bench(c: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let headers = [
        ("content-type", "application/json"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "6m0s"),
        ("retry-after", "12"),
        ("retry-after-ms", "11500"),
    ];
    let ok = response(200, &headers);
    let throttled = response(429, &headers);
    let classifier = HttpClassifier::new();

    let mut group = c.benchmark_group("classify");
    group.bench_function("baseline_status_only_200", |b| {
        b.iter(|| black_box(black_box(&ok).status().is_success()))
    });
    group.bench_function("http_200", |b| {
        b.iter(|| black_box(classifier.classify(Ok(black_box(&ok)))))
    });
    group.bench_function("http_429_all_headers", |b| {
        b.iter(|| black_box(classifier.classify_response(black_box(&throttled), now)))
    });
    group.bench_function("aws_throttling_with_message", |b| {
        b.iter(|| {
            let kind = aws::classify(
                black_box("com.amazonaws.bedrock#ThrottlingException"),
                black_box(Some("Too many tokens, please wait before trying again.")),
            );
            black_box(kind == OutcomeKind::Fatal)
        })
    });
    group.bench_function("system_time_now", |b| {
        b.iter(|| black_box(SystemTime::now()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
