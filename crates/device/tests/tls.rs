//! TLS (custom CA, server name separate from the socket address) and local source-address binding.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use device::{Client, ConfigError, Error, TlsConfig};
use support::{config, Peer, TestPki};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::test]
async fn connects_over_tls_verifying_the_host_name() {
    let pki = TestPki::new();
    let peer = Peer::bind_tls(pki.acceptor.clone()).await;
    let tracker = TaskTracker::new();
    let mut cfg = config("d1", peer.addr());
    // The socket goes to 127.0.0.1; the certificate is checked against the configured name.
    cfg.tls =
        Some(TlsConfig::from_ca_pem(pki.ca_pem.as_bytes()).unwrap().with_server_name("localhost"));
    let (client, (mut conn, connect)) =
        tokio::join!(Client::connect(cfg, &tracker, CancellationToken::new()), peer.accept_ok());
    let client = client.unwrap();
    assert!(connect.login.unwrap().username.starts_with("hubsim.test/d1/?api-version="));
    let patch = serde_json::json!({ "tls": true });
    let (patched, hub) = tokio::join!(client.patch_reported(&patch), async {
        conn.expect_subscribe().await;
        let patch = conn.expect_publish().await;
        let topic = format!("$iothub/twin/res/204/?$rid={}&$version=2", support::rid(&patch.topic));
        conn.publish(&topic, b"").await;
    });
    let () = hub;
    assert_eq!(patched, Ok(2));
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let server_pki = TestPki::new();
    let other_pki = TestPki::new();
    let peer = Peer::bind_tls(server_pki.acceptor.clone()).await;
    let tracker = TaskTracker::new();
    let mut cfg = config("d1", peer.addr());
    cfg.tls = Some(
        TlsConfig::from_ca_pem(other_pki.ca_pem.as_bytes()).unwrap().with_server_name("localhost"),
    );
    let (client, _server_error) = tokio::join!(
        Client::connect(cfg, &tracker, CancellationToken::new()),
        peer.accept_failing_tls()
    );
    let error = client.err().unwrap();
    assert!(
        matches!(&error, Error::Tls(message) if message.contains("invalid peer certificate")),
        "{error}"
    );
}

#[tokio::test]
async fn a_wrong_server_name_is_a_tls_error() {
    let pki = TestPki::new();
    let peer = Peer::bind_tls(pki.acceptor.clone()).await;
    let tracker = TaskTracker::new();
    let mut cfg = config("d1", peer.addr());
    // Without an override the name is the hub host name, which the certificate does not cover.
    cfg.tls = Some(TlsConfig::from_ca_pem(pki.ca_pem.as_bytes()).unwrap());
    let (client, _server_error) = tokio::join!(
        Client::connect(cfg, &tracker, CancellationToken::new()),
        peer.accept_failing_tls()
    );
    let error = client.err().unwrap();
    assert!(
        matches!(&error, Error::Tls(message) if message.contains("not valid for name \"hubsim.test\"")),
        "{error}"
    );
}

#[test]
fn a_ca_bundle_without_certificates_is_refused() {
    assert!(matches!(TlsConfig::from_ca_pem(b"not a pem"), Err(ConfigError::Ca(_))));
}

#[tokio::test]
async fn binds_the_configured_local_address() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let mut cfg = config("d1", peer.addr());
    cfg.local_addr = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
    let (client, (conn, _)) =
        tokio::join!(Client::connect(cfg, &tracker, CancellationToken::new()), peer.accept_ok());
    client.unwrap();
    assert_eq!(conn.remote.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
}

#[test]
fn public_roots_build_a_config() {
    // The roots a real Azure IoT Hub chains to are built in; building the config must not fail.
    let tls = device::TlsConfig::public_roots().unwrap();
    assert!(tls.server_name.is_none());
}
