//! Tables in Python `tabulate`'s "simple" and "pretty" formats, as Xinference's CLI prints them.

/// A cell: text, and whether tabulate would treat it as a number (right-aligned).
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    numeric: bool,
}

impl Cell {
    /// A text cell. Like tabulate, text that Python's `float()` accepts counts as a number.
    pub fn text(s: impl Into<String>) -> Self {
        let text = s.into();
        let numeric = looks_numeric(&text);
        Cell { text, numeric }
    }
    /// A Python list repr: `['en', 'zh']`.
    pub fn list(items: &[String]) -> Self {
        let inner: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
        Cell::text(format!("[{}]", inner.join(", ")))
    }
    /// A Python bool: `True` / `False`.
    pub fn boolean(b: bool) -> Self {
        Cell::text(if b { "True" } else { "False" })
    }
}

/// Whether Python's `float()` would parse `s` (digits with optional sign, point, exponent, and
/// underscores between digits), which is how tabulate decides a column is numeric.
fn looks_numeric(s: &str) -> bool {
    let t = s.trim();
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return false;
    }
    t.replace('_', "").parse::<f64>().is_ok()
        && !t.eq_ignore_ascii_case("nan")
        && !t.to_ascii_lowercase().contains("inf")
}

/// tabulate's `MIN_PADDING`: outside the "pretty" format, a column is at least as wide as its
/// header plus two.
const MIN_PADDING: usize = 2;

fn widths(headers: &[&str], rows: &[Vec<Cell>], min_padding: usize) -> Vec<usize> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].text.chars().count())
                .chain(std::iter::once(h.chars().count() + min_padding))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

fn numeric_columns(headers: &[&str], rows: &[Vec<Cell>]) -> Vec<bool> {
    (0..headers.len())
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r[i].numeric))
        .collect()
}

fn pad(s: &str, width: usize, right: bool) -> String {
    let n = width.saturating_sub(s.chars().count());
    if right {
        format!("{}{s}", " ".repeat(n))
    } else {
        format!("{s}{}", " ".repeat(n))
    }
}

/// tabulate's default "simple" format: header, dashes, rows; two spaces between columns, every
/// column at least its header plus two wide, trailing spaces stripped from each line.
pub fn simple(headers: &[&str], rows: &[Vec<Cell>]) -> String {
    let w = widths(headers, rows, MIN_PADDING);
    let num = numeric_columns(headers, rows);
    let line = |cells: Vec<String>| cells.join("  ").trim_end().to_owned();
    let mut out = Vec::new();
    out.push(line(
        headers
            .iter()
            .enumerate()
            .map(|(i, h)| pad(h, w[i], num[i]))
            .collect(),
    ));
    out.push(line(w.iter().map(|n| "-".repeat(*n)).collect()));
    for r in rows {
        out.push(line(
            r.iter()
                .enumerate()
                .map(|(i, c)| pad(&c.text, w[i], num[i]))
                .collect(),
        ));
    }
    out.join("\n")
}

fn center(s: &str, width: usize) -> String {
    let n = width.saturating_sub(s.chars().count());
    let left = n / 2;
    format!("{}{s}{}", " ".repeat(left), " ".repeat(n - left))
}

/// tabulate's "pretty" format: boxed, every cell centred.
pub fn pretty(headers: &[&str], rows: &[Vec<Cell>]) -> String {
    let w = widths(headers, rows, 0);
    let rule = format!(
        "+{}+",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |cells: Vec<String>| format!("| {} |", cells.join(" | "));
    let mut out = vec![rule.clone()];
    out.push(line(
        headers
            .iter()
            .enumerate()
            .map(|(i, h)| center(h, w[i]))
            .collect(),
    ));
    out.push(rule.clone());
    for r in rows {
        out.push(line(
            r.iter()
                .enumerate()
                .map(|(i, c)| center(&c.text, w[i]))
                .collect(),
        ));
    }
    out.push(rule);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_matches_tabulate() {
        let rows = vec![
            vec![
                Cell::text("LLM"),
                Cell::text("qwen2.5-instruct"),
                Cell::list(&["en".into(), "zh".into()]),
                Cell::boolean(true),
            ],
            vec![
                Cell::text("LLM"),
                Cell::text("x"),
                Cell::list(&["en".into()]),
                Cell::boolean(false),
            ],
        ];
        let t = simple(&["Type", "Name", "Language", "Is-built-in"], &rows);
        assert_eq!(
            t,
            "Type    Name              Language      Is-built-in\n\
             ------  ----------------  ------------  -------------\n\
             LLM     qwen2.5-instruct  ['en', 'zh']  True\n\
             LLM     x                 ['en']        False"
        );
    }

    #[test]
    fn numbers_align_right_including_underscored_sizes() {
        let rows = vec![
            vec![Cell::text("a"), Cell::text("0_5")],
            vec![Cell::text("b"), Cell::text("384")],
        ];
        assert_eq!(
            simple(&["N", "Size"], &rows),
            "N      Size\n---  ------\na       0_5\nb       384"
        );
        assert!(!looks_numeric("q4_k_m") && looks_numeric("1_7") && !looks_numeric("none"));
    }

    #[test]
    fn an_empty_table_keeps_its_padded_header() {
        assert_eq!(
            simple(&["Type", "Name", "Is-built-in"], &[]),
            "Type    Name    Is-built-in\n------  ------  -------------"
        );
    }

    #[test]
    fn pretty_centres_cells() {
        let rows = vec![vec![Cell::text("ab"), Cell::text("c")]];
        assert_eq!(
            pretty(&["x", "yyy"], &rows),
            "+----+-----+\n| x  | yyy |\n+----+-----+\n| ab |  c  |\n+----+-----+"
        );
    }
}
