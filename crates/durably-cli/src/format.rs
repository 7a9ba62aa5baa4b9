//! Text helpers shared by the commands and the dashboard: times, durations, ages, previews,
//! tables.

use anyhow::{Result, bail};

/// `2026-11-26 11:43:46` (UTC) for milliseconds since the Unix epoch.
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `340ms`, `1.2s`, `2m03s`, `1h04m`, `3d02h`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        3_600_000..86_400_000 => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
        _ => format!("{}d{:02}h", ms / 86_400_000, ms % 86_400_000 / 3_600_000),
    }
}

/// Parses an age such as `45s`, `30m`, `2h`, `7d`, `1w` into milliseconds.
pub fn parse_age(text: &str) -> Result<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(n) = number.parse::<i64>() else {
        bail!("`{text}` is not an age: use a number and a unit, e.g. 45s, 30m, 2h, 7d, 1w");
    };
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => bail!("`{text}` is not an age: unknown unit `{unit}` (use s, m, h, d or w, e.g. 2h)"),
    };
    Ok(n.saturating_mul(unit_ms))
}

pub use durably_server::preview;

/// `text` cut to `max` characters with `…`, keeping its line breaks (for `<pre>` blocks);
/// other control characters become spaces.
pub fn preview_keep_lines(text: &str, max: usize) -> String {
    let kept: String = text.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect();
    if kept.chars().count() <= max {
        kept
    } else {
        let mut cut: String = kept.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn formats_times_and_durations() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_693_426_000), "2026-11-26 11:43:46");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(duration_ms(340), "340ms");
        assert_eq!(duration_ms(1_250), "1.2s");
        assert_eq!(duration_ms(123_000), "2m03s");
        assert_eq!(duration_ms(3_840_000), "1h04m");
    }

    #[test]
    fn parses_ages() {
        assert_eq!(parse_age("2h").unwrap(), 7_200_000);
        assert_eq!(parse_age("7d").unwrap(), 604_800_000);
        assert_eq!(parse_age("45s").unwrap(), 45_000);
        assert!(parse_age("7 days").is_err());
        assert!(parse_age("h").is_err());
    }

    #[test]
    fn previews_and_tables() {
        assert_eq!(preview("a\nb", 10), "a b");
        assert_eq!(preview("abcdef", 4), "abc…");
        assert_eq!(preview_keep_lines("a\nb\tc", 10), "a\nb c");
        assert_eq!(preview_keep_lines("abcdef", 4), "abc…");
        assert_eq!(table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]), "A    BB\nxyz  1\n");
    }
}
