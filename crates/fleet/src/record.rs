//! Ground truth: `--record FILE` writes one JSON object per line for what each device actually did.
//!
//! Events: `connected`, `disconnected` (with `reason`), `connect_failed`, `never_connects`,
//! `method` (name, the hub's `rid`, per-method `call` index, `status` or `null` when deliberately unanswered,
//! `received_ms`/`answered_ms` since the run started), `desired` (version, acked or not),
//! `reboot`. A report reconciles these with the hub's job records. Device tasks send events over a
//! bounded channel to one writer task; when the channel is full a device waits (ground truth is never
//! dropped). This module does not decide what happens, it only writes it down.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Events waiting for the writer; device tasks wait when it is full.
const RECORD_CAPACITY: usize = 8192;

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordLine {
    /// Milliseconds since the run started.
    pub t_ms: u64,
    /// The device id.
    pub device: String,
    /// The global device index.
    pub index: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: RecordEvent,
}

/// What happened to a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RecordEvent {
    /// The device connected.
    Connected,
    /// The device disconnected.
    Disconnected {
        /// `churn`, `outage`, `reboot`, `shutdown`, or the connection error.
        reason: String,
    },
    /// A connection attempt failed.
    ConnectFailed {
        /// The error.
        error: String,
    },
    /// The profile says this device never connects.
    NeverConnects,
    /// A direct-method call and what the device did.
    Method {
        /// The method name.
        method: String,
        /// The request id (`$rid`) of the call.
        rid: String,
        /// Per-method call index on this device (the RNG stream of the decision).
        call: u64,
        /// When the request arrived.
        received_ms: u64,
        /// When the answer was handed to the client, or `None` when it was never answered.
        answered_ms: Option<u64>,
        /// The answered status, or `None`.
        status: Option<i32>,
        /// The answered payload, or `None`.
        payload: Option<Value>,
    },
    /// A desired patch and whether it was acknowledged.
    Desired {
        /// Its `$version`.
        version: u64,
        /// Whether the device acknowledged it into reported.
        acked: bool,
    },
    /// A reboot: down for `down_ms`.
    Reboot {
        /// Planned down time.
        down_ms: u64,
    },
}

/// A cheap handle that device tasks use to write events (a no-op when not recording).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    tx: Option<mpsc::Sender<RecordLine>>,
}

/// Why the record file cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write record file {path}: {source}")]
pub struct RecordError {
    /// The file.
    pub path: String,
    /// The I/O error.
    pub source: std::io::Error,
}

impl Recorder {
    /// A recorder that writes nothing.
    pub fn disabled() -> Recorder {
        Recorder { tx: None }
    }

    /// Creates `path` and starts the writer on `tracker`; the writer flushes and ends once every
    /// clone of the returned recorder is dropped.
    ///
    /// # Errors
    /// [`RecordError`] when the file cannot be created.
    pub async fn create(path: &Path, tracker: &TaskTracker) -> Result<Recorder, RecordError> {
        let file = File::create(path)
            .await
            .map_err(|source| RecordError { path: path.display().to_string(), source })?;
        let (tx, rx) = mpsc::channel(RECORD_CAPACITY);
        let path = path.display().to_string();
        tracker.spawn(write_lines(BufWriter::new(file), rx, path));
        Ok(Recorder { tx: Some(tx) })
    }

    /// Whether events are written anywhere.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Writes one event (waits while the writer is behind).
    pub async fn write(&self, line: RecordLine) {
        if let Some(tx) = &self.tx {
            // The writer only stops after every sender is gone, so a send error cannot happen
            // while we hold a sender; ignoring it is safe.
            let _ = tx.send(line).await;
        }
    }
}

async fn write_lines(mut out: BufWriter<File>, mut rx: mpsc::Receiver<RecordLine>, path: String) {
    while let Some(line) = rx.recv().await {
        let mut text = match serde_json::to_string(&line) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(err = %err, "cannot serialize a record line");
                continue;
            }
        };
        text.push('\n');
        if let Err(err) = out.write_all(text.as_bytes()).await {
            tracing::error!(err = %err, path = %path, "record file write failed; recording stops");
            return;
        }
    }
    if let Err(err) = out.flush().await {
        tracing::error!(err = %err, path = %path, "record file flush failed");
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[tokio::test]
    async fn writes_json_lines_and_flushes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.jsonl");
        let tracker = TaskTracker::new();
        let recorder = Recorder::create(&path, &tracker).await.unwrap();
        let line = |t_ms, event| RecordLine { t_ms, device: "d1".to_owned(), index: 0, event };
        recorder.write(line(5, RecordEvent::Connected)).await;
        let method = RecordEvent::Method {
            method: "reboot".to_owned(),
            rid: "7".to_owned(),
            call: 0,
            received_ms: 10,
            answered_ms: None,
            status: None,
            payload: None,
        };
        recorder.write(line(10, method)).await;
        drop(recorder);
        tracker.close();
        tracker.wait().await;
        expect![[r#"
            {"t_ms":5,"device":"d1","index":0,"event":"connected"}
            {"t_ms":10,"device":"d1","index":0,"event":"method","method":"reboot","rid":"7","call":0,"received_ms":10,"answered_ms":null,"status":null,"payload":null}
        "#]]
        .assert_eq(&std::fs::read_to_string(&path).unwrap());
    }
}
