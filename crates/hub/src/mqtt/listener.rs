//! The accept loop: one tracked task per accepted socket, plain or behind a rustls handshake.
//!
//! Plain and TLS connections are spawned as different futures so a plain connection does not
//! carry the (larger) TLS task layout. Shutdown stops accepting, lets every connection task see the
//! token and close, and returns once all of them have finished.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{self, CONNECT_TIMEOUT};
use super::{Sessions, Shared};

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts device connections until `shutdown`, then closes them and returns.
/// `tls` is `Some` for the MQTT-over-TLS listener.
///
/// # Errors
/// Only when the listener's local address cannot be read; accept errors are logged and retried.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    sessions: Sessions,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), "mqtt device endpoint listening");
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => spawn_connection(&tracker, stream, tls.as_ref(), sessions.shared(), &shutdown),
                Err(err) => {
                    tracing::warn!(%addr, %err, "accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    tracing::info!(%addr, "mqtt device endpoint stopped");
    Ok(())
}

fn spawn_connection(
    tracker: &TaskTracker,
    stream: TcpStream,
    tls: Option<&TlsAcceptor>,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) {
    // Small packets (acks, method requests) must not wait for Nagle.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "could not set TCP_NODELAY");
    }
    let shared = shared.clone();
    let shutdown = shutdown.clone();
    match tls {
        None => {
            tracker.spawn(connection::run(stream, shared, shutdown));
        }
        Some(acceptor) => {
            let acceptor = acceptor.clone();
            tracker.spawn(async move {
                let handshake = tokio::select! {
                    () = shutdown.cancelled() => return,
                    handshake = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)) => handshake,
                };
                match handshake {
                    Ok(Ok(stream)) => connection::run(stream, shared, shutdown).await,
                    Ok(Err(err)) => tracing::debug!(%err, "tls handshake failed"),
                    Err(_) => tracing::debug!("tls handshake timed out"),
                }
            });
        }
    }
}
