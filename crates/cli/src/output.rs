//! The only place that writes to stdout and stderr: results as aligned tables, JSON or CSV
//! ([`Output`]), and errors as one plain sentence ([`print_error`]).
//!
//! Commands build a [`Table`] and/or a JSON value and hand them over; they never format for a
//! terminal themselves. Colours are deliberately absent: output is the same on a terminal and in a
//! pipe, so scripts and snapshot tests see what people see. The one exception is [`Progress`], a live
//! bar drawn on stderr only when stderr is a terminal and the format is a table (`hubsim demo`).

#![allow(clippy::print_stderr, reason = "this module is the cli's one writer of error messages")]

use std::io::Write as _;

use serde_json::Value;

use crate::args::OutputFormat;

/// Where results go, in the format the user chose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    format: OutputFormat,
}

/// Rows of text under a header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Output {
    /// Results in `format`.
    pub(crate) fn new(format: OutputFormat) -> Output {
        Output { format }
    }

    /// Whether the user asked for JSON.
    pub(crate) fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A result that is a table for people and `json` for scripts.
    pub(crate) fn table(&self, table: &Table, json: &Value) {
        match self.format {
            OutputFormat::Table => emit(&table.render()),
            OutputFormat::Csv => emit(&table.render_csv()),
            OutputFormat::Json => print_json(json),
        }
    }

    /// A result that is a JSON document in every format (pretty-printed).
    pub(crate) fn document(&self, json: &Value) {
        print_json(json);
    }

    /// A line that is printed in every format (e.g. the hub's connection string).
    pub(crate) fn line(&self, text: &str) {
        emit(&format!("{text}\n"));
    }
}

/// A live progress bar on stderr; hidden (every call a no-op) unless stderr is a terminal and the
/// output format is a table.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
}

impl Output {
    /// A progress bar over `total` items, showing done/total, a message, the rate and the ETA.
    pub(crate) fn progress(&self, total: u64) -> Progress {
        let visible = self.format == OutputFormat::Table
            && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let target = if visible {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), target);
        let template = "{elapsed:>3} [{wide_bar}] {pos}/{len} {msg} {per_sec} ETA {eta}";
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar }
    }
}

impl Progress {
    /// Moves the bar to `done` of `total` with `message` (e.g. the counts per status).
    pub(crate) fn update(&self, done: u64, total: u64, message: String) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.set_message(message);
    }

    /// Restarts the elapsed time, rate and ETA (when the work itself begins, after a wait).
    pub(crate) fn restart_clock(&self) {
        self.bar.reset_elapsed();
        self.bar.reset_eta();
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Prints an error as one sentence (`error: <context>: <cause>`) on stderr.
pub(crate) fn print_error(err: &anyhow::Error) {
    eprintln!("error: {err:#}");
}

impl Table {
    /// An empty table with these column headers.
    pub(crate) fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Table {
        Table { headers: headers.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Adds a row (missing cells print empty, extra cells are dropped).
    pub(crate) fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        let mut row: Vec<String> =
            cells.into_iter().map(Into::into).take(self.headers.len()).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Whether the table has no rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A table of JSON objects: one column per top-level key (first-seen order), nested values as compact JSON.
    pub(crate) fn from_objects(items: &[Value]) -> Table {
        let mut headers: Vec<String> = Vec::new();
        for item in items {
            if let Value::Object(map) = item {
                for key in map.keys() {
                    if !headers.contains(key) {
                        headers.push(key.clone());
                    }
                }
            }
        }
        if headers.is_empty() {
            headers.push("value".into());
        }
        let mut table = Table::new(headers.clone());
        for item in items {
            let cells: Vec<String> = match item {
                Value::Object(map) => {
                    headers.iter().map(|key| map.get(key).map(cell).unwrap_or_default()).collect()
                }
                other => vec![cell(other)],
            };
            table.row(cells);
        }
        table
    }

    /// Aligned columns separated by two spaces, header first.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, text) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (idx, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if idx > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    /// RFC 4180 CSV, header first.
    pub(crate) fn render_csv(&self) -> String {
        let mut text = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = row.iter().map(|cell| csv_cell(cell)).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
        text
    }
}

/// A JSON value as table text: strings bare, `null` empty, everything else as compact JSON.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn print_json(json: &Value) {
    // A Value with string keys always serializes; fall back to the compact form just in case.
    let text = serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string());
    emit(&format!("{text}\n"));
}

/// Writes to stdout and flushes. A closed pipe (`hubsim device list | head`) is not an error worth
/// reporting: the reader has what it wanted.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    if let Err(err) = result {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: could not write the output: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_render_aligned_and_as_csv() {
        let items = [
            json!({"deviceId":"b43-f3-0001","status":"enabled","tags":{"floor":3}}),
            json!({"deviceId":"d2","status":"disabled","extra":null,"note":"a, \"b\""}),
        ];
        let table = Table::from_objects(&items);
        expect![[r#"
            deviceId     status    tags         extra  note
            b43-f3-0001  enabled   {"floor":3}
            d2           disabled                      a, "b"
        "#]]
        .assert_eq(&table.render());
        expect![[r#"
            deviceId,status,tags,extra,note
            b43-f3-0001,enabled,"{""floor"":3}",,
            d2,disabled,,,"a, ""b"""
        "#]]
        .assert_eq(&table.render_csv());
        expect![[r#"
            value
            3
        "#]]
        .assert_eq(&Table::from_objects(&[json!(3)]).render());
    }
}
