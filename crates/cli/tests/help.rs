//! Snapshot of `--help` for every command: walks the command tree the way a user does (`hubsim
//! --help`, then each name under "Commands:"), and compares all help texts, concatenated, with
//! `tests/snapshots/help.txt`. `UPDATE_EXPECT=1 cargo test -p cli --test help` rewrites it after a
//! deliberate change; review the diff like any other text.

use std::process::Command;

use expect_test::expect_file;

/// `hubsim <path..> --help` at a fixed width.
fn help(path: &[String]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_hubsim"))
        .args(path)
        .arg("--help")
        .env("COLUMNS", "100")
        .env_remove("HUBSIM_CONNECTION_STRING")
        .output()
        .expect("the hubsim binary runs");
    assert!(output.status.success(), "hubsim {path:?} --help failed: {output:?}");
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The subcommand names listed under "Commands:" (without `help`).
fn subcommands(help_text: &str) -> Vec<String> {
    help_text
        .lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

fn walk(path: Vec<String>, all: &mut String) {
    let text = help(&path);
    all.push_str(&format!("===== hubsim {} --help\n", path.join(" ")).replace("  ", " "));
    all.push_str(&text);
    all.push('\n');
    for name in subcommands(&text) {
        let mut child = path.clone();
        child.push(name);
        walk(child, all);
    }
}

#[test]
fn help_of_every_command() {
    let mut all = String::new();
    walk(Vec::new(), &mut all);
    assert!(all.contains("===== hubsim demo --help"), "the demo is listed");
    assert!(all.contains("===== hubsim job report --help"), "job report is listed");
    expect_file!["snapshots/help.txt"].assert_eq(&all);
}
