//! Konsult's domain rules, free of I/O.
#![warn(missing_docs)]

pub mod billing;
pub mod calendar;
pub mod course;
pub mod eligibility;
pub mod fees;
pub mod ids;
pub mod money;
pub mod service;
