//! Recovery: graduated chains that run when a check turns critical, an alert fires, or by hand.
//!
//! `machine` decides a run's every step (pure, takes `now`); `engine` carries its decisions
//! out against the store and the actions; `verify` hears whether a step fixed it; `manager`
//! owns the active runs and the holds (`hold`, `held`) that keep new ones back.

pub mod action;
pub mod chain;
pub mod engine;
pub mod gate;
pub mod held_triggers;
pub mod lease;
pub mod machine;
pub mod manager;
pub mod trigger;
pub mod verify;
