//! Plan expansion: ids, tags, sharding and determinism under a seed.

use std::path::Path;
use std::time::Duration;

use expect_test::expect;
use serde_json::json;

use super::*;
use crate::profile::parse;

const PROFILE: &str = r#"
[[group]]
name = "b43"
count = 6
id = "b{building}-f{floor}-{n:04}"
tags = { building = 43, floor = { cycle = [2, 3] }, kind = { choice = ["a", "b", "c"] } }
reported = { hello = "{deviceId}", rnd = "{int:1:100}" }
[group.methods.default]
error = { probability = 0.3, status = 503 }
no_answer = 0.2
latency = { dist = "uniform", min_ms = 1, max_ms = 100 }
response = { echo = "{payload}" }
[group.connectivity]
never_connects = 0.3
churn = { mean_online_s = 20, mean_offline_s = 5 }
[group.desired]
failure_probability = 0.5

[[group]]
name = "other"
count = 3
id = "other-{i}"
"#;

fn profile() -> Profile {
    parse(PROFILE, Path::new("p.toml")).unwrap()
}

/// A per-device fingerprint of every decision a run would make.
fn outcomes(plans: &[DevicePlan]) -> Vec<String> {
    plans
        .iter()
        .map(|p| {
            let mut schedule = p.schedule();
            let presence: String = (0..60)
                .map(
                    |s| if schedule.presence_at(Duration::from_secs(s)).online { '1' } else { '0' },
                )
                .collect();
            let calls: Vec<String> =
                (0..3).map(|c| format!("{:?}", p.method_decision("m", c, &json!(1)))).collect();
            let desired: Vec<String> =
                (1..4).map(|v| format!("{:?}", p.desired_decision(v))).collect();
            format!(
                "{} {:?} {:?} {presence} {calls:?} {desired:?}",
                p.device_id, p.tags, p.initial_reported
            )
        })
        .collect()
}

#[test]
fn ids_tags_and_reported() {
    let plans = profile().expand(1, Shard::ALL).unwrap();
    let lines: Vec<String> = plans
        .iter()
        .map(|p| {
            format!(
                "{} {} {:?} {}",
                p.index,
                p.device_id,
                p.tags,
                p.initial_reported.clone().unwrap_or_default()
            )
        })
        .collect();
    expect![[r#"
        0 b43-f2-0001 {"building": Number(43), "floor": Number(2), "kind": String("b")} {"hello":"b43-f2-0001","rnd":85}
        1 b43-f3-0002 {"building": Number(43), "floor": Number(3), "kind": String("a")} {"hello":"b43-f3-0002","rnd":12}
        2 b43-f2-0003 {"building": Number(43), "floor": Number(2), "kind": String("c")} {"hello":"b43-f2-0003","rnd":30}
        3 b43-f3-0004 {"building": Number(43), "floor": Number(3), "kind": String("c")} {"hello":"b43-f3-0004","rnd":13}
        4 b43-f2-0005 {"building": Number(43), "floor": Number(2), "kind": String("a")} {"hello":"b43-f2-0005","rnd":12}
        5 b43-f3-0006 {"building": Number(43), "floor": Number(3), "kind": String("a")} {"hello":"b43-f3-0006","rnd":50}
        6 other-6 {} null
        7 other-7 {} null
        8 other-8 {} null"#]].assert_eq(&lines.join("\n"));
}

#[test]
fn same_seed_same_fleet_different_seed_different_fleet() {
    let p = profile();
    let a = outcomes(&p.expand(7, Shard::ALL).unwrap());
    let b = outcomes(&p.expand(7, Shard::ALL).unwrap());
    let c = outcomes(&p.expand(8, Shard::ALL).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn shards_partition_the_fleet_without_changing_devices() {
    let p = profile();
    let all = outcomes(&p.expand(3, Shard::ALL).unwrap());
    let mut merged: Vec<(u64, String)> = Vec::new();
    for index in 0..3 {
        let shard = Shard { index, count: 3 };
        let plans = p.expand(3, shard).unwrap();
        assert!(plans.iter().all(|d| shard.contains(d.index)));
        merged.extend(plans.iter().map(|d| d.index).zip(outcomes(&plans)));
    }
    merged.sort();
    assert_eq!(merged.into_iter().map(|(_, o)| o).collect::<Vec<_>>(), all);
}

#[test]
fn method_streams_are_independent_of_call_order() {
    let plans = profile().expand(5, Shard::ALL).unwrap();
    let d = &plans[0];
    let forward: Vec<_> = (0..5).map(|c| d.method_decision("a", c, &json!(null))).collect();
    let _interleaved = d.method_decision("b", 0, &json!(null));
    let backward: Vec<_> = (0..5).rev().map(|c| d.method_decision("a", c, &json!(null))).collect();
    assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
}

#[test]
fn duplicate_and_invalid_ids_are_errors() {
    let dup = "[[group]]\nname = \"a\"\ncount = 2\nid = \"d{n}\"\n[[group]]\nname = \"b\"\ncount = 2\nid = \"d{n}\"\n";
    let err = parse(dup, Path::new("p.toml")).unwrap().expand(0, Shard::ALL).unwrap_err();
    expect![[r#"device id "d1" is produced twice: by group "a" and by group "b""#]]
        .assert_eq(&err.to_string());
    let bad = "[[group]]\nname = \"a\"\ncount = 1\nid = \"d {n}\"\n";
    let err = parse(bad, Path::new("p.toml")).unwrap().expand(0, Shard::ALL).unwrap_err();
    expect![[r#"group "a" renders an invalid device id "d 1": device id contains ' ', which is not allowed (ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ ' : ;)"#]]
        .assert_eq(&err.to_string());
}

#[test]
fn shard_parsing() {
    assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
    expect![[r#"bad shard "4/4": expected I/N with 0 <= I < N, e.g. 0/4 .. 3/4"#]]
        .assert_eq(&"4/4".parse::<Shard>().unwrap_err().to_string());
    assert!("x".parse::<Shard>().is_err() && "1/0".parse::<Shard>().is_err());
}
