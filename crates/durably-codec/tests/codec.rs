//! At-rest safety: with the payload codec, the raw store holds no plaintext of any
//! value, runs replay through it, and a value copied to another run or read with another key
//! is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use durably_codec::{Codec, CodecStore};
use durably_core::store::prelude::*;
use durably_core::{Error, MemoryStore, Workflow};
use durably_sqlite::SqliteStore;

const SECRET: &str = "4111-1111-1111-1111 belongs to Ada Lovelace";
const KEY: [u8; 32] = [42; 32];

async fn the_run(wf: &Workflow, run_id: &str) -> durably_core::Result<String> {
    wf.run(run_id, |_| async {
        let card: String =
            durably_core::step("card", || async { Ok::<_, std::io::Error>(SECRET.to_owned()) }).await?;
        let long: String =
            durably_core::step("long", || async { Ok::<_, std::io::Error>(SECRET.repeat(50)) }).await?;
        let approval: String = durably_core::signal("approval").await?;
        Ok::<_, Error>(format!("{card} / {} / {approval}", long.len()))
    })
    .await
}

fn raw_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_sqlite_file_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("enc.db")).await.unwrap();
    let codec = Codec::new().encrypt(KEY).compress(true);
    let wf = Workflow::builder("enc").store(CodecStore::new(sqlite, codec.clone())).build();
    assert!(wf.complete("r1", "approval", &format!("approved by {SECRET}")).await.unwrap());
    let out = the_run(&wf, "r1").await.unwrap();
    assert!(out.starts_with(SECRET));
    drop(wf);

    // Neither the database nor its WAL contains the secret, in any value.
    let bytes = raw_bytes(dir.path());
    assert!(!contains(&bytes, SECRET.as_bytes()), "plaintext found in the SQLite files");
    assert!(!contains(&bytes, b"Lovelace"));

    // Read back through the codec: replay returns the stored output and values.
    let sqlite = SqliteStore::open(dir.path().join("enc.db")).await.unwrap();
    let wf = Workflow::builder("enc").store(CodecStore::new(sqlite, codec)).build();
    assert_eq!(the_run(&wf, "r1").await.unwrap(), out);
    let steps = wf.list_steps("r1").await.unwrap();
    assert_eq!(
        steps.iter().find(|s| s.step_id == "card").unwrap().value.as_deref(),
        Some(&*format!("{SECRET:?}"))
    );
}

#[tokio::test]
async fn another_key_or_a_copied_value_is_refused() {
    let raw = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("enc")
        .shared_store(Arc::new(CodecStore::new(raw.clone(), Codec::new().encrypt(KEY))))
        .build();
    wf.complete("r1", "approval", &"yes").await.unwrap();
    the_run(&wf, "r1").await.unwrap();

    // The wrong key: a clear error naming the run and the step, not garbage.
    let wrong = CodecStore::new(raw.clone(), Codec::new().encrypt([1; 32]));
    match wrong.list_steps("r1").await.unwrap_err() {
        Error::Corrupt { run_id, step_id, detail } => {
            assert_eq!(run_id, "r1");
            assert!(step_id.is_some());
            assert!(detail.contains("does not decrypt"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    // No key at all.
    let none = CodecStore::new(raw.clone(), Codec::new());
    assert!(matches!(none.get_run("r1").await.unwrap_err(), Error::Corrupt { .. }));

    // A value copied from run r1 into run r2 under the same step id does not decrypt there.
    let mut card = raw.list_steps("r1").await.unwrap().into_iter().find(|s| s.step_id == "card").unwrap();
    raw.open_run(durably_core::NewRun::new("r2", "enc", None, durably_core::now_ms())).await.unwrap();
    card.started_at_ms += 1;
    raw.save_step("r2", &card).await.unwrap();
    let right = CodecStore::new(raw.clone(), Codec::new().encrypt(KEY));
    assert!(
        matches!(right.list_steps("r2").await.unwrap_err(), Error::Corrupt { run_id, .. } if run_id == "r2")
    );
    // Tampering with one byte is detected too.
    let mut tampered = raw.list_steps("r1").await.unwrap().into_iter().find(|s| s.step_id == "long").unwrap();
    let v = tampered.value.take().unwrap();
    let flipped: String = v
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 20 { if c == 'A' { 'B' } else { 'A' } } else { c })
        .collect();
    tampered.value = Some(flipped);
    raw.save_step("r1", &tampered).await.unwrap();
    assert!(matches!(right.list_steps("r1").await.unwrap_err(), Error::Corrupt { .. }));
}

#[tokio::test]
async fn compression_alone_round_trips_and_shrinks_values() {
    let raw = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("enc")
        .shared_store(Arc::new(CodecStore::new(raw.clone(), Codec::new().compress(true))))
        .build();
    wf.complete("r1", "approval", &"yes").await.unwrap();
    the_run(&wf, "r1").await.unwrap();
    let long = raw.list_steps("r1").await.unwrap().into_iter().find(|s| s.step_id == "long").unwrap();
    let stored = long.value.unwrap();
    assert!(stored.starts_with("\"dv1:z:"), "{}", &stored[..20]);
    assert!(stored.len() < SECRET.len() * 50 / 4, "compressed: {} bytes", stored.len());
    // Values written before the codec was turned on are read as they are.
    let plain_wf = Workflow::builder("enc").shared_store(raw.clone()).build();
    plain_wf
        .run("old", |_| async { durably_core::step("x", || async { Ok::<_, std::io::Error>(5u8) }).await })
        .await
        .unwrap();
    let wf = Workflow::builder("enc")
        .shared_store(Arc::new(CodecStore::new(raw, Codec::new().encrypt(KEY))))
        .build();
    assert_eq!(
        wf.run("old", |_| async { durably_core::step("x", || async { Ok::<_, std::io::Error>(6u8) }).await })
            .await
            .unwrap(),
        5
    );
}

/// The codec store is a correct `Store`: the whole conformance suite passes through it, with
/// encryption and compression on (values come back byte for byte).
mod conformance {
    durably_testkit::store_conformance_tests!(durably_codec::CodecStore::new(
        durably_core::MemoryStore::new(),
        durably_codec::Codec::new().encrypt([9; 32]).compress(true)
    ));
}

#[tokio::test]
async fn an_encrypted_run_exports_with_its_values_decoded() {
    let raw = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("enc")
        .shared_store(Arc::new(CodecStore::new(raw.clone(), Codec::new().encrypt(KEY))))
        .build();
    wf.complete("r1", "approval", &"yes").await.unwrap();
    the_run(&wf, "r1").await.unwrap();
    let doc = serde_json::to_string(&wf.export("r1").await.unwrap()).unwrap();
    assert!(doc.contains(SECRET), "the export holds the decoded values");
    assert!(
        !serde_json::to_string(&raw.list_signals("r1").await.unwrap()).unwrap_or_default().contains("yes")
    );
}
