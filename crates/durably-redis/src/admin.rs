//! [`Admin`] for [`RedisStore`]: listing and deleting runs.

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Result, RunFilter, RunRecord};

use crate::error::fail;
use crate::{RedisStore, decode_runs, opt_arg};

#[async_trait]
impl Admin for RedisStore {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let mut call = self.invoke(&self.scripts.list_runs);
        call.arg(filter.status.map(|s| s.as_str()).unwrap_or(""));
        opt_arg(&mut call, filter.workflow.as_deref());
        opt_arg(&mut call, filter.queue.as_deref());
        opt_arg(&mut call, filter.parent_id.as_deref());
        call.arg(filter.limit.map(|l| l.to_string()).unwrap_or_else(|| "-1".to_owned()));
        opt_arg(&mut call, filter.run_id_prefix.as_deref());
        let flats: Vec<Vec<String>> =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("list_runs", None))?;
        decode_runs(flats)
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        let mut call = self.invoke(&self.scripts.delete_run);
        call.arg(run_id);
        let existed: i64 =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("delete_run", run_id))?;
        Ok(existed == 1)
    }
}
