//! Recovery: graduated chains that run when a check turns critical, an alert fires, or by hand.

pub mod chain;
pub mod template;
