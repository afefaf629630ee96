//! The parts of the `signaling_load` benchmark: the servers as processes,
//! the participants, and what `/proc` says.

pub mod args;
pub mod bare;
pub mod participants;
pub mod process;
pub mod servers;
pub mod streaming;
