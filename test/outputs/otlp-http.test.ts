import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { SpooledRecord } from '../../src/pipeline/record.ts';
import { ktrail } from '../cli/check-support.ts';
import { FakeOtlpReceiver, type DecodedLog } from '../helpers/otlp-server.ts';
import { auditId } from '../inputs/audit-file/harness.ts';
import { auditFileConfig, counterValue, deadLetters, makeAgent, makeRecords, outbound, sigkillRestarts, startChild, startOutput, tempDir, until } from './support/harness.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const REPO = path.resolve(import.meta.dirname, '../..');

async function receiver(): Promise<FakeOtlpReceiver> {
  const s = await new FakeOtlpReceiver().start();
  cleanups.push(() => s.close());
  return s;
}

async function createOutput(yamlOutput: string, dir?: string) {
  return startOutput(cleanups, yamlOutput, dir === undefined ? {} : { dir });
}

const signal = () => AbortSignal.timeout(10_000);
const rec = (id: string, doc: object, extra: Partial<SpooledRecord> = {}): SpooledRecord => ({ id, timeMs: Date.UTC(2026, 0, 1), input: 'audit', json: JSON.stringify(doc), ...extra });

const audit = {
  kind: 'Event',
  apiVersion: 'audit.k8s.io/v1',
  level: 'Metadata',
  auditID: 'a-1',
  stage: 'ResponseComplete',
  requestURI: '/api/v1/namespaces/shop/pods/web-0/exec?command=sh',
  verb: 'create',
  user: { username: 'alice@example.com', uid: 'u-42', groups: ['devs', 'system:authenticated'] },
  impersonatedUser: { username: 'system:serviceaccount:shop:deployer', groups: ['system:serviceaccounts'] },
  sourceIPs: ['10.1.2.3', '10.0.0.1'],
  userAgent: 'kubectl/v1.31.0',
  objectRef: { resource: 'pods', subresource: 'exec', namespace: 'shop', name: 'web-0', apiVersion: 'v1' },
  responseStatus: { metadata: {}, code: 101 },
  requestReceivedTimestamp: '2026-12-07T10:00:00.100000Z',
  stageTimestamp: '2026-12-07T10:00:00.123456Z',
  annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': 'RBAC: allowed by RoleBinding "devs/shop"' },
  kubernetes: {
    cluster: 'prod-eu',
    object: { namespace: 'shop', name: 'web-0', uid: 'pod-uid-1', node: 'worker-3', owner: { kind: 'Deployment', name: 'web' }, replicaSet: 'web-6d4f', labels: { app: 'web' } },
    actor: { serviceAccount: { namespace: 'ci', name: 'runner' }, pod: { namespace: 'ci', name: 'runner-7', uid: 'pod-uid-2' }, node: 'worker-1' },
  },
};

const warning = {
  kind: 'Event',
  apiVersion: 'v1',
  metadata: { name: 'web-0.17a', namespace: 'shop', uid: 'ev-1', resourceVersion: '77', creationTimestamp: '2026-12-07T09:00:00Z' },
  involvedObject: { kind: 'Pod', namespace: 'shop', name: 'web-0', uid: 'pod-uid-1', apiVersion: 'v1', resourceVersion: '500', fieldPath: 'spec.containers{web}' },
  reason: 'BackOff',
  message: 'Back-off restarting failed container',
  source: { component: 'kubelet', host: 'worker-3' },
  firstTimestamp: '2026-12-07T09:00:00Z',
  lastTimestamp: '2026-12-07T09:05:00Z',
  count: 7,
  type: 'Warning',
  eventTime: null,
};

const normal = {
  kind: 'Event',
  apiVersion: 'events.k8s.io/v1',
  metadata: { name: 'web.18b', namespace: 'shop', uid: 'ev-2', resourceVersion: '78' },
  regarding: { kind: 'Deployment', namespace: 'shop', name: 'web', uid: 'dep-1', apiVersion: 'apps/v1' },
  reason: 'ScalingReplicaSet',
  note: 'Scaled up replica set web-6d4f to 3',
  action: 'Scale',
  reportingController: 'deployment-controller',
  eventTime: '2026-12-07T09:10:00.000001Z',
  type: 'Normal',
};

function byId(s: FakeOtlpReceiver, id: string): DecodedLog {
  const l = s.logs.find((x) => x.record.attributes['ktrail.record.id'] === id);
  if (!l) throw new Error(`no log record ${id}`);
  return l;
}

describe('otlp_http output: mapping, decoded by a receiver with the official proto definitions', () => {
  it.each(['protobuf', 'json'] as const)('%s: time, observed time, severity, event name, attributes, resource, scope, body', async (encoding) => {
    const s = await receiver();
    const { output } = await createOutput(
      `type: otlp_http\nendpoint: ${s.url}\nencoding: ${encoding}\nresource_attributes: { service.name: kube-apiserver, k8s.cluster.name: prod-eu, deployment.tier: 1 }`,
    );
    const storedMs = Date.UTC(2026, 11, 7, 10, 0, 1, 500);
    const records = [rec('a-1:ResponseComplete', audit, { storedMs }), rec('ev-1:77', warning, { input: 'events', storedMs }), rec('ev-2:78', normal, { input: 'events', storedMs })];
    expect(await output.send(outbound(records), signal())).toEqual({ kind: 'ok' });
    expect(s.errors).toEqual([]);
    expect(s.requests).toHaveLength(1);
    expect(s.requests[0]!.encoding).toBe(encoding);
    expect(s.requests[0]!.headers['content-encoding']).toBe('gzip');
    expect(s.logs).toHaveLength(3);

    const a = byId(s, 'a-1:ResponseComplete');
    expect(a.resource).toEqual({ 'service.name': 'kube-apiserver', 'k8s.cluster.name': 'prod-eu', 'deployment.tier': 1 });
    expect(a.scope.name).toBe('ktrail');
    // Exact to the microseconds the document has.
    expect(a.record.timeUnixNano).toBe('1796637600123456000');
    expect(a.record.observedTimeUnixNano).toBe(`${storedMs}000000`);
    expect(a.record.eventName).toBe('k8s.audit');
    expect(a.record.severityNumber ?? 0).toBe(0);
    expect(a.record.body).toEqual(audit);
    expect(a.record.attributes).toEqual({
      'ktrail.record.id': 'a-1:ResponseComplete',
      'ktrail.input': 'audit',
      'k8s.audit.id': 'a-1',
      'k8s.audit.stage': 'ResponseComplete',
      'k8s.audit.level': 'Metadata',
      'k8s.audit.verb': 'create',
      'k8s.audit.request_uri': '/api/v1/namespaces/shop/pods/web-0/exec?command=sh',
      'user.name': 'alice@example.com',
      'user.id': 'u-42',
      'k8s.audit.user.groups': ['devs', 'system:authenticated'],
      'k8s.audit.impersonated_user.name': 'system:serviceaccount:shop:deployer',
      'k8s.audit.impersonated_user.groups': ['system:serviceaccounts'],
      'client.address': '10.1.2.3',
      'network.peer.address': '10.0.0.1',
      'k8s.audit.source_ips': ['10.1.2.3', '10.0.0.1'],
      'user_agent.original': 'kubectl/v1.31.0',
      'k8s.namespace.name': 'shop',
      'k8s.audit.object.resource': 'pods',
      'k8s.audit.object.subresource': 'exec',
      'k8s.audit.object.name': 'web-0',
      'k8s.audit.object.api_version': 'v1',
      'k8s.pod.name': 'web-0',
      'http.response.status_code': 101,
      'k8s.audit.authorization.decision': 'allow',
      'k8s.audit.authorization.reason': 'RBAC: allowed by RoleBinding "devs/shop"',
      // From k8s_metadata enrichment.
      'k8s.cluster.name': 'prod-eu',
      'k8s.pod.uid': 'pod-uid-1',
      'k8s.node.name': 'worker-3',
      'k8s.replicaset.name': 'web-6d4f',
      'k8s.deployment.name': 'web',
      'k8s.pod.label.app': 'web',
      'k8s.audit.actor.pod.namespace': 'ci',
      'k8s.audit.actor.pod.name': 'runner-7',
      'k8s.audit.actor.pod.uid': 'pod-uid-2',
      'k8s.audit.actor.node.name': 'worker-1',
      'k8s.audit.actor.service_account.namespace': 'ci',
      'k8s.audit.actor.service_account.name': 'runner',
    });

    const w = byId(s, 'ev-1:77');
    expect(w.record.eventName).toBe('k8s.event');
    expect(w.record.severityNumber).toBe(13);
    expect(w.record.severityText).toBe('Warning');
    expect(w.record.timeUnixNano).toBe(`${Date.parse('2026-12-07T09:05:00Z')}000000`);
    expect(w.record.body).toEqual(warning);
    expect(w.record.attributes).toMatchObject({
      'k8s.namespace.name': 'shop',
      'k8s.event.name': 'web-0.17a',
      'k8s.event.uid': 'ev-1',
      'k8s.event.reason': 'BackOff',
      'k8s.event.count': 7,
      'k8s.event.start_time': '2026-12-07T09:00:00Z',
      'k8s.event.reporting_component': 'kubelet',
      'k8s.object.kind': 'Pod',
      'k8s.object.name': 'web-0',
      'k8s.object.fieldpath': 'spec.containers{web}',
      'k8s.pod.name': 'web-0',
      'k8s.pod.uid': 'pod-uid-1',
      'ktrail.input': 'events',
    });

    const n = byId(s, 'ev-2:78');
    expect(n.record.severityNumber).toBe(9);
    expect(n.record.severityText).toBe('Normal');
    expect(n.record.timeUnixNano).toBe('1796634600000001000');
    expect(n.record.attributes).toMatchObject({ 'k8s.object.kind': 'Deployment', 'k8s.event.action': 'Scale', 'k8s.event.reporting_component': 'deployment-controller' });
    expect(n.record.attributes['k8s.pod.name']).toBeUndefined();

    if (encoding === 'json') {
      // OTLP/JSON as written: lowerCamelCase keys, 64-bit integers as strings, enums as integers.
      const text = s.requests[0]!.jsonText!;
      expect(text).toContain('"timeUnixNano":"1796637600123456000"');
      expect(text).toContain('"severityNumber":13');
      expect(text).not.toMatch(/"[a-z]+_[a-z_]+":/);
      expect(s.jsonNumberLongs).toBe(0);
    }
  });

  it('body: string sends the JSON text; a record that is not JSON still goes, as a string; no storedMs means now', async () => {
    const s = await receiver();
    const { output } = await createOutput(`type: otlp_http\nendpoint: ${s.url}\nbody: string`);
    const before = BigInt(Date.now()) * 1_000_000n;
    expect(await output.send(outbound([rec('a-1:x', audit), { id: 'raw-1', timeMs: 5, input: 'audit', json: 'not json {' }]), signal())).toEqual({ kind: 'ok' });
    const { output: mapped } = await createOutput(`type: otlp_http\nendpoint: ${s.url}\nencoding: json`);
    expect(await mapped.send(outbound([{ id: 'num-1', timeMs: 5, input: 'audit', json: '{"f":1.5,"big":1e999,"n":null,"list":[1,"a",true]}' }]), signal())).toEqual({ kind: 'ok' });
    expect(byId(s, 'num-1').record.body).toEqual({ f: 1.5, big: 'Infinity', n: null, list: [1, 'a', true] });
    expect(s.errors).toEqual([]);
    // A lone surrogate (valid JSON, not valid UTF-8) reaches the receiver as U+FFFD, not as bytes it refuses.
    expect(await mapped.send(outbound([{ id: 'sur-1', timeMs: 5, input: 'audit', json: '{"s":"a\\ud800b","user":{"username":"\\udc00x"}}' }]), signal())).toEqual({ kind: 'ok' });
    expect(byId(s, 'sur-1').record.body).toEqual({ s: 'a\ufffdb', user: { username: '\ufffdx' } });
    expect(s.errors).toEqual([]);
    expect(byId(s, 'a-1:x').record.body).toBe(JSON.stringify(audit));
    expect(byId(s, 'a-1:x').record.attributes['user.name']).toBe('alice@example.com');
    const raw = byId(s, 'raw-1').record;
    expect(raw.body).toBe('not json {');
    expect(raw.timeUnixNano).toBe('5000000');
    expect(BigInt(raw.observedTimeUnixNano)).toBeGreaterThanOrEqual(before);
  });

  it('configured headers are sent (inline and from a file, re-read when it changes), under a custom path', async () => {
    const s = await receiver();
    const dir = tempDir(cleanups);
    const keyFile = path.join(dir, 'key');
    fs.writeFileSync(keyFile, 'key-one\n');
    s.requireHeader = ['x-api-key', 'key-one'];
    const { output } = await createOutput(`type: otlp_http\nendpoint: ${s.url}/\npath: /v1/logs\nheaders: { X-Api-Key: { file: ${keyFile} }, X-Tenant: blue }`, dir);
    expect(await output.send(outbound(makeRecords(2)), signal())).toEqual({ kind: 'ok' });
    expect(s.requests[0]!.headers['x-tenant']).toBe('blue');
    s.requireHeader = ['x-api-key', 'key-two'];
    expect(await output.send(outbound(makeRecords(1)), signal())).toMatchObject({ kind: 'retryable', code: 'http_401' });
    fs.writeFileSync(keyFile, 'key-two-rotated!');
    s.requireHeader = ['x-api-key', 'key-two-rotated!'];
    expect(await output.send(outbound(makeRecords(1)), signal())).toEqual({ kind: 'ok' });
  });
});

describe('otlp_http output: answers', () => {
  it('429 and 503 with Retry-After, 502 and 504 are retryable; 400 is permanent with the Status message; 413 splits; 500 is permanent unless listed in retry_statuses', async () => {
    const s = await receiver();
    const { output } = await createOutput(`type: otlp_http\nendpoint: ${s.url}`);
    const send = () => output.send(outbound(makeRecords(2)), signal());
    s.next.push({ status: 429, retryAfter: '3' });
    expect(await send()).toMatchObject({ kind: 'retryable', code: 'http_429', retryAfterMs: 3000 });
    s.next.push({ status: 503, retryAfter: '1', message: 'collector queue is full' });
    expect(await send()).toMatchObject({ kind: 'retryable', code: 'http_503', retryAfterMs: 1000, detail: 'HTTP 503: collector queue is full' });
    s.next.push({ status: 502 }, { status: 504 });
    expect(await send()).toMatchObject({ kind: 'retryable', code: 'http_502' });
    expect(await send()).toMatchObject({ kind: 'retryable', code: 'http_504' });
    s.next.push({ status: 400, message: 'log record 1: invalid UTF-8 in attribute value' });
    expect(await send()).toEqual({ kind: 'permanent', code: 'http_400', detail: 'HTTP 400: log record 1: invalid UTF-8 in attribute value' });
    s.next.push({ status: 413 });
    expect(await send()).toMatchObject({ kind: 'too_large', code: 'http_413' });
    s.next.push({ status: 500 });
    expect(await send()).toMatchObject({ kind: 'permanent', code: 'http_500' });
    expect(s.logs).toHaveLength(0);

    const { output: lenient } = await createOutput(`type: otlp_http\nendpoint: ${s.url}\nencoding: json\nretry_statuses: [500]`);
    s.next.push({ status: 500, message: 'restarting' });
    expect(await lenient.send(outbound(makeRecords(1)), signal())).toMatchObject({ kind: 'retryable', code: 'http_500', detail: 'HTTP 500: restarting' });
  });

  it('partial success: all rejected → every record permanent; some rejected → dead_letter all of them (default) or count; a warning alone is ok', async () => {
    const s = await receiver();
    const { output, metrics } = await createOutput(`type: otlp_http\nendpoint: ${s.url}`);
    s.next.push({ reject: 3, message: 'all bad' });
    const all = await output.send(outbound(makeRecords(3)), signal());
    expect(all).toEqual({ kind: 'partial', failures: [0, 1, 2].map((index) => ({ index, kind: 'permanent', code: 'otlp_rejected', detail: expect.stringContaining('all bad') })) });
    s.next.push({ reject: 1, message: 'timestamp too old' });
    const some = await output.send(outbound(makeRecords(3)), signal());
    expect(some.kind).toBe('partial');
    const failures = some.kind === 'partial' ? some.failures : [];
    expect(failures.map((f) => [f.index, f.kind, f.code])).toEqual([0, 1, 2].map((i) => [i, 'permanent', 'otlp_partially_rejected']));
    expect(failures[0]!.detail).toContain('rejected 1 of 3');
    expect(failures[0]!.detail).toContain('timestamp too old');
    expect(await counterValue(metrics, 'ktrail_otlp_http_rejected_log_records_total', { output: 'out', action: 'dead_letter' })).toBe(4);

    s.next.push({ message: 'attribute values truncated' });
    expect(await output.send(outbound(makeRecords(2)), signal())).toEqual({ kind: 'ok' });

    const { output: counting, metrics: m2 } = await createOutput(`type: otlp_http\nendpoint: ${s.url}\nencoding: json\non_partial_success: count`);
    s.next.push({ reject: 2, message: 'two dropped' });
    expect(await counting.send(outbound(makeRecords(5)), signal())).toEqual({ kind: 'ok' });
    expect(await counterValue(m2, 'ktrail_otlp_http_rejected_log_records_total', { output: 'out', action: 'count' })).toBe(2);
    // All rejected is identifiable: dead-lettered in count mode too.
    s.next.push({ reject: 2 });
    expect(await counting.send(outbound(makeRecords(2)), signal())).toMatchObject({ kind: 'partial', failures: [{ code: 'otlp_rejected' }, { code: 'otlp_rejected' }] });
  });

  it('a 200 that is not an OTLP answer (a proxy page) is retried, never taken as delivered', async () => {
    const s = await receiver();
    const { output } = await createOutput(`type: otlp_http\nendpoint: ${s.url}`);
    s.next.push({ raw: { contentType: 'text/html', body: '<html>login</html>' } });
    expect(await output.send(outbound(makeRecords(1)), signal())).toMatchObject({ kind: 'retryable', code: 'malformed_response' });
  });

  it('through the agent: 503 with Retry-After is retried until accepted; 400 and partial success dead-letter with code and message; every record accounted for', async () => {
    const s = await receiver();
    const dir = tempDir(cleanups);
    s.next.push({ status: 503, retryAfter: '0' }, { status: 503 }, {}, { status: 400, message: 'bad batch' }, { reject: 1, message: 'one too old' });
    const { agent, metrics } = makeAgent(
      `service: { state_dir: ${dir}, shutdown_timeout: 2s }\ninputs: { gen: { type: fake, total: 50, batch: 10 } }\noutputs:\n  otel:\n    type: otlp_http\n    endpoint: ${s.url}\n    retry: { initial_backoff: 10ms, max_backoff: 50ms }\n    batch: { max_records: 10, flush_interval: 10ms }\n    concurrency: 1`,
    );
    await agent.start();
    cleanups.push(() => agent.stop());
    await until(() => agent.spool.records === 0, 15_000, 'everything acked');
    expect(await counterValue(metrics, 'ktrail_output_retries_total', { output: 'otel', reason: 'http_503' })).toBe(2);
    const dl = deadLetters(dir);
    const byReason = (r: string) => dl.filter((d) => d.reason.includes(r)).length;
    expect(byReason('bad batch')).toBe(10);
    expect(byReason('one too old')).toBe(10);
    // Every record is either accepted by the receiver or dead-lettered; the partial success's accepted ones are in both.
    const accepted = new Set(s.ids());
    const dead = new Set(dl.map((d) => d.record_id));
    expect(new Set([...accepted, ...dead])).toEqual(new Set(Array.from({ length: 50 }, (_, i) => `rec-${i}`)));
    // Nothing was accepted twice: retries were of refused requests only.
    expect(s.logs.length).toBe(accepted.size);
    expect(dl.map((d) => d.output)).toEqual(Array(20).fill('otel'));
  });
});

describe('otlp_http output: 413', () => {
  it('a receiver that refuses the size: the runner halves the request until it fits, every record delivered once', async () => {
    const s = await receiver();
    s.maxRecords = 3;
    const dir = tempDir(cleanups);
    const { agent } = makeAgent(
      `service: { state_dir: ${dir}, shutdown_timeout: 2s }\ninputs: { gen: { type: fake, total: 40, batch: 20 } }\noutputs:\n  otel:\n    type: otlp_http\n    endpoint: ${s.url}\n    batch: { max_records: 20, flush_interval: 10ms }`,
    );
    await agent.start();
    cleanups.push(() => agent.stop());
    await until(() => agent.spool.records === 0, 15_000, 'everything acked');
    expect(s.requests.some((r) => r.status === 413)).toBe(true);
    expect(s.ids().sort()).toEqual(Array.from({ length: 40 }, (_, i) => `rec-${i}`).sort());
    expect(deadLetters(dir)).toEqual([]);
  });
});

describe('otlp_http output: check --connect', () => {
  it('posts an empty export: ok when accepted, FAILED with the reason for a refused key, a wrong path or no receiver', async () => {
    const s = await receiver();
    s.requireHeader = ['x-api-key', 'right-key'];
    const dir = tempDir(cleanups);
    fs.mkdirSync(path.join(dir, 'logs'));
    const file = path.join(dir, 'ktrail.yaml');
    const out = (name: string, extra: string) => `  ${name}: { type: otlp_http, endpoint: ${JSON.stringify(s.url)}${extra} }`;
    fs.writeFileSync(
      file,
      [
        `service: { state_dir: ${JSON.stringify(path.join(dir, 'state'))} }`,
        `inputs: { audit: { type: audit_file, paths: [${JSON.stringify(`${dir}/logs/audit*.log*`)}] } }`,
        'outputs:',
        out('good', ', headers: { X-Api-Key: right-key }'),
        out('good_json', ', encoding: json, headers: { X-Api-Key: right-key }'),
        out('wrong_key', ', headers: { X-Api-Key: wrong-key-value }'),
        out('wrong_path', ', path: /v1/traces, headers: { X-Api-Key: right-key }'),
        '  down: { type: otlp_http, endpoint: "http://127.0.0.1:9" }',
      ].join('\n'),
    );
    const r = await ktrail(['check', '-c', file, '--connect']);
    expect(r.status).toBe(1);
    const lineOf = (name: string) => r.stdout.split('\n').find((l) => l.trimStart().startsWith(`outputs.${name} (`)) ?? '';
    expect(lineOf('good')).toMatch(/: ok POST http:\/\/127\.0\.0\.1:\d+\/v1\/logs — reachable, plain HTTP \(no TLS\), credentials accepted \(an empty export was accepted\)$/);
    expect(lineOf('good_json')).toContain(': ok POST');
    expect(lineOf('wrong_key')).toMatch(/: FAILED POST .* credentials rejected \(HTTP 401/);
    expect(lineOf('wrong_path')).toMatch(/: FAILED POST .*\/v1\/traces — .*an empty export answered HTTP 404$/);
    expect(lineOf('down')).toMatch(/: FAILED POST .* unreachable/);
    expect(r.stdout + r.stderr).not.toContain('wrong-key-value');
    expect(r.stdout + r.stderr).not.toContain('right-key');
    // Nothing was stored: the probes carried no data.
    expect(s.logs).toEqual([]);
    expect(s.errors).toEqual([]);
  }, 60_000);
});

describe('otlp_http output: secrets and restarts', () => {
  it('header secrets reach the receiver but no log line, dead letter or check printout, even when the receiver echoes them', async () => {
    const s = await receiver();
    const dir = tempDir(cleanups);
    const fromEnv = `KTRAILSECRETenv${Math.random().toString(36).slice(2, 10)}`;
    const fromFile = `KTRAILSECRETfile${Math.random().toString(36).slice(2, 10)}`;
    fs.writeFileSync(path.join(dir, 'token'), fromFile);
    // The receiver refuses and quotes the request's headers in its message.
    s.always = { status: 400, message: 'refused' };
    const cfg = auditFileConfig(dir, 20, `otel: { type: otlp_http, endpoint: ${JSON.stringify(s.url)}, headers: { X-Tenant-Token: "\${OTLP_TOKEN}", Api-Secret: { file: ${JSON.stringify(path.join(dir, 'token'))} } }, batch: { flush_interval: 20ms } }`);
    const env = { ...process.env, OTLP_TOKEN: fromEnv };
    const check = execFileSync(process.execPath, [path.join(REPO, 'bin/ktrail.js'), 'check', '-c', cfg], { env, encoding: 'utf8' });
    expect(check).toContain(': valid (');
    s.echoHeaders = true;
    process.env.OTLP_TOKEN = fromEnv;
    cleanups.push(() => delete process.env.OTLP_TOKEN);
    const a = startChild(cleanups, cfg);
    const deadCount = () => {
      try {
        return deadLetters(path.join(dir, 'state')).length;
      } catch {
        return 0; // the agent has not created its database yet
      }
    };
    await until(() => deadCount() >= 20, 20_000, 'all dead-lettered');
    a.kill('SIGTERM');
    await a.exited;
    const headers = s.requests.map((r) => r.headers);
    expect(headers.length).toBeGreaterThan(0);
    expect(headers.every((h) => h['x-tenant-token'] === fromEnv && h['api-secret'] === fromFile)).toBe(true);
    const db = new BetterSqlite3(path.join(dir, 'state', 'ktrail.db'), { readonly: true });
    const dump = JSON.stringify(db.prepare('SELECT * FROM dead_letters').all());
    db.close();
    for (const secret of [fromEnv, fromFile]) {
      expect(a.stderr).not.toContain(secret);
      expect(check).not.toContain(secret);
      expect(dump).not.toContain(secret);
    }
  }, 60_000);

  it('SIGKILLed 4 times while requests are in flight: after restarts every record arrived, repeats only as the same ids', async () => {
    const s = await receiver();
    // Stored on arrival, answered late: a kill in between leaves records the agent resends.
    s.always = { delayMs: 300 };
    const dir = tempDir(cleanups);
    const total = 4000;
    const cfg = auditFileConfig(dir, total, `otel: { type: otlp_http, endpoint: ${JSON.stringify(s.url)}, batch: { max_records: 100, flush_interval: 50ms } }`);
    await sigkillRestarts(cleanups, cfg, 4, (k) => s.requests.length > k * 6 + 3);
    s.always = undefined;
    const last = startChild(cleanups, cfg);
    const want = Array.from({ length: total }, (_, i) => `${auditId(i)}:ResponseComplete`);
    await until(() => new Set(s.ids()).size >= total, 30_000, 'every record received');
    last.kill('SIGTERM');
    expect(await last.exited).toBe(0);
    expect(s.errors).toEqual([]);
    const ids = s.ids();
    const unique = new Set(ids);
    expect(want.filter((id) => !unique.has(id))).toEqual([]);
    expect([...unique].filter((id) => !want.includes(id))).toEqual([]);
    // Some were sent twice (killed before the answer), and each repeat is the same record under its id.
    expect(ids.length).toBeGreaterThan(total);
    for (const l of s.logs) {
      const body = l.record.body as { auditID: string; stage: string };
      expect(`${body.auditID}:${body.stage}`).toBe(l.record.attributes['ktrail.record.id']);
      expect(l.record.attributes['k8s.audit.id']).toBe(body.auditID);
    }
  }, 90_000);
});
