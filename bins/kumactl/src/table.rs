//! Aligned text tables in the style of kubectl and Kuma's kumactl: upper-case
//! headers, every column but the last padded to its widest cell plus three
//! spaces, no trailing whitespace.

use std::fmt;

/// Spaces between two columns.
const GAP: usize = 3;

/// A table of text cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty, extra cells are kept.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    fn widths(&self) -> Vec<usize> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }
}

fn write_line(f: &mut fmt::Formatter<'_>, cells: &[String], widths: &[usize]) -> fmt::Result {
    let mut line = String::new();
    for (i, width) in widths.iter().enumerate() {
        let cell = cells.get(i).map_or("", String::as_str);
        line.push_str(cell);
        if i + 1 < widths.len() {
            let pad = width - cell.chars().count() + GAP;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(f, "{}", line.trim_end())
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        write_line(f, &self.headers, &widths)?;
        for row in &self.rows {
            write_line(f, row, &widths)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_plus_three() {
        let mut t = Table::new(["MESH", "NAME", "AGE"]);
        t.row(["default", "backend-1", "5s"]);
        t.row(["m", "web", "3m"]);
        assert_eq!(
            t.to_string(),
            "MESH      NAME        AGE\n\
             default   backend-1   5s\n\
             m         web         3m\n"
        );
    }

    #[test]
    fn headers_alone_and_trailing_empty_cells_leave_no_trailing_spaces() {
        let t = Table::new(["MESH", "NAME", "AGE"]);
        assert_eq!(t.to_string(), "MESH   NAME   AGE\n");
        let mut t = Table::new(["NAME", "TAGS"]);
        t.row(["a", ""]);
        assert_eq!(t.to_string(), "NAME   TAGS\na\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut t = Table::new(["A", "B"]);
        t.row(["é", "x"]);
        assert_eq!(t.to_string(), "A   B\né   x\n");
    }
}
