//! Bounds: the 8,192-character limit, nesting and list limits, and pathological inputs that must
//! fail cleanly (on a small stack, so a recursion bug would show up as a crash here).

use expect_test::{expect, Expect};

/// Runs `body` on a thread with a 1 MiB stack (half of what tokio and test threads get) and
/// returns its result; unoptimized builds are the worst case for frame sizes.
fn on_small_stack<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let handle =
        std::thread::Builder::new().stack_size(1024 * 1024).spawn(body).expect("spawn test thread");
    handle.join().expect("test thread panicked")
}

/// Parses `condition` (on a small stack) and renders "ok" or the error.
fn outcome(condition: String) -> String {
    on_small_stack(move || match query::parse_condition(&condition) {
        Ok(parsed) => {
            let twin = serde_json::json!({"deviceId": "d1", "tags": {"x": 1}});
            format!("ok, matches: {}", parsed.matches(&twin))
        }
        Err(err) => format!("error: {err}"),
    })
}

fn check(condition: String, expected: Expect) {
    expected.assert_eq(&outcome(condition));
}

#[test]
fn query_length_limit() {
    let padding = |total: usize| {
        let head = "SELECT * FROM devices WHERE deviceId = '";
        format!("{head}{}'", "a".repeat(total - head.len() - 1))
    };
    assert_eq!(padding(8192).chars().count(), 8192);
    assert!(query::parse_query(&padding(8192)).is_ok());
    let err = query::parse_query(&padding(8193)).expect_err("8193 characters is over the limit");
    expect![[
        r#"line 1, col 8193: expected a query of at most 8192 characters, found 8193 characters"#
    ]]
    .assert_eq(&err.to_string());
    // The limit counts characters, not bytes.
    let wide = format!("deviceId = '{}'", "é".repeat(8000));
    assert!(query::parse_condition(&wide).is_ok());
}

#[test]
fn nesting_limits() {
    let parens = |depth: usize| format!("{}tags.x = 1{}", "(".repeat(depth), ")".repeat(depth));
    check(parens(60), expect!["ok, matches: true"]);
    check(
        parens(64),
        expect!["error: line 1, col 65: expected at most 64 levels of nesting, found 'tags'"],
    );
    check(
        parens(4000),
        expect!["error: line 1, col 65: expected at most 64 levels of nesting, found '('"],
    );
    check(
        format!("{}tags.x = 1", "NOT ".repeat(2000)),
        expect!["error: line 1, col 257: expected at most 64 levels of nesting, found 'NOT'"],
    );
    check(
        format!("{}tags.x = 1", "- ".repeat(3000)),
        expect!["error: line 1, col 129: expected at most 64 levels of nesting, found '-'"],
    );
    check(
        format!("tags.x IN {}1{}", "[".repeat(2000), "]".repeat(2000)),
        expect!["error: line 1, col 75: expected at most 64 levels of nesting, found '['"],
    );
    check(
        format!("IS_DEFINED({}tags.x{})", "LOWER(".repeat(500), ")".repeat(500)),
        expect!["error: line 1, col 390: expected at most 64 levels of nesting, found 'LOWER'"],
    );
}

#[test]
fn long_chains() {
    // Arithmetic chains are left-deep trees, so they count against the depth limit...
    check(
        format!("tags.x{} = 1", " + 0".repeat(1000)),
        expect!["error: line 1, col 260: expected at most 64 levels of nesting, found '+'"],
    );
    check(format!("tags.x{} = 1", " + 0".repeat(20)), expect!["ok, matches: true"]);
    // ...while AND/OR chains are one flat node, so long lists of alternatives are fine.
    check(format!("{}tags.x = 1", "tags.x = 2 OR ".repeat(500)), expect!["ok, matches: true"]);
    check(
        format!("{}tags.x = 1", "IS_DEFINED(tags) AND ".repeat(300)),
        expect!["ok, matches: true"],
    );
}

#[test]
fn list_length_limit() {
    let list = |n_items: usize| format!("tags.x IN [{}]", vec!["1"; n_items].join(","));
    check(list(query::MAX_LIST_LEN), expect!["ok, matches: true"]);
    check(
        list(query::MAX_LIST_LEN + 1),
        expect!["error: line 1, col 4108: expected at most 2048 items in a list, found '1'"],
    );
}

#[test]
fn odd_input_fails_cleanly() {
    check(String::new(), expect!["error: line 1, col 1: expected a condition (the body of a WHERE clause, or '*'), found end of query"]);
    check(
        "\u{0}".to_owned(),
        expect![[
            r#"error: line 1, col 1: expected a name, literal, operator or punctuation, found '\0'"#
        ]],
    );
    check(
        "'\\u".to_owned(),
        expect![[r#"error: line 1, col 2: expected four hexadecimal digits after \u, found '\'"#]],
    );
    check(
        "'\\ud800'".to_owned(),
        expect![[
            r#"error: line 1, col 2: expected a low surrogate \uXXXX after a high surrogate, found '\'"#
        ]],
    );
    check("'\\ud83d\\ude00' = '😀'".to_owned(), expect!["ok, matches: true"]);
    check("99999999999999999999999 = 1e23".to_owned(), expect!["ok, matches: true"]);
    check("0xFFFFFFFFFFFFFFFFF = 1".to_owned(), expect!["error: line 1, col 1: expected a hexadecimal number that fits in 64 bits, found '0xFFFFFFFFFFFFFFFFF'"]);
    check("-9223372036854775808 - 1 < 0".to_owned(), expect!["ok, matches: true"]);
    check("tags.x % 0 = 0 OR tags.x / 0 = 0".to_owned(), expect!["ok, matches: false"]);
}
