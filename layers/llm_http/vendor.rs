//! Vendor error bodies (in progress).
