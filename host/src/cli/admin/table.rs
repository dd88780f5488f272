//! Tables for people: columns padded to their widest cell, long cells cut.

use serde_json::Value;

/// Widest a cell may be before it is cut with `…`.
const MAX_CELL: usize = 60;

/// A value as a cell: strings bare, null empty, the rest as JSON.
/// Control characters are escaped: the text is the sender's (or a
/// target's), and must not drive the terminal (title, clipboard).
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => printable(s),
        other => other.to_string(),
    }
}

/// `text` with every control character but newline and tab escaped.
pub fn printable(text: &str) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A time in ms since the epoch, as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn time(v: &Value) -> String {
    let Some(ms) = v.as_u64() else {
        return String::new();
    };
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn render(head: &[&str], rows: &[Vec<String>]) -> String {
    let cut = |s: &str| {
        let s = s.replace('\n', " ");
        if s.chars().count() > MAX_CELL {
            let mut c: String = s.chars().take(MAX_CELL - 1).collect();
            c.push('…');
            c
        } else {
            s
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.extend(std::iter::repeat_n(' ', w - c.chars().count() + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(head.to_vec())];
    for r in &rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up_and_times_are_utc() {
        let t = render(
            &["ID", "STATE"],
            &[
                vec!["a".into(), "dead".into()],
                vec!["long-id".into(), "ok".into()],
            ],
        );
        assert_eq!(t, "ID       STATE\na        dead\nlong-id  ok");
        assert_eq!(time(&json!(0)), "1970-01-01 00:00:00");
        assert_eq!(time(&json!(1_796_192_192_095u64)), "2026-12-02 06:16:32");
        assert_eq!(time(&json!(951_782_400_000u64)), "2000-02-29 00:00:00");
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(
            cell(&json!("a\u{1b}]52;c;x\u{7}b")),
            "a\\u{1b}]52;c;x\\u{7}b"
        );
        assert_eq!(printable("line\nnext"), "line\nnext");
    }
}
