//! Store errors carry a kind the engine can act on: an undecodable row, or a file that is not a
//! database, is `Corrupt`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{raw, start, temp_db};

use durably_core::StoreErrorKind;
use durably_core::store::prelude::*;
use durably_sqlite::SqliteStore;

#[tokio::test]
async fn a_row_with_an_unknown_status_is_corrupt() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    start(&store, "r").await;
    raw(&db.path).execute("UPDATE runs SET status = 'bogus' WHERE run_id = 'r'", []).unwrap();
    let err = store.get_run("r").await.unwrap_err();
    assert_eq!(err.kind(), Some(StoreErrorKind::Corrupt), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt() {
    let db = temp_db();
    std::fs::write(&db.path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&db.path).await.unwrap_err();
    assert_eq!(err.kind(), Some(StoreErrorKind::Corrupt), "{err}");
}
