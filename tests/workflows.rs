//! The `#[workflow]` attribute: run ids from templates, defaults and explicit ids (rule 8 of
//! docs/design.md), stored input, and the stored output of a completed run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Harness;
use durably::{Error, RunFilter, RunStatus};

#[durably::task(retries = 0)]
async fn greet(name: String) -> Result<String, common::Boom> {
    Ok(format!("hello {name}"))
}

#[durably::workflow(id = "greeting-{name}-{times}")]
async fn greeting(name: String, times: u32) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for i in 0..times {
        out.push(greet(name.clone()).step_id(format!("greet-{i}")).await?);
    }
    Ok(out)
}

#[durably::workflow]
async fn untemplated(region: String, count: u32) -> anyhow::Result<String> {
    Ok(format!("{region}:{count}"))
}

#[durably::workflow(name = "orders", id = "order-{order_id}")]
async fn process_order(order_id: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(order_id != 13, "unlucky order");
    Ok(order_id * 2)
}

async fn the_template_names_the_run_and_the_input_is_stored(h: Harness) {
    let wf = h.wf();
    let out = greeting(&wf, "ana".into(), 2).await.unwrap();
    assert_eq!(out, ["hello ana", "hello ana"]);
    let run = wf.get_run("greeting-ana-2").await.unwrap().expect("run id from the template");
    assert_eq!((run.workflow.as_str(), run.status), ("greeting", RunStatus::Completed));
    let input: serde_json::Value = serde_json::from_str(run.input.as_deref().unwrap()).unwrap();
    assert_eq!(input, serde_json::json!({"name": "ana", "times": 2}));
    let ids: Vec<String> =
        wf.list_steps("greeting-ana-2").await.unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(ids, ["greet-0", "greet-1"]);
}

async fn without_a_template_the_id_is_app_fn_args(h: Harness) {
    let wf = h.wf();
    assert_eq!(untemplated(&wf, "eu".into(), 3).await.unwrap(), "eu:3");
    assert!(wf.get_run("test-app-untemplated-eu-3").await.unwrap().is_some());
}

async fn with_id_sets_the_run_id(h: Harness) {
    let wf = h.wf();
    assert_eq!(process_order::with_id(&wf, "my-run-123", 21).await.unwrap(), 42);
    let run = wf.get_run("my-run-123").await.unwrap().unwrap();
    assert_eq!(run.workflow, "orders", "the name attribute names the workflow");
    assert!(wf.get_run("order-21").await.unwrap().is_none());
}

async fn a_failing_workflow_stores_its_error_text(h: Harness) {
    let wf = h.wf();
    let err = process_order(&wf, 13).await.unwrap_err();
    assert!(matches!(&err, Error::Workflow { run_id, .. } if run_id == "order-13"), "{err}");
    let run = wf.get_run("order-13").await.unwrap().unwrap();
    assert_eq!((run.status, run.error.as_deref()), (RunStatus::Failed, Some("unlucky order")));
}

async fn runs_can_be_listed_by_status_and_workflow(h: Harness) {
    let wf = h.wf();
    process_order(&wf, 1).await.unwrap();
    process_order(&wf, 2).await.unwrap();
    process_order(&wf, 13).await.unwrap_err();
    greeting(&wf, "bo".into(), 1).await.unwrap();
    let ids = |runs: Vec<durably::RunRecord>| {
        let mut ids: Vec<String> = runs.into_iter().map(|r| r.run_id).collect();
        ids.sort();
        ids
    };
    let orders = wf.list_runs(&RunFilter::new().workflow("orders")).await.unwrap();
    assert_eq!(ids(orders), ["order-1", "order-13", "order-2"]);
    let failed = wf.list_runs(&RunFilter::new().status(RunStatus::Failed)).await.unwrap();
    assert_eq!(ids(failed), ["order-13"]);
    let done =
        wf.list_runs(&RunFilter::new().status(RunStatus::Completed).workflow("greeting")).await.unwrap();
    assert_eq!(ids(done), ["greeting-bo-1"]);
    assert_eq!(wf.list_runs(&RunFilter::new().limit(2)).await.unwrap().len(), 2);
}

on_every_store!(
    the_template_names_the_run_and_the_input_is_stored,
    without_a_template_the_id_is_app_fn_args,
    with_id_sets_the_run_id,
    a_failing_workflow_stores_its_error_text,
    runs_can_be_listed_by_status_and_workflow,
);

/// `Workflow::open_path` on a file: a second engine opened on the same file after the first is
/// dropped (a restarted process) finds the completed run and its steps.
#[tokio::test]
async fn open_path_persists_runs_across_engines() {
    use durably::OpenSqlite;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    {
        let wf = durably::Workflow::open_path("persist", &path).await.unwrap();
        assert_eq!(greeting(&wf, "cy".into(), 1).await.unwrap(), ["hello cy"]);
    }
    let wf = durably::Workflow::open_path("persist", &path).await.unwrap();
    let run = wf.get_run("greeting-cy-1").await.unwrap().expect("the run survived the reopen");
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(wf.output::<Vec<String>>("greeting-cy-1").await.unwrap(), Some(vec!["hello cy".to_string()]));
    assert_eq!(wf.list_steps("greeting-cy-1").await.unwrap()[0].value.as_deref(), Some("\"hello cy\""));
}
