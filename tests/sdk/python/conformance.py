"""Conformance of hubsim with the unmodified official Python SDKs (azure-iot-device, azure-iot-hub).

Environment:
  HUBSIM_CONNECTION_STRING  service connection string of the hub under test (HostName must resolve
                            to the hub; the service SDK uses https://HostName:443, devices HostName:8883)
  HUBSIM_CA_FILE            the hub's CA certificate (PEM); also set REQUESTS_CA_BUNDLE to it

Each check prints `ok - <name>` or `FAIL - <name>: <why>`; the last line is `N passed, M failed`.
Exit status 0 only if every check passed.
"""

import datetime
import os
import sys
import threading
import time
import traceback
import uuid

from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubJobManager, IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, QuerySpecification, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

DEADLINE_SECS = 60


class Suite:
    """Runs named checks, records outcomes, and prints a summary."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, func):
        try:
            func()
        except Exception as err:  # noqa: BLE001 - every failure is reported, never raised
            self.failed += 1
            print(f"FAIL - {name}: {type(err).__name__}: {err}", flush=True)
            traceback.print_exc(file=sys.stderr)
            return False
        self.passed += 1
        print(f"ok - {name}", flush=True)
        return True

    def summary(self):
        print(f"python sdk: {self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def wait_until(condition, what, timeout=DEADLINE_SECS, interval=0.2):
    """Polls `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def status_of(err):
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


class Device:
    """One connected device client that answers methods and records desired patches."""

    def __init__(self, connection_string, ca_pem):
        self.client = IoTHubDeviceClient.create_from_connection_string(
            connection_string, server_verification_cert=ca_pem
        )
        self.patches = []
        self.methods = []
        self.lock = threading.Lock()
        self.client.on_method_request_received = self._on_method
        self.client.on_twin_desired_properties_patch_received = self._on_patch

    def _on_method(self, request):
        with self.lock:
            self.methods.append((request.name, request.payload))
        body = {"method": request.name, "echo": request.payload}
        self.client.send_method_response(MethodResponse.create_from_method_request(request, 200, body))

    def _on_patch(self, patch):
        with self.lock:
            self.patches.append(patch)

    def patch_with(self, key):
        with self.lock:
            return next((p for p in self.patches if key in p), None)

    def method_count(self, name):
        with self.lock:
            return sum(1 for (method, _) in self.methods if method == name)


def main():
    service_cs = os.environ["HUBSIM_CONNECTION_STRING"]
    with open(os.environ["HUBSIM_CA_FILE"], encoding="ascii") as ca_file:
        ca_pem = ca_file.read()
    host = dict(part.split("=", 1) for part in service_cs.split(";") if part)["HostName"]
    registry = IoTHubRegistryManager.from_connection_string(service_cs)
    jobs = IoTHubJobManager.from_connection_string(service_cs)
    prefix = "py-" + uuid.uuid4().hex[:8]
    ids = [f"{prefix}-a", f"{prefix}-b"]
    in_list = "[" + ",".join(f"'{i}'" for i in ids) + "]"
    suite = Suite()
    state = {"devices": {}}

    def register():
        for device_id in ids:
            created = registry.create_device_with_sas(device_id, None, None, "enabled")
            expect(created.device_id == device_id, f"created {created.device_id}")
            key = created.authentication.symmetric_key.primary_key
            expect(key, "the hub generated a primary key")
            fetched = registry.get_device(device_id)
            expect(fetched.authentication.symmetric_key.primary_key == key, "get_device returns the same key")
            state.setdefault("keys", {})[device_id] = key

    def duplicate_is_409():
        try:
            registry.create_device_with_sas(ids[0], None, None, "enabled")
        except HttpOperationError as err:
            expect(status_of(err) == 409, f"status {status_of(err)}")
            return
        raise AssertionError("creating an existing device succeeded")

    def connect_devices():
        for device_id in ids:
            cs = f"HostName={host};DeviceId={device_id};SharedAccessKey={state['keys'][device_id]}"
            device = Device(cs, ca_pem)
            device.client.connect()
            state["devices"][device_id] = device
        wait_until(
            lambda: all(registry.get_device(i).connection_state == "Connected" for i in ids),
            "both devices to show Connected",
        )

    def twin_get_and_reported():
        device = state["devices"][ids[0]]
        twin = device.client.get_twin()
        expect("$version" in twin["desired"], f"desired has $version: {twin}")
        device.client.patch_twin_reported_properties({"firmware": "1.0", "nested": {"a": 1}})
        service_twin = wait_until(
            lambda: (lambda t: t if t.properties.reported.get("firmware") == "1.0" else None)(registry.get_twin(ids[0])),
            "the reported patch to reach the service twin",
        )
        expect(service_twin.properties.reported["nested"] == {"a": 1}, "nested reported value")

    def desired_reaches_device():
        patch = Twin(tags={"building": "43"}, properties=TwinProperties(desired={"interval": 5}))
        updated = registry.update_twin(ids[0], patch, "*")
        expect(updated.tags == {"building": "43"}, f"tags {updated.tags}")
        expect(updated.properties.desired["interval"] == 5, "desired merged")
        device = state["devices"][ids[0]]
        received = wait_until(lambda: device.patch_with("interval"), "the desired patch on the device")
        expect(received["interval"] == 5 and "$version" in received, f"patch {received}")
        stale = registry.get_twin(ids[0]).etag
        registry.update_twin(ids[0], Twin(tags={"floor": 3}), stale)
        try:
            registry.update_twin(ids[0], Twin(tags={"floor": 4}), stale)
        except HttpOperationError as err:
            expect(status_of(err) == 412, f"stale etag gave {status_of(err)}")
            return
        raise AssertionError("a stale etag was accepted")

    def direct_method():
        request = CloudToDeviceMethod(method_name="reboot", payload={"delay": 1}, response_timeout_in_seconds=10)
        result = registry.invoke_device_method(ids[1], request)
        expect(result.status == 200, f"status {result.status}")
        expect(result.payload == {"method": "reboot", "echo": {"delay": 1}}, f"payload {result.payload}")

    def method_on_unknown_device_is_404():
        try:
            registry.invoke_device_method(prefix + "-missing", CloudToDeviceMethod(method_name="x", response_timeout_in_seconds=5))
        except HttpOperationError as err:
            expect(status_of(err) == 404, f"status {status_of(err)}")
            return
        raise AssertionError("invoking on an unknown device succeeded")

    def query():
        result = registry.query_iot_hub(QuerySpecification(query=f"SELECT * FROM devices WHERE deviceId IN {in_list}"))
        found = sorted(item.device_id for item in result.items)
        expect(found == ids, f"query found {found}")
        tagged = registry.query_iot_hub(QuerySpecification(query=f"SELECT * FROM devices WHERE tags.building = '43' AND deviceId IN {in_list}"))
        expect([t.device_id for t in tagged.items] == [ids[0]], "tag query")

    def method_job():
        job_id = f"{prefix}-method"
        request = JobRequest(
            job_id=job_id,
            type="scheduleDeviceMethod",
            cloud_to_device_method=CloudToDeviceMethod(method_name="flash", payload={"v": 2}, response_timeout_in_seconds=10),
            query_condition=f"deviceId IN {in_list}",
            start_time=datetime.datetime.now(datetime.timezone.utc),
            max_execution_time_in_seconds=60,
        )
        created = jobs.create_scheduled_job(job_id, request)
        expect(created.job_id == job_id and created.status == "queued", f"created {created.status}")
        done = wait_until(lambda: (lambda j: j if j.status in ("completed", "failed", "cancelled") else None)(jobs.get_scheduled_job(job_id)), "the method job to finish")
        expect(done.status == "completed", f"job ended {done.status}")
        stats = done.device_job_statistics
        expect(stats.device_count == 2 and stats.succeeded_count == 2 and stats.failed_count == 0, f"stats {stats}")
        expect(all(state["devices"][i].method_count("flash") == 1 for i in ids), "each device answered once")
        records = registry.query_iot_hub(QuerySpecification(query=f"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'"))
        expect(len(records.items) == 2, f"{len(records.items)} device job records")

    def twin_job():
        job_id = f"{prefix}-twin"
        request = JobRequest(
            job_id=job_id,
            type="scheduleUpdateTwin",
            update_twin=Twin(etag="*", properties=TwinProperties(desired={"mode": "eco"})),
            query_condition=f"deviceId IN {in_list}",
            start_time=datetime.datetime.now(datetime.timezone.utc),
            max_execution_time_in_seconds=60,
        )
        jobs.create_scheduled_job(job_id, request)
        done = wait_until(lambda: (lambda j: j if j.status in ("completed", "failed", "cancelled") else None)(jobs.get_scheduled_job(job_id)), "the twin job to finish")
        expect(done.status == "completed", f"job ended {done.status}")
        for device_id in ids:
            expect(registry.get_twin(device_id).properties.desired.get("mode") == "eco", f"{device_id} desired mode")
            wait_until(lambda: state["devices"][device_id].patch_with("mode"), f"the job's desired patch on {device_id}")

    def cancel_job():
        job_id = f"{prefix}-later"
        request = JobRequest(
            job_id=job_id,
            type="scheduleDeviceMethod",
            cloud_to_device_method=CloudToDeviceMethod(method_name="never", response_timeout_in_seconds=10),
            query_condition=f"deviceId IN {in_list}",
            start_time=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
            max_execution_time_in_seconds=60,
        )
        jobs.create_scheduled_job(job_id, request)
        cancelled = jobs.cancel_scheduled_job(job_id)
        expect(cancelled.status == "cancelled", f"cancel returned {cancelled.status}")
        expect(jobs.get_scheduled_job(job_id).status == "cancelled", "the job stays cancelled")
        expect(all(state["devices"][i].method_count("never") == 0 for i in ids), "a cancelled job never runs")

    def unknown_job_is_404():
        try:
            jobs.get_scheduled_job(prefix + "-nope")
        except HttpOperationError as err:
            expect(status_of(err) == 404, f"status {status_of(err)}")
            return
        raise AssertionError("an unknown job was found")

    def delete_devices():
        for device in state["devices"].values():
            device.client.shutdown()
        for device_id in ids:
            registry.delete_device(device_id)
            try:
                registry.get_device(device_id)
            except HttpOperationError as err:
                expect(status_of(err) == 404, f"status {status_of(err)}")
                continue
            raise AssertionError(f"{device_id} still exists after delete")

    if suite.check("registry: create devices with generated keys, get them back", register):
        suite.check("registry: creating an existing device is 409", duplicate_is_409)
        if suite.check("device: connect over MQTT/TLS on 8883", connect_devices):
            suite.check("twin: device get has desired.$version; reported patch reaches the service", twin_get_and_reported)
            suite.check("twin: service patch (tags + desired) reaches the device; stale etag is 412", desired_reaches_device)
            suite.check("method: invoke with payload, device answers", direct_method)
            suite.check("query: IN list and tag condition", query)
            suite.check("jobs: scheduleDeviceMethod runs on both devices", method_job)
            suite.check("jobs: scheduleUpdateTwin updates both twins", twin_job)
            suite.check("jobs: a future job can be cancelled and never runs", cancel_job)
        suite.check("method: unknown device is 404", method_on_unknown_device_is_404)
        suite.check("jobs: unknown job is 404", unknown_job_is_404)
        suite.check("registry: delete devices (204), then 404", delete_devices)
    return suite.summary()


if __name__ == "__main__":
    sys.exit(main())
