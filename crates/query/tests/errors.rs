//! Diagnostics and job conditions as data: every rejected query says where and what was expected,
//! and job `queryCondition`s match the right devices with the right index hint.

mod common;

use expect_test::{expect, Expect};

fn check(query: &str, expected: Expect) {
    expected.assert_eq(&common::run_query(query));
}

fn check_condition(condition: &str, expected: Expect) {
    expected.assert_eq(&common::run_condition(condition));
}

#[test]
fn parse_errors() {
    check(
        "SELECT * FROM devices WHERE deviceId =",
        expect![[r#"
        error: line 1, col 39: expected a value after '=', found end of query
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE tags.building = '43' AND",
        expect![[r#"
        error: line 1, col 53: expected a condition after AND, found end of query
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE",
        expect![[r#"
        error: line 1, col 28: expected a condition after WHERE, found end of query
    "#]],
    );
    check(
        "SELECT * FROM",
        expect![[r#"
        error: line 1, col 14: expected a collection (devices, devices.modules or devices.jobs) after FROM, found end of query
    "#]],
    );
    check(
        "SELECT * FROM twins",
        expect![[r#"
        error: line 1, col 15: expected a collection (devices, devices.modules or devices.jobs) after FROM, found 'twins'
    "#]],
    );
    check(
        "SELECT * FROM devices.things",
        expect![[r#"
        error: line 1, col 23: expected jobs or modules after 'devices.', found 'things'
    "#]],
    );
    check(
        "SELECT FROM devices",
        expect![[r#"
        error: line 1, col 8: expected '*', a property path or an aggregate such as COUNT() in the select list, found 'FROM'
    "#]],
    );
    check(
        "DELETE FROM devices",
        expect![[r#"
        error: line 1, col 1: expected SELECT at the start of the query, found 'DELETE'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId = 'unterminated",
        expect![[r#"
        error: line 1, col 53: expected a closing ' for the string that starts at line 1, col 40, found end of query
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId = 'bad \\q escape'",
        expect![[r#"
        error: line 1, col 45: expected a valid escape (\' \" \\ \/ \b \f \n \r \t \uXXXX), found '\'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId IN 'd1'",
        expect![[r#"
        error: line 1, col 41: expected a list of constants like ['a', 'b'] after IN, found 'd1'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId IN ['d1' 'd2']",
        expect![[r#"
        error: line 1, col 47: expected ',' or ']' in the list, found 'd2'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId IN [tags.x]",
        expect![[r#"
        error: line 1, col 42: expected a constant (string, number, true, false, null or list) in the list, found 'tags'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE (deviceId = 'd1'",
        expect![[r#"
        error: line 1, col 45: expected ')' to close the '(', found end of query
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId = 'd1')",
        expect![[r#"
        error: line 1, col 44: expected AND, OR, GROUP BY or the end of the query, found ')'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE a = b = c",
        expect![[r#"
        error: line 1, col 35: expected AND, OR, GROUP BY or the end of the query, found '='
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE NOSUCH(deviceId)",
        expect![[r#"
        error: line 1, col 29: expected a function such as IS_DEFINED, IS_NULL, IS_STRING, STARTSWITH or ENDSWITH, found 'NOSUCH'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE STARTSWITH(deviceId)",
        expect![[r#"
        error: line 1, col 29: expected 2 arguments to STARTSWITH, found 1
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE IS_DEFINED(a, b)",
        expect![[r#"
        error: line 1, col 29: expected 1 argument to IS_DEFINED, found 2
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE COUNT() > 1",
        expect![[r#"
        error: line 1, col 29: expected a function such as IS_DEFINED, IS_NULL, IS_STRING, STARTSWITH or ENDSWITH, found 'COUNT'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId = 12abc",
        expect![[r#"
        error: line 1, col 42: expected a separator after the number, found 'a'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE tags.floor = 0x",
        expect![[r#"
        error: line 1, col 44: expected hexadecimal digits after '0x', found end of query
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE tags.floor = 1e999",
        expect![[r#"
        error: line 1, col 42: expected a finite number, found '1e999'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE tags. = 1",
        expect![[r#"
        error: line 1, col 35: expected a property name after '.', found '='
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId # 'x'",
        expect![[r#"
        error: line 1, col 38: expected a name, literal, operator or punctuation, found '#'
    "#]],
    );
    check(
        "SELECT TOP -1 * FROM devices",
        expect![[r#"
        error: line 1, col 12: expected a whole number of rows after TOP, found '-'
    "#]],
    );
    check(
        "SELECT TOP 1.5 * FROM devices",
        expect![[r#"
        error: line 1, col 12: expected a whole number of rows after TOP, found '1.5'
    "#]],
    );
    check(
        "SELECT deviceId, COUNT() FROM devices",
        expect![[r#"
        error: line 1, col 8: expected only aggregates and GROUP BY paths in an aggregate query, found 'deviceId'
    "#]],
    );
    check(
        "SELECT deviceId, COUNT() FROM devices GROUP BY status",
        expect![[r#"
        error: line 1, col 8: expected only aggregates and GROUP BY paths in an aggregate query, found 'deviceId'
    "#]],
    );
    check(
        "SELECT * FROM devices GROUP BY status",
        expect![[r#"
        error: line 1, col 8: expected a select list of grouped paths and aggregates with GROUP BY, found '*'
    "#]],
    );
    check(
        "SELECT tags.x, properties.desired.x FROM devices",
        expect![[r#"
        error: line 1, col 16: expected a distinct result name (add AS to rename 'x'), found 'x' again
    "#]],
    );
    check(
        "SELECT COUNT(), COUNT() AS $1 FROM devices",
        expect![[r#"
        error: line 1, col 17: expected a distinct result name (add AS to rename '$1'), found '$1' again
    "#]],
    );
    check(
        "SELECT COUNT(deviceId) FROM devices",
        expect![[r#"
        error: line 1, col 14: expected ')' after COUNT(, found 'deviceId'
    "#]],
    );
    check(
        "SELECT SUM() FROM devices",
        expect![[r#"
        error: line 1, col 12: expected a property path inside SUM(, found ')'
    "#]],
    );
    check(
        "SELECT deviceId AS FROM devices",
        expect![[r#"
        error: line 1, col 20: expected an alias name after AS, found 'FROM'
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId = 'd1' ORDER BY deviceId",
        expect![[r#"
        error: line 1, col 45: expected AND, OR, GROUP BY or the end of the query, found 'ORDER'
    "#]],
    );
    check(
        "SELECT * FROM devices\nWHERE deviceId = 'd1'\n  AND status = ",
        expect![[r#"
        error: line 3, col 16: expected a value after '=', found end of query
    "#]],
    );
    check(
        "SELECT * FROM devices WHERE deviceId = 'ünïcödé' AND = 1",
        expect![[r#"
        error: line 1, col 54: expected a condition after AND, found '='
    "#]],
    );
}

#[test]
fn job_conditions() {
    check_condition(
        "*",
        expect![[r#"
        [d01, d02, d03, d04, d05, Sensor-1, d07, d08, d09, d10] hint FullScan
    "#]],
    );
    check_condition(
        "  *  ",
        expect![[r#"
        [d01, d02, d03, d04, d05, Sensor-1, d07, d08, d09, d10] hint FullScan
    "#]],
    );
    check_condition(
        "deviceId = 'd01'",
        expect![[r#"
        [d01] hint DeviceIds(["d01"])
    "#]],
    );
    check_condition(
        "deviceId IN ['d01','d02']",
        expect![[r#"
        [d01, d02] hint DeviceIds(["d01", "d02"])
    "#]],
    );
    check_condition(
        "tags.building = '43'",
        expect![[r#"
        [d01, d02, d10] hint TagEquals { path: ["building"], value: String("43") }
    "#]],
    );
    check_condition(
        "tags.building = '43' AND tags.floor = 3",
        expect![[r#"
        [d01] hint TagEquals { path: ["building"], value: String("43") }
    "#]],
    );
    check_condition(
        "IS_DEFINED(DeviceId)",
        expect![[r#"
        [d01, d02, d03, d04, d05, Sensor-1, d07, d08, d09, d10] hint FullScan
    "#]],
    );
    check_condition(
        "devices.deviceId = 'd10' OR DeviceID = 'd09'",
        expect![[r#"
        [d09, d10] hint DeviceIds(["d09", "d10"])
    "#]],
    );
    check_condition(
        "deviceId = 'd01' AND tags.building = '43'",
        expect![[r#"
        [d01] hint DeviceIds(["d01"])
    "#]],
    );
    check_condition(
        "(deviceId = 'd01' OR deviceId = 'd02') AND deviceId IN ['d02', 'd03']",
        expect![[r#"
        [d02] hint DeviceIds(["d02"])
    "#]],
    );
    check_condition(
        "tags.location.city = 'Oslo' AND status = 'enabled'",
        expect![[r#"
        [d01] hint TagEquals { path: ["location", "city"], value: String("Oslo") }
    "#]],
    );
    check_condition(
        "status = 'enabled' OR deviceId = 'd02'",
        expect![[r#"
        [d01, d02, d03, d04, d05, Sensor-1, d07, d09, d10] hint FullScan
    "#]],
    );
    check_condition(
        "SELECT * FROM devices WHERE deviceId = 'd01'",
        expect![[r#"
        error: line 1, col 1: expected a condition (the body of a WHERE clause, or '*'), not a full query, found 'SELECT'
    "#]],
    );
    check_condition(
        "select * from devices",
        expect![[r#"
        error: line 1, col 1: expected a condition (the body of a WHERE clause, or '*'), not a full query, found 'select'
    "#]],
    );
    check_condition(
        "",
        expect![[r#"
        error: line 1, col 1: expected a condition (the body of a WHERE clause, or '*'), found end of query
    "#]],
    );
    check_condition(
        "* AND deviceId = 'd01'",
        expect![[r#"
        error: line 1, col 1: expected a condition (the body of a WHERE clause, or '*'), found '*'
    "#]],
    );
    check_condition(
        "deviceId = 'd01' GROUP BY status",
        expect![[r#"
        error: line 1, col 18: expected AND, OR or the end of the condition, found 'GROUP'
    "#]],
    );
    check_condition(
        "deviceId 'd01'",
        expect![[r#"
        error: line 1, col 10: expected AND, OR or the end of the condition, found 'd01'
    "#]],
    );
}
