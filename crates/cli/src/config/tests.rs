//! Tests of flag resolution: connection precedence, the local endpoints file, hub flag validation and
//! the value parsers.

use std::collections::HashMap;

use expect_test::{expect, Expect};

use super::*;

const CS: &str = "HostName=h.example;SharedAccessKeyName=iothubowner;SharedAccessKey=cA==";

fn connection(hub: Option<&str>, data_dir: &Path) -> ConnectionArgs {
    ConnectionArgs {
        hub: hub.map(str::to_owned),
        hub_url: None,
        ca_file: None,
        data_dir: data_dir.to_owned(),
    }
}

fn describe(result: Result<ServiceConfig, UsageError>) -> String {
    match result {
        Ok(config) => format!("{} via {}", config.connection.host_name, config.base_url),
        Err(err) => format!("usage error: {err}"),
    }
}

#[test]
fn connection_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = HashMap::new();
    env.insert(
        CONNECTION_STRING_ENV.to_owned(),
        "HostName=env.example;SharedAccessKeyName=p;SharedAccessKey=cA==".to_owned(),
    );
    let empty: HashMap<String, String> = HashMap::new();
    let check = |result, expect: Expect| expect.assert_eq(&describe(result));
    check(
        resolve_connection(&connection(Some(CS), dir.path()), &env),
        expect!["h.example via https://h.example/"],
    );
    check(
        resolve_connection(&connection(None, dir.path()), &env),
        expect!["env.example via https://env.example/"],
    );
    let missing = describe(resolve_connection(&connection(None, dir.path()), &empty));
    assert!(
        missing.starts_with(
            "usage error: no hub to talk to: pass --hub or set HUBSIM_CONNECTION_STRING"
        ),
        "{missing}"
    );

    let endpoints = LocalEndpoints {
        connection_string: CS.into(),
        http_url: Some("http://127.0.0.1:8080".into()),
        https_url: Some("https://127.0.0.1:8443".into()),
        ca_file: None,
        mqtts_addr: None,
        mqtt_addr: None,
        events_addr: None,
    };
    std::fs::write(dir.path().join(ENDPOINTS_FILE), serde_json::to_string(&endpoints).unwrap())
        .unwrap();
    check(
        resolve_connection(&connection(None, dir.path()), &empty),
        expect!["h.example via http://127.0.0.1:8080/"],
    );
    let mut override_url = connection(Some(CS), dir.path());
    override_url.hub_url = Some("http://127.0.0.1:9".into());
    check(resolve_connection(&override_url, &empty), expect!["h.example via http://127.0.0.1:9/"]);
    check(
        resolve_connection(&connection(Some("HostName=x"), dir.path()), &empty),
        expect!["usage error: invalid service connection string: connection string lacks SharedAccessKey"],
    );
}

#[test]
fn https_only_local_hub_trusts_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = LocalEndpoints {
        connection_string: CS.into(),
        http_url: None,
        https_url: Some("https://127.0.0.1:8443".into()),
        ca_file: Some(dir.path().join("ca.pem")),
        mqtts_addr: Some("127.0.0.1:8883".parse().unwrap()),
        mqtt_addr: None,
        events_addr: Some("127.0.0.1:1884".parse().unwrap()),
    };
    std::fs::write(dir.path().join(ENDPOINTS_FILE), serde_json::to_string(&endpoints).unwrap())
        .unwrap();
    let empty: HashMap<String, String> = HashMap::new();
    let missing_ca = describe(resolve_connection(&connection(None, dir.path()), &empty));
    assert!(missing_ca.starts_with("usage error: could not read"), "{missing_ca}");
    std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
    let config = resolve_connection(&connection(None, dir.path()), &empty).unwrap();
    assert_eq!(config.ca_pem.as_deref(), Some(b"PEM".as_slice()));
    assert_eq!(config.base_url.as_str(), "https://127.0.0.1:8443/");
}

fn schema() -> HubSchema {
    HubSchema {
        data_dir: ".hubsim".into(),
        host_name: "localhost".into(),
        mqtts: "127.0.0.1:8883".parse().unwrap(),
        https: "127.0.0.1:8443".parse().unwrap(),
        mqtt: "off".parse().unwrap(),
        http: "127.0.0.1:8080".parse().unwrap(),
        events: "off".parse().unwrap(),
        tls_cert: None,
        tls_key: None,
        owner_key: None,
        tier: None,
        units: None,
        shutdown_grace: Duration::from_secs(10),
    }
}

#[test]
fn hub_flags() {
    let plan = resolve_hub(schema()).unwrap();
    assert_eq!(plan.mqtt, None);
    assert_eq!(plan.http, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(plan.config.tls, hub::config::TlsSource::Generate);
    assert!(plan.config.events.is_none(), "--events off disables the event stream");
    let with_events =
        resolve_hub(HubSchema { events: "127.0.0.1:1884".parse().unwrap(), ..schema() }).unwrap();
    assert_eq!(
        with_events.config.events.map(|broker| broker.addr),
        Some("127.0.0.1:1884".parse().unwrap())
    );
    let check = |schema: HubSchema, expect: Expect| {
        expect.assert_eq(
            &resolve_hub(schema).map(|_| "ok".to_owned()).unwrap_or_else(|err| err.to_string()),
        );
    };
    check(
        HubSchema { host_name: "bad host".into(), ..schema() },
        expect![[r#"--host-name "bad host" is not a DNS name (letters, digits, '-' and '.')"#]],
    );
    check(
        HubSchema { tls_cert: Some("c.pem".into()), ..schema() },
        expect!["--tls-cert and --tls-key go together"],
    );
    check(
        HubSchema { owner_key: Some("***".into()), ..schema() },
        expect!["--owner-key is not valid base64"],
    );
    check(HubSchema { units: NonZeroU32::new(2), ..schema() }, expect!["--units needs --tier"]);
    check(
        HubSchema {
            mqtts: ListenAddr::Off,
            https: ListenAddr::Off,
            http: ListenAddr::Off,
            ..schema()
        },
        expect!["every listener is off; the hub would serve nothing"],
    );
    let tiered = resolve_hub(HubSchema {
        tier: Some(hub::jobs::Tier::S2),
        units: NonZeroU32::new(3),
        ..schema()
    })
    .unwrap();
    assert_eq!(tiered.config.jobs.tier.map(|limits| limits.units.get()), Some(3));
    assert!("127.0.0.1".parse::<ListenAddr>().is_err());
}

#[test]
fn value_parsers() {
    let now = protocol::time::parse_timestamp("2026-01-02T03:04:05Z").unwrap();
    let show = |result: Result<DateTime<Utc>, UsageError>| {
        result.map(protocol::time::format_timestamp_millis).unwrap_or_else(|e| e.to_string())
    };
    expect!["2026-01-02T03:04:35.000Z"].assert_eq(&show(parse_start_time("+30s", now)));
    expect!["2026-01-02T04:04:05.000Z"].assert_eq(&show(parse_start_time("+1h", now)));
    expect!["2030-05-06T07:08:09.000Z"]
        .assert_eq(&show(parse_start_time("2030-05-06T07:08:09Z", now)));
    expect![[
        r#"start time "soon" is neither ISO-8601 (2026-01-02T03:04:05Z) nor relative (+30s)"#
    ]]
    .assert_eq(&show(parse_start_time("soon", now)));
    expect![[r#""5d" is not a duration like 30s, 5m or 1h"#]]
        .assert_eq(&parse_duration("5d").unwrap_err().to_string());
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(parse_json_arg("--payload", r#"{"a":1}"#).unwrap(), serde_json::json!({"a":1}));
    assert_eq!(parse_json_arg("--payload", "fast").unwrap(), serde_json::json!("fast"));
    expect!["--payload is not valid JSON: EOF while parsing an object at line 1 column 1"]
        .assert_eq(&parse_json_arg("--payload", "{").unwrap_err().to_string());
    expect![[r#"--desired must be a JSON object like '{"key":"value"}'"#]]
        .assert_eq(&parse_json_object_arg("--desired", "[1]").unwrap_err().to_string());
}
