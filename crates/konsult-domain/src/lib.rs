//! Konsult's domain rules, free of I/O.
#![warn(missing_docs)]
