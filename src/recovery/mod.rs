//! Recovery: graduated chains that run when a check turns critical, an alert fires, or by hand.

pub mod action;
pub mod chain;
pub mod engine;
pub mod held;
pub mod hold;
pub mod lease;
pub mod machine;
pub mod pause;
pub mod template;
