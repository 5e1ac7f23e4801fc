//! `hubsim demo`: the building-43 story in one command, with nothing to set up.
//!
//! It starts a hub in-process in a temporary data directory on `127.0.0.1:0` (plain MQTT and plain
//! HTTP, so it never clashes with another hub), runs the `building-43` fleet profile (compiled into
//! the binary) in-process through the `fleet` library, waits until the fleet is connected, and then
//! acts like an operator's back end: through the service REST client it schedules a `reboot`
//! direct-method job on `tags.building = '43' AND tags.floor = 3` a few seconds ahead, follows it with
//! a progress bar (terminals only), and prints the job report (see `report`), reconciled against the
//! fleet's ground-truth record. The report directory keeps `report.json`, `timeline.svg` and the
//! fleet's `record.jsonl`. At the end the fleet disconnects, the hub drains, the data directory is
//! removed, and the exit code is 0 whatever the devices did (their failures are the point).
//!
//! `--devices N` scales every group of the profile proportionally (see [`scale_profile`]). It does
//! not read a profile from disk, and it does not keep the hub running after the report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use fleet::{DevicePlan, FleetConfig, FleetStats, Profile, Shard, Target};
use protocol::ids::JobId;
use protocol::job::{DeviceJob, JobAction, JobRequest, JobResponse, JobStatus};
use protocol::method::CloudToDeviceMethod;
use serde_json::{json, Value};
use service::{ServiceClient, ServiceConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::commands::parse_id;
use crate::config::{parse_start_time, UsageError};
use crate::output::Output;
use crate::report::command::{default_dir, fetch, finish};
use crate::report::text::Detail;
use crate::report::JobReport;

/// The profile the demo runs, compiled in so `hubsim demo` works from any directory.
const PROFILE_TEXT: &str = include_str!("../../../../fleet-profiles/building-43.toml");
/// The name the embedded profile goes by in messages.
const PROFILE_NAME: &str = "fleet-profiles/building-43.toml";
/// The fleet's default seed (with the full profile: 6 of floor 3's 30 devices never connect).
const DEFAULT_SEED: u64 = 41;
/// Default time each device gets to answer; the profile's slow valves take about 8 s, so they
/// (almost all) miss it and show up as 504101 GatewayTimeout.
const DEFAULT_RESPONSE_TIMEOUT_SECS: u32 = 5;
/// How long the job may run.
const MAX_EXECUTION_SECS: u64 = 300;
/// How often the job's progress is read.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long the fleet gets to disconnect and the hub to drain at the end.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long the demo waits for devices still answering after the job ended (the slow valves).
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// The record file the fleet writes into the report directory.
const RECORD_FILE: &str = "record.jsonl";

/// `hubsim demo` flags.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Run this many devices instead of the profile's 380: every group is scaled in proportion
    /// (largest remainder, at least one device per group), so floor 3 keeps its troubled devices.
    #[arg(long, value_name = "N")]
    devices: Option<u64>,
    /// The fleet's seed: the same seed and size give the same devices failing the same way.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// When the reboot job starts, counted from when the fleet is connected: +5s, +1m, or ISO-8601.
    #[arg(long, value_name = "TIME", default_value = "+5s")]
    at: String,
    /// Seconds each device gets to answer the reboot (5-300); the slow valves take about 8 s, so
    /// raise it to 10 or more to see most of them answer.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RESPONSE_TIMEOUT_SECS)]
    response_timeout: u32,
    /// Where to write report.json, timeline.svg and the fleet's record.jsonl
    /// (default ./hubsim-report-<JOB_ID>).
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
}

/// What the demo set up before the job, handed from step to step.
struct Setup {
    plans: Vec<DevicePlan>,
    condition: String,
    method: CloudToDeviceMethod,
    job_id: JobId,
    dir: PathBuf,
    connect_rate: f64,
    fleet_info: Value,
}

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs, out: &Output) -> anyhow::Result<()> {
    let setup = prepare(&args)?;
    let data_dir = tempfile::Builder::new()
        .prefix("hubsim-demo-")
        .tempdir()
        .context("could not create a temporary data directory")?;
    let hub_token = CancellationToken::new();
    let hub = start_hub(data_dir.path(), hub_token.clone()).await?;
    let fleet_token = CancellationToken::new();
    let mut fleet_task = JoinSet::new();
    let outcome = tokio::select! {
        outcome = drive(&hub, &setup, &args.at, &fleet_token, &mut fleet_task, out) => outcome,
        signal = tokio::signal::ctrl_c() => match signal {
            Ok(()) => Err(anyhow::anyhow!("interrupted")),
            Err(err) => Err(anyhow::Error::new(err).context("could not listen for Ctrl-C")),
        },
    };
    stop_fleet(&fleet_token, &mut fleet_task).await;
    let finished = outcome.and_then(|(mut report, records)| {
        report.fleet = Some(setup.fleet_info.clone());
        let record = setup.dir.join(RECORD_FILE);
        finish(report, &records, Some(&record), &setup.dir, Detail::Summary, out)
    });
    hub_token.cancel();
    if tokio::time::timeout(STOP_GRACE, hub.wait()).await.is_err() {
        tracing::warn!(grace_secs = STOP_GRACE.as_secs(), "the embedded hub did not drain in time");
    }
    drop(data_dir);
    finished
}

/// Validates the flags and expands the profile (no I/O besides creating nothing).
fn prepare(args: &DemoArgs) -> anyhow::Result<Setup> {
    parse_start_time(&args.at, chrono::Utc::now())?;
    let method = CloudToDeviceMethod::new(
        "reboot".to_owned(),
        Value::Null,
        Some(args.response_timeout),
        Some(0),
    )
    .map_err(|err| UsageError(format!("--response-timeout: {err}")))?;
    let mut profile = fleet::profile::parse(PROFILE_TEXT, Path::new(PROFILE_NAME))
        .context("the embedded building-43 profile is invalid")?;
    if let Some(n_devices) = args.devices {
        scale_profile(&mut profile, n_devices)?;
    }
    let plans = profile.expand(args.seed, Shard::ALL).context("could not expand the profile")?;
    let condition = target_condition(&plans)?;
    let job_id =
        parse_id::<JobId>("job id", &chrono::Utc::now().format("demo-%Y%m%d-%H%M%S").to_string())?;
    let dir = args.report_dir.clone().unwrap_or_else(|| default_dir(&job_id));
    let groups: serde_json::Map<String, Value> =
        profile.groups.iter().map(|g| (g.name.clone(), json!(g.count))).collect();
    let fleet_info = json!({
        "profile": profile.name,
        "seed": args.seed,
        "devices": plans.len(),
        "groups": groups,
    });
    let connect_rate = profile.connect_rate;
    Ok(Setup { plans, condition, method, job_id, dir, connect_rate, fleet_info })
}

/// Fleet up, job scheduled and followed to its end; returns the report and the device records.
async fn drive(
    hub: &hub::HubHandle,
    setup: &Setup,
    at: &str,
    fleet_token: &CancellationToken,
    fleet_task: &mut JoinSet<Result<fleet::FleetReport, fleet::FleetError>>,
    out: &Output,
) -> anyhow::Result<(JobReport, Vec<DeviceJob>)> {
    let http = hub.addrs().http.context("the embedded hub has no HTTP listener")?;
    let mqtt = hub.addrs().mqtt.context("the embedded hub has no MQTT listener")?;
    let connection = hub.service_connection_string();
    narrate(out, &format!("hub: mqtt://{mqtt} and http://{http} (temporary data directory)"));
    std::fs::create_dir_all(&setup.dir).with_context(|| {
        format!("could not create the report directory {}", setup.dir.display())
    })?;
    let n_devices = setup.plans.len() as u64;
    check_open_files(n_devices)?;
    let stats = Arc::new(FleetStats::default());
    let mut cfg = fleet_config(&connection, http, mqtt, &setup.dir.join(RECORD_FILE))?;
    cfg.connect_rate = setup.connect_rate;
    narrate(out, &format!("fleet: {n_devices} devices from {PROFILE_NAME}, {}", seed_text(setup)));
    fleet_task.spawn(fleet::run(cfg, setup.plans.clone(), fleet_token.clone(), stats.clone()));
    let connected_in = wait_connected(&stats, fleet_task, n_devices).await?;
    let snapshot = stats.snapshot();
    narrate(
        out,
        &format!(
            "fleet: {} connected in {:.1} s, {} never connect (by profile)",
            snapshot.connected,
            connected_in.as_secs_f64(),
            snapshot.never_connect
        ),
    );
    let client = ServiceClient::new(
        ServiceConfig::from_connection_string(&connection)?
            .with_base_url(&format!("http://{http}"))?,
    )?;
    let job = schedule(&client, setup, at, out).await?;
    let job = follow(&client, &job, out).await?;
    let fetched = fetch(&client, &job.job_id).await?;
    settle_calls(&stats, out).await;
    Ok(fetched)
}

/// Waits (bounded) until every call a device received has been answered or deliberately dropped:
/// a slow device still answers after the hub has timed it out, and its record line is only
/// written then, so stopping the fleet earlier would leave the call out of the ground truth.
async fn settle_calls(stats: &FleetStats, out: &Output) {
    let in_flight = |snapshot: fleet::StatsSnapshot| {
        snapshot
            .calls
            .saturating_sub(snapshot.calls_ok + snapshot.calls_error + snapshot.calls_silent)
    };
    let pending = in_flight(stats.snapshot());
    if pending == 0 {
        return;
    }
    narrate(out, &format!("fleet: waiting for {pending} slow device(s) to finish answering late"));
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    while in_flight(stats.snapshot()) > 0 && Instant::now() < deadline {
        ticker.tick().await;
    }
}

/// Schedules the reboot job the way an operator's back end would.
async fn schedule(
    client: &ServiceClient,
    setup: &Setup,
    at: &str,
    out: &Output,
) -> anyhow::Result<JobResponse> {
    let now = chrono::Utc::now();
    let start = parse_start_time(at, now)?;
    let request = JobRequest {
        job_id: Some(setup.job_id.to_string()),
        query_condition: setup.condition.clone(),
        start_time: Some(start),
        max_execution_time_in_seconds: MAX_EXECUTION_SECS,
        action: JobAction::DeviceMethod(setup.method.clone()),
    };
    let job = client
        .create_job(&setup.job_id, &request)
        .await
        .with_context(|| format!("could not schedule job {}", setup.job_id))?;
    let wait = (start - now).num_milliseconds().max(0) as f64 / 1000.0;
    narrate(
        out,
        &format!(
            "job {}: reboot where {} at {} (in {wait:.1} s)",
            job.job_id,
            setup.condition,
            protocol::time::format_timestamp_millis(start)
        ),
    );
    Ok(job)
}

/// Polls the job until it ends, drawing the progress bar.
async fn follow(
    client: &ServiceClient,
    job: &JobResponse,
    out: &Output,
) -> anyhow::Result<JobResponse> {
    let job_id = &job.job_id;
    let start_wait = job
        .start_time
        .map_or(Duration::ZERO, |start| (start - chrono::Utc::now()).to_std().unwrap_or_default());
    let deadline = Instant::now() + start_wait + Duration::from_secs(MAX_EXECUTION_SECS + 30);
    let progress = out.progress(0);
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    let mut running = false;
    loop {
        ticker.tick().await;
        let job =
            client.get_job(job_id).await.with_context(|| format!("could not read job {job_id}"))?;
        if !running && !matches!(job.status, JobStatus::Queued | JobStatus::Scheduled) {
            // Rate and ETA count from the job's start, not from the wait before it.
            running = true;
            progress.restart_clock();
        }
        let stats = job.device_job_statistics.unwrap_or_default();
        let message = match job.start_time.filter(|_| !job.status.is_terminal()) {
            Some(start) if start > chrono::Utc::now() => {
                let secs = (start - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0;
                format!("{}, starts in {secs:.1} s", job.status.as_str())
            }
            _ => format!(
                "pending {} running {} ok {} failed {}",
                stats.pending_count, stats.running_count, stats.succeeded_count, stats.failed_count
            ),
        };
        let done = stats.succeeded_count + stats.failed_count;
        progress.update(done, stats.device_count, message);
        if job.status.is_terminal() {
            progress.finish();
            return Ok(job);
        }
        if Instant::now() > deadline {
            progress.finish();
            anyhow::bail!("job {job_id} did not end within its maximum execution time");
        }
    }
}

/// Waits until every device is connected or known never to connect; fails if the fleet stops.
async fn wait_connected(
    stats: &FleetStats,
    fleet_task: &mut JoinSet<Result<fleet::FleetReport, fleet::FleetError>>,
    n_devices: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60) + Duration::from_millis(n_devices * 10);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ended = fleet_task.join_next() => {
                let reason = match ended {
                    Some(Ok(Err(err))) => anyhow::Error::new(err),
                    Some(Err(err)) => anyhow::Error::new(err),
                    Some(Ok(Ok(_))) | None => anyhow::anyhow!("the fleet stopped"),
                };
                return Err(reason.context("the fleet did not come up"));
            }
            _ = ticker.tick() => {
                let snapshot = stats.snapshot();
                if snapshot.connected + snapshot.never_connect >= n_devices {
                    return Ok(started.elapsed());
                }
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "the fleet did not connect in time: {} of {n_devices} connected",
                        snapshot.connected
                    );
                }
            }
        }
    }
}

/// Cancels the fleet and waits for it to disconnect (bounded).
async fn stop_fleet(
    token: &CancellationToken,
    fleet_task: &mut JoinSet<Result<fleet::FleetReport, fleet::FleetError>>,
) {
    token.cancel();
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while let Some(ended) = fleet_task.join_next().await {
            if let Ok(Err(err)) = ended {
                tracing::warn!(%err, "the demo fleet ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("the demo fleet did not stop in time");
        fleet_task.abort_all();
    }
}

/// Raises the open-file limit and checks it: hub and devices share this process, so every device
/// holds two sockets (its own and the hub's end).
fn check_open_files(n_devices: u64) -> anyhow::Result<()> {
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%err, "could not raise the open-file limit");
    }
    fleet::limits::check(n_devices.saturating_mul(2), 0).map(drop).map_err(|err| {
        anyhow::Error::new(err).context(format!(
            "{n_devices} devices do not fit: the demo runs the hub in the same process (two sockets per device)"
        ))
    })
}

/// Binds plain MQTT and HTTP on loopback port 0 and starts the hub in `data_dir`.
async fn start_hub(data_dir: &Path, token: CancellationToken) -> anyhow::Result<hub::HubHandle> {
    let bind = || TcpListener::bind("127.0.0.1:0");
    let listeners = hub::HubListeners {
        mqtt: Some(bind().await.context("could not listen on 127.0.0.1")?),
        http: Some(bind().await.context("could not listen on 127.0.0.1")?),
        ..Default::default()
    };
    let config = hub::HubConfig::new(data_dir, hub::config::DEFAULT_HOST_NAME);
    hub::Hub::spawn(config, listeners, token).await.context("could not start the embedded hub")
}

fn fleet_config(
    connection: &str,
    http: std::net::SocketAddr,
    mqtt: std::net::SocketAddr,
    record: &Path,
) -> anyhow::Result<FleetConfig> {
    let service = connection.parse().context("the embedded hub's connection string")?;
    let target = Target::Registry { service, rest_url: Some(format!("http://{http}")) };
    let mut cfg = FleetConfig::new(target, fleet::profile::DEFAULT_CONNECT_RATE);
    cfg.mqtt_addr = Some(mqtt);
    cfg.mqtt_tls = false;
    cfg.record = Some(record.to_path_buf());
    Ok(cfg)
}

/// Scales the groups to `n_devices` in total, in proportion to their sizes by largest remainder
/// (ties to the earlier group); a group that would get none gets one, taken from the largest group.
/// `--devices 380` is the profile as written.
///
/// # Errors
/// A usage error when `n_devices` is smaller than the number of groups.
pub(crate) fn scale_profile(profile: &mut Profile, n_devices: u64) -> Result<(), UsageError> {
    let n_groups = profile.groups.len() as u64;
    if n_devices < n_groups {
        return Err(UsageError(format!(
            "--devices must be at least {n_groups} (one per group of the profile)"
        )));
    }
    let total = profile.device_count().max(1);
    let shares: Vec<(u64, u64)> = profile
        .groups
        .iter()
        .map(|g| (n_devices * g.count / total, n_devices * g.count % total))
        .collect();
    let mut counts: Vec<u64> = shares.iter().map(|(whole, _)| *whole).collect();
    let left = n_devices - counts.iter().sum::<u64>();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by_key(|&idx| std::cmp::Reverse(shares[idx].1));
    for &idx in by_remainder.iter().take(left as usize) {
        counts[idx] += 1;
    }
    while let Some(empty) = counts.iter().position(|&count| count == 0) {
        let largest = (0..counts.len()).max_by_key(|&idx| (counts[idx], std::cmp::Reverse(idx)));
        let Some(largest) = largest.filter(|&idx| counts[idx] > 1) else { break };
        counts[largest] -= 1;
        counts[empty] = 1;
    }
    let mut first_index = 0;
    for (group, count) in profile.groups.iter_mut().zip(counts) {
        group.count = count;
        group.first_index = first_index;
        first_index += count;
    }
    Ok(())
}

/// `tags.building = '43' AND tags.floor = 3`, spelled with the tag values' JSON types.
fn target_condition(plans: &[DevicePlan]) -> anyhow::Result<String> {
    let target = plans
        .iter()
        .find(|plan| is_target(plan))
        .context("the profile has no device on floor 3 of building 43")?;
    let literal = |name: &str| match target.tags.get(name) {
        Some(Value::String(text)) => format!("'{text}'"),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Ok(format!("tags.building = {} AND tags.floor = {}", literal("building"), literal("floor")))
}

/// Whether the device is on floor 3 of building 43 (tags as numbers or strings).
fn is_target(plan: &DevicePlan) -> bool {
    let is = |name: &str, want: i64| match plan.tags.get(name) {
        Some(Value::Number(number)) => number.as_i64() == Some(want),
        Some(Value::String(text)) => text.trim() == want.to_string(),
        _ => false,
    };
    is("building", 43) && is("floor", 3)
}

fn seed_text(setup: &Setup) -> String {
    format!("seed {}", setup.fleet_info["seed"])
}

/// A progress line for people (not printed with --output json, which prints one document).
fn narrate(out: &Output, text: &str) {
    if !out.is_json() {
        out.line(text);
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn scaled(n_devices: u64) -> String {
        let mut profile = fleet::profile::parse(PROFILE_TEXT, Path::new(PROFILE_NAME)).unwrap();
        match scale_profile(&mut profile, n_devices) {
            Ok(()) => profile
                .groups
                .iter()
                .map(|g| format!("{}={}@{}", g.name, g.count, g.first_index))
                .collect::<Vec<_>>()
                .join(" "),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn devices_scale_every_group() {
        expect!["b41=120@0 b42=120@120 b43=100@240 b43-f3=30@340 b43-f3-slow=10@370"]
            .assert_eq(&scaled(380));
        expect!["b41=19@0 b42=19@19 b43=16@38 b43-f3=5@54 b43-f3-slow=1@59"].assert_eq(&scaled(60));
        expect!["b41=1@0 b42=1@1 b43=1@2 b43-f3=1@3 b43-f3-slow=1@4"].assert_eq(&scaled(5));
        expect!["--devices must be at least 5 (one per group of the profile)"]
            .assert_eq(&scaled(4));
        expect!["b41=317@0 b42=317@317 b43=264@634 b43-f3=79@898 b43-f3-slow=26@977"]
            .assert_eq(&scaled(1003));
    }

    #[test]
    fn the_condition_names_floor_three_of_building_43() {
        let profile = fleet::profile::parse(PROFILE_TEXT, Path::new(PROFILE_NAME)).unwrap();
        let plans = profile.expand(DEFAULT_SEED, Shard::ALL).unwrap();
        expect!["tags.building = '43' AND tags.floor = 3"]
            .assert_eq(&target_condition(&plans).unwrap());
        let targets: Vec<&str> =
            plans.iter().filter(|p| is_target(p)).map(|p| p.group.as_ref()).collect();
        assert_eq!(targets.len(), 40);
        assert!(targets.iter().all(|g| g.starts_with("b43-f3")));
    }
}
