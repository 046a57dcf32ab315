//! [`HeadroomHttpClient`]: the asynchronous half of the SDK adapter, once per attempt.

use std::fmt;
use std::sync::Arc;

use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::retry::ErrorKind;

use super::call::Blocked;
use super::interceptor::CALL_HEADER;
use super::{SdkHeadroom, Shared};
use crate::admission::{MemoryStore, QuotaStore};
use crate::fallback::Exhaustion;
use crate::timeout::AttemptTimedOut;

/// The HTTP client of an [`SdkHeadroom`], around your own (or the SDK's default) client.
///
/// Per attempt, before the request goes out: fails at once — no network call — when the
/// interceptor found no target that can serve or the target's breaker is open, and otherwise
/// waits for the target's quota to admit the call (at most
/// the call's deadline, and at most [`MAX_ADMISSION_WAIT`](super::MAX_ADMISSION_WAIT)). The signed request is passed on
/// as it was signed (the interceptor's unsigned call-number header is removed first). A request
/// that did not come through the [`HeadroomInterceptor`](super::HeadroomInterceptor) is passed
/// straight through.
///
/// Fast failures are `ConnectorError`s (the SDK reports them as `DispatchFailure`) marked as
/// never connected, whose source is this crate's error: [`NoTargetAvailable`](crate::fallback::NoTargetAvailable),
/// [`CircuitOpen`](crate::CircuitOpen) or [`Rejected`](crate::Rejected), each saying when to
/// try again.
pub struct HeadroomHttpClient<S: crate::admission::StoreSlot = MemoryStore<Arc<str>>> {
    inner: SharedHttpClient,
    shared: Arc<Shared<S>>,
}

impl<S: crate::admission::StoreSlot> Clone for HeadroomHttpClient<S> {
    fn clone(&self) -> Self {
        HeadroomHttpClient {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: crate::admission::StoreSlot> fmt::Debug for HeadroomHttpClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadroomHttpClient")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> SdkHeadroom<S> {
    /// Wraps `inner`, the client that sends the requests.
    pub fn http_client(&self, inner: impl HttpClient + 'static) -> HeadroomHttpClient<S> {
        HeadroomHttpClient {
            inner: SharedHttpClient::new(inner),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> HttpClient for HeadroomHttpClient<S> {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(HeadroomConnector {
            inner: self.inner.http_connector(settings, components),
            shared: Arc::clone(&self.shared),
        })
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

struct HeadroomConnector<S: crate::admission::StoreSlot> {
    inner: SharedHttpConnector,
    shared: Arc<Shared<S>>,
}

impl<S: crate::admission::StoreSlot> fmt::Debug for HeadroomConnector<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadroomConnector")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> HttpConnector for HeadroomConnector<S> {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = request;
        let handle = request
            .headers_mut()
            .remove(CALL_HEADER)
            .and_then(|id| id.parse().ok())
            .and_then(|id| self.shared.by_id(id));
        let Some(handle) = handle else {
            return self.inner.call(request);
        };
        let (shared, inner) = (Arc::clone(&self.shared), self.inner.clone());
        HttpConnectorFuture::new(async move {
            let (admission, events, stream, cost, also, keys) = {
                let call = handle.lock();
                let keys = shared
                    .key_ask(&call)
                    .and_then(|ask| Some((call.keys.clone()?, ask)));
                (
                    shared.admission(&call),
                    shared.attempt_events(&call),
                    call.prepared.stream,
                    shared.attempt_cost(&call),
                    call.prepared.also.clone(),
                    keys,
                )
            };
            let throttled = |rejected| {
                ConnectorError::other(Box::new(rejected), Some(ErrorKind::ThrottlingError))
                    .never_connected()
            };
            // Hot partition keys wait for their own budgets first, holding nothing of the
            // quota; the tickets are dropped (units given back) if the attempt is not sent.
            let tickets = match (&admission, keys) {
                (Ok(_), Some((keys, ask))) => match keys.wait(ask).await {
                    Ok(tickets) => tickets,
                    Err(rejected) => {
                        events.admission.rejected(&events.labels, &rejected);
                        return Err(throttled(rejected));
                    }
                },
                _ => Vec::new(),
            };
            match admission {
                Err(blocked) => return Err(fail_fast(blocked)),
                Ok(None) => {}
                Ok(Some((key, ask))) => match shared.admit(&key, ask, &events).await {
                    Ok(reservation) => {
                        Shared::admitted(&mut handle.lock(), reservation);
                        // The call's other keys (one per table of a batch), all or nothing.
                        let mut held = Vec::with_capacity(also.len());
                        for (key, cost) in also {
                            let ask = crate::admission::Ask { cost, ..ask };
                            match shared.admit(&key, ask, &events).await {
                                Ok(reservation) => held.push((key, reservation)),
                                Err(rejected) => {
                                    let now = tokio::time::Instant::now();
                                    for (_, reservation) in held {
                                        reservation.release_unsent(now);
                                    }
                                    Shared::release_unsent(&mut handle.lock(), now);
                                    return Err(throttled(rejected));
                                }
                            }
                        }
                        if !held.is_empty() {
                            Shared::admitted_also(&mut handle.lock(), held);
                        }
                    }
                    Err(rejected) => return Err(throttled(rejected)),
                },
            }
            if let Err(limited) = Shared::take_slot(&mut handle.lock(), tokio::time::Instant::now())
            {
                return Err(
                    ConnectorError::other(Box::new(limited), Some(ErrorKind::ServerError))
                        .never_connected(),
                );
            }
            {
                let mut call = handle.lock();
                Shared::admitted_keys(&mut call, tickets);
                Shared::sent(&mut call);
            }
            let response = match shared.attempt_timeout {
                Some(timeout) => {
                    let after = timeout.for_cost(Some(cost));
                    match tokio::time::timeout(after, inner.call(request)).await {
                        Ok(response) => response?,
                        Err(_) => {
                            let timed_out = Box::new(AttemptTimedOut { after });
                            return Err(ConnectorError::timeout(timed_out));
                        }
                    }
                }
                None => inner.call(request).await?,
            };
            if stream && response.status().is_success() {
                let (reservation, key, breaker) = {
                    let mut call = handle.lock();
                    (
                        Shared::take_reservation(&mut call),
                        call.attempt_model(),
                        call.attempt_breaker(),
                    )
                };
                // A stream's attempt always has its model id; without one, the
                // table's cautious numbers, with no warning about an empty id.
                let models = &shared.estimation.models;
                let spec = match key.as_deref() {
                    Some(model) => models.spec(model),
                    None => models.unknown(),
                };
                let end = super::stream::StreamEnd {
                    reservation,
                    spec,
                    breaker,
                    events,
                };
                return Ok(super::settle_stream(response, end));
            }
            Ok(response)
        })
    }
}

fn fail_fast(blocked: Blocked) -> ConnectorError {
    let kind = match &blocked {
        Blocked::NoTarget(e) if e.cause == Exhaustion::NoHeadroom => ErrorKind::ThrottlingError,
        _ => ErrorKind::ServerError,
    };
    ConnectorError::other(blocked.into_error(), Some(kind)).never_connected()
}
