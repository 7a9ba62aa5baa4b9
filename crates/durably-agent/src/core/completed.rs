//! The completed-run check: a completed run returns its stored output without running its body,
//! so nothing in the body can notice that it is asked another question. Before executing a run
//! of its own, an agent compares the hash of what it is asked with the hash recorded by the
//! run's first step, and refuses to hand back an answer to another question.

use durably_core::{Error, Result, RunStatus, Workflow};

/// Fails with [`Error::NonDeterminism`] when `run_id` is a completed run whose step `step_id`
/// recorded another request hash than `called` computes. A run that is not completed (its body
/// runs, and its steps check themselves), or whose step recorded no hash, passes.
pub(crate) async fn check_completed_run(
    wf: &Workflow,
    run_id: &str,
    step_id: &str,
    called: impl FnOnce() -> Result<String>,
) -> Result<()> {
    let Some(run) = wf.get_run(run_id).await? else { return Ok(()) };
    if run.status != RunStatus::Completed {
        return Ok(());
    }
    let steps = wf.list_steps(run_id).await?;
    let Some(recorded) = steps.into_iter().find(|s| s.step_id == step_id).and_then(|s| s.request_hash) else {
        return Ok(());
    };
    let called = called()?;
    if recorded != called {
        return Err(Error::NonDeterminism {
            run_id: run_id.to_owned(),
            step_id: step_id.to_owned(),
            recorded: format!("{step_id} with request {recorded}"),
            called: format!("{step_id} with request {called}"),
        });
    }
    Ok(())
}
