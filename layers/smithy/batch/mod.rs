//! Batches that finish the job (feature `dynamodb`): [`BatchWriter`] takes any number of
//! write requests and [`BatchReader`] any number of keys, send them in DynamoDB's batches, and
//! resend what DynamoDB leaves unprocessed, with backoff, until everything is done or the
//! deadline has passed — then report, typed and with the items, what could not be done.
//!
//! DynamoDB answers a partly throttled `BatchWriteItem` with success and the items it did not
//! write in `UnprocessedItems` (a `BatchGetItem` with `UnprocessedKeys`); the SDK does not
//! resend them, and AWS asks every caller to: "If DynamoDB returns any unprocessed items, you
//! should retry the batch operation on those items. However, we strongly recommend that you
//! use an exponential backoff algorithm"
//! ([BatchWriteItem](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html),
//! [BatchGetItem](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html)).
//! A batch holds at most 25 put or delete requests, or 100 keys (same pages).
//!
//! The backoff is the DynamoDB profile's throttle schedule ([`Backoff`]'s
//! throttled schedule: 50 ms doubling to 5 s, full jitter), restarted after a round in which
//! everything went through; the deadline is the DynamoDB profile's batch deadline
//! ([`Profile::deadline`](crate::Profile::deadline), five minutes) unless set. Give the
//! helpers a client configured by
//! [`SdkHeadroom::configure_dynamodb`](super::SdkHeadroom::configure_dynamodb) and each batch
//! is also admitted against its table's capacity before it is sent, so resent items wait for
//! room instead of being throttled again.
//!
//! ```no_run
//! use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
//! use tower_headroom::smithy::batch::BatchWriter;
//!
//! # async fn run(client: aws_sdk_dynamodb::Client) -> Result<(), tower_headroom::smithy::batch::BatchWriteError> {
//! let requests = (0..1_000).map(|i| {
//!     let put = PutRequest::builder()
//!         .item("pk", AttributeValue::S(format!("order#{i}")))
//!         .build()
//!         .expect("an item is set");
//!     ("orders".to_owned(), WriteRequest::builder().put_request(put).build())
//! });
//! let written = BatchWriter::new(client).write(requests).await?;
//! assert_eq!(written.items, 1_000);
//! # Ok(()) }
//! ```
//!
//! Errors show counts and reasons, never an item or a key value (`Debug` included); the items
//! are in the error for the caller to keep. A batch DynamoDB refused for good (a validation
//! error, a missing table) names the AWS error code (`error_code`, also in the message) and
//! keeps the SDK's error as `source()`; one such batch stops the whole job.

mod read;
mod write;

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::OutcomeKind;
use crate::retry::{Backoff, Schedule, ScheduleClass};

pub use self::read::{BatchGetError, BatchRead, BatchReader};
pub use self::write::{BatchWriteError, BatchWriter, BatchWritten};

/// The most put or delete requests one `BatchWriteItem` may carry.
pub const MAX_WRITE_BATCH: usize = 25;
/// The most keys one `BatchGetItem` may carry.
pub const MAX_GET_BATCH: usize = 100;

/// Why a batch helper stopped before everything was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchStop {
    /// The deadline passed (or the next backoff would end after it) with work left.
    Deadline,
    /// DynamoDB refused a batch for a reason resending cannot cure (validation, access,
    /// a missing table), with the outcome class it was given.
    Fatal(OutcomeKind),
}

impl std::fmt::Display for BatchStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchStop::Deadline => f.write_str("the deadline passed"),
            BatchStop::Fatal(kind) => write!(f, "a batch failed with a {} error", kind.as_str()),
        }
    }
}

/// The pacing setters both helpers have, on a `pacing: Pacing` field; `$run` names the
/// method the deadline bounds, for its docs.
macro_rules! pacing_setters {
    ($run:literal) => {
        #[doc = concat!("How long a [`", $run, "`](Self::", $run, ") may resend before it gives up")]
        /// (default: the DynamoDB profile's batch deadline, five minutes).
        pub fn deadline(mut self, deadline: std::time::Duration) -> Self {
            self.pacing.deadline = deadline;
            self
        }

        /// Seeds the backoff's jitter, for runs that repeat exactly.
        pub fn seed(mut self, seed: u64) -> Self {
            self.pacing.seed = Some(seed);
            self
        }
    };
}
use pacing_setters;

/// A helper's error in words: `left` items not done (`what`), `done` done in `batches`
/// batches, and why it stopped. Counts only, never an item.
fn describe_stop(
    f: &mut std::fmt::Formatter<'_>,
    left: usize,
    what: (&str, &str),
    done: usize,
    batches: usize,
    stop: &BatchStop,
    refusal: &Refusal,
) -> std::fmt::Result {
    let (left_words, done_word) = what;
    write!(
        f,
        "{left} {left_words} ({done} {done_word} in {batches} batches): {stop}"
    )?;
    match refusal.error_code() {
        Some(code) => write!(f, " ({code})"),
        None => Ok(()),
    }
}

/// Why a helper stopped, and what it was refused with.
struct Stopped {
    stop: BatchStop,
    refusal: Refusal,
}

impl Stopped {
    fn new(stop: BatchStop) -> Self {
        Stopped {
            stop,
            refusal: Refusal::default(),
        }
    }
}

/// What DynamoDB or the SDK answered when a batch was refused for good: its error code (an
/// AWS error name such as `ValidationException`, never an item) and the error itself, the
/// helper error's `source()`. Empty when the helper stopped for its deadline.
#[derive(Default)]
struct Refusal {
    code: Option<String>,
    source: Option<crate::BoxError>,
}

impl Refusal {
    fn error_code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The schedule and the deadline both helpers resend by.
#[derive(Clone, Debug)]
struct Pacing {
    schedule: Schedule,
    deadline: Duration,
    seed: Option<u64>,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            schedule: *Backoff::default().schedule(ScheduleClass::Throttled),
            deadline: crate::Profile::DynamoDb.deadline(crate::admission::Priority::Batch),
            seed: None,
        }
    }
}

/// A request item with the table it goes to.
type Tabled<T> = (String, T);

/// How far a helper got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    /// Items done (written, or keys read).
    done: usize,
    /// Batch calls sent.
    batches: usize,
    /// Items sent again after DynamoDB left them unprocessed or a batch call failed.
    resent: usize,
}

/// One kind of batch call: sends a batch, answers the items it left undone.
trait BatchCall {
    type Item: Clone + Send;
    /// The most items one call carries.
    const MAX: usize;
    /// Sends `batch`; `Ok` with the items DynamoDB left unprocessed, `Err(None)` when the
    /// call failed in a way resending cures, `Err(Some(stopped))` when it cannot.
    fn send(
        &mut self,
        batch: &[Tabled<Self::Item>],
    ) -> impl Future<Output = Result<Vec<Tabled<Self::Item>>, Option<Stopped>>> + Send;
}

/// Sends `pending` in batches of at most `C::MAX`, resending what is left undone after a
/// backoff, until nothing is pending or the deadline (or a fatal failure) stops it; on a
/// stop, answers every item not done.
async fn drive<C: BatchCall>(
    call: &mut C,
    pending: impl IntoIterator<Item = Tabled<C::Item>>,
    pacing: &Pacing,
) -> Result<Progress, (Stopped, Vec<Tabled<C::Item>>, Progress)> {
    let mut pending: VecDeque<Tabled<C::Item>> = pending.into_iter().collect();
    let deadline = tokio::time::Instant::now() + pacing.deadline;
    let mut rng = pacing
        .seed
        .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    let mut progress = Progress::default();
    let (mut round, mut previous) = (0u32, Duration::ZERO);
    while !pending.is_empty() {
        let batch: Vec<Tabled<C::Item>> = pending.drain(..pending.len().min(C::MAX)).collect();
        progress.batches += 1;
        let sent = batch.len();
        let left = match call.send(&batch).await {
            Ok(left) => left,
            Err(None) => batch,
            Err(Some(stop)) => {
                let mut undone = batch;
                undone.extend(pending);
                return Err((stop, undone, progress));
            }
        };
        progress.done += sent.saturating_sub(left.len());
        if left.is_empty() {
            (round, previous) = (0, Duration::ZERO);
            continue;
        }
        progress.resent += left.len();
        for item in left.into_iter().rev() {
            pending.push_front(item);
        }
        let delay = pacing.schedule.delay(round, previous, &mut rng);
        if tokio::time::Instant::now() + delay >= deadline {
            return Err((Stopped::new(BatchStop::Deadline), pending.into(), progress));
        }
        tokio::time::sleep(delay).await;
        (round, previous) = (round + 1, delay);
    }
    Ok(progress)
}

/// What a failed batch call means for its items: resend them (a throttle, a timeout, a
/// transient failure the SDK's own retries did not cure), or stop, keeping the error.
fn failed_batch<E>(error: SdkError<E, HttpResponse>) -> Option<Stopped>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = match &error {
        SdkError::ConstructionFailure(_) => OutcomeKind::Fatal,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => OutcomeKind::Transient,
        _ => error
            .raw_response()
            .map_or(OutcomeKind::Transient, |response| {
                super::classify_response(response, SystemTime::now()).kind
            }),
    };
    (!kind.is_retryable()).then(|| Stopped {
        stop: BatchStop::Fatal(kind),
        refusal: Refusal {
            code: error.code().map(str::to_owned),
            source: Some(Box::new(error)),
        },
    })
}
