//! Benchmark: queries over 100,000 synthetic twins, with a toy in-memory index that follows the
//! query's [`query::IndexHint`] the way the hub's registry does.
//!
//! Run with `cargo run --release -p query --example bench_query`. Prints the mean time per query
//! (parse + hint + candidate lookup + evaluation + projection) for a selective tag query, an IN list
//! of 1,000 device ids, full scans with and without GROUP BY, and the tag query without its index.

#![expect(clippy::print_stdout, reason = "a benchmark reports its numbers on stdout")]
#![expect(
    clippy::disallowed_types,
    reason = "wall-clock timing of CPU work; the paused-clock rule for async tests does not apply"
)]

use std::collections::HashMap;
use std::time::Instant;

use query::{IndexHint, Query};
use serde_json::{json, Value};

const N_TWINS: usize = 100_000;

/// Twins sorted by deviceId, plus the indexes the hub keeps.
struct Fleet {
    twins: Vec<Value>,
    by_device_id: HashMap<String, usize>,
    /// (tag name, index key of its value) -> positions in `twins`, ascending.
    by_tag: HashMap<(String, String), Vec<usize>>,
}

fn main() {
    let fleet = build_fleet();
    let id_list: Vec<String> = (0..1000).map(|id_idx| format!("'{:x}'", id_idx * 100)).collect();
    let in_query =
        format!("SELECT deviceId FROM devices WHERE deviceId IN [{}]", id_list.join(","));
    let cases = [
        ("selective tag query", "SELECT * FROM devices WHERE tags.building = '43' AND tags.floor = 3".to_owned(), 2000),
        ("IN list of 1,000 ids", in_query, 200),
        (
            "full scan + GROUP BY",
            "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS n, \
             AVG(properties.reported.temperature) AS mean FROM devices \
             GROUP BY properties.reported.telemetryConfig.status"
                .to_owned(),
            10,
        ),
        (
            "full scan, selective filter",
            "SELECT deviceId FROM devices WHERE properties.reported.temperature > 39.9".to_owned(),
            10,
        ),
        (
            "tag query without index",
            "SELECT * FROM devices WHERE tags.building >= '43' AND tags.building <= '43' AND tags.floor = 3 + 0".to_owned(),
            10,
        ),
    ];
    println!("{N_TWINS} twins; mean wall time per query (parse + plan + evaluate + project)");
    for (name, text, n_runs) in cases {
        bench(&fleet, name, &text, n_runs);
    }
}

fn bench(fleet: &Fleet, name: &str, text: &str, n_runs: u32) {
    let started = Instant::now();
    let mut n_rows = 0;
    let mut hint = IndexHint::FullScan;
    for _ in 0..n_runs {
        let query = query::parse_query(text).expect("benchmark queries are valid");
        hint = query.index_hint();
        n_rows = execute(fleet, &query).len();
    }
    let per_query = started.elapsed() / n_runs;
    let hint_name = match hint {
        IndexHint::DeviceIds(ids) => format!("DeviceIds({})", ids.len()),
        IndexHint::TagEquals { path, .. } => format!("TagEquals({})", path.join(".")),
        other => format!("{other:?}"),
    };
    println!(
        "{name:<30} {per_query:>12.3?}  rows={n_rows:<6} hint={hint_name} ({} chars)",
        text.chars().count()
    );
}

/// Runs `query` over the candidates its index hint names, in deviceId order.
fn execute(fleet: &Fleet, query: &Query) -> Vec<Value> {
    match query.index_hint() {
        IndexHint::DeviceIds(ids) => {
            let mut positions: Vec<usize> =
                ids.iter().filter_map(|id| fleet.by_device_id.get(id).copied()).collect();
            positions.sort_unstable();
            query.run(positions.iter().map(|position| &fleet.twins[*position]))
        }
        IndexHint::TagEquals { path, value } => {
            let key = (path.join("."), query::index_key(&value).unwrap_or_default());
            let positions = fleet.by_tag.get(&key).map_or(&[][..], Vec::as_slice);
            query.run(positions.iter().map(|position| &fleet.twins[*position]))
        }
        _ => query.run(&fleet.twins),
    }
}

fn build_fleet() -> Fleet {
    let mut twins: Vec<Value> = (0..N_TWINS).map(synthetic_twin).collect();
    twins.sort_by(|lhs, rhs| lhs["deviceId"].as_str().cmp(&rhs["deviceId"].as_str()));
    let mut by_device_id = HashMap::new();
    let mut by_tag: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (position, twin) in twins.iter().enumerate() {
        if let Some(id) = twin["deviceId"].as_str() {
            by_device_id.insert(id.to_owned(), position);
        }
        for (tag, value) in twin["tags"].as_object().into_iter().flatten() {
            if let Some(key) = query::index_key(value) {
                by_tag.entry((tag.clone(), key)).or_default().push(position);
            }
        }
    }
    Fleet { twins, by_device_id, by_tag }
}

/// A deterministic twin: 500 buildings, 10 floors, four telemetry states, temperatures 0..40.
fn synthetic_twin(device_idx: usize) -> Value {
    let states = ["Success", "Pending", "Failed", "Unknown"];
    #[expect(clippy::cast_precision_loss, reason = "small synthetic values")]
    let temperature = (device_idx * 7919 % 4000) as f64 / 100.0;
    json!({
        "deviceId": format!("{device_idx:x}"),
        "status": if device_idx % 17 == 0 { "disabled" } else { "enabled" },
        "connectionState": if device_idx % 3 == 0 { "Connected" } else { "Disconnected" },
        "version": device_idx % 50,
        "tags": {"building": (device_idx % 500).to_string(), "floor": device_idx / 500 % 10},
        "properties": {
            "desired": {"interval": 30, "$version": 1},
            "reported": {"temperature": temperature, "telemetryConfig": {"status": states[device_idx % 4]}, "$version": 2},
        },
    })
}
