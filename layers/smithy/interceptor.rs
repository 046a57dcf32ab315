//! [`HeadroomInterceptor`]: the synchronous half of the SDK adapter, run by the orchestrator
//! once per operation and once per attempt.

use std::fmt;
use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut,
    FinalizerInterceptorContextRef, Input, Output,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tokio::time::Instant;

use super::call::{CallHandle, Prepared};
use super::{Estimation, SdkHeadroom, Shared, classify_context};
use crate::admission::{Cost, MemoryStore, QuotaStore};

/// What the adapter knows about one service's operations: how to read a call's key and cost
/// from its typed input, how to point a request at another target, and how to read what a call
/// spent from its typed output.
pub(crate) trait Shape: Send + Sync + fmt::Debug + 'static {
    /// Reads the call from its typed input; may edit the input (to ask for usage). `None`: an
    /// operation the adapter leaves alone.
    fn prepare(&self, input: &mut Input, estimation: &Estimation) -> Option<Prepared>;

    /// The call's `gen_ai.provider.name` and `gen_ai.operation.name`, for its span (see
    /// `observe::span`); default: none.
    fn gen_ai(&self, input: &Input) -> (Option<&'static str>, Option<&'static str>) {
        let _ = input;
        (None, None)
    }

    /// The region the client signs for, as a label.
    fn region(&self, cfg: &ConfigBag) -> Option<Arc<str>> {
        let _ = cfg;
        None
    }

    /// Points the signed-to-be request at `model` (another model id, say).
    fn retarget(&self, request: &mut HttpRequest, model: &str) -> Result<(), BoxError> {
        let _ = (request, model);
        Err("this service's requests cannot be moved to another target".into())
    }

    /// Whether [`reregion`](Shape::reregion) can move this service's requests to another
    /// region.
    fn regional(&self) -> bool {
        false
    }

    /// Makes the operation's next endpoint resolution and signature use `region`; runs before
    /// each attempt resolves its endpoint.
    fn reregion(&self, cfg: &mut ConfigBag, region: &str) -> Result<(), BoxError> {
        let _ = (cfg, region);
        Err("this service's requests cannot be moved to another region".into())
    }

    /// The units a successful call spent, from its typed output (or the response's headers),
    /// on `key`, the target the attempt went to (a Bedrock model, whose burndown counts).
    fn usage(
        &self,
        output: &Output,
        response: Option<&HttpResponse>,
        estimation: &Estimation,
        key: &str,
    ) -> Option<u64> {
        let _ = (output, response, estimation, key);
        None
    }

    /// The token counts a successful LLM call reported, from its typed output (or the
    /// response's headers); the units it spent are then these counts charged on the
    /// attempt's model, and [`usage`](Shape::usage) is not asked. Default: none.
    fn tokens(
        &self,
        output: &Output,
        response: Option<&HttpResponse>,
    ) -> Option<crate::bedrock::TokenCounts> {
        let _ = (output, response);
        None
    }

    /// The call's partition keys under the per-key ceiling, from its typed input (hashed at
    /// once); default: none.
    fn keys(&self, input: &Input) -> Option<super::keys::Keys> {
        let _ = input;
        None
    }

    /// Removes from the output what the adapter asked for and the caller did not.
    fn restore(&self, output: &mut Output) {
        let _ = output;
    }
}

/// Any Smithy client's operations: one request each, under one key.
#[derive(Debug)]
pub(crate) struct Generic {
    pub(crate) key: Arc<str>,
}

impl Shape for Generic {
    fn prepare(&self, _input: &mut Input, _estimation: &Estimation) -> Option<Prepared> {
        Some(Prepared {
            key: Arc::clone(&self.key),
            cost: Cost::ONE_REQUEST,
            tokens: None,
            stream: false,
            asked_usage: false,
            routable: false,
            keys_are_models: false,
            also: Vec::new(),
        })
    }
}

/// The interceptor of an [`SdkHeadroom`]; see the [module docs](super).
///
/// Per operation it reads the call's key and cost from the typed input; per attempt it chooses
/// the target (rewriting the request before it is signed) and, once the SDK has the attempt's
/// result, settles the quota with the real usage, records the breaker outcome, and decides
/// between a fallback move, a retry after a delay, and giving up — the decision the
/// [`HeadroomClassifier`](super::HeadroomClassifier) hands to the SDK.
pub struct HeadroomInterceptor<S: crate::admission::StoreSlot = MemoryStore<Arc<str>>> {
    shared: Arc<Shared<S>>,
    shape: Arc<dyn Shape>,
    /// Tells this interceptor's calls from another's on a client configured twice.
    id: u64,
}

/// The header that carries a call's number from the interceptor to the HTTP client: added after
/// signing (so unsigned) and removed by the client before the request goes out.
pub(crate) const CALL_HEADER: &str = "x-tower-headroom-call";

impl<S: crate::admission::StoreSlot> Clone for HeadroomInterceptor<S> {
    fn clone(&self) -> Self {
        HeadroomInterceptor {
            shared: Arc::clone(&self.shared),
            shape: Arc::clone(&self.shape),
            id: self.id,
        }
    }
}

impl<S: crate::admission::StoreSlot> fmt::Debug for HeadroomInterceptor<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadroomInterceptor")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> SdkHeadroom<S> {
    /// An interceptor for any Smithy client: every operation is one request under `key`
    /// (its quota key and breaker), with no fallback. The `bedrock` and `dynamodb` features
    /// add interceptors that read costs and usage from those services' typed inputs and outputs.
    pub fn interceptor(&self, key: impl Into<Arc<str>>) -> HeadroomInterceptor<S> {
        self.interceptor_with(Arc::new(Generic { key: key.into() }))
    }

    pub(crate) fn interceptor_with(&self, shape: Arc<dyn Shape>) -> HeadroomInterceptor<S> {
        HeadroomInterceptor {
            shared: Arc::clone(&self.shared),
            shape,
            id: self
                .shared
                .ids
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> HeadroomInterceptor<S> {
    /// The operation's call, if this interceptor runs it.
    fn call(&self, cfg: &ConfigBag) -> Option<CallHandle<S>> {
        let handle = cfg.load::<CallHandle<S>>()?;
        (handle.lock().owner == self.id).then(|| handle.clone())
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> Intercept for HeadroomInterceptor<S> {
    fn name(&self) -> &'static str {
        "tower-headroom"
    }

    fn modify_before_serialization(
        &self,
        ctx: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<CallHandle<S>>().is_some() {
            // Another headroom interceptor on this client runs the call.
            return Ok(());
        }
        let gen_ai = self.shape.gen_ai(ctx.input());
        let keys = self.shape.keys(ctx.input());
        let Some(prepared) = self.shape.prepare(ctx.input_mut(), &self.shared.estimation) else {
            return Ok(());
        };
        let region = (self.shape.region(cfg), self.shape.regional());
        let handle = self
            .shared
            .start(self.id, prepared, region, gen_ai, Instant::now());
        let id = {
            let mut call = handle.lock();
            call.keys = keys;
            call.id
        };
        let registered = self.shared.register(ctx.inner(), id, &handle);
        cfg.interceptor_state().store_put(handle);
        cfg.interceptor_state().store_put(registered);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The target is chosen here, before the orchestrator resolves the attempt's endpoint
        // and signing region from the config bag, so an attempt can go to another region.
        let Some(handle) = self.call(cfg) else {
            return Ok(());
        };
        let region = self
            .shared
            .begin_attempt(&mut handle.lock(), Instant::now());
        if let Some(region) = region {
            self.shape.reregion(cfg, &region)?;
        }
        Ok(())
    }

    fn modify_before_signing(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(handle) = self.call(cfg) else {
            return Ok(());
        };
        let model = handle.lock().take_pending_model();
        if let Some(model) = model {
            self.shape.retarget(ctx.request_mut(), &model)?;
        }
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(handle) = self.call(cfg) {
            let id = handle.lock().id;
            ctx.request_mut()
                .headers_mut()
                .insert(CALL_HEADER, id.to_string());
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(handle) = self.call(cfg) else {
            return Ok(());
        };
        let Some(outcome) = classify_context(ctx.inner()) else {
            return Ok(());
        };
        let mut tokens = None;
        let units = match ctx.output_or_error() {
            Some(Ok(output)) => {
                let model = handle.lock().attempt_model();
                let model = model.as_deref().unwrap_or_default();
                let est = &self.shared.estimation;
                // The call's other keys (a batch over several tables) settle from the same
                // output, each with its own part.
                Shared::also_usage(&mut handle.lock(), |key| {
                    self.shape.usage(output, ctx.response(), est, key)
                });
                tokens = self.shape.tokens(output, ctx.response());
                match tokens {
                    Some(counts) => Some(counts.charged(est.models.spec(model))),
                    None => self.shape.usage(output, ctx.response(), est, model),
                }
            }
            _ => None,
        };
        let mut call = handle.lock();
        // The ceiling learns from each sent attempt: its keys' budgets and report.
        Shared::record_keys(&mut call, &outcome, Instant::now());
        if let Some(counts) = &tokens {
            self.shared.attempt_events(&call).tokens.add(counts);
        }
        let decision = self.shared.end_attempt(
            &mut call,
            &outcome,
            (units, tokens.as_ref()),
            Instant::now(),
        );
        call.decision = Some(decision);
        Ok(())
    }

    fn modify_before_completion(
        &self,
        ctx: &mut FinalizerInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let asked = self
            .call(cfg)
            .is_some_and(|handle| handle.lock().prepared.asked_usage);
        if asked {
            if let Some(Ok(output)) = ctx.output_or_error_mut() {
                self.shape.restore(output);
            }
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(handle) = self.call(cfg) {
            let mut call = handle.lock();
            self.shared.end_call(&mut call, Instant::now());
            self.shared.unregister(ctx.inner(), call.id);
        }
        Ok(())
    }
}
