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
        let workflow = filter.workflow.as_deref();
        let (sql, params): (&str, Vec<&(dyn ToSql + Sync)>) = match (&status, &workflow) {
            (None, None) => (&self.statements.list_runs[0], vec![&limit]),
            (Some(s), None) => (&self.statements.list_runs[1], vec![&limit, s]),
            (None, Some(w)) => (&self.statements.list_runs[2], vec![&limit, w]),
            (Some(s), Some(w)) => (&self.statements.list_runs[3], vec![&limit, s, w]),
        };
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

/// Queues are not kept in PostgreSQL yet: the defaults refuse.
impl durably_core::store::Queues for PostgresStore {}

/// No event log in PostgreSQL yet: the defaults refuse.
impl durably_core::store::Events for PostgresStore {}
