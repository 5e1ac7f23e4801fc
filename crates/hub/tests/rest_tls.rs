//! HTTPS and MQTTS with the generated certificates: a strict client trusting only `ca.pem` reaches
//! the hub by `localhost`, `127.0.0.1` and the hub host name, over TLS 1.2 and 1.3; Python's strict
//! X.509 verification (`VERIFY_X509_STRICT`, the Python 3.13 default) accepts the chain.

use std::process::Command;

use reqwest::{Certificate, Client};
use test_support::sas::service_token;
use test_support::{spawn_hub, HOST};

const PYTHON_CHECK: &str = r#"
import socket, ssl, sys
ca, port, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for name in names:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        ctx.minimum_version = version
        ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                print(name, tls.version())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_certificates_pass_strict_verification() {
    let hub = spawn_hub().await;
    let ca_pem = hub.handle.ca_pem().expect("generated").to_owned();
    assert_eq!(std::fs::read_to_string(hub.data_dir().join("ca.pem")).unwrap(), ca_pem);
    let https_port = hub.https.port();
    let mqtts_port = hub.mqtts.port();

    // A rustls client that trusts only the CA, by DNS name and by IP, with a real service token.
    let client = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(HOST, hub.https)
        .resolve("localhost", hub.https)
        .build()
        .unwrap();
    let token = service_token(HOST, hub.owner_key(), "iothubowner", 600);
    for base in [
        format!("https://{HOST}:{https_port}"),
        format!("https://localhost:{https_port}"),
        format!("https://127.0.0.1:{https_port}"),
    ] {
        let response = client
            .get(format!("{base}/devices?api-version=2021-04-12"))
            .header("Authorization", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{base}");
        assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
    }

    // Python's strict verification, TLS 1.2 and 1.3, on both TLS listeners.
    let ca_path = hub.data_dir().join("ca.pem");
    for port in [https_port, mqtts_port] {
        let ca_path = ca_path.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .args([
                    "-c",
                    PYTHON_CHECK,
                    ca_path.to_str().unwrap(),
                    &port.to_string(),
                    "localhost",
                    "127.0.0.1",
                    HOST,
                ])
                .output()
        })
        .await
        .unwrap();
        match output {
            Ok(output) => {
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "python strict check failed on port {port}: {stdout}{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                assert_eq!(stdout.lines().count(), 6, "{stdout}");
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("python3 not installed; strict check skipped")
            }
            Err(err) => panic!("running python3: {err}"),
        }
    }
    hub.stop().await;
}
