//! [`Admin`] for [`PostgresStore`]: listing and deleting runs.

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Result, RunFilter, RunRecord, RunStatus};
use tokio_postgres::types::ToSql;

use crate::PostgresStore;
use crate::sql::decode_run;

#[async_trait]
impl Admin for PostgresStore {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        // NULL is `LIMIT ALL`.
        let limit: Option<i64> = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let status = filter.status.map(RunStatus::as_str);
        // In the order of `LIST_FILTERS`: bit `i` of the statement's index is filter `i`.
        let wanted =
            [status, filter.workflow.as_deref(), filter.queue.as_deref(), filter.parent_id.as_deref()];
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        let mut index = 0;
        for (bit, value) in wanted.iter().enumerate() {
            if let Some(value) = value {
                params.push(value);
                index |= 1 << bit;
            }
        }
        // A run id prefix: the range of run ids it selects (run ids are `COLLATE "C"`, ordered
        // by their bytes, so the range is one of the primary key), added to the statement.
        let range = filter.run_id_range();
        let mut ranged = None;
        if let Some((from, to)) = &range {
            let base = &self.statements.list_runs[index];
            let (select, order) = base.split_at(base.find(" ORDER BY").unwrap_or(base.len()));
            let mut sql = format!(
                "{select} {} run_id >= ${}",
                if index == 0 { "WHERE" } else { "AND" },
                params.len() + 1
            );
            params.push(from);
            if let Some(to) = to {
                params.push(to);
                sql.push_str(&format!(" AND run_id < ${}", params.len()));
            }
            sql.push_str(order);
            ranged = Some(sql);
        }
        let sql = ranged.as_ref().unwrap_or(&self.statements.list_runs[index]);
        let rows = on_connection!(self, "list_runs", None::<&str>, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &params).await?)
        })?;
        rows.iter().map(|row| decode_run(row, "(listed run)")).collect()
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        let sql = &self.statements.delete_run;
        let rows = on_connection!(self, "delete_run", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&run_id]).await?)
        })?;
        Ok(!rows.is_empty())
    }
}
