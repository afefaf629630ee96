//! Fault injection against the real binary and databases (kill -9, graceful
//! shutdown, database outages, full disks), one module per file, in one test
//! binary.
//! `hardening`, `api_logs` and `call_logs` stay binaries of their own: the
//! first measures a server under load with timing bounds, the other two
//! install a process-wide log subscriber.

#[macro_use]
mod common;

#[path = "crash_restart.rs"]
mod crash_restart;
#[path = "db_failures.rs"]
mod db_failures;
