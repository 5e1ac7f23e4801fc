//! The device side of the benchmark, in a child process: `hubsim bench-devices` (hidden).
//!
//! Hub and devices in one process would need two file descriptors per device, and the limit here is
//! 20,000 per process, so `hubsim bench` re-executes itself and the child holds the device end of
//! every connection. Two modes: `mqtt` connects N `device::Client`s with SAS tokens and answers every
//! direct method at once with status 200; `echo` opens N plain TCP connections and answers every
//! request of `request_bytes` with `response_bytes` (the ceiling).
//!
//! The protocol is line-based. Once every connection is up the child prints
//! `ready <connect µs> <VmRSS at start KiB> <VmRSS connected KiB> <open-file soft limit>`; when its
//! stdin closes it prints `done <methods answered> <desired patches received>` and exits.
//! [`DeviceProcess`] is the parent's handle. Nothing here measures the hub; the parent does.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use device::{handler, Client, DesiredPatches, DeviceConfig, MethodAnswer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{ChildStdout, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::sys;
use crate::output::Output;

/// Connections opened at once (a larger burst overflows the listen backlog and costs 1 s SYN retries).
const CONNECT_PARALLELISM: usize = 256;
/// How long the child waits for all its connections before giving up.
const CONNECT_DEADLINE: Duration = Duration::from_secs(300);

/// What the child process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChildMode {
    /// N `device::Client`s on the hub's plain MQTT listener.
    Mqtt {
        /// The hub host name (SAS `sr`, MQTT username).
        host: String,
    },
    /// N plain TCP connections answering fixed-size requests.
    Echo {
        /// Bytes of one request.
        request_bytes: usize,
        /// Bytes of one response.
        response_bytes: usize,
    },
}

/// What the child reported once connected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ready {
    /// From the first connection attempt to the last connection up.
    pub(crate) connect_time: Duration,
    /// The child's VmRSS before it connected anything.
    pub(crate) rss_start_kib: u64,
    /// The child's VmRSS with every connection up.
    pub(crate) rss_connected_kib: u64,
    /// The child's open-file soft limit after raising it.
    pub(crate) open_files: u64,
}

/// What the child counted by the time it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Direct methods answered.
    pub(crate) methods: u64,
    /// Desired-property patches received.
    pub(crate) patches: u64,
}

/// The parent's handle on a running child.
pub(crate) struct DeviceProcess {
    child: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// What the child reported once every connection was up.
    pub(crate) ready: Ready,
}

impl DeviceProcess {
    /// Starts `hubsim bench-devices` with `count` connections to `addr` and waits for `ready`.
    pub(crate) async fn start(
        mode: &ChildMode,
        addr: SocketAddr,
        count: usize,
    ) -> anyhow::Result<DeviceProcess> {
        let exe = std::env::current_exe().context("could not find the hubsim executable")?;
        let mut command = Command::new(exe);
        command.args(["bench-devices", "--addr", &addr.to_string(), "--count", &count.to_string()]);
        match mode {
            ChildMode::Mqtt { host } => command.args(["--host", host]),
            ChildMode::Echo { request_bytes, response_bytes } => command.args([
                "--echo-request-bytes",
                &request_bytes.to_string(),
                "--echo-response-bytes",
                &response_bytes.to_string(),
            ]),
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("could not start the device process")?;
        let stdout = child.stdout.take().context("the device process has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next_line().await.context("could not read the device process")?;
        let ready = parse_ready(line.as_deref().unwrap_or(""))?;
        Ok(DeviceProcess { child, lines, ready })
    }

    /// The child's process id.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Closes the child's stdin, reads its counts and waits for it to exit.
    pub(crate) async fn finish(mut self) -> anyhow::Result<Counts> {
        drop(self.child.stdin.take());
        let line = self.lines.next_line().await.context("could not read the device process")?;
        let status = self.child.wait().await.context("the device process did not exit")?;
        let counts = parse_done(line.as_deref().unwrap_or(""))?;
        if !status.success() {
            bail!("the device process failed: {status}");
        }
        Ok(counts)
    }
}

fn parse_ready(line: &str) -> anyhow::Result<Ready> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ["ready", micros, start, connected, files] = fields.as_slice() else {
        bail!("the device process said {line:?} instead of ready");
    };
    Ok(Ready {
        connect_time: Duration::from_micros(micros.parse()?),
        rss_start_kib: start.parse()?,
        rss_connected_kib: connected.parse()?,
        open_files: files.parse()?,
    })
}

fn parse_done(line: &str) -> anyhow::Result<Counts> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ["done", methods, patches] = fields.as_slice() else {
        bail!("the device process said {line:?} instead of done");
    };
    Ok(Counts { methods: methods.parse()?, patches: patches.parse()? })
}

/// The child's main: connects, prints `ready`, serves until stdin closes, prints `done`.
pub(crate) async fn run(
    mode: ChildMode,
    addr: SocketAddr,
    count: usize,
    out: &Output,
) -> anyhow::Result<()> {
    let open_files = sys::raise_open_files();
    let rss_start = sys::rss_kib()?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let started = Instant::now();
    let devices = match &mode {
        ChildMode::Mqtt { host } => {
            Some(connect_devices(host, addr, count, &tracker, &shutdown).await?)
        }
        ChildMode::Echo { request_bytes, response_bytes } => {
            let sizes = (*request_bytes, *response_bytes);
            connect_echo(addr, count, sizes, &tracker).await?;
            None
        }
    };
    let connect_time = started.elapsed();
    let rss_connected = sys::rss_kib()?;
    out.line(&format!(
        "ready {} {rss_start} {rss_connected} {}",
        connect_time.as_micros(),
        open_files.soft
    ));
    wait_for_stdin_eof().await;
    let counts = match devices {
        Some(devices) => devices.counts(),
        None => Counts::default(),
    };
    out.line(&format!("done {} {}", counts.methods, counts.patches));
    shutdown.cancel();
    tracker.close();
    // The devices disconnect politely; a stuck one must not keep the benchmark waiting.
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    Ok(())
}

async fn wait_for_stdin_eof() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// The connected devices, their desired-patch receivers and the answered-method counter.
struct Devices {
    _clients: Vec<Client>,
    patches: Vec<DesiredPatches>,
    methods: Arc<AtomicU64>,
}

impl Devices {
    /// Counts the patches waiting in each receiver (none is read before the end).
    fn counts(mut self) -> Counts {
        let mut patches = 0;
        for receiver in &mut self.patches {
            while let Some(Some(_)) = poll_once(receiver) {
                patches += 1;
            }
        }
        Counts { methods: self.methods.load(Ordering::Relaxed), patches }
    }
}

/// One non-blocking poll of a patch receiver: `None` when nothing is ready.
fn poll_once(receiver: &mut DesiredPatches) -> Option<Option<device::DesiredPatch>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    // Unconstrained: counting hundreds of ready patches must not run into tokio's cooperative
    // budget, which would report Pending after 128 and undercount.
    let future = std::pin::pin!(tokio::task::unconstrained(receiver.recv()));
    match std::future::Future::poll(future, &mut cx) {
        std::task::Poll::Ready(patch) => Some(patch),
        std::task::Poll::Pending => None,
    }
}

async fn connect_devices(
    host: &str,
    addr: SocketAddr,
    count: usize,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<Devices> {
    let methods = Arc::new(AtomicU64::new(0));
    let answered = methods.clone();
    let answer = handler(move |_request| {
        answered.fetch_add(1, Ordering::Relaxed);
        async { MethodAnswer::ok(json!({"ok": true})) }
    });
    let mut clients = Vec::with_capacity(count);
    let mut patches = Vec::with_capacity(count);
    let mut connecting = JoinSet::new();
    let deadline = Instant::now() + CONNECT_DEADLINE;
    for device_idx in 0..count {
        if connecting.len() >= CONNECT_PARALLELISM {
            clients.push(next_connected(&mut connecting, deadline).await?);
        }
        let cfg = device_config(host, addr, device_idx)?;
        let (client, driver) = Client::new(cfg).context("invalid device configuration")?;
        client.on_default_method(answer.clone());
        patches.push(client.desired_patches());
        let stop = shutdown.clone();
        tracker.spawn(async move {
            // The outcome shows in the client's state; the benchmark counts what matters.
            let _ = driver.run(stop).await;
        });
        connecting.spawn(wait_connected(client));
    }
    while !connecting.is_empty() {
        clients.push(next_connected(&mut connecting, deadline).await?);
    }
    Ok(Devices { _clients: clients, patches, methods })
}

fn device_config(host: &str, addr: SocketAddr, device_idx: usize) -> anyhow::Result<DeviceConfig> {
    let id = super::device_id(device_idx)?;
    let mut cfg = DeviceConfig::new(host, id, super::device_key(device_idx), addr)
        .context("invalid device key")?;
    cfg.rng_seed = device_idx as u64;
    cfg.operation_timeout = Duration::from_secs(120);
    Ok(cfg)
}

async fn wait_connected(client: Client) -> anyhow::Result<Client> {
    let mut state = client.state();
    let reached =
        state.wait_for(|state| !matches!(state, device::ConnectionState::Connecting)).await;
    match reached.map(|state| state.clone()) {
        Ok(device::ConnectionState::Connected) => Ok(client),
        Ok(other) => bail!("device {} did not connect: {other:?}", client.device_id()),
        Err(_) => bail!("device {} stopped", client.device_id()),
    }
}

async fn next_connected<T: 'static>(
    connecting: &mut JoinSet<anyhow::Result<T>>,
    deadline: Instant,
) -> anyhow::Result<T> {
    let joined = tokio::time::timeout_at(deadline, connecting.join_next())
        .await
        .context("connections took longer than 5 minutes")?;
    joined.context("nothing left to connect")?.context("a connect task panicked")?
}

async fn connect_echo(
    addr: SocketAddr,
    count: usize,
    sizes: (usize, usize),
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let mut connecting = JoinSet::new();
    let deadline = Instant::now() + CONNECT_DEADLINE;
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        if connecting.len() >= CONNECT_PARALLELISM {
            streams.push(next_connected(&mut connecting, deadline).await?);
        }
        connecting.spawn(async move {
            let stream = TcpStream::connect(addr).await.context("echo connect failed")?;
            stream.set_nodelay(true)?;
            anyhow::Ok(stream)
        });
    }
    while !connecting.is_empty() {
        streams.push(next_connected(&mut connecting, deadline).await?);
    }
    for stream in streams {
        tracker.spawn(echo(stream, sizes));
    }
    Ok(())
}

/// Answers each request of `request_bytes` with `response_bytes` until the parent closes.
async fn echo(mut stream: TcpStream, (request_bytes, response_bytes): (usize, usize)) {
    let mut request = vec![0u8; request_bytes];
    let response = vec![b'r'; response_bytes];
    while stream.read_exact(&mut request).await.is_ok() {
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_child_lines() {
        let ready = parse_ready("ready 1500000 2048 40960 20000").unwrap();
        assert_eq!(ready.connect_time, Duration::from_millis(1500));
        assert_eq!((ready.rss_start_kib, ready.rss_connected_kib), (2048, 40960));
        assert!(parse_ready("error: no").is_err());
        assert_eq!(parse_done("done 10 20").unwrap(), Counts { methods: 10, patches: 20 });
        assert!(parse_done("").is_err());
    }
}
