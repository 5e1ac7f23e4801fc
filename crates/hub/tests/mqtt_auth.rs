//! CONNECT authentication against the real hub: every bad credential gets CONNACK 5, good ones 0,
//! over plain MQTT and over TLS 1.2 and 1.3.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use std::sync::Arc;

use rumqttc::mqttbytes::v4::ConnectReturnCode;
use test_support::sas::{device_token, now_secs, username};
use test_support::{device_id, spawn_hub, DeviceKeys, RawClient, TestHub, HOST};

async fn connack(
    hub: &TestHub,
    client_id: &str,
    username: &str,
    password: &str,
) -> ConnectReturnCode {
    let (mut client, ack) =
        RawClient::connect(hub.mqtt, client_id, username, password, false).await;
    if ack.code != ConnectReturnCode::Success {
        client.expect_closed().await;
    }
    ack.code
}

#[tokio::test]
async fn refuses_bad_credentials_with_connack_5() {
    let hub = spawn_hub().await;
    let DeviceKeys { primary, secondary } = hub.add_device("d1", true).await;
    let off_key = hub.add_device("off", false).await.primary;
    let resource = format!("{HOST}/devices/d1");
    let good_user = username(HOST, "d1");
    let hour = now_secs() + 3600;
    let other_key = protocol::sas::encode_key(b"some other key entirely");

    let cases: Vec<(&str, String, String, String)> = vec![
        (
            "bad signature",
            "d1".into(),
            good_user.clone(),
            device_token(&resource, &other_key, hour),
        ),
        (
            "expired",
            "d1".into(),
            good_user.clone(),
            device_token(&resource, &primary, now_secs() - 10),
        ),
        (
            "wrong host in username",
            "d1".into(),
            username("127.0.0.1", "d1"),
            device_token(&resource, &primary, hour),
        ),
        (
            "wrong host in sr",
            "d1".into(),
            good_user.clone(),
            device_token("127.0.0.1/devices/d1", &primary, hour),
        ),
        (
            "another device in sr",
            "d1".into(),
            good_user.clone(),
            device_token(&format!("{HOST}/devices/d2"), &primary, hour),
        ),
        (
            "username names another device",
            "d1".into(),
            username(HOST, "d2"),
            device_token(&resource, &primary, hour),
        ),
        (
            "unknown device",
            "ghost".into(),
            username(HOST, "ghost"),
            device_token(&format!("{HOST}/devices/ghost"), &primary, hour),
        ),
        (
            "disabled device",
            "off".into(),
            username(HOST, "off"),
            device_token(&format!("{HOST}/devices/off"), &off_key, hour),
        ),
        ("not a sas token", "d1".into(), good_user.clone(), "hunter2".into()),
        (
            "policy token",
            "d1".into(),
            good_user.clone(),
            format!("{}&skn=device", device_token(&resource, &primary, hour)),
        ),
        (
            "module client id",
            "d1/m1".into(),
            good_user.clone(),
            device_token(&resource, &primary, hour),
        ),
    ];
    for (case, client_id, user, password) in &cases {
        let code = connack(&hub, client_id, user, password).await;
        assert_eq!(code, ConnectReturnCode::NotAuthorized, "{case}");
    }
    assert!(!hub.handle.sessions().is_connected(&device_id("d1")));
    assert_eq!(hub.handle.sessions().stats().connections_refused, cases.len() as u64);

    // Both keys work, the host compares case-insensitively, and the Python-style `sr` with `%2F` is fine.
    let upper_host = HOST.to_uppercase();
    for (user, password) in [
        (good_user.clone(), device_token(&resource, &primary, hour)),
        (good_user.clone(), device_token(&resource, &secondary, hour)),
        (
            username(&upper_host, "d1"),
            device_token(&format!("{upper_host}/devices/d1"), &primary, hour),
        ),
    ] {
        assert_eq!(connack(&hub, "d1", &user, &password).await, ConnectReturnCode::Success);
    }
    hub.stop().await;
}

#[tokio::test]
async fn accepts_tls_1_2_and_1_3() {
    let hub = spawn_hub().await;
    let primary = hub.add_device("tls-dev", true).await.primary;
    let (user, password) = hub.login("tls-dev", &primary);
    let mut roots = rustls::RootCertStore::empty();
    let ca = hub.handle.ca_pem().expect("the hub generated a CA").to_owned();
    for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(hub.mqtts).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
        let tls = connector.connect(server_name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        let mut client = RawClient::new(tls);
        let ack = client.handshake("tls-dev", &user, &password, false).await;
        assert_eq!(ack.code, ConnectReturnCode::Success, "{:?}", version.version);
    }
    hub.stop().await;
}
