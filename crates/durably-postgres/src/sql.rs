//! The schema, its migrations, every statement of the store, and the decoding of rows.
//!
//! Table names are qualified with the store's schema, quoted once when the store is built, so
//! the statements do not depend on a connection's `search_path`. Every value travels as a bind
//! parameter; only the (quoted) schema name is ever formatted into SQL text.

use durably_core::{
    Error, EventRecord, NewEvent, RunRecord, RunStatus, SignalRecord, StepRecord, StepStatus,
};
use tokio_postgres::Row;

/// The schema version this version of durably-postgres writes and understands, kept in the
/// `durably_schema_version` table of the store's schema. A schema with a higher version is
/// refused when the store connects.
///
/// - 1: `runs`, `steps`, `signals`, `leases`.
/// - 2: adds queues (the queue columns of `runs`, `queue_claims`) and event logs (`events`,
///   `event_heads`).
/// - 3: adds each run's claim time and worker version (columns of `runs`), and the index
///   claims walk in claim order.
/// - 4: adds rate limits (`rate_keys`, `rate_grants`).
pub const SCHEMA_VERSION: i32 = 4;

/// Quotes an identifier for PostgreSQL: `my "schema"` becomes `"my ""schema"""`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The migrations, in order: entry `i` brings a schema from version `i` to `i + 1`. `{s}` is
/// replaced by the quoted schema name. Each runs in the migration transaction.
///
/// Version 1: every text column is `COLLATE "C"` so that ordering (`list_runs`, `list_steps`)
/// is by bytes, as in Rust, whatever the database's locale. JSON values are kept twice: the
/// verbatim text (`*_text`, what durably reads back byte for byte) and a generated `jsonb`
/// column for queries (NULL when the text is not valid `jsonb`, e.g. a string holding
/// `\u0000`).
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE FUNCTION {s}.durably_try_jsonb(t text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $f$ BEGIN RETURN t::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $f$;

CREATE TABLE {s}.runs (
    run_id        text COLLATE "C" NOT NULL PRIMARY KEY,
    workflow      text COLLATE "C" NOT NULL,
    status        text COLLATE "C" NOT NULL,
    input_text    text COLLATE "C",
    output_text   text COLLATE "C",
    error         text COLLATE "C",
    waiting_on    text COLLATE "C",
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    input         jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(input_text)) STORED,
    output        jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(output_text)) STORED
);
CREATE INDEX runs_by_created ON {s}.runs (created_at_ms, run_id);
CREATE INDEX runs_by_status ON {s}.runs (status, created_at_ms, run_id);
CREATE INDEX runs_by_workflow ON {s}.runs (workflow, created_at_ms, run_id);

CREATE TABLE {s}.steps (
    run_id         text COLLATE "C" NOT NULL,
    step_id        text COLLATE "C" NOT NULL,
    name           text COLLATE "C" NOT NULL,
    status         text COLLATE "C" NOT NULL,
    value_text     text COLLATE "C",
    error          text COLLATE "C",
    attempts       bigint NOT NULL,
    request_hash   text COLLATE "C",
    started_at_ms  bigint NOT NULL,
    finished_at_ms bigint,
    value          jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(value_text)) STORED,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE {s}.signals (
    run_id          text COLLATE "C" NOT NULL,
    name            text COLLATE "C" NOT NULL,
    payload_text    text COLLATE "C" NOT NULL,
    delivered_at_ms bigint NOT NULL,
    payload         jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(payload_text)) STORED,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE {s}.leases (
    run_id        text COLLATE "C" NOT NULL PRIMARY KEY,
    owner         text COLLATE "C" NOT NULL,
    expires_at_ms bigint NOT NULL
);
"#,
    // Version 2: queues and event logs. A queued run keeps its queue, priority, concurrency key
    // and parent in its row; `wake_at_ms` is set only while it is parked. `runs_runnable` serves
    // claims, `runs_by_parent` the listing of children, `runs_by_wake` finding due timers.
    // `queue_claims` counts each queue's claims per millisecond for the rate limit (claims prune
    // what left the window). `events` keeps each run's log verbatim (text, no `jsonb` twin: a log
    // is written far more often than it is queried); `event_heads` holds each log's next offset,
    // whose row lock makes concurrent appends take consecutive offsets in turn.
    r#"
ALTER TABLE {s}.runs
    ADD COLUMN queue      text COLLATE "C",
    ADD COLUMN priority   integer NOT NULL DEFAULT 0,
    ADD COLUMN queue_key  text COLLATE "C",
    ADD COLUMN parent_id  text COLLATE "C",
    ADD COLUMN wake_at_ms bigint;
CREATE INDEX runs_runnable ON {s}.runs (queue, status, priority DESC, created_at_ms, run_id)
    WHERE queue IS NOT NULL;
CREATE INDEX runs_by_parent ON {s}.runs (parent_id, created_at_ms, run_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_by_wake ON {s}.runs (wake_at_ms) WHERE wake_at_ms IS NOT NULL;

CREATE TABLE {s}.queue_claims (
    queue         text COLLATE "C" NOT NULL,
    claimed_at_ms bigint NOT NULL,
    claims        bigint NOT NULL,
    PRIMARY KEY (queue, claimed_at_ms)
);

CREATE TABLE {s}.events (
    run_id       text COLLATE "C" NOT NULL,
    event_offset bigint NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    data         text COLLATE "C" NOT NULL,
    at_ms        bigint NOT NULL,
    PRIMARY KEY (run_id, event_offset)
);

CREATE TABLE {s}.event_heads (
    run_id      text COLLATE "C" NOT NULL PRIMARY KEY,
    next_offset bigint NOT NULL
);
"#,
    // Version 3: when a worker last claimed each run (what the rate limit counted), the version
    // of the worker the run is bound to (rule 26 of docs/design.md), and `runs_claim_order`:
    // the runs of each queue that are runnable whatever the time (parked runs excepted), in the
    // order claims take them, so a claim without a per-key limit reads its few runs off the
    // index instead of sorting the queue's backlog, and never walks the parked runs (due ones
    // come from `runs_by_wake`).
    r#"
ALTER TABLE {s}.runs
    ADD COLUMN claimed_at_ms bigint,
    ADD COLUMN version       text COLLATE "C";
CREATE INDEX runs_claim_order ON {s}.runs (queue, priority DESC, created_at_ms, run_id)
    WHERE queue IS NOT NULL AND (status IN ('enqueued', 'running') OR (status = 'waiting' AND wake_at_ms IS NULL));
"#,
    // Version 4: rate limits. A key's row is what its acquires lock (one after the other, over
    // every process) and holds the end of its block; `rate_grants` is its log of grants.
    r#"
CREATE TABLE {s}.rate_keys (
    rate_key         text COLLATE "C" NOT NULL PRIMARY KEY,
    blocked_until_ms bigint NOT NULL DEFAULT 0
);

CREATE TABLE {s}.rate_grants (
    rate_key text COLLATE "C" NOT NULL,
    grant_id text COLLATE "C" NOT NULL,
    at_ms    bigint NOT NULL,
    requests bigint NOT NULL,
    tokens   bigint NOT NULL,
    PRIMARY KEY (rate_key, grant_id)
);
CREATE INDEX rate_grants_by_time ON {s}.rate_grants (rate_key, at_ms);
"#,
];

/// The server's clock now, not at the start of the transaction (which may have waited for a
/// lock since).
pub(crate) const SERVER_CLOCK_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The columns of a run, in the order [`decode_run`] reads them.
const RUN_COLUMNS: &str = "run_id, workflow, status, input_text, output_text, error, waiting_on, created_at_ms, \
     updated_at_ms, queue, parent_id, wake_at_ms, claimed_at_ms, version";

/// The columns of a step, in the order [`decode_step`] reads them.
const STEP_COLUMNS: &str =
    "step_id, name, status, value_text, error, attempts, request_hash, started_at_ms, finished_at_ms";

/// The server's clock in milliseconds since the Unix epoch.
const SERVER_NOW_MS: &str = "(extract(epoch FROM now()) * 1000)::bigint";

/// A notification payload naming `$x` (a run id, a queue), or '' (wake every waiter) when it is
/// too long for a payload (8000 bytes).
fn payload(x: &str) -> String {
    format!("CASE WHEN octet_length({x}) <= 7000 THEN {x} ELSE '' END")
}

/// A live lease covers `r.run_id` at time `now`.
fn live_lease(s: &str, now: &str) -> String {
    format!("EXISTS (SELECT 1 FROM {s}.leases l WHERE l.run_id = r.run_id AND l.expires_at_ms > {now})")
}

/// Run `r` is runnable whatever the time (the lease aside): enqueued, running (its worker
/// died) or waiting without being parked. Written as the predicate of `runs_claim_order`, so
/// that the planner may use that index.
const UNPARKED: &str =
    "(r.status IN ('enqueued', 'running') OR (r.status = 'waiting' AND r.wake_at_ms IS NULL))";

/// Run `r` of queue `queue` is parked and due at `now`. Its only indexable condition is the
/// timer's, so the planner walks `runs_by_wake` over the due runs (which holds only parked
/// runs, due ones first) whatever its statistics say: the queue and status conditions are
/// wrapped in `IS TRUE`, which no index serves. Written plainly, a planner with stale
/// statistics (a queue that grew since the last `ANALYZE`) walked every parked run of the
/// queue through `runs_runnable` instead: 40 ms a claim with 10,000 parked runs.
fn parked_due(queue: &str, now: &str) -> String {
    format!("(r.wake_at_ms <= {now} AND (r.queue = {queue} AND r.status = 'waiting') IS TRUE)")
}

/// Run `r` is runnable by the rule of `Queues::claim_runs` at time `now`, the lease aside. The
/// status list stands alone so that `runs_runnable` serves `queue = $1 AND status IN (…)` and
/// skips the queue's finished runs.
fn ready(now: &str) -> String {
    format!(
        "r.status IN ('enqueued', 'running', 'waiting') \
         AND (r.status <> 'waiting' OR r.wake_at_ms IS NULL OR r.wake_at_ms <= {now})"
    )
}

/// The runs `r` of queue `$1` that execute at `now` (unfinished, under a live lease), found
/// from the live leases, which are few, rather than from the queue's runs: the runs are looked
/// up by the array of leased ids, and their own conditions are wrapped in `IS TRUE`, which no
/// index serves, so the primary key is the planner's only way in. Written as a join, a planner
/// with stale statistics walked the queue's runs (every parked run among them) instead.
fn executing_runs(s: &str, now: &str) -> String {
    format!(
        "{s}.runs r
         WHERE r.run_id = ANY(ARRAY(SELECT l.run_id FROM {s}.leases l WHERE l.expires_at_ms > {now}))
           AND (r.queue = $1 AND r.status IN ('enqueued', 'running', 'waiting')) IS TRUE"
    )
}

/// A worker of version `v` (NULL: unversioned) may claim run `r`: its version, or none and never
/// executed (rule 26 of docs/design.md).
fn version_allows(v: &str) -> String {
    format!("({v}::text IS NULL OR r.version = {v}::text OR (r.version IS NULL AND r.status = 'enqueued'))")
}

/// Bit `i` of a `list_runs` statement's index: the filter on column `LIST_FILTERS[i]`.
pub(crate) const LIST_FILTERS: [&str; 4] = ["status", "workflow", "queue", "parent_id"];

/// Every statement of the store, with the schema filled in.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) open_run: String,
    /// `open_run` after taking the run's lease, only if it was taken (see [`open_run`]).
    pub(crate) open_run_leased: String,
    pub(crate) save_step: String,
    /// `save_step` of many records and `append_events` of many runs at once, from one array
    /// per column (see `batch.rs`).
    pub(crate) checkpoints: String,
    pub(crate) update_run: String,
    pub(crate) deliver_signal: String,
    pub(crate) get_signal: String,
    pub(crate) get_run: String,
    /// `list_runs` for each combination of filters: entry `i` filters by the columns of the
    /// bits of `i` in [`LIST_FILTERS`], their values in that order from `$2`.
    pub(crate) list_runs: Vec<String>,
    pub(crate) list_steps: String,
    pub(crate) acquire_lease: String,
    pub(crate) release_lease: String,
    pub(crate) renew_leases: String,
    pub(crate) cancelled_runs: String,
    pub(crate) recoverable_runs: String,
    pub(crate) list_signals: String,
    pub(crate) delete_run: String,
    pub(crate) update_run_unless_cancelled: String,
    /// `update_run_unless_cancelled` that also releases owner `$7`'s lease (see
    /// [`update_run_unless_cancelled`]).
    pub(crate) end_run: String,
    pub(crate) enqueue: String,
    /// Serializes the claims of one queue until the transaction ends, then reads the clock.
    pub(crate) lock_queue: String,
    /// Prunes a queue's claim times up to a cut-off and counts those after it.
    pub(crate) claims_in_window: String,
    pub(crate) count_executing: String,
    pub(crate) claim_candidates: String,
    /// `claim_candidates` without a per-key limit: the first runs off `runs_claim_order`,
    /// merged with the due parked runs, without sorting the queue's backlog.
    pub(crate) claim_candidates_in_order: String,
    pub(crate) claim: String,
    pub(crate) release_unclaimed: String,
    /// Locks a run's row: what `park_run` waits on while a delivery to the run commits.
    pub(crate) lock_run: String,
    pub(crate) park_run: String,
    pub(crate) queue_stats: String,
    /// The queues holding a run: a skip scan of `runs_runnable` (queue first), one index seek
    /// per queue.
    pub(crate) queue_names: String,
    pub(crate) runnable_queues: String,
    pub(crate) append_events: String,
    pub(crate) read_events: String,
    /// Creates a rate key's row if needed, then locks it and reads the end of its block.
    pub(crate) create_rate_key: String,
    pub(crate) lock_rate_key: String,
    pub(crate) grant_exists: String,
    pub(crate) prune_grants: String,
    pub(crate) rate_log: String,
    pub(crate) put_grant: String,
    pub(crate) block_rate: String,
}

impl Statements {
    pub(crate) fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let list_runs = (0..1 << LIST_FILTERS.len())
            .map(|mask: usize| {
                let conditions: Vec<String> = LIST_FILTERS
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| mask & (1 << bit) != 0)
                    .enumerate()
                    .map(|(n, (_, column))| format!("{column} = ${}", n + 2))
                    .collect();
                let filter =
                    if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
                format!(
                    "SELECT {RUN_COLUMNS} FROM {s}.runs {filter} ORDER BY created_at_ms DESC, run_id DESC LIMIT $1"
                )
            })
            .collect();
        let now = "$2";
        Statements {
            open_run: open_run(&s, false),
            open_run_leased: open_run(&s, true),
            save_step: format!(
                "INSERT INTO {s}.steps (run_id, step_id, name, status, value_text, error, attempts,
                                        request_hash, started_at_ms, finished_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (run_id, step_id) DO UPDATE SET
                     name = excluded.name, status = excluded.status, value_text = excluded.value_text,
                     error = excluded.error, attempts = excluded.attempts,
                     request_hash = excluded.request_hash, started_at_ms = excluded.started_at_ms,
                     finished_at_ms = excluded.finished_at_ms"
            ),
            // The steps of a batch (`$1`–`$10`, one record per step) and the events of its
            // runs (`$11`–`$15`, one row per event with its run and retention), in one
            // statement: one commit for both. Events take their offsets as `append_events`
            // gives them, run by run in the order of the rows; the heads are locked in run id
            // order, so that two batches never wait for each other in a cycle. Returns each
            // run's first offset, notifying the events channel `$16` of each.
            checkpoints: format!(
                "WITH saved AS (
                    INSERT INTO {s}.steps (run_id, step_id, name, status, value_text, error, attempts,
                                           request_hash, started_at_ms, finished_at_ms)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                         $6::text[], $7::int8[], $8::text[], $9::int8[], $10::int8[])
                    ON CONFLICT (run_id, step_id) DO UPDATE SET
                        name = excluded.name, status = excluded.status, value_text = excluded.value_text,
                        error = excluded.error, attempts = excluded.attempts,
                        request_hash = excluded.request_hash, started_at_ms = excluded.started_at_ms,
                        finished_at_ms = excluded.finished_at_ms
                 ), ev AS (
                    SELECT e.run_id COLLATE \"C\" AS run_id, e.kind, e.data, e.at_ms, e.keep,
                           row_number() OVER (PARTITION BY e.run_id ORDER BY e.i) AS n
                    FROM unnest($11::text[], $12::text[], $13::text[], $14::int8[], $15::int8[])
                         WITH ORDINALITY AS e(run_id, kind, data, at_ms, keep, i)
                 ), counts AS (
                    SELECT run_id, count(*) AS n, max(keep) AS keep FROM ev GROUP BY run_id
                 ), head AS (
                    INSERT INTO {s}.event_heads AS h (run_id, next_offset)
                    SELECT run_id, n FROM counts ORDER BY run_id
                    ON CONFLICT (run_id) DO UPDATE SET next_offset = h.next_offset + excluded.next_offset
                    RETURNING h.run_id, h.next_offset
                 ), span AS (
                    SELECT head.run_id, head.next_offset - counts.n AS first,
                           head.next_offset - counts.keep AS oldest
                    FROM head JOIN counts ON counts.run_id = head.run_id
                 ), ins AS (
                    INSERT INTO {s}.events (run_id, event_offset, kind, data, at_ms)
                    SELECT ev.run_id, span.first + ev.n - 1, ev.kind, ev.data, ev.at_ms
                    FROM ev JOIN span ON span.run_id = ev.run_id
                    WHERE span.first + ev.n - 1 >= span.oldest
                 ), dropped AS (
                    -- Only runs past their retention, each through the primary key, then by
                    -- row address: joined plainly, the planner (its statistics older than the
                    -- log) read the whole events table for each batch (80 ms with 400,000
                    -- events; 4 ms this way).
                    DELETE FROM {s}.events AS d
                    WHERE d.ctid = ANY(ARRAY(
                        SELECT old.ctid FROM span
                        CROSS JOIN LATERAL (
                            SELECT e.ctid FROM {s}.events e
                            WHERE e.run_id = span.run_id AND e.event_offset < span.oldest
                        ) old
                        WHERE span.oldest > 0
                    ))
                 )
                 SELECT run_id, first, pg_notify($16, {run_payload})::text FROM span",
                run_payload = payload("span.run_id"),
            ),
            update_run: format!(
                "UPDATE {s}.runs SET status = $2, output_text = $3, error = $4, waiting_on = $5,
                     wake_at_ms = NULL, updated_at_ms = $6
                 WHERE run_id = $1"
            ),
            // The notifications go out with the insert's commit, and only when this call
            // delivered the signal: on the signal channel `$5` (payload: the run id), and, when
            // the run is parked on this signal, on the work channel `$6` (payload: its queue).
            //
            // The delivery rewrites the run's row whether or not it is parked, so that it takes
            // the row's lock: a `park_run` that locked the row first is waited for, and the
            // re-check of the row (READ COMMITTED) then sees the run parked; a `park_run` that
            // comes second waits for this commit and sees the signal. Either way no wake-up is
            // lost. The wake time is the earlier of the caller's and the server's clock, so a
            // caller's clock running ahead never delays the claim.
            deliver_signal: format!(
                "WITH ins AS (
                    INSERT INTO {s}.signals (run_id, name, payload_text, delivered_at_ms)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (run_id, name) DO NOTHING
                    RETURNING run_id
                 ), unpark AS (
                    UPDATE {s}.runs AS r SET wake_at_ms = CASE
                        WHEN r.status = 'waiting' AND r.waiting_on = $2 AND r.wake_at_ms IS NOT NULL
                        THEN LEAST(r.wake_at_ms, $4, {SERVER_NOW_MS}) ELSE r.wake_at_ms END
                    WHERE r.run_id = $1 AND EXISTS (SELECT 1 FROM ins)
                    RETURNING CASE WHEN r.status = 'waiting' AND r.waiting_on = $2 AND r.wake_at_ms IS NOT NULL
                                   THEN r.queue END AS queue
                 )
                 SELECT pg_notify($5, {run_payload})::text,
                        (SELECT pg_notify($6, {queue_payload})::text FROM unpark WHERE queue IS NOT NULL)
                 FROM ins",
                run_payload = payload("run_id"),
                queue_payload = payload("queue"),
            ),
            get_signal: format!("SELECT payload_text FROM {s}.signals WHERE run_id = $1 AND name = $2"),
            get_run: format!("SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1"),
            list_runs,
            list_steps: format!(
                "SELECT {STEP_COLUMNS} FROM {s}.steps WHERE run_id = $1 ORDER BY started_at_ms, step_id"
            ),
            // Takes a free or expired lease, or renews one's own, atomically (the row lock of
            // ON CONFLICT serializes racing owners). When another owner holds it, the second
            // branch returns that lease; it reads the statement's snapshot, so a lease created
            // by a concurrent transaction may be invisible: the caller then tries again.
            // `$4` is the caller's clock, or NULL for the server's.
            acquire_lease: format!(
                "WITH clock AS (SELECT COALESCE($4::bigint, {SERVER_NOW_MS}) AS now_ms),
                 got AS (
                    INSERT INTO {s}.leases AS l (run_id, owner, expires_at_ms)
                    SELECT $1, $2, LEAST(now_ms::numeric + $3::bigint, 9223372036854775807)::bigint FROM clock
                    ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner,
                        expires_at_ms = excluded.expires_at_ms
                    WHERE l.owner = excluded.owner OR l.expires_at_ms <= (SELECT now_ms FROM clock)
                    RETURNING true AS acquired, l.owner, l.expires_at_ms
                 )
                 SELECT acquired, owner, expires_at_ms FROM got
                 UNION ALL
                 SELECT false, owner, expires_at_ms FROM {s}.leases
                 WHERE run_id = $1 AND NOT EXISTS (SELECT 1 FROM got)"
            ),
            release_lease: format!("DELETE FROM {s}.leases WHERE run_id = $1 AND owner = $2"),
            // Extends only the caller's rows (expired or not): a renewal never takes a lease.
            // Returns each other id with the owner of a live lease on it, if any, as the
            // statement's snapshot shows it (a concurrent takeover may show the caller: then
            // nobody is named).
            renew_leases: format!(
                "WITH clock AS (SELECT {SERVER_NOW_MS} AS now_ms),
                 renewed AS (
                    UPDATE {s}.leases AS l
                    SET expires_at_ms =
                        LEAST((SELECT now_ms FROM clock)::numeric + $3::bigint, 9223372036854775807)::bigint
                    WHERE l.run_id = ANY($1::text[]) AND l.owner = $2
                    RETURNING l.run_id
                 )
                 SELECT ids.run_id::text,
                        CASE WHEN l.owner <> $2 AND l.expires_at_ms > (SELECT now_ms FROM clock)
                             THEN l.owner::text END
                 FROM unnest($1::text[]) AS ids(run_id)
                 LEFT JOIN {s}.leases AS l ON l.run_id = ids.run_id
                 WHERE NOT EXISTS (SELECT 1 FROM renewed WHERE renewed.run_id = ids.run_id)"
            ),
            cancelled_runs: format!(
                "SELECT run_id::text FROM {s}.runs WHERE run_id = ANY($1::text[]) AND status = 'cancelled'"
            ),
            recoverable_runs: format!(
                "SELECT {RUN_COLUMNS} FROM {s}.runs r
                 WHERE r.status IN ('running', 'waiting') AND r.wake_at_ms IS NULL AND r.queue IS NULL
                   AND NOT EXISTS (
                       SELECT 1 FROM {s}.leases l
                       WHERE l.run_id = r.run_id AND l.expires_at_ms > COALESCE($1::bigint, {SERVER_NOW_MS}))
                 ORDER BY r.created_at_ms, r.run_id
                 LIMIT $2"
            ),
            list_signals: format!(
                "SELECT name, payload_text, delivered_at_ms FROM {s}.signals WHERE run_id = $1
                 ORDER BY delivered_at_ms, name"
            ),
            // One statement, so the run and everything of it go together or not at all.
            delete_run: format!(
                "WITH steps AS (DELETE FROM {s}.steps WHERE run_id = $1),
                      signals AS (DELETE FROM {s}.signals WHERE run_id = $1),
                      leases AS (DELETE FROM {s}.leases WHERE run_id = $1),
                      events AS (DELETE FROM {s}.events WHERE run_id = $1),
                      heads AS (DELETE FROM {s}.event_heads WHERE run_id = $1)
                 DELETE FROM {s}.runs WHERE run_id = $1 RETURNING 1"
            ),
            // The row lock of the UPDATE re-checks the status against the latest committed
            // version, so a cancellation committed concurrently is never overwritten. The
            // existence check tells "cancelled" from "no such run".
            update_run_unless_cancelled: update_run_unless_cancelled(&s, false),
            end_run: update_run_unless_cancelled(&s, true),
            // The first column says whether this call created the run; the last notifies the
            // work channel `$9` of a created run's queue. A run created by a concurrent
            // transaction can be invisible to the fallback read: the caller tries again.
            enqueue: format!(
                "WITH ins AS (
                    INSERT INTO {s}.runs (run_id, workflow, status, input_text, created_at_ms,
                                          updated_at_ms, queue, priority, queue_key, parent_id, version)
                    VALUES ($1, $2, 'enqueued', $3, $4, $4, $5, $6, $7, $8, $10)
                    ON CONFLICT (run_id) DO NOTHING
                    RETURNING {RUN_COLUMNS}
                 )
                 SELECT true, ins.*, pg_notify($9, {queue_payload})::text FROM ins
                 UNION ALL
                 SELECT false, {RUN_COLUMNS}, NULL FROM {s}.runs
                 WHERE run_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)",
                queue_payload = payload("queue"),
            ),
            // The lock first (a materialized CTE is computed before the row that reads it), then
            // the server's clock now, not at the start of the transaction, which may have
            // waited for the lock since: one round trip. It also has the rest of the claim's
            // transaction planned for its parameters each time (`plan_cache_mode`, for this
            // transaction only): a plan cached for any parameters, costed by statistics from
            // before the queue grew, read a backlog of 1,000,000 runs and sorted it for each
            // claim (2 s) instead of reading the first `$4` off `runs_claim_order` (3 ms).
            lock_queue: "WITH locked AS MATERIALIZED (
                    SELECT pg_advisory_xact_lock(hashtextextended($1, 0)),
                           set_config('plan_cache_mode', 'force_custom_plan', true)
                 )
                 SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint FROM locked"
                .to_owned(),
            // The claims of queue `$1` after the cut-off `$2`, those up to it deleted (the
            // deletion is invisible to the count, hence its condition): `i64::MAX` clears a
            // queue without a rate limit.
            claims_in_window: format!(
                "WITH pruned AS (DELETE FROM {s}.queue_claims WHERE queue = $1 AND claimed_at_ms <= $2)
                 SELECT COALESCE(SUM(claims), 0)::bigint FROM {s}.queue_claims WHERE queue = $1 AND claimed_at_ms > $2"
            ),
            count_executing: format!("SELECT count(*) FROM {}", executing_runs(&s, now)),
            // Runnable runs of queue `$1` at `$2`, at most `$4`, in claim order; under a per-key
            // limit `$3`, only as many of each key as its executing runs leave room for (each
            // key's candidates are numbered in claim order).
            claim_candidates: format!(
                "WITH executing AS (
                    SELECT r.queue_key, count(*) AS n FROM {executing}
                      AND r.queue_key IS NOT NULL
                    GROUP BY r.queue_key
                 ), runnable AS (
                    SELECT r.run_id, r.queue_key, r.priority, r.created_at_ms FROM {s}.runs r
                    WHERE r.queue = $1 AND {UNPARKED} AND NOT {live} AND {version}
                    UNION ALL
                    SELECT r.run_id, r.queue_key, r.priority, r.created_at_ms FROM {s}.runs r
                    WHERE {due} AND NOT {live} AND {version}
                 ), candidates AS (
                    SELECT c.run_id, c.queue_key, c.priority, c.created_at_ms,
                           row_number() OVER (PARTITION BY c.queue_key
                                              ORDER BY c.priority DESC, c.created_at_ms, c.run_id) AS nth
                    FROM runnable c
                 )
                 SELECT c.run_id::text FROM candidates c LEFT JOIN executing e ON e.queue_key = c.queue_key
                 WHERE $3::bigint IS NULL OR c.queue_key IS NULL OR c.nth + COALESCE(e.n, 0) <= $3::bigint
                 ORDER BY c.priority DESC, c.created_at_ms, c.run_id
                 LIMIT $4",
                executing = executing_runs(&s, now),
                live = live_lease(&s, now),
                due = parked_due("$1", now),
                version = version_allows("$5"),
            ),
            // The same without a per-key limit (`$3`, NULL, is only typed): the first `$4`
            // unparked runs in index order, merged with the first `$4` parked runs to fall
            // due (off `runs_by_wake`: however many fell due at once, none is sorted), then cut.
            claim_candidates_in_order: format!(
                "SELECT c.run_id::text FROM (
                    (SELECT r.run_id, r.priority, r.created_at_ms FROM {s}.runs r
                     WHERE r.queue = $1 AND {UNPARKED} AND NOT {live} AND {version}
                     ORDER BY r.priority DESC, r.created_at_ms, r.run_id
                     LIMIT $4)
                    UNION ALL
                    (SELECT r.run_id, r.priority, r.created_at_ms FROM {s}.runs r
                     WHERE {due} AND NOT {live} AND {version} AND $3::bigint IS NULL
                     ORDER BY r.wake_at_ms
                     LIMIT $4)
                 ) c
                 ORDER BY c.priority DESC, c.created_at_ms, c.run_id
                 LIMIT $4",
                live = live_lease(&s, now),
                due = parked_due("$1", now),
                version = version_allows("$5"),
            ),
            // The claim's writes in one statement, one round trip: the leases of the chosen
            // runs `$1` for owner `$2` until `$3`, unless another owner took one meanwhile (an
            // engine executing the run in place: the row lock of ON CONFLICT decides); the
            // leased runs, re-checked on the latest version of each row (READ COMMITTED), so a
            // run that stopped being runnable meanwhile (cancelled, opened in place) is left
            // alone (the re-check is wrapped in `IS TRUE` so that the rows are found by their
            // ids through the primary key: a planner with stale statistics otherwise walked the
            // queue's runs through `runs_runnable`, 100 ms a claim with 20,000 runs); and, under
            // a rate limit (`$6`), the claim time `$4` counted once per claimed run. Rows: `true` and each claimed run; `false` and each run leased but
            // not claimed, whose lease the caller gives back.
            claim: format!(
                "WITH leased AS (
                    INSERT INTO {s}.leases AS l (run_id, owner, expires_at_ms)
                    SELECT id, $2, $3 FROM unnest($1::text[]) AS ids(id)
                    ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
                    WHERE l.owner = excluded.owner OR l.expires_at_ms <= $4
                    RETURNING l.run_id
                 ), claimed AS (
                    UPDATE {s}.runs r SET status = 'running', waiting_on = NULL, wake_at_ms = NULL,
                        updated_at_ms = $4, claimed_at_ms = $4, version = COALESCE(r.version, $7::text)
                    WHERE r.run_id = ANY(ARRAY(SELECT run_id FROM leased))
                      AND (r.queue = $5 AND {ready} AND {version}) IS TRUE
                    RETURNING {RUN_COLUMNS}
                 ), counted AS (
                    INSERT INTO {s}.queue_claims AS c (queue, claimed_at_ms, claims)
                    SELECT $5, $4, count(*) FROM claimed HAVING $6::bool AND count(*) > 0
                    ON CONFLICT (queue, claimed_at_ms) DO UPDATE SET claims = c.claims + excluded.claims
                 )
                 SELECT true, claimed.* FROM claimed
                 UNION ALL
                 SELECT false, leased.run_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                        NULL, NULL
                 FROM leased WHERE leased.run_id NOT IN (SELECT run_id FROM claimed)",
                ready = ready("$4"),
                version = version_allows("$7"),
            ),
            release_unclaimed: format!(
                "DELETE FROM {s}.leases WHERE run_id = ANY($1::text[]) AND owner = $2"
            ),
            lock_run: format!("SELECT status, queue FROM {s}.runs WHERE run_id = $1 FOR UPDATE"),
            // Runs after `lock_run`, in its own statement, so its snapshot shows a delivery
            // that committed while the lock was awaited. Returns whether the signal was
            // delivered, and notifies the work channel `$6` then.
            park_run: format!(
                "WITH sig AS (
                    SELECT EXISTS (SELECT 1 FROM {s}.signals WHERE run_id = $1 AND name = $2) AS delivered
                 ), upd AS (
                    UPDATE {s}.runs SET status = 'waiting', waiting_on = $2,
                        wake_at_ms = CASE WHEN (SELECT delivered FROM sig) THEN LEAST($4, {SERVER_NOW_MS}) ELSE $3 END,
                        updated_at_ms = $4
                    WHERE run_id = $1
                    RETURNING queue
                 ), released AS (
                    DELETE FROM {s}.leases WHERE run_id = $1 AND owner = $5
                 )
                 SELECT (SELECT delivered FROM sig),
                        (SELECT pg_notify($6, {queue_payload})::text FROM upd
                         WHERE queue IS NOT NULL AND (SELECT delivered FROM sig))",
                queue_payload = payload("queue"),
            ),
            queue_stats: format!(
                "SELECT (SELECT count(*) FROM {executing}),
                        count(*) FILTER (WHERE r.status = 'enqueued'),
                        count(*) FILTER (WHERE r.status = 'waiting' AND r.wake_at_ms IS NOT NULL),
                        min(r.created_at_ms) FILTER (WHERE r.status = 'enqueued')
                 FROM {s}.runs r
                 WHERE r.queue = $1 AND r.status IN ('enqueued', 'waiting') AND NOT {live}",
                executing = executing_runs(&s, SERVER_NOW_MS),
                live = live_lease(&s, SERVER_NOW_MS),
            ),
            queue_names: format!(
                "WITH RECURSIVE q(name) AS (
                     SELECT min(queue) FROM {s}.runs WHERE queue IS NOT NULL
                     UNION ALL
                     SELECT (SELECT min(r.queue) FROM {s}.runs r WHERE r.queue > q.name)
                     FROM q WHERE q.name IS NOT NULL
                 )
                 SELECT name FROM q WHERE name IS NOT NULL"
            ),
            // One runnable run is enough. The unparked ones are looked for in the order of
            // `runs_claim_order` (a scalar subquery, since `EXISTS` drops `ORDER BY`), so the
            // planner walks that index rather than the table; the due parked ones likewise in
            // the order of `runs_by_wake`.
            runnable_queues: format!(
                "SELECT q::text FROM unnest($1::text[]) AS q
                 WHERE (SELECT r.run_id FROM {s}.runs r WHERE r.queue = q AND {UNPARKED} AND NOT {live}
                        ORDER BY r.priority DESC, r.created_at_ms, r.run_id LIMIT 1) IS NOT NULL
                    OR (SELECT r.run_id FROM {s}.runs r WHERE {due} AND NOT {live}
                        ORDER BY r.wake_at_ms LIMIT 1) IS NOT NULL",
                due = parked_due("q", SERVER_NOW_MS),
                live = live_lease(&s, SERVER_NOW_MS),
            ),
            // The head row's lock serializes appends to one log: each takes the next offsets
            // from the latest committed head, so two never share one and none is skipped, and
            // offsets never go back however many events are dropped. The log keeps the newest
            // `$6` events: older rows are deleted, and the events of a batch longer than that
            // are not written. (The deletion sees the rows committed when the statement began:
            // those of an append it waited for go with the next append.) The notification
            // (payload: the run id) goes to the events channel `$5`.
            append_events: format!(
                "WITH head AS (
                    INSERT INTO {s}.event_heads AS h (run_id, next_offset)
                    VALUES ($1, cardinality($2::text[]))
                    ON CONFLICT (run_id) DO UPDATE SET next_offset = h.next_offset + excluded.next_offset
                    RETURNING h.next_offset - cardinality($2::text[]) AS first, h.next_offset - $6::int8 AS oldest
                 ), ins AS (
                    INSERT INTO {s}.events (run_id, event_offset, kind, data, at_ms)
                    SELECT $1, head.first + e.i - 1, e.kind, e.data, e.at_ms
                    FROM head, unnest($2::text[], $3::text[], $4::int8[]) WITH ORDINALITY AS e(kind, data, at_ms, i)
                    WHERE head.first + e.i - 1 >= head.oldest
                 ), dropped AS (
                    DELETE FROM {s}.events AS d USING head
                    WHERE d.run_id = $1 AND d.event_offset < head.oldest
                 )
                 SELECT first, pg_notify($5, {run_payload})::text FROM head",
                run_payload = payload("$1"),
            ),
            read_events: format!(
                "SELECT event_offset, kind, data, at_ms FROM {s}.events
                 WHERE run_id = $1 AND event_offset >= $2 ORDER BY event_offset LIMIT $3"
            ),
            create_rate_key: format!("INSERT INTO {s}.rate_keys (rate_key) VALUES ($1) ON CONFLICT DO NOTHING"),
            lock_rate_key: format!("SELECT blocked_until_ms FROM {s}.rate_keys WHERE rate_key = $1 FOR UPDATE"),
            grant_exists: format!("SELECT 1 FROM {s}.rate_grants WHERE rate_key = $1 AND grant_id = $2"),
            prune_grants: format!("DELETE FROM {s}.rate_grants WHERE rate_key = $1 AND at_ms <= $2"),
            rate_log: format!(
                "SELECT at_ms, requests, tokens FROM {s}.rate_grants WHERE rate_key = $1 ORDER BY at_ms, grant_id"
            ),
            put_grant: format!(
                "INSERT INTO {s}.rate_grants AS g (rate_key, grant_id, at_ms, requests, tokens)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (rate_key, grant_id) DO UPDATE
                 SET at_ms = excluded.at_ms, requests = excluded.requests, tokens = excluded.tokens"
            ),
            // `$2` is the block's length: its end is by the server's clock.
            block_rate: format!(
                "INSERT INTO {s}.rate_keys AS k (rate_key, blocked_until_ms)
                 VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $2)
                 ON CONFLICT (rate_key) DO UPDATE
                 SET blocked_until_ms = GREATEST(k.blocked_until_ms, excluded.blocked_until_ms)"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Reads column `idx` of `row`, turning a type mismatch into `Error::Corrupt`.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    run_id: &str,
    step_id: Option<&str>,
) -> Result<T, Error> {
    row.try_get(idx).map_err(|e| Error::Corrupt {
        run_id: run_id.to_owned(),
        step_id: step_id.map(str::to_owned),
        detail: format!("column {idx}: {e}"),
    })
}

fn corrupt(run_id: &str, step_id: Option<&str>, detail: impl Into<String>) -> Error {
    Error::Corrupt { run_id: run_id.to_owned(), step_id: step_id.map(str::to_owned), detail: detail.into() }
}

/// A run from columns `base..base + 9` in [`RUN_COLUMNS`] order, and its queue, parent, wake
/// time, claim time and version from columns `extra..extra + 5`.
pub(crate) fn decode_run_at(
    row: &Row,
    base: usize,
    extra: usize,
    run_id_hint: &str,
) -> Result<RunRecord, Error> {
    let run_id: String = col(row, base, run_id_hint, None)?;
    let status: String = col(row, base + 2, &run_id, None)?;
    let status: RunStatus = status.parse().map_err(|e: Error| corrupt(&run_id, None, e.to_string()))?;
    let mut run = RunRecord::new(
        run_id.clone(),
        col::<String>(row, base + 1, &run_id, None)?,
        col(row, base + 3, &run_id, None)?,
        col(row, base + 7, &run_id, None)?,
    );
    run.status = status;
    run.output = col(row, base + 4, &run_id, None)?;
    run.error = col(row, base + 5, &run_id, None)?;
    run.waiting_on = col(row, base + 6, &run_id, None)?;
    run.updated_at_ms = col(row, base + 8, &run_id, None)?;
    run.queue = col(row, extra, &run_id, None)?;
    run.parent_id = col(row, extra + 1, &run_id, None)?;
    run.wake_at_ms = col(row, extra + 2, &run_id, None)?;
    run.claimed_at_ms = col(row, extra + 3, &run_id, None)?;
    run.version = col(row, extra + 4, &run_id, None)?;
    Ok(run)
}

/// A run from a row of [`RUN_COLUMNS`] from column `base` on.
pub(crate) fn decode_run_from(row: &Row, base: usize, run_id_hint: &str) -> Result<RunRecord, Error> {
    decode_run_at(row, base, base + 9, run_id_hint)
}

/// A run from a row of [`RUN_COLUMNS`].
pub(crate) fn decode_run(row: &Row, run_id_hint: &str) -> Result<RunRecord, Error> {
    decode_run_from(row, 0, run_id_hint)
}

/// An event from a row of `event_offset, kind, data, at_ms`.
pub(crate) fn decode_event(row: &Row, run_id: &str) -> Result<EventRecord, Error> {
    let offset: i64 = col(row, 0, run_id, None)?;
    let offset = u64::try_from(offset)
        .map_err(|_| corrupt(run_id, None, format!("event offset {offset} is negative")))?;
    let event = NewEvent::new(
        col::<String>(row, 1, run_id, None)?,
        col::<String>(row, 2, run_id, None)?,
        col::<i64>(row, 3, run_id, None)?,
    );
    Ok(EventRecord::new(offset, event))
}

/// Builds a step record from its decoded columns, checking status and attempts.
#[allow(clippy::too_many_arguments)]
fn make_step(
    run_id: &str,
    step_id: String,
    name: String,
    status: String,
    value: Option<String>,
    error: Option<String>,
    attempts: i64,
    request_hash: Option<String>,
    started_at_ms: i64,
    finished_at_ms: Option<i64>,
) -> Result<StepRecord, Error> {
    let status: StepStatus =
        status.parse().map_err(|e: Error| corrupt(run_id, Some(&step_id), e.to_string()))?;
    let attempts = u32::try_from(attempts)
        .map_err(|_| corrupt(run_id, Some(&step_id), format!("attempts {attempts} is out of range")))?;
    let mut step = StepRecord::new(step_id, name, status, started_at_ms);
    step.value = value;
    step.error = error;
    step.attempts = attempts;
    step.request_hash = request_hash;
    step.finished_at_ms = finished_at_ms;
    Ok(step)
}

/// A step from a row of [`STEP_COLUMNS`].
pub(crate) fn decode_step(row: &Row, run_id: &str) -> Result<StepRecord, Error> {
    let step_id: String = col(row, 0, run_id, None)?;
    let sid = Some(step_id.as_str());
    make_step(
        run_id,
        step_id.clone(),
        col(row, 1, run_id, sid)?,
        col(row, 2, run_id, sid)?,
        col(row, 3, run_id, sid)?,
        col(row, 4, run_id, sid)?,
        col(row, 5, run_id, sid)?,
        col(row, 6, run_id, sid)?,
        col(row, 7, run_id, sid)?,
        col(row, 8, run_id, sid)?,
    )
}

/// A signal from a row of `name, payload_text, delivered_at_ms`.
pub(crate) fn decode_signal(row: &Row, run_id: &str) -> Result<SignalRecord, Error> {
    let name: String = col(row, 0, run_id, None)?;
    Ok(SignalRecord::new(name, col::<String>(row, 1, run_id, None)?, col(row, 2, run_id, None)?))
}

/// One row of the `open_run` statement.
pub(crate) enum HistoryRow {
    Run(RunRecord),
    Step(StepRecord),
    Signal(SignalRecord),
}

/// Sets the status of run `$1` (`$2`–`$6`) unless it is cancelled; answers whether it did and
/// whether the run exists. `release`: the `end_run` statement, which also deletes owner `$7`'s
/// lease on the run (the run must exist), whether or not the status changed.
fn update_run_unless_cancelled(s: &str, release: bool) -> String {
    let released = if release {
        format!(
            ", released AS (
                DELETE FROM {s}.leases WHERE run_id = $1 AND owner = $7
                  AND EXISTS (SELECT 1 FROM {s}.runs WHERE run_id = $1)
             )"
        )
    } else {
        String::new()
    };
    format!(
        "WITH upd AS (
            UPDATE {s}.runs SET status = $2, output_text = $3, error = $4, waiting_on = $5,
                wake_at_ms = NULL, updated_at_ms = $6
            WHERE run_id = $1 AND status <> 'cancelled'
            RETURNING 1
         ){released}
         SELECT EXISTS (SELECT 1 FROM upd), EXISTS (SELECT 1 FROM {s}.runs WHERE run_id = $1)"
    )
}

/// The `open_run` statement: one statement, so one round trip: create or resume run `$1`
/// (workflow `$2`, input `$3`, at `$4`), then return it (row kind 0), its steps (kind 1) and its
/// signals (kind 2). The rows of a data-modifying CTE are invisible to the rest of the
/// statement, hence `up` and the fallback read of a run the upsert left alone (completed,
/// cancelled, another workflow's).
///
/// `leased`: the `open_run_leased` statement, which first takes the run's lease for owner `$5`
/// for `$6` ms by the clock `$7` (NULL: the server's), as `acquire_lease` does, and opens the
/// run only if it got it; otherwise its one row (kind 3) is the holder's lease: owner in the
/// second column, expiry in the ninth.
fn open_run(s: &str, leased: bool) -> String {
    let (lease, gate, and_gate, held) = if leased {
        (
            format!(
                "clock AS (SELECT COALESCE($7::bigint, {SERVER_NOW_MS}) AS now_ms),
                 got AS (
                    INSERT INTO {s}.leases AS l (run_id, owner, expires_at_ms)
                    SELECT $1, $5, LEAST(now_ms::numeric + $6::bigint, 9223372036854775807)::bigint FROM clock
                    ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner,
                        expires_at_ms = excluded.expires_at_ms
                    WHERE l.owner = excluded.owner OR l.expires_at_ms <= (SELECT now_ms FROM clock)
                    RETURNING l.run_id
                 ),"
            ),
            " WHERE EXISTS (SELECT 1 FROM got)",
            " AND EXISTS (SELECT 1 FROM got)",
            format!(
                "
                UNION ALL
                SELECT 3, owner, NULL, NULL, NULL, NULL, NULL, NULL, expires_at_ms, NULL, NULL,
                       NULL, NULL, NULL, NULL, NULL
                FROM {s}.leases WHERE run_id = $1 AND NOT EXISTS (SELECT 1 FROM got)"
            ),
        )
    } else {
        (String::new(), "", "", String::new())
    };
    format!(
        "WITH {lease} up AS (
            INSERT INTO {s}.runs AS r (run_id, workflow, status, input_text, created_at_ms, updated_at_ms)
            SELECT $1, $2, 'running', $3, $4, $4{gate}
            ON CONFLICT (run_id) DO UPDATE SET
                status = 'running', error = NULL, waiting_on = NULL, wake_at_ms = NULL,
                updated_at_ms = excluded.updated_at_ms
            WHERE r.workflow = excluded.workflow
              AND r.status IN ('enqueued', 'running', 'waiting', 'failed')
            RETURNING r.run_id, r.workflow, r.status, r.input_text, r.output_text, r.error,
                      r.waiting_on, r.created_at_ms, r.updated_at_ms, r.queue, r.parent_id,
                      r.wake_at_ms, r.claimed_at_ms, r.version
        ), run AS (
            SELECT * FROM up
            UNION ALL
            SELECT {RUN_COLUMNS} FROM {s}.runs
            WHERE run_id = $1 AND NOT EXISTS (SELECT 1 FROM up){and_gate}
        )
        SELECT 0 AS kind, run_id AS t1, workflow AS t2, status AS t3, input_text AS t4,
               output_text AS t5, error AS t6, waiting_on AS t7,
               created_at_ms AS n1, updated_at_ms AS n2, NULL::bigint AS n3,
               queue AS t8, parent_id AS t9, wake_at_ms AS n4, claimed_at_ms AS n5, version AS t10
        FROM run
        UNION ALL
        SELECT 1, step_id, name, status, value_text, error, request_hash, NULL,
               started_at_ms, finished_at_ms, attempts, NULL, NULL, NULL, NULL, NULL
        FROM {s}.steps WHERE run_id = $1{and_gate}
        UNION ALL
        SELECT 2, name, payload_text, NULL, NULL, NULL, NULL, NULL, delivered_at_ms, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL
        FROM {s}.signals WHERE run_id = $1{and_gate}{held}"
    )
}

/// Decodes a row of the `open_run` statement (see [`Statements::open_run`] for the layout).
pub(crate) fn decode_history_row(row: &Row, run_id: &str) -> Result<HistoryRow, Error> {
    let kind: i32 = col(row, 0, run_id, None)?;
    match kind {
        0 => decode_run_at(row, 1, 11, run_id).map(HistoryRow::Run),
        1 => {
            let step_id: String = col(row, 1, run_id, None)?;
            let sid = Some(step_id.as_str());
            let status: Option<String> = col(row, 3, run_id, sid)?;
            let attempts: Option<i64> = col(row, 10, run_id, sid)?;
            let started: Option<i64> = col(row, 8, run_id, sid)?;
            make_step(
                run_id,
                step_id.clone(),
                col(row, 2, run_id, sid)?,
                status.unwrap_or_default(),
                col(row, 4, run_id, sid)?,
                col(row, 5, run_id, sid)?,
                attempts.ok_or_else(|| corrupt(run_id, sid, "attempts is NULL"))?,
                col(row, 6, run_id, sid)?,
                started.ok_or_else(|| corrupt(run_id, sid, "started_at_ms is NULL"))?,
                col(row, 9, run_id, sid)?,
            )
            .map(HistoryRow::Step)
        }
        2 => {
            let name: String = col(row, 1, run_id, None)?;
            let payload: String = col(row, 2, run_id, None)?;
            let delivered: Option<i64> = col(row, 8, run_id, None)?;
            let delivered = delivered
                .ok_or_else(|| corrupt(run_id, None, format!("signal `{name}` has no delivery time")))?;
            Ok(HistoryRow::Signal(SignalRecord::new(name, payload, delivered)))
        }
        other => Err(corrupt(run_id, None, format!("unexpected history row kind {other}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_embedded_quotes_doubled() {
        assert_eq!(quote_ident("durably"), "\"durably\"");
        assert_eq!(quote_ident("my \"s\"; DROP"), "\"my \"\"s\"\"; DROP\"");
    }

    #[test]
    fn every_statement_names_the_quoted_schema() {
        let st = Statements::new("a\"b");
        for sql in [
            &st.open_run,
            &st.save_step,
            &st.checkpoints,
            &st.update_run,
            &st.deliver_signal,
            &st.acquire_lease,
        ] {
            assert!(sql.contains("\"a\"\"b\"."), "{sql}");
        }
    }
}
