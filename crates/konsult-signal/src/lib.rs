//! Konsult signaling room core (placeholder while the crate is written).
