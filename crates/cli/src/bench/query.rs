//! The selective tag query over many twins, on a hub of its own: `n_twins` devices tagged with 500
//! buildings and 10 floors, then `SELECT * FROM devices WHERE tags.building = '43' AND tags.floor = 3`
//! timed in process ([`hub::registry::Registry::query_page`], the tag index plus evaluation) and
//! through `POST /devices/query` (plus HTTP, SAS and JSON).
//!
//! Devices are created straight in the registry, not over REST: this measures the query, not
//! registration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hub::registry::Registry;
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use protocol::twin::{ReportedInPatch, TwinPatch};
use serde_json::json;
use service::{ServiceClient, ServiceConfig};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::sys;
use super::BenchHub;

/// The query.
pub(crate) const SELECTIVE_QUERY: &str =
    "SELECT * FROM devices WHERE tags.building = '43' AND tags.floor = 3";
const BUILDINGS: usize = 500;
const FLOORS: usize = 10;
/// Registry writers running at once while the twins are created.
const CREATE_WORKERS: usize = 64;

/// Query timings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryTiming {
    /// Twins in the registry.
    pub(crate) twins: usize,
    /// Rows the query returned.
    pub(crate) rows: usize,
    /// In process, p50.
    pub(crate) in_process_p50: Duration,
    /// Over REST, p50.
    pub(crate) rest_p50: Duration,
    /// Over REST, slowest run.
    pub(crate) rest_max: Duration,
}

/// Starts a hub, fills it with `n_twins` tagged twins and times the query `runs` times each way.
pub(crate) async fn measure(n_twins: usize, runs: usize) -> anyhow::Result<QueryTiming> {
    let hub = BenchHub::start().await?;
    fill(hub.handle.registry(), n_twins).await?;
    let query =
        query::parse_query(SELECTIVE_QUERY).context("the benchmark query does not parse")?;
    let mut in_process = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let page = hub.handle.registry().query_page(&query, None, 1000)?;
        in_process.push(started.elapsed());
        rows = page.items.len();
    }
    let config =
        ServiceConfig::new(hub.connection())?.with_base_url(&format!("http://{}", hub.http))?;
    let client = ServiceClient::new(config)?;
    let mut rest = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let page = client.query_page(SELECTIVE_QUERY, Some(1000), None).await?;
        rest.push(started.elapsed());
        anyhow::ensure!(
            page.items.len() == rows,
            "REST returned {} rows, not {rows}",
            page.items.len()
        );
    }
    hub.stop().await;
    Ok(QueryTiming {
        twins: n_twins,
        rows,
        in_process_p50: sys::percentile(&mut in_process, 50.0),
        rest_p50: sys::percentile(&mut rest, 50.0),
        rest_max: sys::percentile(&mut rest, 100.0),
    })
}

/// Creates `n_twins` devices, then tags them: one batch per building and one per floor.
async fn fill(registry: &Registry, n_twins: usize) -> anyhow::Result<()> {
    let ids: Arc<Vec<DeviceId>> = Arc::new(
        (0..n_twins).map(|idx| DeviceId::new(format!("q{idx:06}"))).collect::<Result<_, _>>()?,
    );
    let mut workers = JoinSet::new();
    for worker_idx in 0..CREATE_WORKERS {
        let (registry, ids) = (registry.clone(), ids.clone());
        workers.spawn(async move {
            for id in ids.iter().skip(worker_idx).step_by(CREATE_WORKERS) {
                registry.create_device(id, &DeviceRequest::default()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a registry writer panicked")??;
    }
    for building in 0..BUILDINGS {
        let members: Vec<DeviceId> =
            ids.iter().skip(building).step_by(BUILDINGS).cloned().collect();
        tag(registry, &members, json!({"building": building.to_string()})).await?;
    }
    for floor in 0..FLOORS {
        let members: Vec<DeviceId> = ids
            .iter()
            .enumerate()
            .filter(|(idx, _)| idx / BUILDINGS % FLOORS == floor)
            .map(|(_, id)| id.clone())
            .collect();
        tag(registry, &members, json!({"floor": floor})).await?;
    }
    Ok(())
}

async fn tag(registry: &Registry, ids: &[DeviceId], tags: serde_json::Value) -> anyhow::Result<()> {
    let patch = TwinPatch::parse(&json!({ "tags": tags }), ReportedInPatch::Ignore)?;
    for (id, outcome) in registry.update_twins_forced(ids, &patch).await {
        outcome.with_context(|| format!("could not tag {id}"))?;
    }
    Ok(())
}
