//! Accept loops of the hub: MQTT (delegated to `mqtt::serve`) and REST over HTTP/1.1, plain or TLS.
//!
//! REST connections run on hyper's HTTP/1 server with the axum router as the service. On shutdown
//! each connection stops taking new requests, finishes the one in flight and closes. A failed TLS
//! handshake or a broken connection is logged at debug and affects only that connection.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{HubError, HubListeners};
use crate::mqtt::{self, Sessions};
use crate::tls::{self, TlsMaterial};

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the accept loops serve.
pub(super) struct Services {
    pub(super) router: Router,
    pub(super) sessions: Sessions,
    /// Present when a TLS listener is configured.
    pub(super) tls: Option<TlsMaterial>,
    pub(super) tasks: TaskTracker,
}

/// Starts one accept loop per configured listener on `services.tasks`.
pub(super) fn start(
    services: Services,
    listeners: HubListeners,
    shutdown: &CancellationToken,
) -> Result<(), HubError> {
    let acceptor = |alpn: &[&[u8]]| -> Result<Option<TlsAcceptor>, HubError> {
        match &services.tls {
            Some(material) => Ok(Some(TlsAcceptor::from(tls::server_config(material, alpn)?))),
            None => Ok(None),
        }
    };
    let tasks = &services.tasks;
    if let Some(listener) = listeners.mqtts {
        let tls = acceptor(&[])?;
        tasks.spawn(run_mqtt(listener, tls, services.sessions.clone(), shutdown.clone()));
    }
    if let Some(listener) = listeners.mqtt {
        tasks.spawn(run_mqtt(listener, None, services.sessions.clone(), shutdown.clone()));
    }
    if let Some(listener) = listeners.https {
        let tls = acceptor(&[b"http/1.1"])?;
        tasks.spawn(serve_rest(
            listener,
            tls,
            services.router.clone(),
            tasks.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(listener) = listeners.http {
        tasks.spawn(serve_rest(
            listener,
            None,
            services.router.clone(),
            tasks.clone(),
            shutdown.clone(),
        ));
    }
    Ok(())
}

async fn run_mqtt(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    sessions: Sessions,
    shutdown: CancellationToken,
) {
    if let Err(err) = mqtt::serve(listener, tls, sessions, shutdown).await {
        tracing::error!(%err, "mqtt listener failed");
    }
}

/// Accepts REST connections until `shutdown`.
async fn serve_rest(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Usually EMFILE or a reset before accept; back off briefly instead of spinning.
                tracing::warn!(%err, "rest accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(rest_connection(stream, tls.clone(), router.clone(), shutdown.clone(), peer));
    }
}

async fn rest_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
) {
    match tls {
        None => serve_http1(stream, router, shutdown, peer).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => serve_http1(tls_stream, router, shutdown, peer).await,
                Ok(Err(err)) => tracing::debug!(%peer, %err, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        }
    }
}

async fn serve_http1<IO>(
    io: IO,
    router: Router,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let res = tokio::select! {
        res = connection.as_mut() => res,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = res {
        tracing::debug!(%peer, %err, "rest connection ended with an error");
    }
}
