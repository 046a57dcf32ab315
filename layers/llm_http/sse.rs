//! Settling a server-sent-event stream from its usage event (in progress).
