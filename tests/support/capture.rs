//! Test support: everything `tracing` logs while a future runs, as text.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Runs `f` under a subscriber that records every event of `targets` (and their modules) at
/// every level, and returns what was logged. On a current-thread runtime the tasks `f` spawns
/// run on this thread, under this subscriber.
pub async fn captured<F: std::future::Future<Output = ()>>(targets: &[&str], f: F) -> String {
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
    use tracing_subscriber::layer::SubscriberExt;
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
    // tracing-core caches each callsite's interest for all threads. While exactly one scoped
    // dispatcher is registered it computes that interest from the *calling thread's* default
    // only, so a test on another thread (no subscriber) reaching a callsite first caches
    // "never" and this capture misses the event (seen on CI). A second registered dispatcher,
    // kept alive for the whole test binary, makes it ask every registered dispatcher.
    static SECOND_DISPATCHER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND_DISPATCHER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let _guard = tracing::subscriber::set_default(subscriber);
    f.await;
    String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
}
