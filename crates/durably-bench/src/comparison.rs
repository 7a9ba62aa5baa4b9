//! Running another benchmark program (python-durable's script, the Rust peers) as a child and
//! taking its results as durably-bench's own records.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::report::Record;

/// Runs `cmd` (stdin closed, stdout read line by line, killed if dropped) for at most `limit`:
/// each line `convert` turns into a record goes to `on_record` as it arrives, the others to
/// stderr after `name: `. Fails when the program cannot start, runs out of time or exits with
/// a failure.
pub(crate) async fn run_records(
    mut cmd: Command,
    name: &str,
    limit: Duration,
    convert: impl Fn(&str) -> Option<Record>,
    mut on_record: impl FnMut(Record),
) -> anyhow::Result<()> {
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).kill_on_drop(true);
    eprintln!("durably-bench: running {cmd:?}");
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("{name} has no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = 0;
    let reading = async {
        while let Some(line) = lines.next_line().await? {
            match convert(&line) {
                Some(rec) => {
                    seen += 1;
                    on_record(rec);
                }
                None => eprintln!("{name}: {line}"),
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(limit, reading)
        .await
        .map_err(|_| anyhow!("{name} did not finish within {limit:?}"))??;
    let status = child.wait().await?;
    if !status.success() {
        bail!("{name} exited with {status} after {seen} scenarios");
    }
    Ok(())
}
