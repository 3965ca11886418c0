//! What changes the set of checks between reloads: a template's discovered list, or who owns
//! which check. Discovery and the cluster's membership send these; `app`'s check set applies
//! them. A leaf of its own so that the senders need not know the app that wires them.

use std::sync::Arc;

use crate::cluster::Ownership;
use crate::config::CheckSpec;

/// One change to the set of checks.
pub enum Change {
    /// A template's discovered checks, whole (an empty list removes them).
    Discovered {
        template: String,
        checks: Vec<Arc<CheckSpec>>,
    },
    /// Who owns which check now (the cluster's members changed).
    Ownership(Arc<dyn Ownership>),
}
