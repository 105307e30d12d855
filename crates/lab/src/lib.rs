//! tibridge-lab: loopback simulators of the outside systems tibridge speaks to.
//!
//! Each follows `shared/contracts/` to the letter, is checked by the vendor's official SDK in
//! CI, and binds 127.0.0.1 only: a simulator must never listen on or call another address.

pub mod fault;
pub mod server;

pub mod apex_central;
pub mod deep_security;
pub mod misp;

pub mod intezer;
pub mod virustotal;
pub mod vision_one;

pub use fault::{FaultConfig, FaultHandle, FaultStats};
pub use server::{serve, RunningServer, ServeError};
