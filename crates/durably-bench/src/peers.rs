//! `--compare-peers`: runs `durably-peers` (`bench/peers`, a Cargo workspace of its own so that
//! CI never builds it) with the same sizes in the same invocation. It runs the workflow
//! scenarios of `engine.rs` on durare 0.5 (SQLite, PostgreSQL) and dbos 0.5 (PostgreSQL) and
//! prints durably-bench's own records, with the store labels in [`PEERS`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report::Record;

/// The store labels of the peers' records.
pub(crate) const PEERS: [&str; 3] = ["durare-sqlite", "durare-postgres", "dbos-postgres"];

/// Whether a record's store is one of the peers.
pub(crate) fn is_peer(store: &str) -> bool {
    PEERS.contains(&store)
}

/// The durably store a peer is compared with: the same medium at the same durability
/// (durare opens SQLite in WAL with `synchronous=NORMAL`).
pub(crate) fn durably_twin(peer: &str) -> Option<&'static str> {
    match peer {
        "durare-sqlite" => Some("sqlite-normal"),
        "durare-postgres" | "dbos-postgres" => Some("postgres"),
        _ => None,
    }
}

/// The raw floor of a peer's per-step write: one committed row on the same medium.
pub(crate) fn floor_of(peer: &str) -> Option<&'static str> {
    match peer {
        "durare-sqlite" => Some("floor_wal_normal_1"),
        "durare-postgres" | "dbos-postgres" => Some("floor_postgres_insert"),
        _ => None,
    }
}

/// `bench/peers/Cargo.toml` of this repository, used when `--compare-peers` names no program.
pub(crate) fn default_manifest() -> Option<PathBuf> {
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/Cargo.toml")).filter(|p| p.is_file())
}

/// What is handed to `durably-peers`.
#[derive(Debug, Clone)]
pub(crate) struct PeersArgs {
    pub(crate) peers: Vec<String>,
    pub(crate) only: Vec<&'static str>,
    pub(crate) steps: u64,
    pub(crate) workflows: u64,
    pub(crate) wf_tasks: u64,
    pub(crate) concurrent: u64,
    pub(crate) conc_tasks: u64,
    pub(crate) repeat: u32,
}

impl PeersArgs {
    /// The command line after the program.
    pub(crate) fn to_args(&self, workdir: &Path) -> Vec<String> {
        let mut a = vec![
            "--peers".to_owned(),
            self.peers.join(","),
            "--only".to_owned(),
            self.only.join(","),
            "--workdir".to_owned(),
            workdir.display().to_string(),
        ];
        for (k, v) in [
            ("--steps", self.steps),
            ("--workflows", self.workflows),
            ("--wf-tasks", self.wf_tasks),
            ("--concurrent", self.concurrent),
            ("--conc-tasks", self.conc_tasks),
            ("--repeat", u64::from(self.repeat)),
        ] {
            a.push(k.to_owned());
            a.push(v.to_string());
        }
        a
    }
}

/// The command that runs `program`: a `Cargo.toml` is run with `cargo run --release` (built on
/// first use), anything else is executed as the `durably-peers` binary.
pub(crate) fn command(program: &Path) -> tokio::process::Command {
    if program.file_name().is_some_and(|n| n == "Cargo.toml") {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = tokio::process::Command::new(cargo);
        cmd.args(["run", "--release", "--quiet", "--manifest-path"]).arg(program).arg("--");
        cmd
    } else {
        tokio::process::Command::new(program)
    }
}

/// Runs `durably-peers` and hands each of its records to `on_record` as it arrives.
pub(crate) async fn run(
    program: &Path,
    workdir: &Path,
    args: &PeersArgs,
    on_record: impl FnMut(Record),
) -> anyhow::Result<()> {
    if args.only.is_empty() || args.peers.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(workdir)?;
    let mut cmd = command(program);
    cmd.args(args.to_args(workdir));
    crate::comparison::run_records(cmd, "durably-peers", Duration::from_secs(3 * 3600), convert, on_record)
        .await
}

/// One line of `durably-peers` as a record (the same JSON as durably-bench's), or `None` if it
/// is not one of a peer.
pub(crate) fn convert(line: &str) -> Option<Record> {
    let rec: Record = serde_json::from_str(line).ok()?;
    is_peer(&rec.store).then_some(rec)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn converts_a_peer_line_with_its_extra_fields() {
        let line = r#"{"scenario":"concurrent_workflows","store":"dbos-postgres","n":30,"total_ms":120.5,"per_op_us":4016.67,"ops_per_s":249.0,"errors":2,"runs":10,"tasks_per_run":3,"error_kinds":{"x":2},"lib":"dbos 0.5"}"#;
        let rec = convert(line).unwrap();
        assert_eq!(
            (rec.scenario.as_str(), rec.store.as_str(), rec.n, rec.errors),
            ("concurrent_workflows", "dbos-postgres", 30, 2)
        );
        assert_eq!(rec.per_op_us, 4016.67);
        assert_eq!(rec.p50_us, None);
        assert_eq!(rec.extra["runs"], 10);
        assert_eq!(rec.extra["lib"], "dbos 0.5");
    }

    #[test]
    fn ignores_lines_that_are_not_a_peer_record() {
        assert!(convert("durably-peers: starting").is_none());
        assert!(convert(r#"{"scenario":"steps_fresh","store":"sqlite-full","n":1,"total_ms":1.0,"per_op_us":1.0,"ops_per_s":1.0,"errors":0}"#).is_none());
    }

    #[test]
    fn a_manifest_is_run_through_cargo_and_a_binary_directly() {
        let cmd = command(Path::new("bench/peers/Cargo.toml"));
        let args: Vec<String> = cmd.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[..4], ["run", "--release", "--quiet", "--manifest-path"]);
        assert_eq!(args.last().map(String::as_str), Some("--"));
        let cmd = command(Path::new("target/release/durably-peers"));
        assert_eq!(cmd.as_std().get_program(), "target/release/durably-peers");
        assert_eq!(cmd.as_std().get_args().count(), 0);
    }

    #[test]
    fn the_sizes_are_handed_on() {
        let args = PeersArgs {
            peers: vec!["durare-sqlite".into(), "dbos-postgres".into()],
            only: vec!["steps", "concurrent"],
            steps: 50,
            workflows: 10,
            wf_tasks: 3,
            concurrent: 1000,
            conc_tasks: 10,
            repeat: 1,
        };
        let a = args.to_args(Path::new("w")).join(" ");
        assert!(a.contains("--peers durare-sqlite,dbos-postgres"), "{a}");
        assert!(a.contains("--only steps,concurrent"), "{a}");
        assert!(a.contains("--concurrent 1000 --conc-tasks 10"), "{a}");
        assert!(a.contains("--steps 50") && a.contains("--repeat 1"), "{a}");
    }
}
