//! Konsult signaling room core.
#![warn(missing_docs)]
pub mod filter;
