//! Aligned plain-text tables (comfy-table): columns two spaces apart, no borders, no trailing
//! blanks, never wrapped (the output is read in terminals and piped to `grep`/`awk` alike).

use comfy_table::{presets, CellAlignment, Table};

/// `header` over `rows`, each line starting with `indent`; the columns in `right` are
/// right-aligned (numbers, durations).
pub fn table(indent: &str, header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row.clone());
    }
    let last = header.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
        .lines()
        .map(|line| format!("{indent}{}\n", line.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_two_spaces_apart_and_right_aligned_where_asked() {
        let rows = [
            vec![
                "1".to_owned(),
                "inventory.reserve".to_owned(),
                "0ms".to_owned(),
            ],
            vec!["12".to_owned(), "x".to_owned(), "1s 500ms".to_owned()],
        ];
        assert_eq!(
            table("  ", &["SEQ", "NAME", "DURATION"], &rows, &[0, 2]),
            "  SEQ  NAME               DURATION\n    1  inventory.reserve       0ms\n   12  x                  1s 500ms\n"
        );
    }
}
