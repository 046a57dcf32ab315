//! Test support: everything `tracing` logs while a closure or a future runs, as text.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Makes this thread's default subscriber one that records every event of `targets` (and
/// their modules) at every level into the returned buffer, until the guard drops.
fn record(targets: &[&str]) -> (tracing::subscriber::DefaultGuard, Buffer) {
    use tracing_subscriber::layer::SubscriberExt;
    // tracing-core caches each callsite's interest for all threads. While exactly one scoped
    // dispatcher is registered it computes that interest from the *calling thread's* default
    // only, so a test on another thread (no subscriber) reaching a callsite first caches
    // "never" and this capture misses the event (seen on CI). A second registered dispatcher,
    // kept alive for the whole test binary, makes it ask every registered dispatcher.
    static SECOND_DISPATCHER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND_DISPATCHER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let filter = targets
        .iter()
        .fold(tracing_subscriber::filter::Targets::new(), |f, target| {
            f.with_target(*target, tracing::Level::TRACE)
        });
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false),
        )
        .with(filter);
    (tracing::subscriber::set_default(subscriber), buffer)
}

/// Runs `f` under a subscriber that records every event of `targets` (and their modules) at
/// every level, and returns what was logged. On a current-thread runtime the tasks `f` spawns
/// run on this thread, under this subscriber.
#[allow(dead_code)] // each test binary compiles this module and uses one of the two
pub async fn captured<F: std::future::Future<Output = ()>>(targets: &[&str], f: F) -> String {
    let (_guard, buffer) = record(targets);
    f.await;
    buffer.text()
}

/// [`captured`] for synchronous code: runs `f` and returns what it returned and what was
/// logged.
#[allow(dead_code)] // each test binary compiles this module and uses one of the two
pub fn logged<R>(targets: &[&str], f: impl FnOnce() -> R) -> (R, String) {
    let (guard, buffer) = record(targets);
    let result = f();
    drop(guard);
    (result, buffer.text())
}
