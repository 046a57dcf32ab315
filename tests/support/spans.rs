//! Test support: every span a closure or future opens, with all its fields (those given at
//! creation and those recorded later) and its parent's name. Each test binary uses part of it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span: its name, its parent's name, its fields as text.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub name: String,
    pub parent: Option<String>,
    pub fields: BTreeMap<String, String>,
}

impl Recorded {
    /// The field `name`, as text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(Id, Recorded)>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut recorded = Recorded {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|span| span.parent().map(|p| p.name().to_owned())),
            ..Recorded::default()
        };
        attrs.record(&mut Fields(&mut recorded.fields));
        self.0.lock().unwrap().push((id.clone(), recorded));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        // Ids are reused once a span closes: the latest span with this id.
        if let Some((_, recorded)) = spans.iter_mut().rev().find(|(i, _)| i == id) {
            values.record(&mut Fields(&mut recorded.fields));
        }
    }
}

/// Runs `f` under a subscriber that records every span of `tower_headroom` and of the AWS
/// SDK's orchestrator (`aws_smithy_runtime`), and returns them in the order they opened.
#[allow(dead_code)]
pub async fn recorded<F: std::future::Future<Output = ()>>(f: F) -> Vec<Recorded> {
    // As in `capture`: a second registered dispatcher, so that a callsite's cached interest
    // asks every dispatcher, not only the first thread's.
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone()).with(
        tracing_subscriber::filter::Targets::new()
            .with_target("tower_headroom", tracing::Level::TRACE)
            .with_target("aws_smithy_runtime", tracing::Level::TRACE),
    );
    let guard = tracing::subscriber::set_default(subscriber);
    f.await;
    drop(guard);
    let spans = spans.0.lock().unwrap();
    spans.iter().map(|(_, r)| r.clone()).collect()
}
