//! The marketplace simulator (being written).
