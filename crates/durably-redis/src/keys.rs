//! Key names. A run id is put into a key as `<byte length>:<id>`, so that no two ids give the
//! same key whatever characters they contain (`:`, `*`, `{`, quotes, newlines): the length says
//! where the id ends. The verbatim id is also kept inside the run's hash, so nothing is ever
//! parsed back out of a key.
//!
//! The Lua scripts build the same names (see `scripts.rs`); the two must agree:
//!
//! | key                                   | type       | holds                                  |
//! |---------------------------------------|------------|----------------------------------------|
//! | `<prefix>:run:<n>:<id>`               | hash       | the run record                          |
//! | `<prefix>:steps:<n>:<id>`             | hash       | step id → step record (JSON)            |
//! | `<prefix>:signals:<n>:<id>`           | hash       | signal name → `<delivered_at>:<payload>` |
//! | `<prefix>:lease:<n>:<id>`             | string     | `<expires_at>:<owner>`, with `PXAT`     |
//! | `<prefix>:events:<n>:<id>`            | list       | events kept, oldest first (`<at>:<n>:<kind><data>`) |
//! | `<prefix>:events-from:<n>:<id>`       | string     | the offset of the list's first event, once events were dropped (else 0) |
//! | `<prefix>:wake:<n>:<id>`              | channel    | signal names, published on delivery     |
//! | `<prefix>:appended:<n>:<id>`          | channel    | the log's length, published on append   |
//! | `<prefix>:work:<n>:<queue>`           | channel    | run ids enqueued or unparked            |
//! | `<prefix>:queue:<n>:<queue>:ready`    | sorted set | candidates `<rank><id>`, score 0 (byte order) |
//! | `<prefix>:queue:<n>:<queue>:enqueued` | sorted set | `enqueued` run ids by creation time     |
//! | `<prefix>:queue:<n>:<queue>:active`   | sorted set | claimed (running) run ids               |
//! | `<prefix>:queue:<n>:<queue>:parked`   | set        | parked run ids                          |
//! | `<prefix>:queue:<n>:<queue>:timers`   | sorted set | parked run ids not yet due, by wake time |
//! | `<prefix>:queue:<n>:<queue>:claims`   | sorted set | claim times (server clock) in the rate window |
//! | `<prefix>:index:queue:<n>:<queue>`    | sorted set | run ids enqueued in that queue          |
//! | `<prefix>:index:parent:<n>:<id>`      | sorted set | child run ids of that run               |
//! | `<prefix>:rate:<n>:<key>`             | hash       | a rate limit's `period` and block end (`blocked`) |
//! | `<prefix>:rate_grants:<n>:<key>`      | sorted set | its grant ids by the time they count from (server clock) |
//! | `<prefix>:rate_costs:<n>:<key>`       | hash       | grant id → `<requests>:<tokens>`        |
//! | `<prefix>:index:all`                  | sorted set | run ids by creation time                |
//! | `<prefix>:index:status:<status>`      | sorted set | run ids in that status                  |
//! | `<prefix>:index:unfinished`           | sorted set | running and waiting run ids             |
//! | `<prefix>:index:workflow:<n>:<name>`  | sorted set | run ids of that workflow                |
//! | `<prefix>:index:expiry`               | sorted set | `<n>:<workflow><id>` by last write time (queued runs: see `exp_member` in `scripts.rs`) |
//!
//! A queued run's rank (24 hex digits: priority descending, then creation time) is kept in its
//! hash, so that its `ready` member sorts by priority, then age, then run id.

/// Builds the key names of one store.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn of(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{}:{id}", self.prefix, id.len())
    }

    /// The run's hash.
    pub(crate) fn run(&self, run_id: &str) -> String {
        self.of("run", run_id)
    }

    /// The run's steps.
    pub(crate) fn steps(&self, run_id: &str) -> String {
        self.of("steps", run_id)
    }

    /// The run's signals.
    pub(crate) fn signals(&self, run_id: &str) -> String {
        self.of("signals", run_id)
    }

    /// The pub/sub channel on which appends to the run's event log are announced.
    pub(crate) fn appended(&self, run_id: &str) -> String {
        self.of("appended", run_id)
    }

    /// The pub/sub channel on which work in `queue` is announced.
    pub(crate) fn work(&self, queue: &str) -> String {
        self.of("work", queue)
    }

    /// The pub/sub channel on which deliveries to the run are announced.
    pub(crate) fn wake(&self, run_id: &str) -> String {
        self.of("wake", run_id)
    }

    /// A `SCAN … MATCH` pattern for the queue indexes (`<prefix>:index:queue:<n>:<queue>`),
    /// the prefix's glob characters escaped.
    pub(crate) fn queue_index_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 16);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":index:queue:*");
        pattern
    }

    /// The queue whose index is `key`, or `None` when `key` is not a queue index of this
    /// prefix (a `<n>` that does not give the name's length).
    pub(crate) fn queue_of_index(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":index:queue:")?;
        let (len, name) = rest.split_once(':')?;
        (len.parse::<usize>().ok()? == name.len()).then(|| name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn ids_that_join_to_the_same_text_give_different_keys() {
        let keys = Keys::new("p");
        assert_ne!(keys.run("a:1:b"), keys.run("a"));
        assert_ne!(keys.steps("1:a"), keys.steps("a"));
        assert_eq!(keys.run("a:b"), "p:run:3:a:b");
        assert_eq!(keys.wake("🦀"), "p:wake:4:🦀");
        assert_eq!(keys.work("q:1"), "p:work:3:q:1");
    }

    #[test]
    fn queue_indexes_are_found_by_an_escaped_pattern_and_parsed_back() {
        let keys = Keys::new("a*[b]?\\c");
        assert_eq!(keys.queue_index_pattern(), "a\\*\\[b\\]\\?\\\\c:index:queue:*");
        assert_eq!(keys.queue_of_index("a*[b]?\\c:index:queue:5:q:1 x").as_deref(), Some("q:1 x"));
        let keys = Keys::new("p");
        assert_eq!(keys.queue_of_index("p:index:queue:3:🦀").as_deref(), None, "4 bytes, not 3");
        assert_eq!(keys.queue_of_index("p:index:queue:4:🦀").as_deref(), Some("🦀"));
        assert_eq!(keys.queue_of_index("p:index:parent:1:q"), None);
        assert_eq!(keys.queue_of_index("pp:index:queue:1:q"), None);
    }
}
