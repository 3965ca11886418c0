//! Which connection to close at `--web.max-connections` so that a new one can be served: the
//! pure core of shedding. A connection's phase moves with what it reads, serves and writes
//! ([`ConnectionState`], every transition given `now`), and [`victim`] picks the connection
//! to close from the phases and ages alone. The sockets, the registry and the accept loop are
//! in [`super::connections`].
//!
//! The order: the connection idle the longest between two requests first (a keep-alive client
//! loses nothing but a reconnect), then the one that has been sending its request headers the
//! longest (a legitimate client sends them in one packet; a slow-loris never finishes). A
//! connection whose request is being answered is never shed: its client would lose an answer
//! already under way. Nor is one medic first read from less than [`HEADER_GRACE`] ago: a
//! client that connects while others churn through the slots (a flood that reconnects as soon
//! as it is shed) still has time to send its headers, or finish its TLS handshake and send
//! them, and a busy medic reads what a client sent before judging it.

use std::time::{Duration, Instant};

/// How long a connection may send its request headers, counted from medic's first read of it,
/// before it can be shed. It bounds how fast slots turn over under a flood of new connections
/// (`--web.max-connections` per grace): with ten times the cap reconnecting as fast as they
/// are shed, a new client waits about 9 graces in the listen backlog, 450 ms, then has a grace
/// to be served.
pub const HEADER_GRACE: Duration = Duration::from_millis(50);

pub use crate::vocabulary::ShedReason;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, or a byte of its next request has arrived: its headers are not all in.
    ReadingHeaders,
    /// A request's headers were parsed and the handler runs, reads the body or its answer is
    /// being written.
    Serving,
    /// The answer was handed to the connection in full but may still sit in its write buffer.
    Answered {
        /// A byte of the next request arrived meanwhile (a pipelining client).
        next_request_begun: bool,
    },
    /// The answer is flushed and no byte of a next request has arrived.
    Idle,
    /// Chosen to be closed; it closes the next time its task runs.
    Shed,
}

/// One connection's phase and since when it is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionState {
    phase: Phase,
    since: Instant,
    /// When medic first tried to read the connection: its header grace counts from there, so
    /// a connection is not judged before medic could read what it sent. `None` until then.
    first_read: Option<Instant>,
}

impl ConnectionState {
    /// A connection just accepted: it reads its first request's headers from now.
    pub fn accepted(now: Instant) -> Self {
        ConnectionState {
            phase: Phase::ReadingHeaders,
            since: now,
            first_read: None,
        }
    }

    /// medic tries to read the connection (whether or not bytes are there).
    pub fn read_attempted(&mut self, now: Instant) {
        self.first_read.get_or_insert(now);
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes arrived from the client.
    pub fn bytes_read(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle => self.enter(Phase::ReadingHeaders, now),
            Phase::Answered { .. } => {
                self.phase = Phase::Answered {
                    next_request_begun: true,
                }
            }
            // Still the same headers, the body of the request being served, or too late.
            Phase::ReadingHeaders | Phase::Serving | Phase::Shed => {}
        }
    }

    /// A request's headers were parsed and its handler called. A shed connection stays shed:
    /// it was chosen before the request was in and closes without answering it.
    pub fn request_started(&mut self, now: Instant) {
        if self.phase != Phase::Shed {
            self.enter(Phase::Serving, now);
        }
    }

    /// The handler's answer was handed over in full (its body is done).
    pub fn answer_handed_over(&mut self, now: Instant) {
        if self.phase == Phase::Serving {
            self.enter(
                Phase::Answered {
                    next_request_begun: false,
                },
                now,
            );
        }
    }

    /// The connection's write buffer was flushed to the socket. Returns whether this made the
    /// connection one that can be shed.
    pub fn flushed(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Answered { next_request_begun } => {
                let next = if next_request_begun {
                    Phase::ReadingHeaders
                } else {
                    Phase::Idle
                };
                self.enter(next, now);
                true
            }
            _ => false,
        }
    }

    /// Why this connection may be shed and since when, or `None` when it may not.
    pub fn sheddable(&self) -> Option<Candidate<()>> {
        let reason = match self.phase {
            Phase::Idle => ShedReason::Idle,
            Phase::ReadingHeaders => ShedReason::ReadingHeaders,
            Phase::Serving | Phase::Answered { .. } | Phase::Shed => return None,
        };
        Some(Candidate {
            id: (),
            reason,
            since: self.since,
            // A next request began with a byte read: medic is reading it from then.
            first_read: self.first_read.map(|first| first.max(self.since)),
        })
    }

    /// Marks the connection shed if it still is the candidate `seen` (its phase may have moved
    /// since the choice was made); returns whether it did.
    pub fn shed_if_still(&mut self, seen: Candidate<()>) -> bool {
        if self.sheddable() == Some(seen) {
            self.phase = Phase::Shed;
            true
        } else {
            false
        }
    }

    fn enter(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.since = now;
    }
}

/// A connection that may be shed: which, why, since when it is in that phase, and since
/// when medic has read it in that phase (`None`: not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<Id> {
    pub id: Id,
    pub reason: ShedReason,
    pub since: Instant,
    pub first_read: Option<Instant>,
}

impl<Id> Candidate<Id> {
    /// The same candidate under another id.
    pub fn with_id<Other>(&self, id: Other) -> Candidate<Other> {
        Candidate {
            id,
            reason: self.reason,
            since: self.since,
            first_read: self.first_read,
        }
    }
}

/// What to do to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice<Id> {
    /// Shed this one.
    Shed(Candidate<Id>),
    /// Every candidate is within its [`HEADER_GRACE`]; the oldest leaves it at this instant.
    WaitUntil(Instant),
    /// No candidate: every connection is being answered.
    Nothing,
}

/// The connection to shed among `candidates` at `now`: the longest idle, else the one sending
/// its headers the longest among those that have had their [`HEADER_GRACE`].
pub fn victim<Id>(candidates: impl IntoIterator<Item = Candidate<Id>>, now: Instant) -> Choice<Id> {
    let mut idle: Option<Candidate<Id>> = None;
    let mut past_grace: Option<Candidate<Id>> = None;
    let mut next_grace_end: Option<Instant> = None;
    let older = |held: Option<Candidate<Id>>, c: Candidate<Id>| match held {
        Some(h) if h.since <= c.since => Some(h),
        _ => Some(c),
    };
    for c in candidates {
        match (c.reason, c.first_read) {
            (ShedReason::Idle, _) => idle = older(idle, c),
            (ShedReason::ReadingHeaders, Some(first)) if now >= first + HEADER_GRACE => {
                past_grace = older(past_grace, c)
            }
            (ShedReason::ReadingHeaders, first) => {
                // Not read yet: its grace ends a grace after its first read, at the earliest
                // a grace from now.
                let end = first.unwrap_or(now) + HEADER_GRACE;
                next_grace_end = Some(next_grace_end.map_or(end, |e| e.min(end)));
            }
        }
    }
    match (idle.or(past_grace), next_grace_end) {
        (Some(c), _) => Choice::Shed(c),
        (None, Some(at)) => Choice::WaitUntil(at),
        (None, None) => Choice::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    /// A candidate medic has read since it entered its phase.
    fn candidate(id: u32, reason: ShedReason, since: Instant) -> Candidate<u32> {
        Candidate {
            id,
            reason,
            since,
            first_read: Some(since),
        }
    }

    fn shed_id(choice: Choice<u32>) -> Option<u32> {
        match choice {
            Choice::Shed(c) => Some(c.id),
            _ => None,
        }
    }

    #[test]
    fn the_longest_idle_goes_first_then_the_slowest_headers() {
        let t = Instant::now();
        let now = at(t, 1000);
        let idle = ShedReason::Idle;
        let reading = ShedReason::ReadingHeaders;
        // An idle connection goes before any that sends headers, however old.
        let pick = victim(
            [
                candidate(1, reading, at(t, 0)),
                candidate(2, idle, at(t, 500)),
                candidate(3, idle, at(t, 100)),
                candidate(4, reading, at(t, 50)),
            ],
            now,
        );
        assert_eq!(shed_id(pick), Some(3));
        // Without idle ones, the one that has sent headers the longest.
        let pick = victim(
            [
                candidate(5, reading, at(t, 300)),
                candidate(6, reading, at(t, 20)),
                candidate(7, reading, at(t, 900)),
            ],
            now,
        );
        assert_eq!(shed_id(pick), Some(6));
        assert_eq!(victim(Vec::<Candidate<u32>>::new(), now), Choice::Nothing);
    }

    #[test]
    fn headers_get_their_grace_but_idle_connections_do_not() {
        let t = Instant::now();
        let grace = HEADER_GRACE.as_millis() as u64;
        let reading = ShedReason::ReadingHeaders;
        let young = [
            candidate(1, reading, at(t, 10)),
            candidate(2, reading, at(t, 0)),
        ];
        // The oldest is 1 ms short of its grace: wait until it has had it, then shed it.
        let now = at(t, grace - 1);
        assert_eq!(victim(young, now), Choice::WaitUntil(at(t, grace)));
        assert_eq!(shed_id(victim(young, at(t, grace))), Some(2));
        // An idle connection just answered goes at once.
        let with_idle = [young[0], young[1], candidate(3, ShedReason::Idle, now)];
        assert_eq!(shed_id(victim(with_idle, now)), Some(3));
        // The oldest past its grace goes, even if an older one is still within it.
        let mixed = [
            candidate(4, reading, at(t, 0)),
            Candidate {
                first_read: Some(at(t, 30)),
                ..candidate(5, reading, at(t, 0))
            },
            candidate(6, reading, at(t, 5)),
        ];
        assert_eq!(shed_id(victim(mixed, at(t, grace + 10))), Some(4));
        assert_eq!(shed_id(victim(mixed, at(t, grace + 40))), Some(4));
        assert_eq!(
            shed_id(victim(mixed[1..].iter().copied(), at(t, grace + 10))).unwrap_or(0),
            6,
            "5 was first read at 30 ms"
        );
    }

    #[test]
    fn a_connection_medic_has_not_read_yet_is_not_judged() {
        let t = Instant::now();
        let grace = HEADER_GRACE.as_millis() as u64;
        // Accepted long ago, never read (medic was busy): its grace starts at its first read.
        let mut c = ConnectionState::accepted(t);
        let late = at(t, 10 * grace);
        let unread = c.sheddable().unwrap().with_id(1u32);
        assert_eq!(
            victim([unread], late),
            Choice::WaitUntil(late + HEADER_GRACE)
        );
        c.read_attempted(late);
        c.read_attempted(at(t, 11 * grace)); // only the first counts
        let read = c.sheddable().unwrap().with_id(1u32);
        assert_eq!(victim([read], late), Choice::WaitUntil(late + HEADER_GRACE));
        assert_eq!(shed_id(victim([read], late + HEADER_GRACE)), Some(1));
        // Its since stays its accept time: it is older than anyone accepted after it.
        assert_eq!(read.since, t);
    }

    #[test]
    fn a_connection_being_answered_is_never_a_candidate() {
        let t = Instant::now();
        let mut c = ConnectionState::accepted(t);
        assert_eq!(
            c.sheddable().map(|c| (c.reason, c.since)),
            Some((ShedReason::ReadingHeaders, t))
        );
        c.bytes_read(at(t, 5));
        assert_eq!(c.sheddable().map(|c| c.since), Some(t), "same headers");
        c.request_started(at(t, 10));
        assert_eq!(c.sheddable(), None);
        c.bytes_read(at(t, 20)); // the request body
        assert_eq!(c.sheddable(), None);
        c.answer_handed_over(at(t, 30));
        assert_eq!(c.sheddable(), None, "the answer may still be in the buffer");
        assert!(c.flushed(at(t, 40)));
        assert_eq!(
            c.sheddable().map(|c| (c.reason, c.since)),
            Some((ShedReason::Idle, at(t, 40)))
        );
        // Flushing again changes nothing.
        assert!(!c.flushed(at(t, 45)));
        // The next request's first byte: reading headers from then on.
        c.bytes_read(at(t, 50));
        assert_eq!(
            c.sheddable().map(|c| (c.reason, c.since)),
            Some((ShedReason::ReadingHeaders, at(t, 50)))
        );
    }

    #[test]
    fn a_request_pipelined_behind_an_answer_is_reading_headers_once_flushed() {
        let t = Instant::now();
        let mut c = ConnectionState::accepted(t);
        c.request_started(t);
        c.answer_handed_over(at(t, 1));
        c.bytes_read(at(t, 2));
        assert_eq!(c.sheddable(), None);
        assert!(c.flushed(at(t, 3)));
        assert_eq!(
            c.sheddable().map(|c| (c.reason, c.since)),
            Some((ShedReason::ReadingHeaders, at(t, 3)))
        );
    }

    #[test]
    fn a_connection_is_shed_only_if_it_is_still_what_was_chosen() {
        let t = Instant::now();
        let mut c = ConnectionState::accepted(t);
        c.request_started(t);
        c.answer_handed_over(t);
        c.flushed(at(t, 1));
        let seen = c.sheddable().expect("idle");
        // Its next request came in between the choice and the shedding: it is kept.
        c.bytes_read(at(t, 2));
        c.request_started(at(t, 3));
        assert!(!c.shed_if_still(seen));
        assert_eq!(c.phase(), Phase::Serving);
        c.answer_handed_over(at(t, 4));
        c.flushed(at(t, 5));
        let seen = c.sheddable().expect("idle again");
        assert!(c.shed_if_still(seen));
        assert_eq!(c.phase(), Phase::Shed);
        // A request parsed after the choice does not revive it.
        c.request_started(at(t, 6));
        assert_eq!(c.phase(), Phase::Shed);
        assert_eq!(c.sheddable(), None, "shed once");
    }
}
