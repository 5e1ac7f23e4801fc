//! Profile parsing, good and bad, as data: each case is TOML text and the expected outcome.

use std::path::Path;

use expect_test::{expect, Expect};

use super::*;

fn check(text: &str, expect: Expect) {
    let out = match parse(text, Path::new("p.toml")) {
        Err(err) => err.to_string(),
        Ok(profile) => {
            let mut out = format!(
                "name={} connect_rate={} devices={}\n",
                profile.name,
                profile.connect_rate,
                profile.device_count()
            );
            for g in &profile.groups {
                let tags: Vec<&str> = g.tags.iter().map(|(n, _)| n.as_str()).collect();
                let methods: Vec<&String> = g.behaviour.methods.keys().collect();
                out += &format!(
                    "group {} count={} first={} tags={tags:?} methods={methods:?} desired={} telemetry={} outages={}\n",
                    g.name,
                    g.count,
                    g.first_index,
                    g.behaviour.desired.is_some(),
                    g.behaviour.telemetry.is_some(),
                    g.behaviour.connectivity.outages.len()
                );
            }
            out
        }
    };
    expect.assert_eq(&out);
}

const GOOD: &str = r#"
[fleet]
name = "demo"
connect_rate = 500

[[group]]
name = "floor-3"
count = 20
id = "b{building}-f{floor}-{n:04}"
tags = { building = 43, floor = 3, deviceType = { choice = ["sensor", "valve"], weights = [3, 1] } }
reported = { firmware = "1.0.{int:0:9}", building = "{building}" }

[group.methods.default]
latency = { dist = "log-normal", median_ms = 40, sigma = 0.5 }
error = { probability = 0.05, status = 500, payload = { message = "boom on {deviceId}" } }
no_answer = 0.01
response = { ok = true, method = "{method}" }

[group.methods.reboot]
reboot = { down_for_s = 10 }

[group.desired]
latency = { dist = "fixed", ms = 100 }
failure_probability = 0.1

[group.connectivity]
never_connects = 0.1
churn = { mean_online_s = 300, mean_offline_s = 30 }
outages = [{ at_s = 60, for_s = 30, share = 0.5 }]
network = { latency_ms = 5, jitter_ms = 2 }

[group.telemetry]
interval_s = 10
payload = { temp = "{uniform:18:26}", seq = "{seq}" }

[[group]]
name = "plain"
count = 5
id = "plain-{i}"
"#;

#[test]
fn good_profile() {
    check(
        GOOD,
        expect![[r#"
            name=demo connect_rate=500 devices=25
            group floor-3 count=20 first=0 tags=["building", "deviceType", "floor"] methods=["reboot"] desired=true telemetry=true outages=1
            group plain count=5 first=20 tags=[] methods=[] desired=false telemetry=false outages=0
        "#]],
    );
}

#[test]
fn syntax_and_schema_errors_point_at_the_line() {
    check("[[group]\nname = 1", expect!["p.toml:1:8: invalid table header\nexpected `.`, `]]`"]);
    check(
        "[[group]]\nname = \"a\"\ncount = 1\nid = \"x\"\ncolour = 3\n",
        expect!["p.toml:5:1: unknown field `colour`, expected one of `name`, `count`, `id`, `tags`, `reported`, `methods`, `desired`, `connectivity`, `telemetry`"],
    );
    check(
        "[[group]]\nname = \"a\"\ncount = \"ten\"\nid = \"x\"\n",
        expect!["p.toml:3:9: invalid type: string \"ten\", expected i64"],
    );
    check("[[group]]\nname = \"a\"\nid = \"x\"\n", expect!["p.toml:1:1: missing field `count`"]);
    check("", expect!["p.toml:1:1: the profile has no [[group]]"]);
}

#[test]
fn semantic_errors_point_at_the_line() {
    let group = "[[group]]\nname = \"g\"\ncount = 3\nid = \"d-{n}\"\n";
    check(&format!("{group}[group.connectivity]\nnever_connects = 1.5\n"), expect!["p.toml:5:1: connectivity: never_connects must be a probability between 0 and 1, got 1.5"]);
    check(
        &format!("{group}[group.methods.reboot]\nlatency = {{ dist = \"uniform\", min_ms = 9, max_ms = 1 }}\n"),
        expect!["p.toml:5:1: methods.reboot: latency: min_ms (9) is greater than max_ms (1)"],
    );
    check(&format!("{group}[group.methods.x]\nlatency = {{ dist = \"gamma\" }}\n"), expect!["p.toml:6:20: unknown variant `gamma`, expected one of `fixed`, `uniform`, `normal`, `log-normal`"]);
    check(
        &format!("{group}tags = {{ floor = {{ range = [5, 1] }} }}\n"),
        expect!["p.toml:5:18: tag floor: range must be [LO, HI] with integers LO <= HI"],
    );
    check(&format!("{group}[group.telemetry]\ninterval_s = 5\npayload = {{ t = \"{{temp}}\" }}\n"), expect!["p.toml:5:1: telemetry: payload: unknown variable {temp} (known here: deviceId, n, i, group, method, payload, seq, now)"]);
    check(
        "[[group]]\nname = \"g\"\ncount = 3\nid = \"dev\"\n",
        expect!["p.toml:4:6: id: 3 devices need {n} or {i} in the id template to get distinct ids"],
    );
    check(
        "[[group]]\nname = \"g\"\ncount = 1\nid = \"b{building}\"\n",
        expect!["p.toml:4:6: id: unknown variable {building} (known here: n, i, group)"],
    );
    check(
        "[[group]]\nname = \"g\"\ncount = 0\nid = \"d{n}\"\n",
        expect!["p.toml:3:9: count must be at least 1, got 0"],
    );
    check(
        "[[group]]\nname = \"g\"\ncount = 1\nid = \"a{n}\"\n\n[[group]]\nname = \"g\"\ncount = 1\nid = \"b{n}\"\n",
        expect![[r#"p.toml:7:8: duplicate group name "g""#]],
    );
    check(
        "[fleet]\nconnect_rate = 0\n[[group]]\nname = \"g\"\ncount = 1\nid = \"a\"\n",
        expect!["p.toml:2:16: connect_rate must be > 0 devices per second, got 0"],
    );
}

#[test]
fn shipped_profiles_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fleet-profiles");
    let mut summary = String::new();
    for name in ["building-43.toml", "flaky.toml", "load-10k.toml", "load-100k.toml"] {
        match load(&dir.join(name)) {
            Ok(p) => {
                summary +=
                    &format!("{name}: {} devices in {} groups\n", p.device_count(), p.groups.len())
            }
            Err(err) => summary += &format!("{name}: {err}\n"),
        }
    }
    expect![[r#"
        building-43.toml: 380 devices in 5 groups
        flaky.toml: 200 devices in 1 groups
        load-10k.toml: 10000 devices in 1 groups
        load-100k.toml: 100000 devices in 1 groups
    "#]]
    .assert_eq(&summary);
}

#[test]
fn missing_file_is_a_read_error() {
    let err = load(Path::new("/nonexistent/p.toml")).unwrap_err();
    expect!["/nonexistent/p.toml: cannot read profile: No such file or directory (os error 2)"]
        .assert_eq(&err.to_string());
}
