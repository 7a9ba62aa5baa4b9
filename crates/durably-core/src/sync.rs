//! Small synchronization pieces shared by the engine's modules.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, using it even if a panic elsewhere poisoned it: every critical section of the
/// engine leaves its maps consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether one of an engine's background tasks (the cancellation watcher, the lease renewer)
/// runs, and which one: a task that ends frees the slot only if no newer task took it meanwhile.
#[derive(Debug, Default)]
pub(crate) struct TaskSlot {
    running: Option<u64>,
    started: u64,
}

impl TaskSlot {
    /// Takes the slot for a new task if none runs, and returns the number to spawn it with.
    pub(crate) fn claim(&mut self) -> Option<u64> {
        if self.running.is_some() {
            return None;
        }
        self.started += 1;
        self.running = Some(self.started);
        self.running
    }

    /// Frees the slot, if task `task` still holds it.
    pub(crate) fn free(&mut self, task: u64) {
        if self.running == Some(task) {
            self.running = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_task_frees_only_its_own_slot() {
        let mut slot = TaskSlot::default();
        let first = slot.claim();
        assert_eq!(first, Some(1));
        assert_eq!(slot.claim(), None, "one task at a time");
        slot.free(1);
        assert_eq!(slot.claim(), Some(2));
        slot.free(1);
        assert_eq!(slot.claim(), None, "a stale task's end leaves the newer task's slot taken");
    }
}
