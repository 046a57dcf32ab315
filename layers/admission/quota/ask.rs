//! What a call asks for ([`Ask`]) and when it may start ([`Grant`]), and the longest wait
//! any call is told ([`MAX_WAIT`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::admission::cost::Cost;
use crate::admission::limit::{Priority, Tenant};
use crate::deadline::Deadline;

/// The longest any call may be told to wait; longer waits are rejected.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// One call's request for quota: its cost, priority, tenant and deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// What the call will spend.
    pub cost: Cost,
    /// Interactive or batch.
    pub priority: Priority,
    /// The application the call is for, when the key's limit has [shares].
    ///
    /// [shares]: crate::admission::LimitBuilder::shares
    pub tenant: Option<Tenant>,
    /// The latest the call may be admitted: the call's [`Deadline`]. `None`: the one in scope
    /// ([`Deadline::current`]), else the priority's [default wait](Priority::default_wait)
    /// from the reservation.
    pub deadline: Option<Deadline>,
}

impl Ask {
    /// An interactive call of `cost` with no tenant and the deadline in scope.
    pub const fn new(cost: Cost) -> Self {
        Ask {
            cost,
            priority: Priority::Interactive,
            tenant: None,
            deadline: None,
        }
    }

    /// Sets the priority.
    pub const fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the tenant.
    pub const fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Sets the deadline.
    pub const fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The instant this call may be admitted by at the latest, reserving at `now`.
    pub fn deadline_at(&self, now: Instant) -> Instant {
        match self.deadline.or_else(Deadline::current) {
            Some(deadline) => deadline.instant(),
            None => now.checked_add(self.priority.default_wait()).unwrap_or(now),
        }
    }
}

/// When a reserved call may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Now.
    Now,
    /// Not before this instant; call [`Reservation::confirm`] then.
    ///
    /// [`Reservation::confirm`]: super::Reservation::confirm
    At(Instant),
}
