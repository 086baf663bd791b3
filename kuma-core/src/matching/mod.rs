//! Policy matching (in progress).
