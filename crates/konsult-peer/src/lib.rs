//! Headless WebRTC peer for Konsult.
#![warn(missing_docs)]

pub mod vp8;
