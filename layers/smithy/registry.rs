//! The calls in flight of an [`SdkHeadroom`], found by the classifier through their
//! operation's `InterceptorContext` and by the HTTP client through their number: registered by
//! the interceptor, removed when the operation ends or is dropped. Why the context's address
//! identifies the operation: [the module docs](super#how-the-classifier-finds-its-call).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;

use super::{SdkHeadroom, Shared, call};
use crate::admission::QuotaStore;

/// Weak handles to the calls in flight, each removed when its operation ends
/// ([`Shared::unregister`]) or when its [`Registered`] guard drops.
pub(crate) struct Registry<S: crate::admission::StoreSlot> {
    pub(super) by_context: HashMap<usize, Weak<Mutex<call::Call<S>>>>,
    pub(super) by_id: HashMap<u64, Weak<Mutex<call::Call<S>>>>,
}

impl<S: crate::admission::StoreSlot> Registry<S> {
    /// Removes `call`'s entries under `key` and `id`, and only its own: an entry that is
    /// another call's is left alone.
    fn remove(&mut self, key: usize, id: u64, call: &Weak<Mutex<call::Call<S>>>) {
        if self.by_context.get(&key).is_some_and(|c| c.ptr_eq(call)) {
            self.by_context.remove(&key);
        }
        if self.by_id.get(&id).is_some_and(|c| c.ptr_eq(call)) {
            self.by_id.remove(&id);
        }
    }
}

/// A call's place in the registry, kept in the operation's config bag next to its
/// [`CallHandle`](call::CallHandle): when the operation ends or its future is dropped
/// mid-flight (cancelled by the caller, or cut by aws-smithy-runtime 1.9's operation timeout,
/// which skips `read_after_execution`), the bag drops and this removes the call's entries.
#[must_use = "the call stays registered only while its guard lives"]
pub(crate) struct Registered<S: crate::admission::StoreSlot> {
    shared: Weak<Shared<S>>,
    key: usize,
    id: u64,
    call: Weak<Mutex<call::Call<S>>>,
}

impl<S: crate::admission::StoreSlot> Drop for Registered<S> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.registry().remove(self.key, self.id, &self.call);
        }
    }
}

impl<S: crate::admission::StoreSlot> fmt::Debug for Registered<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered").field("id", &self.id).finish()
    }
}

impl<S: crate::admission::StoreSlot + Send + Sync + 'static> aws_smithy_types::config_bag::Storable
    for Registered<S>
{
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl<S: crate::admission::StoreSlot> Shared<S> {
    /// The key of an orchestrator context: its address, which is the operation's for the
    /// operation's whole life (see [the module docs](super#how-the-classifier-finds-its-call)).
    pub(crate) fn context_key(ctx: &InterceptorContext) -> usize {
        ctx as *const InterceptorContext as usize
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry<S>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `call` under its operation's context and under `id`; the entries live until
    /// [`unregister`](Self::unregister) or until the returned guard drops, whichever is first.
    /// Keep the guard in the operation's config bag.
    pub(crate) fn register(
        self: &Arc<Self>,
        ctx: &InterceptorContext,
        id: u64,
        call: &call::CallHandle<S>,
    ) -> Registered<S> {
        let key = Self::context_key(ctx);
        let weak = Arc::downgrade(&call.0);
        let mut registry = self.registry();
        registry.by_context.insert(key, weak.clone());
        registry.by_id.insert(id, weak.clone());
        Registered {
            shared: Arc::downgrade(self),
            key,
            id,
            call: weak,
        }
    }

    /// Removes the call registered under `ctx` and `id` (the operation has ended).
    pub(crate) fn unregister(&self, ctx: &InterceptorContext, id: u64) {
        let mut registry = self.registry();
        registry.by_context.remove(&Self::context_key(ctx));
        registry.by_id.remove(&id);
    }

    pub(crate) fn by_context(&self, ctx: &InterceptorContext) -> Option<call::CallHandle<S>> {
        let registry = self.registry();
        let weak = registry.by_context.get(&Self::context_key(ctx))?;
        weak.upgrade().map(call::CallHandle)
    }

    pub(crate) fn by_id(&self, id: u64) -> Option<call::CallHandle<S>> {
        self.registry()
            .by_id
            .get(&id)?
            .upgrade()
            .map(call::CallHandle)
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> SdkHeadroom<S> {
    /// The registry's entries (by context and by call number) of the calls in flight: two per
    /// call, zero once every call has ended or been dropped. For tests.
    #[doc(hidden)]
    pub fn registered_calls(&self) -> usize {
        let registry = self.shared.registry();
        registry.by_context.len() + registry.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::MemoryStore;
    use crate::stack::Profile;
    use aws_smithy_runtime_api::client::interceptors::context::Input;
    use tokio::time::Instant;

    fn start(headroom: &SdkHeadroom, key: &str) -> call::CallHandle<MemoryStore<Arc<str>>> {
        let prepared = call::Prepared {
            key: Arc::from(key),
            cost: crate::admission::Cost::ONE_REQUEST,
            tokens: None,
            stream: false,
            asked_usage: false,
            routable: false,
            keys_are_models: false,
            also: Vec::new(),
        };
        headroom
            .shared
            .start(0, prepared, (None, false), (None, None), Instant::now())
    }

    #[test]
    fn a_registration_guard_removes_its_own_entries_and_no_other_calls() {
        let headroom = SdkHeadroom::builder(Profile::Http).build().unwrap();
        let ctx = InterceptorContext::new(Input::erase(()));
        let first = start(&headroom, "a");
        let first_guard = headroom.shared.register(&ctx, 1, &first);
        assert_eq!(headroom.registered_calls(), 2);
        // Another call under the same context key takes it over; the first guard then
        // removes only what is still the first call's.
        let second = start(&headroom, "b");
        let second_guard = headroom.shared.register(&ctx, 2, &second);
        drop(first_guard);
        let found = headroom.shared.by_context(&ctx).expect("the second call");
        assert!(Arc::ptr_eq(&found.0, &second.0));
        assert!(headroom.shared.by_id(1).is_none() && headroom.shared.by_id(2).is_some());
        assert_eq!(headroom.registered_calls(), 2);
        drop(found);
        drop(second_guard);
        assert_eq!(headroom.registered_calls(), 0);
        // The guard removes the entries even while the call itself is still alive elsewhere.
        assert!(headroom.shared.by_context(&ctx).is_none());
        drop(second);
    }
}
