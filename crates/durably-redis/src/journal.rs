//! [`Journal`] for [`RedisStore`]: runs and their steps.

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Error, NewRun, Result, RunHistory, RunRecord, RunUpdate, StepRecord};

use crate::codec::{
    check_size, decode_run, decode_signal, decode_step, encode_step, sort_signals, sort_steps,
};
use crate::error::{Context, fail};
use crate::{RedisStore, opt_arg};

#[async_trait]
impl Journal for RedisStore {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        let op = "open_run";
        if let Some(input) = &run.input {
            check_size(op, &run.run_id, || "the run's input".to_owned(), input.len())?;
        }
        let mut call = self.invoke(&self.scripts.open_run);
        call.arg(&run.run_id).arg(&run.workflow).arg(run.now_ms);
        opt_arg(&mut call, run.input.as_deref());
        let (flat, steps, signals): (Vec<String>, Vec<String>, Vec<String>) =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail(op, run.run_id.as_str()))?;
        let record = decode_run(&run.run_id, flat)?;
        let mut steps =
            steps.iter().map(|text| decode_step(&run.run_id, text)).collect::<Result<Vec<StepRecord>>>()?;
        sort_steps(&mut steps);
        let mut fields = signals.into_iter();
        let mut delivered = Vec::new();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            delivered.push(decode_signal(&run.run_id, name, &value)?);
        }
        sort_signals(&mut delivered);
        Ok(RunHistory::new(record, steps, delivered))
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        let text = encode_step(run_id, step)?;
        let mut call = self.invoke(&self.scripts.save_step);
        let bytes = text.len();
        call.arg(run_id).arg(&step.step_id).arg(text);
        let _: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(|e| {
            let mut what = format!("step `{}`", step.step_id);
            if bytes > 1024 * 1024 && (e.is_io_error() || e.to_string().contains("bulk length")) {
                // A server refuses an argument over its `proto-max-bulk-len` with a protocol
                // error and closes the connection; the client may see only the reset.
                what.push_str(&format!(
                    " (its record is {bytes} bytes: a server whose proto-max-bulk-len is lower closes the connection)"
                ));
            }
            Error::store("save_step", Some(run_id), Context::new(what, e))
        })?;
        Ok(())
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        self.update(run_id, update, false).await.map(drop)
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.run(run_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("get_run", run_id))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let flat = fields.into_iter().flat_map(|(k, v)| [k, v]).collect();
        decode_run(run_id, flat).map(Some)
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let texts: Vec<String> = redis::cmd("HVALS")
            .arg(self.keys.steps(run_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("list_steps", run_id))?;
        let mut steps = texts.iter().map(|t| decode_step(run_id, t)).collect::<Result<Vec<_>>>()?;
        sort_steps(&mut steps);
        Ok(steps)
    }
}
