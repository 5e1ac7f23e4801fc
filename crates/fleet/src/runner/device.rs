//! One simulated device: a task that follows the device's connectivity schedule, opens a
//! `device::Client` session for each online period, and carries out the plan's decisions.
//!
//! Method calls are answered by one default handler that asks [`DevicePlan::method_decision`] what to
//! do (per-method call counters pick the RNG stream), waits the decided latency plus network delay,
//! and answers — or holds the call until the session ends when the decision is "no answer". A reboot
//! answer makes the session end after the answer is published, keeps the device down, and reports
//! `lastReboot` after the next connect. Desired acks and telemetry run as short tasks on the run's
//! tracker, tied to the session's token. Nothing here logs per device; it counts and records.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use device::{
    handler, Client, ConnectionState, DesiredPatch, DeviceConfig, MethodAnswer, MethodHandler,
    MethodRequest, TlsConfig,
};
use parking_lot::Mutex;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::behaviour::desired::{ack_patch, DesiredDecision};
use crate::behaviour::method::MethodDecision;
use crate::behaviour::reboot::last_reboot_patch;
use crate::plan::{DevicePlan, Stream};
use crate::record::{RecordEvent, RecordLine, Recorder};
use crate::registration::Credentials;
use crate::stats::{bump, drop_one, FleetStats};

/// How long an unanswered call is held before the handler gives up (above IoT Hub's 300 s maximum
/// response timeout, so the hub has always timed the call out by then).
const SILENT_HOLD: Duration = Duration::from_secs(330);

/// How long to wait for a reboot answer to be published before disconnecting anyway.
const ANSWER_FLUSH_DEADLINE: Duration = Duration::from_secs(2);

/// Everything device tasks share.
pub(super) struct RunContext {
    pub(super) host: String,
    pub(super) mqtt_addr: SocketAddr,
    pub(super) tls: Option<TlsConfig>,
    pub(super) keep_alive: Duration,
    pub(super) started: Instant,
    pub(super) stats: Arc<FleetStats>,
    pub(super) recorder: Recorder,
    pub(super) tracker: TaskTracker,
}

/// One device's task state.
pub(super) struct SimDevice {
    ctx: Arc<RunContext>,
    plan: Arc<DevicePlan>,
    creds: Credentials,
    local_addr: Option<IpAddr>,
    shared: Arc<DeviceShared>,
}

/// State the method handler shares with the device task (short locks, never across `.await`).
struct DeviceShared {
    calls: Mutex<HashMap<String, u64>>,
    network: Mutex<ChaCha8Rng>,
    answers: AtomicU64,
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Offline(&'static str),
    Reboot(Duration),
}

impl SimDevice {
    pub(super) fn new(
        ctx: Arc<RunContext>,
        plan: Arc<DevicePlan>,
        creds: Credentials,
        local_addr: Option<IpAddr>,
    ) -> SimDevice {
        let shared = Arc::new(DeviceShared {
            calls: Mutex::new(HashMap::new()),
            network: Mutex::new(plan.rng(Stream::Network)),
            answers: AtomicU64::new(0),
        });
        SimDevice { ctx, plan, creds, local_addr, shared }
    }

    /// Runs the device until `token` is cancelled.
    pub(super) async fn run(self, token: CancellationToken) {
        bump(&self.ctx.stats.started);
        let mut schedule = self.plan.schedule();
        if schedule.never_connects() {
            bump(&self.ctx.stats.never_connect);
            self.record(RecordEvent::NeverConnects).await;
            self.offline_until(None, &token).await;
            return;
        }
        let mut pending_report = self.plan.initial_reported.clone();
        loop {
            let presence = schedule.presence_at(self.ctx.started.elapsed());
            if !presence.online {
                if !self.offline_until(presence.until.map(|u| self.ctx.started + u), &token).await {
                    return;
                }
                continue;
            }
            let until = presence.until.map(|u| self.ctx.started + u);
            match self.session(&token, until, pending_report.take()).await {
                SessionEnd::Shutdown => return,
                SessionEnd::Offline(reason) => {
                    self.record(RecordEvent::Disconnected { reason: reason.to_owned() }).await
                }
                SessionEnd::Reboot(down_for) => {
                    bump(&self.ctx.stats.reboots);
                    self.record(RecordEvent::Reboot { down_ms: down_for.as_millis() as u64 }).await;
                    if !self.offline_until(Some(Instant::now() + down_for), &token).await {
                        return;
                    }
                    pending_report = Some(last_reboot_patch(chrono::Utc::now()));
                }
            }
        }
    }

    /// Stays offline until `until` (or forever); returns `false` when cancelled.
    async fn offline_until(&self, until: Option<Instant>, token: &CancellationToken) -> bool {
        bump(&self.ctx.stats.offline);
        let woke = tokio::select! {
            () = token.cancelled() => false,
            () = sleep_until_opt(until) => true,
        };
        drop_one(&self.ctx.stats.offline);
        woke
    }

    async fn session(
        &self,
        token: &CancellationToken,
        until: Option<Instant>,
        report: Option<Value>,
    ) -> SessionEnd {
        let session_token = token.child_token();
        let _end_session = session_token.clone().drop_guard();
        // Capacity 1: a second reboot request while one is pending is dropped (the device reboots once).
        let (reboot_tx, mut reboot_rx) = mpsc::channel::<Duration>(1);
        let client = match self.client(&session_token) {
            Ok(client) => client,
            Err(err) => {
                bump(&self.ctx.stats.device_errors);
                self.record(RecordEvent::ConnectFailed { error: err }).await;
                self.offline_until(None, token).await;
                return SessionEnd::Shutdown;
            }
        };
        client.on_default_method(self.method_handler(reboot_tx, session_token.clone()));
        let mut desired = self.plan.behaviour.desired.as_ref().map(|_| client.desired_patches());
        let mut state = client.state();
        let mut connected = false;
        let mut report = report;
        let mut telemetry = TelemetryClock::new(&self.plan, self.ctx.started);
        let end = loop {
            tokio::select! {
                () = token.cancelled() => break SessionEnd::Shutdown,
                () = sleep_until_opt(until) => break SessionEnd::Offline("schedule"),
                Some(down_for) = reboot_rx.recv() => {
                    self.wait_answers_published(&client).await;
                    break SessionEnd::Reboot(down_for);
                }
                changed = state.changed() => {
                    let now_state = if changed.is_ok() { state.borrow_and_update().clone() } else { ConnectionState::Stopped { error: None } };
                    match self.on_state(now_state, &mut connected, &client, &mut report, &session_token).await {
                        Some(end) => break end,
                        None => continue,
                    }
                }
                Some(patch) = next_desired(&mut desired) => self.on_desired(&client, patch, &session_token),
                () = telemetry.tick(connected) => self.send_telemetry(&client, telemetry.take_seq(), &session_token),
            }
        };
        if connected {
            drop_one(&self.ctx.stats.connected);
        }
        client.disconnect().await;
        end
    }

    fn client(&self, session_token: &CancellationToken) -> Result<Client, String> {
        let mut cfg = DeviceConfig::new(
            self.ctx.host.clone(),
            self.creds.device_id.clone(),
            self.creds.primary_key.clone(),
            self.ctx.mqtt_addr,
        )
        .map_err(|e| e.to_string())?;
        cfg.tls = self.ctx.tls.clone();
        cfg.local_addr = self.local_addr;
        cfg.keep_alive = self.ctx.keep_alive;
        cfg.rng_seed = self.plan.seed;
        cfg.client_type = format!("hubsim-fleet/{}", env!("CARGO_PKG_VERSION"));
        Client::spawn(cfg, &self.ctx.tracker, session_token.clone()).map_err(|e| e.to_string())
    }

    /// Handles a connection-state change; `Some` ends the session.
    async fn on_state(
        &self,
        state: ConnectionState,
        connected: &mut bool,
        client: &Client,
        report: &mut Option<Value>,
        session_token: &CancellationToken,
    ) -> Option<SessionEnd> {
        match state {
            ConnectionState::Connected => {
                if !*connected {
                    *connected = true;
                    bump(&self.ctx.stats.connected);
                }
                bump(&self.ctx.stats.connects);
                self.record(RecordEvent::Connected).await;
                if let Some(patch) = report.take() {
                    self.patch_reported_later(client, patch, Duration::ZERO, session_token);
                }
                None
            }
            ConnectionState::Reconnecting { error, .. } => {
                if std::mem::take(connected) {
                    drop_one(&self.ctx.stats.connected);
                    self.record(RecordEvent::Disconnected { reason: error.to_string() }).await;
                } else {
                    bump(&self.ctx.stats.connect_failures);
                    self.record(RecordEvent::ConnectFailed { error: error.to_string() }).await;
                }
                None
            }
            ConnectionState::Stopped { error } => {
                bump(&self.ctx.stats.connect_failures);
                let error = error.map_or_else(|| "client stopped".to_owned(), |e| e.to_string());
                self.record(RecordEvent::ConnectFailed { error }).await;
                Some(SessionEnd::Offline("client stopped"))
            }
            ConnectionState::Connecting => None,
        }
    }

    fn method_handler(
        &self,
        reboot_tx: mpsc::Sender<Duration>,
        session_token: CancellationToken,
    ) -> MethodHandler {
        let (ctx, plan, shared) = (self.ctx.clone(), self.plan.clone(), self.shared.clone());
        handler(move |request: MethodRequest| {
            let (ctx, plan, shared) = (ctx.clone(), plan.clone(), shared.clone());
            let (reboot_tx, session_token) = (reboot_tx.clone(), session_token.clone());
            async move {
                let started = Instant::now();
                let received_ms = ms(ctx.started.elapsed());
                bump(&ctx.stats.calls);
                let call = shared.next_call(&request.name);
                let decision = plan.method_decision(&request.name, call, &request.payload);
                let record = |answered: Option<(i32, Value)>| {
                    let answered_ms = answered.as_ref().map(|_| ms(ctx.started.elapsed()));
                    let (status, payload) =
                        answered.map_or((None, None), |(s, p)| (Some(s), Some(p)));
                    let event = RecordEvent::Method {
                        method: request.name.clone(),
                        rid: request.rid.clone(),
                        call,
                        received_ms,
                        answered_ms,
                        status,
                        payload,
                    };
                    line(&ctx, &plan, event)
                };
                match decision {
                    MethodDecision::NoAnswer => {
                        bump(&ctx.stats.calls_silent);
                        ctx.recorder.write(record(None)).await;
                        tokio::select! {
                            () = session_token.cancelled() => {}
                            () = tokio::time::sleep(SILENT_HOLD) => {}
                        }
                        MethodAnswer::new(
                            504,
                            serde_json::json!({ "message": "simulated device never answered" }),
                        )
                    }
                    MethodDecision::Answer { latency, status, payload, failed, reboot_for } => {
                        let delay = latency + shared.network_delay(&plan);
                        tokio::select! {
                            () = session_token.cancelled() => {}
                            () = tokio::time::sleep(delay) => {}
                        }
                        bump(if failed { &ctx.stats.calls_error } else { &ctx.stats.calls_ok });
                        ctx.stats.handler_latency.record(started.elapsed());
                        ctx.recorder.write(record(Some((status, payload.clone())))).await;
                        shared.answers.fetch_add(1, Ordering::SeqCst);
                        if let Some(down_for) = reboot_for {
                            // Full means a reboot is already pending; one reboot covers both calls.
                            let _ = reboot_tx.try_send(down_for);
                        }
                        MethodAnswer::new(status, payload)
                    }
                }
            }
        })
    }

    /// Polls the client's answered counter until it has published every answer the handler returned.
    async fn wait_answers_published(&self, client: &Client) {
        let deadline = Instant::now() + ANSWER_FLUSH_DEADLINE;
        let target = self.shared.answers.load(Ordering::SeqCst);
        while client.stats().methods_answered < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn on_desired(&self, client: &Client, patch: DesiredPatch, session_token: &CancellationToken) {
        bump(&self.ctx.stats.desired);
        let mut body = patch.patch.clone();
        body.insert("$version".to_owned(), Value::from(patch.version));
        let (ctx, plan, shared, client, token) = (
            self.ctx.clone(),
            self.plan.clone(),
            self.shared.clone(),
            client.clone(),
            session_token.clone(),
        );
        self.ctx.tracker.spawn(async move {
            let decision = plan.desired_decision(patch.version);
            let acked = match decision {
                Some(DesiredDecision::Ack { latency }) => {
                    let delay = latency + shared.network_delay(&plan);
                    tokio::select! {
                        () = token.cancelled() => false,
                        () = tokio::time::sleep(delay) => client.patch_reported(&ack_patch(&Value::Object(body))).await.is_ok(),
                    }
                }
                Some(DesiredDecision::Fail) | None => false,
            };
            bump(if acked { &ctx.stats.desired_acked } else { &ctx.stats.desired_failed });
            ctx.recorder.write(line(&ctx, &plan, RecordEvent::Desired { version: patch.version, acked })).await;
        });
    }

    fn patch_reported_later(
        &self,
        client: &Client,
        patch: Value,
        delay: Duration,
        token: &CancellationToken,
    ) {
        let (ctx, client, token) = (self.ctx.clone(), client.clone(), token.clone());
        self.ctx.tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = tokio::time::sleep(delay) => {
                    if client.patch_reported(&patch).await.is_err() {
                        bump(&ctx.stats.device_errors);
                    }
                }
            }
        });
    }

    fn send_telemetry(&self, client: &Client, seq: u64, token: &CancellationToken) {
        let Some(payload) = self.plan.telemetry_payload(seq) else { return };
        let delay = self.shared.network_delay(&self.plan);
        let (ctx, client, token) = (self.ctx.clone(), client.clone(), token.clone());
        self.ctx.tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = tokio::time::sleep(delay) => {
                    let message = device::Telemetry::json(&payload);
                    bump(if client.send_telemetry(message).await.is_ok() { &ctx.stats.telemetry } else { &ctx.stats.device_errors });
                }
            }
        });
    }

    async fn record(&self, event: RecordEvent) {
        if self.ctx.recorder.is_enabled() {
            self.ctx.recorder.write(line(&self.ctx, &self.plan, event)).await;
        }
    }
}

impl DeviceShared {
    fn next_call(&self, method: &str) -> u64 {
        let mut calls = self.calls.lock();
        let counter = calls.entry(method.to_owned()).or_insert(0);
        let call = *counter;
        *counter += 1;
        call
    }

    fn network_delay(&self, plan: &DevicePlan) -> Duration {
        plan.behaviour.connectivity.network.delay(&mut *self.network.lock())
    }
}

/// When the next telemetry message of a device is due (absolute schedule; missed slots are skipped).
struct TelemetryClock {
    first: Instant,
    interval: Option<Duration>,
    seq: u64,
}

impl TelemetryClock {
    fn new(plan: &DevicePlan, started: Instant) -> TelemetryClock {
        match &plan.behaviour.telemetry {
            Some(t) => TelemetryClock {
                first: started + t.phase(&mut plan.rng(Stream::TelemetryPhase)),
                interval: Some(t.interval),
                seq: 0,
            },
            None => TelemetryClock { first: started, interval: None, seq: 0 },
        }
    }

    /// Resolves when the next message is due (never while disconnected or without telemetry).
    async fn tick(&mut self, connected: bool) {
        let Some(interval) = self.interval.filter(|_| connected) else {
            return std::future::pending().await;
        };
        let now = Instant::now();
        let due = |seq: u64| self.first + interval.mul_f64(seq as f64);
        while due(self.seq) + interval < now {
            self.seq += 1;
        }
        tokio::time::sleep_until(due(self.seq)).await;
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }
}

async fn next_desired(desired: &mut Option<device::DesiredPatches>) -> Option<DesiredPatch> {
    match desired {
        Some(patches) => patches.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(until: Option<Instant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn line(ctx: &RunContext, plan: &DevicePlan, event: RecordEvent) -> RecordLine {
    RecordLine {
        t_ms: ms(ctx.started.elapsed()),
        device: plan.device_id.to_string(),
        index: plan.index,
        event,
    }
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}
