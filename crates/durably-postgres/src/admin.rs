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
        let range = filter.run_id_range();
        let mut conditions: Vec<(&str, &(dyn ToSql + Sync))> = Vec::new();
        if let Some(status) = &status {
            conditions.push(("status =", status));
        }
        if let Some(workflow) = &filter.workflow {
            conditions.push(("workflow =", workflow));
        }
        // Run ids are `COLLATE "C"`: ordered by their bytes, so a prefix is a range of the key.
        if let Some((from, to)) = &range {
            conditions.push(("run_id >=", from));
            if let Some(to) = to {
                conditions.push(("run_id <", to));
            }
        }
        let mut sql = self.statements.list_runs.clone();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        for (i, (condition, value)) in conditions.into_iter().enumerate() {
            let word = if i == 0 { "WHERE" } else { "AND" };
            sql.push_str(&format!(" {word} {condition} ${}", i + 2));
            params.push(value);
        }
        sql.push_str(" ORDER BY created_at_ms DESC, run_id DESC LIMIT $1");
        let sql = sql.as_str();
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
