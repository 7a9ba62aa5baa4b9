//! Migrations: bringing a schema to `SCHEMA_VERSION`.

use durably_core::{Error, Result};

use crate::SCHEMA_VERSION;
use crate::error::PgError;
use crate::sql::{MIGRATIONS, quote_ident};

/// Brings `schema` to [`SCHEMA_VERSION`] in one transaction under an advisory lock.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Client, schema: &str) -> Result<()> {
    let fail = |e: tokio_postgres::Error| Error::store("migrate", None, PgError::new(e));
    let s = quote_ident(schema);
    let tx = client.transaction().await.map_err(fail)?;
    // Concurrent starts queue here; the lock is released at commit or rollback.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("durably-postgres:{schema}")],
    )
    .await
    .map_err(fail)?;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(fail)?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {s}")).await.map_err(fail)?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {s}.durably_schema_version (
            singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version    integer NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"
    ))
    .await
    .map_err(fail)?;
    let found: i32 = tx
        .query_opt(&format!("SELECT version FROM {s}.durably_schema_version"), &[])
        .await
        .map_err(fail)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(fail)?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(Error::Invalid {
            what: "PostgreSQL schema",
            detail: format!(
                "schema `{schema}` is at durably schema version {found}, newer than this durably-postgres \
                 understands (up to {SCHEMA_VERSION}); upgrade durably-postgres, or use another schema"
            ),
        });
    }
    if found == SCHEMA_VERSION {
        return tx.commit().await.map_err(fail);
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(&migration.replace("{s}", &s)).await.map_err(|e| {
            Error::store(
                "migrate",
                None,
                format!("migration of schema `{schema}` to version {}: {e}", from + 1),
            )
        })?;
    }
    tx.execute(
        &format!(
            "INSERT INTO {s}.durably_schema_version (version) VALUES ($1)
             ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, updated_at = now()"
        ),
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    tracing::info!(target: "durably", schema, from = found, to = SCHEMA_VERSION, "PostgreSQL schema migrated");
    Ok(())
}
