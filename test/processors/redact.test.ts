import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfigText } from '../../src/config/load.ts';
import { LogRecord } from '../../src/pipeline/record.ts';
import { redactProcessor, type RedactConfig, type RedactProcessor } from '../../src/processors/redact/redact.ts';
import { auditLine, auditLines, goJsonStringify } from '../generators/audit-gen.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { counterValue, processorContext, rawRecord } from './support.ts';

const FIELDS = 'ktrail_redact_fields_total';
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

function makeRedact(config: unknown = {}) {
  const cfg = redactProcessor.schema.parse(config) as RedactConfig;
  const ctx = processorContext('redact', 'redact');
  return { ctx, redact: redactProcessor.create(cfg, ctx) as RedactProcessor };
}

type Doc = Record<string, any>; // oxlint-disable-line typescript/no-explicit-any
const b64 = (s: string) => Buffer.from(s).toString('base64');
const secretData = { password: b64('hunter2-fake'), token: b64('FAKE-TOKEN-0123456789') };
const secret = (name: string, extra: Doc = {}) => ({
  kind: 'Secret',
  apiVersion: 'v1',
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, resourceVersion: '100', ...extra },
  data: secretData,
  type: 'Opaque',
});

afterEach(() => vi.restoreAllMocks());

describe('default rules on a realistic audit stream', () => {
  it('removes every Secret body and last-applied annotation; other lines keep their bytes', async () => {
    const lines = [...auditLines({ seed: 11, count: 1500, mix: { secret: 40, configmap: 20, kubectl: 20 } })];
    const { ctx, redact } = makeRedact();
    const out = await redact.process(lines.map((l) => rawRecord(l)));
    expect(out).toHaveLength(lines.length);

    let secretBodies = 0;
    let lastApplied = 0;
    let untouched = 0;
    for (let i = 0; i < lines.length; i++) {
      const before = JSON.parse(lines[i]!);
      const encoded = out[i]!.encode();
      const after = JSON.parse(encoded);
      const isSecret = before.objectRef?.resource === 'secrets';
      if (isSecret) {
        secretBodies += Number('requestObject' in before) + Number('responseObject' in before);
        expect(after.requestObject).toBeUndefined();
        expect(after.responseObject).toBeUndefined();
        // Everything else is intact.
        const { requestObject: _a, responseObject: _b, ...rest } = before;
        expect(after).toEqual(rest);
      }
      const n = (lines[i]!.match(/"kubectl\.kubernetes\.io\/last-applied-configuration":/g) ?? []).length;
      if (!isSecret) lastApplied += n;
      expect(encoded).not.toContain('"kubectl.kubernetes.io/last-applied-configuration":');
      if (!isSecret && n === 0) {
        untouched++;
        expect(encoded).toBe(lines[i]);
        expect(out[i]!.isRaw).toBe(true);
      }
    }
    expect(secretBodies).toBeGreaterThan(20);
    expect(lastApplied).toBeGreaterThan(10);
    expect(untouched).toBeGreaterThan(1000);
    expect(await counterValue(ctx.metrics, FIELDS, { processor: 'redact', rule: 'secret-bodies' })).toBe(secretBodies);
    expect(await counterValue(ctx.metrics, FIELDS, { rule: 'last-applied-configuration' })).toBe(lastApplied);
  });

  it('parses only lines a rule may apply to', async () => {
    const lines = [...auditLines({ seed: 5, count: 400, mix: { secret: 0, configmap: 0, kubectl: 0, tokenreview: 0, bigList: 0 } })];
    const candidates = lines.filter((l) => /"secrets"|"Secret|"tokenreviews"|"serviceaccounts"|last-applied-configuration|"requestObject"|"responseObject"/.test(l));
    const { redact } = makeRedact();
    const parse = vi.spyOn(JSON, 'parse');
    const out = await redact.process(lines.map((l) => rawRecord(l)));
    expect(parse.mock.calls.length).toBeLessThanOrEqual(candidates.length);
    expect(parse.mock.calls.length).toBeLessThan(lines.length / 2);
    expect(out.map((r) => r.encode())).toEqual(lines);
  });
});

describe('default rules, case by case', () => {
  const ref = (resource: string, extra: Doc = {}) => ({ resource, namespace: 'shop', apiVersion: 'v1', ...extra });

  it('Secret get, create and a SecretList at RequestResponse', async () => {
    const { ctx, redact } = makeRedact();
    const get = auditLine({ level: 'RequestResponse', verb: 'get', objectRef: ref('secrets', { name: 'db' }), responseObject: secret('db') });
    const create = auditLine({
      level: 'RequestResponse',
      verb: 'create',
      objectRef: ref('secrets', { name: 'db' }),
      requestObject: secret('db'),
      responseObject: secret('db'),
    });
    const list = auditLine({
      level: 'RequestResponse',
      verb: 'list',
      objectRef: ref('secrets'),
      responseObject: { kind: 'SecretList', apiVersion: 'v1', metadata: { resourceVersion: '9' }, items: [secret('a'), secret('b')] },
    });
    const out = await redact.process([get, create, list].map((l) => rawRecord(l)));
    for (const r of out) {
      const text = r.encode();
      expect(text).not.toContain(secretData.password);
      expect(text).not.toContain(secretData.token);
      expect(r.doc.objectRef).toMatchObject({ resource: 'secrets' });
    }
    expect(await counterValue(ctx.metrics, FIELDS, { rule: 'secret-bodies' })).toBe(4);
  });

  it('a Secret or SecretList body under another objectRef', async () => {
    const { ctx, redact } = makeRedact();
    // E.g. a "List" request through an aggregated API that returns Secrets.
    const odd = auditLine({
      level: 'RequestResponse',
      verb: 'list',
      objectRef: { resource: 'vaultsecrets', namespace: 'shop', apiGroup: 'example.io', apiVersion: 'v1' },
      responseObject: { kind: 'SecretList', apiVersion: 'v1', metadata: {}, items: [secret('x')] },
    });
    const [r] = await redact.process([rawRecord(odd)]);
    expect(r!.encode()).not.toContain(secretData.password);
    expect(await counterValue(ctx.metrics, FIELDS, { rule: 'secret-objects' })).toBe(1);
  });

  it('a CRD named secrets in another group is not a core Secret', async () => {
    const { redact } = makeRedact();
    const crd = auditLine({
      level: 'RequestResponse',
      verb: 'get',
      objectRef: { resource: 'secrets', namespace: 'shop', name: 'x', apiGroup: 'example.io', apiVersion: 'v1' },
      responseObject: { kind: 'Secret', apiVersion: 'example.io/v1', metadata: { name: 'x' }, spec: { path: 'kv/x' } },
    });
    // secret-bodies does not apply (not core); secret-objects still does (kind Secret): fail safe.
    const [r] = await redact.process([rawRecord(crd)]);
    expect(r!.doc.responseObject).toBeUndefined();
  });

  it('TokenReview request (token) and response (user info)', async () => {
    const { ctx, redact } = makeRedact();
    const token = 'eyJhbGciOiJSUzI1NiJ9.FAKE-PAYLOAD.FAKE-SIGNATURE';
    const tr = auditLine({
      level: 'RequestResponse',
      verb: 'create',
      objectRef: { resource: 'tokenreviews', apiGroup: 'authentication.k8s.io', apiVersion: 'v1' },
      requestObject: { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec: { token } },
      responseObject: {
        kind: 'TokenReview',
        apiVersion: 'authentication.k8s.io/v1',
        metadata: { creationTimestamp: null },
        spec: { token },
        status: { authenticated: true, user: { username: 'system:serviceaccount:shop:web', groups: ['system:serviceaccounts'] } },
      },
    });
    const [r] = await redact.process([rawRecord(tr)]);
    expect(r!.encode()).not.toContain(token);
    expect(r!.doc.requestObject).toBeUndefined();
    expect(r!.doc.responseObject).toBeUndefined();
    expect(await counterValue(ctx.metrics, FIELDS, { rule: 'tokenreview-bodies' })).toBe(2);
  });

  it('serviceaccounts/token responses carry an issued token', async () => {
    const { redact } = makeRedact();
    const line = auditLine({
      level: 'RequestResponse',
      verb: 'create',
      objectRef: { resource: 'serviceaccounts', namespace: 'shop', name: 'web', apiVersion: 'v1', subresource: 'token' },
      requestObject: { kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', spec: { audiences: ['https://kubernetes.default.svc'] } },
      responseObject: { kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', status: { token: 'FAKE.ISSUED.TOKEN' } },
    });
    const [r] = await redact.process([rawRecord(line)]);
    expect(r!.encode()).not.toContain('FAKE.ISSUED.TOKEN');
    expect(r!.doc.requestObject).toBeDefined();
  });

  it('last-applied-configuration in request, response, list items and Event objects', async () => {
    const { ctx, redact } = makeRedact();
    const applied = `${goJsonStringify({ apiVersion: 'v1', kind: 'ConfigMap', data: { k: 'v' } })}\n`;
    const annotations = { [LAST_APPLIED]: applied, 'team.example.io/owner': 'shop' };
    const patch = auditLine({
      level: 'RequestResponse',
      verb: 'patch',
      objectRef: ref('configmaps', { name: 'cfg' }),
      requestObject: { metadata: { annotations: { [LAST_APPLIED]: applied } }, data: { k: 'v' } },
      responseObject: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'cfg', annotations }, data: { k: 'v' } },
    });
    const list = auditLine({
      level: 'RequestResponse',
      verb: 'list',
      objectRef: ref('configmaps'),
      responseObject: {
        kind: 'ConfigMapList',
        apiVersion: 'v1',
        metadata: {},
        items: [
          { metadata: { name: 'a', annotations } },
          { metadata: { name: 'b' } },
          { metadata: { name: 'c', annotations: { [LAST_APPLIED]: applied } } },
        ],
      },
    });
    // A core/v1 Event from the k8s_events input: the document is the Event.
    const event = new LogRecord({
      id: 'ev:1',
      timeMs: 1,
      input: 'events',
      raw: JSON.stringify({ kind: 'Event', apiVersion: 'v1', metadata: { name: 'web.17', namespace: 'shop', annotations }, reason: 'Created' }),
    });
    const out = await redact.process([rawRecord(patch), rawRecord(list), event]);
    for (const r of out) expect(r.encode()).not.toContain(LAST_APPLIED);
    const [p, l, e] = out.map((r) => r.doc as Doc);
    expect(p!.responseObject.metadata.annotations).toEqual({ 'team.example.io/owner': 'shop' });
    expect(p!.requestObject.metadata.annotations).toEqual({});
    expect(l!.responseObject.items[0].metadata.annotations).toEqual({ 'team.example.io/owner': 'shop' });
    expect(l!.responseObject.items[1].metadata).toEqual({ name: 'b' });
    expect(e!.metadata.annotations).toEqual({ 'team.example.io/owner': 'shop' });
    expect(e!.reason).toBe('Created');
    expect(await counterValue(ctx.metrics, FIELDS, { rule: 'last-applied-configuration' })).toBe(5);
  });

  it('defaults: false applies only the configured rules', async () => {
    const { redact } = makeRedact({ defaults: false, rules: [{ name: 'ua', paths: ['userAgent'] }] });
    expect(redact.ruleNames).toEqual(['ua']);
    const line = auditLine({ level: 'RequestResponse', verb: 'get', objectRef: ref('secrets', { name: 'db' }), responseObject: secret('db') });
    const [r] = await redact.process([rawRecord(line)]);
    expect(r!.doc.responseObject).toBeDefined();
    expect(r!.doc.userAgent).toBeUndefined();
  });
});

describe('configured rules', () => {
  const line = auditLine({
    level: 'Request',
    verb: 'create',
    user: { username: 'alice@example.com', groups: ['dev'], extra: { 'authentication.kubernetes.io/credential-id': ['X509SHA256=abcd'] } },
    sourceIPs: ['192.0.2.10', '10.0.0.7'],
    objectRef: { resource: 'configmaps', namespace: 'shop', name: 'cfg', apiVersion: 'v1' },
    requestObject: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'cfg', annotations: { a: '1', b: '2' } }, data: { DB_URL: 'postgres://u:p@db/x' } },
  });

  it('mask with text, sha256 and an HMAC key; wildcards; conditions', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-'));
    try {
      const keyFile = path.join(dir, 'key');
      fs.writeFileSync(keyFile, 'k1\n');
      const { ctx, redact } = makeRedact({
        hash_key: { file: keyFile },
        rules: [
          { name: 'configmap-data', action: 'mask', paths: ['requestObject.data.*'], when: { field: 'objectRef.resource', equals: 'configmaps' } },
          { name: 'usernames', action: 'mask', mask_with: 'sha256', hash_chars: 12, paths: ['user.username'] },
          { name: 'annotations', action: 'mask', mask_text: '***', paths: ['requestObject.metadata.annotations.*'] },
          { name: 'first-ip', action: 'remove', paths: ['sourceIPs[0]'] },
          { name: 'never', action: 'remove', paths: ['verb'], when: { field: 'objectRef.resource', equals: 'pods' } },
        ],
      });
      const [r] = await redact.process([rawRecord(line)]);
      const d = r!.doc as Doc;
      expect(d.requestObject.data).toEqual({ DB_URL: '[REDACTED]' });
      const hmac = createHmac('sha256', 'k1').update('alice@example.com').digest('hex').slice(0, 12);
      expect(d.user.username).toBe(`hmac-sha256:${hmac}`);
      expect(d.requestObject.metadata.annotations).toEqual({ a: '***', b: '***' });
      expect(d.sourceIPs).toEqual(['10.0.0.7']);
      expect(d.verb).toBe('create');
      expect(await counterValue(ctx.metrics, FIELDS, { rule: 'annotations' })).toBe(2);
      expect(await counterValue(ctx.metrics, FIELDS, { rule: 'never' })).toBe(0);
      // A rotated key file is used at once.
      fs.writeFileSync(keyFile, 'k2-longer\n');
      const [r2] = await redact.process([rawRecord(line)]);
      expect((r2!.doc as Doc).user.username).toBe(`hmac-sha256:${createHmac('sha256', 'k2-longer').update('alice@example.com').digest('hex').slice(0, 12)}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sha256 without a key hashes the JSON of non-string values', async () => {
    const { redact } = makeRedact({ defaults: false, rules: [{ name: 'groups', action: 'mask', mask_with: 'sha256', paths: ['user.groups'] }] });
    const [r] = await redact.process([rawRecord(line)]);
    expect((r!.doc as Doc).user.groups).toBe(`sha256:${createHash('sha256').update('["dev"]').digest('hex').slice(0, 16)}`);
  });

  it('escaped keys', async () => {
    const { redact } = makeRedact({ defaults: false, rules: [{ name: 'cred', paths: ['user.extra["authentication.kubernetes.io/credential-id"]'] }] });
    const [r] = await redact.process([rawRecord(line)]);
    expect((r!.doc as Doc).user.extra).toEqual({});
  });

  it('drops a line it cannot parse when a rule may apply (fail closed), or keeps it with unparsable: keep', async () => {
    const broken = '{"objectRef":{"resource":"secrets"},"responseObject":{"data":{"password":"aHVudGVy"}'; // cut short
    const harmless = '{"verb":"get" cut';
    const closed = makeRedact();
    const out = await closed.redact.process([rawRecord(broken), rawRecord(harmless)]);
    expect(out.map((r) => r.raw)).toEqual([harmless]);
    expect(await counterValue(closed.ctx.metrics, 'ktrail_component_discarded_events_total', { reason: 'unparsable' })).toBe(1);
    const open = makeRedact({ unparsable: 'keep' });
    expect(await open.redact.process([rawRecord(broken)])).toHaveLength(1);
  });
});

describe('redact config validation', () => {
  const load = (processor: string) =>
    loadConfigText(
      `
service: { state_dir: /tmp/none, metrics: { enabled: false } }
inputs: { src: { type: fake } }
processors:
  redact:
    type: redact
${processor}
outputs: { out: { type: stdout } }
`,
      'test.yaml',
      { extraPlugins: [fakeInputPlugin()] },
    );
  const problems = (processor: string): string => {
    try {
      load(processor);
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    throw new Error('config was accepted');
  };

  it('accepts an empty body (defaults only)', () => {
    expect(load('    defaults: true').processors[0]!.plugin.type).toBe('redact');
  });

  it.each([
    [`    rules: [ { name: secret-bodies, paths: [a] } ]`, 'name of a default rule'],
    [`    rules: [ { name: x, paths: [a] }, { name: x, paths: [b] } ]`, 'used twice'],
    [`    rules: [ { name: x, paths: ["a[b"] } ]`, 'processors.redact.rules[0].paths[0]'],
    [`    rules: [ { name: x, paths: [] } ]`, 'paths'],
    [`    rules: [ { name: x, paths: [a], action: hide } ]`, 'action'],
    [`    rules: [ { name: x, paths: [a], hash_chars: 4 } ]`, 'hash_chars'],
    [`    rules: [ { name: x, paths: [a], when: { field: verb, regex: "(" } } ]`, 'invalid regular expression'],
  ])('rejects %s', (yaml, message) => {
    expect(problems(yaml)).toContain(message);
  });
});
