//! Arbitrary bytes as a run export document (`RunExport::from_json`), imported into a
//! `MemoryStore` as it is and set up for replay, then executed and exported again; the same
//! bytes as a run or step status. Each must give a value or an error, never a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use durably::{Error, MemoryStore, RunStatus, StepStatus, Workflow};
use durably_core::RunExport;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
    })
}

/// Steps and signals with the names a recorded run most likely has, typed loosely.
async fn body() -> durably::Result<serde_json::Value> {
    let a: serde_json::Value =
        durably::step("a", || async { Ok::<_, std::io::Error>(serde_json::Value::Null) }).await?;
    let b: Option<serde_json::Value> = durably::signal_timeout("b", Duration::from_millis(1)).await?;
    let c: u32 = durably::step("c", || async { Ok::<_, std::io::Error>(1u32) }).await?;
    Ok(serde_json::json!([a, b, c]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(status) = text.parse::<RunStatus>() {
        assert_eq!(status.as_str().parse::<RunStatus>().ok(), Some(status));
    }
    if let Ok(status) = text.parse::<StepStatus>() {
        assert_eq!(status.as_str().parse::<StepStatus>().ok(), Some(status));
    }
    let Ok(doc) = RunExport::from_json(text) else { return };
    runtime().block_on(async {
        let wf = Workflow::builder("fuzz").store(MemoryStore::new()).build();
        let run_id = doc.run.run_id.clone();
        if wf.import(&doc).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wf.run(run_id.as_str(), |_| body())).await;
            if let Ok(again) = wf.export(&run_id).await {
                let _ = again.to_json();
            }
            let _ = wf.get_run(&run_id).await;
            let _ = wf.list_steps(&run_id).await;
        }
        let replay = doc.for_replay().with_run_id("fuzz-replay");
        if wf.import(&replay).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wf.run("fuzz-replay", |_| body())).await;
            let _: Result<RunExport, Error> = wf.export("fuzz-replay").await;
        }
    });
});
