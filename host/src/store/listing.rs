//! The admin listings' queries, written once for both stores: which filter
//! goes in the `WHERE`, in which order rows come, and what a page's cursor
//! is. Each backend only renders the placeholders and binds the values.
//!
//! Design constraints:
//! - Every filter is a plain `column = ?` term, present only when asked for
//!   (never `? IS NULL OR column = ?`, which no planner can serve from an
//!   index), so that each page is an index range read, not a table scan:
//!   the dashboard's pages answer within 100 ms at a million events.
//! - Events come newest first, keyed `(received_at, id, source)`, which is
//!   unique; the cursor of a page is that key of its last row.

use serde::Serialize;

use super::DeliveryQuery;

/// Deliveries with work still to do: the predicate of the partial index
/// that claims read (SQLite's schema v6 writes it out, frozen as
/// migrations are; a test checks the claim still reads it), which a query
/// repeats, word for word, to be served by it. An `OR` of equalities, not `state IN (…)`: SQLite checks a partial
/// index's predicate on every insert and update of the table, and an `IN`
/// list there builds and frees a temporary b-tree each time (with a page
/// cache of its own, whose `free` can hand memory back to the kernel and
/// so flush the TLB of every core): that cost the hot path more than any
/// statement it runs. PostgreSQL reads both spellings alike.
/// `unfinished!("d.")` qualifies the column, for a join.
macro_rules! unfinished {
    () => {
        unfinished!("")
    };
    ($table:literal) => {
        concat!(
            "(",
            $table,
            "state = 'pending' OR ",
            $table,
            "state = 'retrying' OR ",
            $table,
            "state = 'in_flight')"
        )
    };
}
pub(crate) use unfinished;

/// Deliveries done with, delivered or dead (retention's partial index),
/// spelled as [`unfinished!`] is, for the same reason.
macro_rules! finished {
    () => {
        "(state = 'delivered' OR state = 'dead')"
    };
}
pub(crate) use finished;

/// Whether a delivery (`$t` qualifies the columns) holds back the later
/// ones with its ordering key: unfinished, or dead and blocking (`on_dead
/// = "block"`).
macro_rules! holds_key {
    ($t:literal) => {
        concat!(
            "(",
            $t,
            "state = 'pending' OR ",
            $t,
            "state = 'retrying' OR ",
            $t,
            "state = 'in_flight' OR (",
            $t,
            "state = 'dead' AND ",
            $t,
            "order_block))"
        )
    };
}
pub(crate) use holds_key;

/// Whether delivery `d` is first in line for its ordering key (or has
/// none): no delivery to its target with its key and an earlier `$seq`
/// (commit order) holds it back. Served by the partial index
/// `deliveries_order`.
macro_rules! first_in_line {
    ($seq:literal) => {
        concat!(
            "(d.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries p \
             WHERE p.target = d.target AND p.order_key = d.order_key AND p.",
            $seq,
            " < d.",
            $seq,
            " AND ",
            $crate::store::listing::holds_key!("p."),
            "))"
        )
    };
}
pub(crate) use first_in_line;

/// What `GET /api/events` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub source: Option<String>,
    pub event_type: Option<String>,
    pub state: Option<EventState>,
    /// Only events before this point (newest first from there).
    pub before: Option<Before>,
    /// Only events received at or after this time (ms).
    pub since: Option<u64>,
    pub limit: usize,
}

/// The states an event list can be filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// Its routes have not run yet.
    Received,
    Processed,
    /// At least one route failed on it (it can be re-run).
    Failed,
}

impl EventState {
    pub const NAMES: [&str; 3] = ["received", "processed", "failed"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "received" => Some(EventState::Received),
            "processed" => Some(EventState::Processed),
            "failed" => Some(EventState::Failed),
            _ => None,
        }
    }
}

/// Where a page of events starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// Events received before this time (ms since the epoch).
    Time(u64),
    /// After the last event of the previous page.
    Cursor(Cursor),
}

impl Before {
    /// `1733000000000` (a time) or a page's `next` cursor.
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(ms) = s.parse() {
            return Some(Before::Time(ms));
        }
        Cursor::parse(s).map(Before::Cursor)
    }
}

/// The sort key of one event: `received_at:source:id` as text. Source
/// names have no `:` (the config allows letters, digits, `-`, `_` and
/// `.`); an id may, so it comes last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub received_at: u64,
    pub source: String,
    pub id: String,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, ':');
        let received_at = parts.next()?.parse().ok()?;
        let source = parts.next()?.to_string();
        let id = parts.next()?.to_string();
        Some(Cursor {
            received_at,
            source,
            id,
        })
    }

    pub fn render(&self) -> String {
        format!("{}:{}:{}", self.received_at, self.source, self.id)
    }
}

/// One event in a listing: what it is and, in counts, what became of it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EventSummary {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub received_at: u64,
    /// `received` until its routes have run, then `processed`.
    pub state: String,
    pub deliveries: u64,
    pub delivered: u64,
    pub dead: u64,
    pub failed_routes: u64,
}

impl EventSummary {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            received_at: self.received_at,
            source: self.source.clone(),
            id: self.id.clone(),
        }
    }
}

/// A target's deliveries by state, for `GET /api/targets`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TargetCounts {
    pub pending: u64,
    pub retrying: u64,
    pub in_flight: u64,
    pub dead: u64,
}

/// A value to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// A statement and its values, with placeholders as the dialect wants
/// them (`?1` or `$1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

struct Builder {
    terms: Vec<String>,
    params: Vec<Param>,
    placeholder: fn(usize) -> String,
}

impl Builder {
    fn new(dialect: Dialect) -> Self {
        Builder {
            terms: Vec::new(),
            params: Vec::new(),
            placeholder: match dialect {
                Dialect::Sqlite => |n| format!("?{n}"),
                Dialect::Postgres => |n| format!("${n}"),
            },
        }
    }

    /// Bind `value`; its placeholder.
    fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        (self.placeholder)(self.params.len())
    }

    fn term(&mut self, term: String) {
        self.terms.push(term);
    }

    fn filter(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.terms.join(" AND "))
        }
    }
}

/// Counts of what became of each listed event: a few index probes per row
/// of a page.
const EVENT_SUMMARY: &str = "e.id, e.source, e.event_type, e.received_at, e.state,
    (SELECT count(*) FROM deliveries d WHERE d.event_source = e.source AND d.event_id = e.id),
    (SELECT count(*) FROM deliveries d WHERE d.event_source = e.source AND d.event_id = e.id
        AND d.state = 'delivered'),
    (SELECT count(*) FROM deliveries d WHERE d.event_source = e.source AND d.event_id = e.id
        AND d.state = 'dead'),
    (SELECT count(*) FROM route_failures f WHERE f.event_source = e.source AND f.event_id = e.id)";

/// A page of events, newest first, as [`EVENT_SUMMARY`]'s columns.
pub fn events(q: &EventQuery, dialect: Dialect) -> Sql {
    let mut b = Builder::new(dialect);
    if let Some(source) = &q.source {
        let p = b.bind(Param::Text(source.clone()));
        b.term(format!("e.source = {p}"));
    }
    if let Some(t) = &q.event_type {
        let p = b.bind(Param::Text(t.clone()));
        b.term(format!("e.event_type = {p}"));
    }
    match q.state {
        None => {}
        Some(EventState::Received) => b.term("e.state = 'received'".into()),
        Some(EventState::Processed) => b.term("e.state = 'processed'".into()),
        // Failures are few: read them, then their events, not every event.
        Some(EventState::Failed) => b.term(
            "(e.id, e.source) IN (SELECT f.event_id, f.event_source FROM route_failures f)".into(),
        ),
    }
    match &q.before {
        None => {}
        Some(Before::Time(ms)) => {
            let p = b.bind(Param::Int(*ms as i64));
            b.term(format!("e.received_at < {p}"));
        }
        Some(Before::Cursor(c)) => {
            let at = b.bind(Param::Int(c.received_at as i64));
            let id = b.bind(Param::Text(c.id.clone()));
            let source = b.bind(Param::Text(c.source.clone()));
            // The first term bounds the index range; the rest breaks ties.
            b.term(format!(
                "e.received_at <= {at} AND (e.received_at < {at} OR e.id < {id} OR (e.id = {id} AND e.source < {source}))"
            ));
        }
    }
    if let Some(since) = q.since {
        let p = b.bind(Param::Int(since as i64));
        b.term(format!("e.received_at >= {p}"));
    }
    let limit = b.bind(Param::Int(q.limit as i64));
    Sql {
        text: format!(
            "SELECT {EVENT_SUMMARY} FROM events e {}
             ORDER BY e.received_at DESC, e.id DESC, e.source DESC LIMIT {limit}",
            b.filter()
        ),
        params: b.params,
    }
}

/// Which SQL the statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A page of deliveries in id order (which is creation order), as
/// `columns`.
pub fn deliveries(q: &DeliveryQuery, columns: &str, dialect: Dialect) -> Sql {
    let mut b = Builder::new(dialect);
    let mut order = "id";
    if let Some(state) = &q.state {
        let p = b.bind(Param::Text(state.clone()));
        b.term(format!("state = {p}"));
        if ["pending", "retrying", "in_flight"].contains(&state.as_str()) {
            // Spelled out so SQLite sees that the partial index of work
            // still to do covers the query …
            b.term(unfinished!().into());
        }
        if dialect == Dialect::Sqlite && state != "delivered" {
            // … and told not to walk the whole table in id order instead
            // (`+id` is no index's order): these states are few rows, read
            // from their partial index and sorted.
            order = "+id";
        }
    }
    if let Some(target) = &q.target {
        let p = b.bind(Param::Text(target.clone()));
        b.term(format!("target = {p}"));
    }
    if let Some(after) = &q.after {
        let p = b.bind(Param::Text(after.clone()));
        b.term(format!("id > {p}"));
    }
    let limit = b.bind(Param::Int(q.limit as i64));
    Sql {
        text: format!(
            "SELECT {columns} FROM deliveries {} ORDER BY {order} LIMIT {limit}",
            b.filter()
        ),
        params: b.params,
    }
}

/// Each target's deliveries that are not delivered, by state: `target,
/// state, count`. The partial indexes of work to do and of dead
/// deliveries hold exactly these rows.
pub const TARGET_COUNTS: &str = concat!(
    "SELECT target, state, count(*) FROM deliveries WHERE ",
    unfinished!(),
    " GROUP BY target, state
    UNION ALL
    SELECT target, 'dead', count(*) FROM deliveries WHERE state = 'dead' GROUP BY target"
);

/// Add one `TARGET_COUNTS` row to `counts`.
pub fn add_target_count(counts: &mut TargetCounts, state: &str, n: u64) {
    match state {
        "pending" => counts.pending += n,
        "retrying" => counts.retrying += n,
        "in_flight" => counts.in_flight += n,
        "dead" => counts.dead += n,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_with_colons_in_the_id() {
        let c = Cursor {
            received_at: 1_733_000_000_123,
            source: "github".into(),
            id: "urn:uuid:42".into(),
        };
        assert_eq!(Cursor::parse(&c.render()), Some(c.clone()));
        assert_eq!(Before::parse(&c.render()), Some(Before::Cursor(c)));
        assert_eq!(
            Before::parse("1733000000000"),
            Some(Before::Time(1_733_000_000_000))
        );
        assert_eq!(Before::parse("yesterday"), None);
        assert_eq!(Before::parse("x:github:1"), None);
    }

    #[test]
    fn only_the_asked_filters_are_in_the_query() {
        let all = events(
            &EventQuery {
                limit: 50,
                ..EventQuery::default()
            },
            Dialect::Sqlite,
        );
        assert!(!all.text.contains("FROM events e WHERE"), "{}", all.text);
        assert_eq!(all.params, vec![Param::Int(50)]);

        let some = events(
            &EventQuery {
                source: Some("github".into()),
                state: Some(EventState::Failed),
                before: Some(Before::Time(10)),
                limit: 5,
                ..EventQuery::default()
            },
            Dialect::Sqlite,
        );
        assert!(some.text.contains("e.source = ?1"), "{}", some.text);
        assert!(some.text.contains("route_failures f)"), "{}", some.text);
        assert!(some.text.contains("e.received_at < ?2"), "{}", some.text);
        assert!(!some.text.contains("IS NULL"), "{}", some.text);
        assert_eq!(
            some.params,
            vec![Param::Text("github".into()), Param::Int(10), Param::Int(5)]
        );
    }
}
