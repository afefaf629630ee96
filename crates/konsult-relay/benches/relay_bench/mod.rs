//! The parts of the `relay_vs_coturn` benchmark: the relays as processes,
//! the loads, and what is measured of them.

pub mod flood;
pub mod process;
pub mod relays;
pub mod turn_client;
pub mod uclient;
pub mod video;
