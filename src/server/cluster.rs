//! `GET /api/v1/cluster`: this replica's id and the live members as it last read them from the
//! store (id, location, external URL, last renewal, checks owned).

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::respond::{json, Body};
use super::HandlerContext;
use crate::cluster::ClusterView;
use crate::timefmt::rfc3339_ms;

pub(super) fn cluster(shared: &HandlerContext) -> Response<Body> {
    let body = match &shared.cluster {
        Some(view) => view_json(&view.borrow(), tokio::time::Instant::now()),
        // A fixed split or none: nobody to meet.
        None => json!({"shard": "fixed", "member": null, "members": []}),
    };
    json(StatusCode::OK, &body)
}

/// The answer for a replica in a cluster: the members sorted by id, this one marked.
pub fn view_json(view: &ClusterView, now: tokio::time::Instant) -> Value {
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "location": m.location,
                "external_url": m.external_url,
                "last_renewal": rfc3339_ms(m.renewed_ms),
                "checks_owned": m.owned,
                "self": m.id == view.me,
            })
        })
        .collect();
    json!({
        "shard": "auto",
        "member": view.me,
        "location": view.location,
        "external_url": view.external_url,
        "replication": view.replication,
        // Now, where the members' `checks_owned` is as of their last renewal.
        "checks_owned": view.owned_now.load(std::sync::atomic::Ordering::Relaxed),
        // Whether the others count this replica live now (its last renewal was taken).
        "standing": view.standing(now),
        "members": members,
    })
}
