//! The hubsim binary as a user runs it: the `hub` command-line contract (connection string on stdout,
//! endpoints file, SIGTERM drains and exits 0), the client commands against that hub, error sentences
//! with IoT Hub codes, and exit codes (0 ok, 1 failure, 2 usage).

use e2e::{run, RunningHub};
use serde_json::Value;

#[test]
fn hub_prints_its_connection_string_and_drains_on_sigterm() {
    let mut hub = RunningHub::start();
    let parts: Vec<&str> = hub.connection_string.split(';').collect();
    assert_eq!(parts[0], "HostName=localhost");
    assert_eq!(parts[1], "SharedAccessKeyName=iothubowner");
    assert!(
        parts[2].starts_with("SharedAccessKey=") && parts[2].len() > 30,
        "{}",
        hub.connection_string
    );
    let endpoints_path = hub.data_dir().join("endpoints.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&endpoints_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the endpoints file holds the owner key");
    let endpoints: Value =
        serde_json::from_str(&std::fs::read_to_string(&endpoints_path).unwrap()).unwrap();
    assert_eq!(endpoints["connectionString"], hub.connection_string.as_str());
    assert!(hub.data_dir().join("ca.pem").exists());
    let data_dir = hub.data_dir();
    let log = hub.log();
    assert!(log.contains("listening"), "{log}");
    let status = hub.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(!endpoints_path.exists(), "the endpoints file is removed at shutdown");
    assert!(data_dir.join("owner.key").exists(), "the owner key survives for the next start");
}

#[test]
fn device_commands_print_connection_strings_and_iot_hub_errors() {
    let mut hub = RunningHub::start();
    let created = hub.hubsim(&["device", "create", "b43-f3-0001", "b43-f3-0002"]);
    assert_eq!(created.code, Some(0), "{created:?}");
    let lines: Vec<&str> = created.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", created.stdout);
    assert!(lines[0].starts_with("deviceId"), "{}", lines[0]);
    assert!(
        lines[1].contains("HostName=localhost;DeviceId=b43-f3-0001;SharedAccessKey="),
        "{}",
        lines[1]
    );

    let again = hub.hubsim(&["device", "create", "b43-f3-0001"]);
    assert_eq!(again.code, Some(1));
    assert!(again.stdout.is_empty(), "{}", again.stdout);
    expect_test::expect![[r#"
        error: could not create device b43-f3-0001: DeviceAlreadyExists (409001, HTTP 409): a device with id 'b43-f3-0001' is already registered
    "#]]
    .assert_eq(&again.stderr);

    let listed = hub.hubsim(&["device", "list", "--output", "json"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let ids: Vec<&str> =
        listed.as_array().unwrap().iter().map(|d| d["deviceId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["b43-f3-0001", "b43-f3-0002"]);
    let key = listed[1]["device"]["authentication"]["symmetricKey"]["primaryKey"].as_str().unwrap();
    assert_eq!(
        listed[1]["connectionString"],
        format!("HostName=localhost;DeviceId=b43-f3-0002;SharedAccessKey={key}")
    );

    let deleted = hub.hubsim(&["device", "delete", "b43-f3-0002", "nope"]);
    assert_eq!(deleted.code, Some(1), "{deleted:?}");
    assert!(deleted.stdout.contains("b43-f3-0002  deleted"), "{}", deleted.stdout);
    assert!(
        deleted.stderr.contains("nope: DeviceNotFound (404001, HTTP 404)"),
        "{}",
        deleted.stderr
    );
    let gone = hub.hubsim(&["device", "show", "b43-f3-0002"]);
    assert_eq!(gone.code, Some(1));
    assert!(gone.stderr.starts_with("error: could not show device b43-f3-0002: GET /devices/b43-f3-0002 was refused: DeviceNotFound (404001"), "{}", gone.stderr);

    let offline =
        hub.hubsim(&["method", "invoke", "b43-f3-0001", "reboot", "--payload", "{\"delay\":1}"]);
    assert_eq!(offline.code, Some(1));
    assert!(offline.stderr.contains("DeviceNotOnline (404103, HTTP 404)"), "{}", offline.stderr);
    assert_eq!(hub.terminate().code(), Some(0));
}

#[test]
fn twins_queries_and_jobs_from_the_command_line() {
    let mut hub = RunningHub::start();
    assert_eq!(hub.hubsim(&["device", "create", "t1", "t2", "t3"]).code, Some(0));
    for id in ["t1", "t2"] {
        let updated =
            hub.hubsim(&["twin", "update", id, "--tags", r#"{"building":"43","floor":3}"#]);
        assert_eq!(updated.code, Some(0), "{updated:?}");
    }
    let twin: Value = serde_json::from_str(&hub.hubsim(&["twin", "show", "t1"]).stdout).unwrap();
    assert_eq!(twin["tags"]["building"], "43");

    let query = hub.hubsim(&[
        "query",
        "SELECT deviceId, tags.floor FROM devices WHERE tags.building = '43'",
        "-o",
        "csv",
    ]);
    assert_eq!(query.code, Some(0), "{query:?}");
    let mut rows: Vec<&str> = query.stdout.lines().collect();
    rows[1..].sort_unstable();
    assert_eq!(rows, ["deviceId,floor", "t1,3", "t2,3"]);

    let job = hub.hubsim(&[
        "job",
        "create-twin",
        "--job-id",
        "fw-43",
        "--desired",
        r#"{"fw":"2.0"}"#,
        "--query",
        "tags.building = '43'",
    ]);
    assert_eq!(job.code, Some(0), "{job:?}");
    assert!(
        job.stdout.contains("fw-43") && job.stdout.contains("scheduleUpdateTwin"),
        "{}",
        job.stdout
    );
    let watched = hub.hubsim(&["job", "watch", "fw-43", "--interval", "1s"]);
    assert_eq!(watched.code, Some(0), "{watched:?}");
    assert!(
        watched.stdout.lines().last().unwrap().starts_with("completed: 2/2 succeeded, 0 failed"),
        "{}",
        watched.stdout
    );
    let results = hub.hubsim(&["job", "results", "fw-43", "--format", "json"]);
    let results: Value = serde_json::from_str(&results.stdout).unwrap();
    let statuses: Vec<(&str, &str)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["deviceId"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("t1", "completed"), ("t2", "completed")]);
    let twin: Value = serde_json::from_str(&hub.hubsim(&["twin", "show", "t2"]).stdout).unwrap();
    assert_eq!(twin["properties"]["desired"]["fw"], "2.0");

    let later = hub.hubsim(&[
        "job",
        "create-method",
        "--job-id",
        "later",
        "--method",
        "reboot",
        "--start",
        "+1h",
    ]);
    assert_eq!(later.code, Some(0), "{later:?}");
    let cancelled = hub.hubsim(&["job", "cancel", "later", "-o", "json"]);
    let cancelled: Value = serde_json::from_str(&cancelled.stdout).unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let listed = hub.hubsim(&["job", "list", "--status", "cancelled", "-o", "json"]);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let duplicate =
        hub.hubsim(&["job", "create-method", "--job-id", "later", "--method", "reboot"]);
    assert_eq!(duplicate.code, Some(1));
    assert!(
        duplicate.stderr.contains("JobAlreadyExists (409104, HTTP 409)"),
        "{}",
        duplicate.stderr
    );
    assert_eq!(hub.terminate().code(), Some(0));
}

#[test]
fn usage_errors_exit_2_with_one_sentence() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let no_hub = run(&["device", "list", "--data-dir", dir]);
    assert_eq!(no_hub.code, Some(2));
    assert!(
        no_hub
            .stderr
            .starts_with("error: no hub to talk to: pass --hub or set HUBSIM_CONNECTION_STRING"),
        "{}",
        no_hub.stderr
    );
    assert_eq!(no_hub.stderr.lines().count(), 1);

    let bad_id = run(&["device", "show", "a/b", "--data-dir", dir]);
    assert_eq!(bad_id.code, Some(2));
    assert!(bad_id.stderr.contains("device id contains '/'"), "{}", bad_id.stderr);

    let bad_addr = run(&["hub", "--mqtts", "nowhere"]);
    assert_eq!(bad_addr.code, Some(2));
    assert!(
        bad_addr.stderr.contains("is not an address like 127.0.0.1:8883 or `off`"),
        "{}",
        bad_addr.stderr
    );

    let bad_json = run(&["twin", "update", "d1", "--desired", "{", "--data-dir", dir]);
    assert_eq!(bad_json.code, Some(2));
    assert!(bad_json.stderr.contains("--desired is not valid JSON"), "{}", bad_json.stderr);

    let unknown = run(&["frobnicate"]);
    assert_eq!(unknown.code, Some(2));
}

#[test]
fn hub_help_is_the_documented_contract() {
    let help = run(&["hub", "--help"]);
    assert_eq!(help.code, Some(0));
    let options = help.stdout.split_once("Options:").map_or("", |(_, options)| options);
    let flags: Vec<&str> = options
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| line.split_once("--").map(|(_, rest)| rest))
        .map(|rest| rest.split([' ', '\t']).next().unwrap_or_default().trim_end_matches("..."))
        .collect();
    expect_test::expect![[r#"
        data-dir
        host-name
        mqtts
        https
        mqtt
        http
        events
        tls-cert
        tls-key
        owner-key
        tier
        units
        shutdown-grace
        output
        verbose
        help
        version"#]]
    .assert_eq(&flags.join("\n"));
    assert!(help.stdout.contains("[default: 127.0.0.1:8883]"), "{}", help.stdout);
    assert!(help.stdout.contains("[default: 127.0.0.1:8443]"), "{}", help.stdout);
}

#[test]
fn events_prints_the_hub_event_stream() {
    let hub = RunningHub::start();
    let out_path = hub.data_dir().join("events.out");
    let mut events = std::process::Command::new(e2e::hubsim_bin())
        .args(["events", "--filter", "lifecycle/#", "--output", "json", "--data-dir"])
        .arg(hub.data_dir())
        .env_remove("HUBSIM_CONNECTION_STRING")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    // The subscription is in place once a first create is seen; keep creating until one arrives.
    let mut created = 0;
    let seen = e2e::poll(std::time::Duration::from_secs(30), || {
        created += 1;
        let id = format!("ev-{created}");
        assert_eq!(hub.hubsim(&["device", "create", &id]).code, Some(0));
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        text.lines().next().map(str::to_owned)
    });
    events.kill().unwrap();
    events.wait().unwrap();
    let line = seen.expect("hubsim events printed a lifecycle event");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert!(event["topic"].as_str().unwrap().starts_with("lifecycle/ev-"), "{event}");
    assert_eq!(event["payload"]["properties"]["opType"], "createDeviceIdentity", "{event}");
}
