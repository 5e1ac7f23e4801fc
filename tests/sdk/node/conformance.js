// Conformance of hubsim with the unmodified official Node SDKs (azure-iot-device + azure-iot-device-mqtt,
// azure-iothub).
//
// Environment:
//   HUBSIM_CONNECTION_STRING  service connection string of the hub under test (the service SDK uses
//                             https://HostName:443, devices mqtts://HostName:8883)
//   HUBSIM_CA_FILE            the hub's CA certificate (PEM); NODE_EXTRA_CA_CERTS must name it too
//
// Each check prints `ok - <name>` or `FAIL - <name>: <why>`; the last line is `N passed, M failed`.
// Exit status 0 only if every check passed.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Registry, Client: ServiceClient, JobClient } = require('azure-iothub');

const DEADLINE_MS = 60000;

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function waitUntil(condition, what, timeoutMs = DEADLINE_MS) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await condition();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
}

async function expectStatus(promise, status, what) {
  try {
    await promise;
  } catch (err) {
    const got = err.response && err.response.statusCode;
    expect(got === status, `${what}: status ${got} (${err.constructor.name}: ${err.message})`);
    return err;
  }
  throw new Error(`${what} succeeded`);
}

class Suite {
  constructor() {
    this.passed = 0;
    this.failed = 0;
  }

  async check(name, fn) {
    try {
      await fn();
      this.passed += 1;
      console.log(`ok - ${name}`);
      return true;
    } catch (err) {
      this.failed += 1;
      console.log(`FAIL - ${name}: ${err && err.message}`);
      console.error(err && err.stack);
      return false;
    }
  }

  summary() {
    console.log(`node sdk: ${this.passed} passed, ${this.failed} failed`);
    return this.failed === 0 ? 0 : 1;
  }
}

// A connected device that answers methods and records desired patches.
class Device {
  constructor(connectionString, ca) {
    this.client = DeviceClient.fromConnectionString(connectionString, Mqtt);
    this.ca = ca;
    this.patches = [];
    this.calls = [];
  }

  async open() {
    await this.client.setOptions({ ca: this.ca });
    await this.client.open();
    for (const name of ['reboot', 'flash', 'never']) {
      this.client.onDeviceMethod(name, (request, response) => {
        this.calls.push({ name, payload: request.payload });
        response.send(200, { method: name, echo: request.payload }).catch((err) => console.error(err));
      });
    }
    this.twin = await this.client.getTwin();
    this.twin.on('properties.desired', (patch) => this.patches.push(patch));
  }

  patchWith(key) {
    return this.patches.find((patch) => Object.prototype.hasOwnProperty.call(patch, key));
  }

  count(name) {
    return this.calls.filter((call) => call.name === name).length;
  }

  reportProperties(patch) {
    return new Promise((resolve, reject) => {
      this.twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()));
    });
  }
}

async function main() {
  const serviceCs = process.env.HUBSIM_CONNECTION_STRING;
  const ca = fs.readFileSync(process.env.HUBSIM_CA_FILE, 'utf8');
  const host = /HostName=([^;]+)/.exec(serviceCs)[1];
  const registry = Registry.fromConnectionString(serviceCs);
  const service = ServiceClient.fromConnectionString(serviceCs);
  const jobs = JobClient.fromConnectionString(serviceCs);
  const prefix = 'node-' + crypto.randomBytes(4).toString('hex');
  const ids = [`${prefix}-a`, `${prefix}-b`];
  const inList = '[' + ids.map((id) => `'${id}'`).join(',') + ']';
  const devices = {};
  const keys = {};
  const suite = new Suite();

  const finished = async (jobId) => {
    const { jobStatus } = await jobs.getJob(jobId);
    return ['completed', 'failed', 'cancelled'].includes(jobStatus.status) ? jobStatus : null;
  };

  const registered = await suite.check('registry: create devices with generated keys, get them back', async () => {
    for (const deviceId of ids) {
      const { responseBody, httpResponse } = await registry.create({ deviceId, status: 'enabled' });
      expect(httpResponse.statusCode === 200, `create status ${httpResponse.statusCode}`);
      keys[deviceId] = responseBody.authentication.symmetricKey.primaryKey;
      expect(keys[deviceId], 'the hub generated a primary key');
      const { responseBody: fetched } = await registry.get(deviceId);
      expect(fetched.authentication.symmetricKey.primaryKey === keys[deviceId], 'get returns the same key');
    }
  });
  if (!registered) return suite.summary();

  await suite.check('registry: creating an existing device is DeviceAlreadyExistsError (409)', async () => {
    const err = await expectStatus(registry.create({ deviceId: ids[0] }), 409, 'duplicate create');
    expect(err.constructor.name === 'DeviceAlreadyExistsError', `error class ${err.constructor.name}`);
  });

  const connected = await suite.check('device: connect over MQTT/TLS on 8883', async () => {
    for (const deviceId of ids) {
      const device = new Device(`HostName=${host};DeviceId=${deviceId};SharedAccessKey=${keys[deviceId]}`, ca);
      await device.open();
      devices[deviceId] = device;
    }
    await waitUntil(async () => {
      const states = await Promise.all(ids.map(async (id) => (await registry.get(id)).responseBody.connectionState));
      return states.every((state) => state === 'Connected');
    }, 'both devices to show Connected');
  });

  if (connected) {
    await suite.check('twin: device get has desired.$version; reported patch reaches the service', async () => {
      const device = devices[ids[0]];
      expect(typeof device.twin.properties.desired.$version === 'number', 'desired.$version is a number');
      await device.reportProperties({ firmware: '1.0', nested: { a: 1 } });
      const { responseBody: twin } = await registry.getTwin(ids[0]);
      expect(twin.properties.reported.firmware === '1.0', `reported ${JSON.stringify(twin.properties.reported)}`);
    });

    await suite.check('twin: service patch (tags + desired) reaches the device; stale etag is 412', async () => {
      const { responseBody: before } = await registry.getTwin(ids[0]);
      const patch = { tags: { building: '43' }, properties: { desired: { interval: 5 } } };
      const { responseBody: updated } = await registry.updateTwin(ids[0], patch, before.etag);
      expect(updated.tags.building === '43' && updated.properties.desired.interval === 5, 'patch merged');
      const received = await waitUntil(() => devices[ids[0]].patchWith('interval'), 'the desired patch on the device');
      expect(received.interval === 5 && typeof received.$version === 'number', `patch ${JSON.stringify(received)}`);
      const err = await expectStatus(registry.updateTwin(ids[0], { tags: { floor: 3 } }, before.etag), 412, 'stale etag');
      expect(err.constructor.name === 'InvalidEtagError', `error class ${err.constructor.name}`);
    });

    await suite.check('method: invoke with payload, device answers', async () => {
      const { result } = await service.invokeDeviceMethod(ids[1], {
        methodName: 'reboot',
        payload: { delay: 1 },
        responseTimeoutInSeconds: 10,
      });
      expect(result.status === 200, `status ${result.status}`);
      expect(JSON.stringify(result.payload) === JSON.stringify({ method: 'reboot', echo: { delay: 1 } }), `payload ${JSON.stringify(result.payload)}`);
    });

    await suite.check('method: a null payload reaches the device as null', async () => {
      const { result } = await service.invokeDeviceMethod(ids[1], { methodName: 'reboot', responseTimeoutInSeconds: 10 });
      expect(result.status === 200 && result.payload.echo === null, `payload ${JSON.stringify(result.payload)}`);
    });

    await suite.check('query: IN list and tag condition, paged', async () => {
      const query = registry.createQuery(`SELECT * FROM devices WHERE deviceId IN ${inList}`, 1);
      const found = [];
      let pages = 0;
      while (query.hasMoreResults && pages < 10) {
        const { result } = await query.nextAsTwin();
        found.push(...result.map((twin) => twin.deviceId));
        pages += 1;
      }
      expect(JSON.stringify(found.sort()) === JSON.stringify(ids), `found ${found} in ${pages} pages`);
      expect(pages === 2, `${pages} pages of size 1`);
      const tagged = await registry.createQuery(`SELECT * FROM devices WHERE tags.building = '43' AND deviceId IN ${inList}`).next();
      expect(tagged.result.length === 1 && tagged.result[0].deviceId === ids[0], 'tag query');
    });

    await suite.check('jobs: scheduleDeviceMethod runs on both devices', async () => {
      const jobId = `${prefix}-method`;
      const { jobStatus } = await jobs.scheduleDeviceMethod(jobId, `deviceId IN ${inList}`, {
        methodName: 'flash',
        payload: { v: 2 },
        responseTimeoutInSeconds: 10,
      }, new Date(), 60);
      expect(jobStatus.jobId === jobId && jobStatus.status === 'queued', `created ${JSON.stringify(jobStatus)}`);
      const done = await waitUntil(() => finished(jobId), 'the method job to finish');
      expect(done.status === 'completed', `job ended ${done.status}`);
      const stats = done.deviceJobStatistics;
      expect(stats.deviceCount === 2 && stats.succeededCount === 2 && stats.failedCount === 0, `stats ${JSON.stringify(stats)}`);
      expect(ids.every((id) => devices[id].count('flash') === 1), 'each device answered once');
    });

    await suite.check('jobs: scheduleUpdateTwin updates both twins', async () => {
      const jobId = `${prefix}-twin`;
      const patch = { etag: '*', properties: { desired: { mode: 'eco' } } };
      await jobs.scheduleTwinUpdate(jobId, `deviceId IN ${inList}`, patch, new Date(), 60);
      const done = await waitUntil(() => finished(jobId), 'the twin job to finish');
      expect(done.status === 'completed', `job ended ${done.status}`);
      for (const id of ids) {
        const { responseBody: twin } = await registry.getTwin(id);
        expect(twin.properties.desired.mode === 'eco', `${id} desired ${JSON.stringify(twin.properties.desired)}`);
        await waitUntil(() => devices[id].patchWith('mode'), `the job's desired patch on ${id}`);
      }
    });

    await suite.check('jobs: a future job can be cancelled and never runs; the job query lists it', async () => {
      const jobId = `${prefix}-later`;
      const later = new Date(Date.now() + 3600 * 1000);
      await jobs.scheduleDeviceMethod(jobId, `deviceId IN ${inList}`, { methodName: 'never' }, later, 60);
      const { jobStatus } = await jobs.cancelJob(jobId);
      expect(jobStatus.status === 'cancelled', `cancel returned ${jobStatus.status}`);
      const { jobStatus: again } = await jobs.getJob(jobId);
      expect(again.status === 'cancelled', `then ${again.status}`);
      expect(ids.every((id) => devices[id].count('never') === 0), 'a cancelled job never runs');
      const query = jobs.createQuery('scheduleDeviceMethod', 'cancelled', 100);
      const listed = [];
      let pages = 0;
      while (query.hasMoreResults && pages < 100) {
        const { result } = await query.next();
        listed.push(...result.map((job) => job.jobId));
        pages += 1;
      }
      expect(listed.includes(jobId), `the job query lists ${listed}`);
    });
  }

  await suite.check('method: unknown device is DeviceNotFoundError (404)', async () => {
    const err = await expectStatus(
      service.invokeDeviceMethod(`${prefix}-missing`, { methodName: 'x', responseTimeoutInSeconds: 5 }),
      404,
      'invoke on an unknown device',
    );
    expect(err.constructor.name === 'DeviceNotFoundError', `error class ${err.constructor.name}`);
  });

  await suite.check('jobs: unknown job is 404', async () => {
    await expectStatus(jobs.getJob(`${prefix}-nope`), 404, 'get of an unknown job');
  });

  await suite.check('registry: delete devices, then DeviceNotFoundError', async () => {
    for (const device of Object.values(devices)) await device.client.close();
    for (const id of ids) {
      await registry.delete(id);
      const err = await expectStatus(registry.get(id), 404, `get ${id} after delete`);
      expect(err.constructor.name === 'DeviceNotFoundError', `error class ${err.constructor.name}`);
    }
  });

  return suite.summary();
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`FAIL - suite crashed: ${err && err.message}`);
    console.error(err && err.stack);
    console.log('node sdk: 0 passed, 1 failed');
    process.exit(1);
  },
);
