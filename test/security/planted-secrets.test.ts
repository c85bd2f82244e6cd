import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLine } from '../helpers/audit-events.ts';
import { basicAuthorization, startEsBulkServer, type EsBulkServer } from '../helpers/es-bulk-server.ts';
import { FakeOtlpReceiver } from '../helpers/otlp-server.ts';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';
import { waitFor } from '../inputs/audit-file/harness.ts';

/**
 * The security rule end to end: unique secrets are planted everywhere a
 * user could put one (config, env, a token file, audit lines whole, torn,
 * oversize, binary and pass_raw, a record an output refuses), the agent runs
 * with every output, and no byte ktrail wrote or printed may contain any of
 * them: not the outputs, not the state directory, not the logs, not `check`
 * or `status`.
 */

const REPO = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(REPO, 'bin/ktrail.js');
const tag = (what: string) => `KTRAILSECRET${what}${Math.random().toString(36).slice(2, 10)}`;
const S = {
  urlPass: tag('urlpass'),
  query: tag('query'),
  header: tag('header'),
  otlpHeader: tag('otlpheader'),
  tokenFile: tag('tokenfile'),
  env: tag('env'),
  whole: tag('whole'),
  torn: tag('torn'),
  oversize: tag('oversize'),
  binary: tag('binary'),
  passRaw: tag('passraw'),
  refused: tag('refused'),
};

const secretRef = { resource: 'secrets', namespace: 'default', name: 'registry', apiVersion: 'v1' };
const secretGet = (auditID: string, value: string, pad = 0) =>
  auditLine({
    auditID,
    level: 'RequestResponse',
    verb: 'get',
    objectRef: secretRef,
    responseObject: { kind: 'Secret', apiVersion: 'v1', metadata: { name: 'registry', namespace: 'default' }, data: { password: value, pad: 'x'.repeat(pad) } },
    requestReceivedTimestamp: new Date('2026-12-01T10:00:00Z'),
  });
const plain = (i: number) => auditLine({ auditID: `plain-${i}`, objectRef: { resource: 'pods', namespace: 'default', name: `web-${i}`, apiVersion: 'v1' }, requestReceivedTimestamp: new Date('2026-12-01T10:00:00Z') });

let root: string;
let es: EsBulkServer;
let s3: S3TestServer;
let otlp: FakeOtlpReceiver;
let httpBodies: Buffer[] = [];
let httpServer: http.Server;
let checkOut = '';
let statusOut = '';
let agentStdout = '';
let agentStderr = '';

function grepAll(haystacks: Array<[string, Buffer | string]>): string[] {
  const found: string[] = [];
  for (const [where, hay] of haystacks) {
    const text = typeof hay === 'string' ? hay : hay.toString('latin1');
    for (const [name, secret] of Object.entries(S)) if (text.includes(secret)) found.push(`${name} in ${where}`);
  }
  return found;
}

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-secrets-'));
  const audit = path.join(root, 'audit');
  const raw = path.join(root, 'raw');
  fs.mkdirSync(audit);
  fs.mkdirSync(raw);
  es = await startEsBulkServer({ authorization: basicAuthorization('elastic', S.env) });
  es.failItems({ match: (item) => (item.source as { auditID?: string } | undefined)?.auditID === 'refused-1', status: 400, type: 'mapper_parsing_exception', reason: 'failed to parse field [responseObject]' });
  s3 = await startS3Server({ buckets: ['audit'] });
  otlp = await new FakeOtlpReceiver().start();
  otlp.requireHeader = ['x-api-key', S.otlpHeader];
  httpServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      httpBodies.push(req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body);
      res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const httpPort = (httpServer.address() as AddressInfo).port;
  const tokenFile = path.join(root, 'token');
  fs.writeFileSync(tokenFile, `${S.tokenFile}\n`);

  // The audit lines: whole, torn after the data, oversize, binary, refused by Elasticsearch.
  const torn = secretGet('torn-1', S.torn);
  const lines = [
    plain(1),
    secretGet('whole-1', S.whole),
    torn.slice(0, torn.indexOf(S.torn) + S.torn.length + 3),
    secretGet('oversize-1', S.oversize, 80 * 1024),
    plain(2),
    secretGet('refused-1', S.refused),
    plain(3),
  ];
  const binary = Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0x01]), Buffer.from(`"objectRef":{"resource":"secrets"},"responseObject":{"data":{"p":"${S.binary}"}}`), Buffer.from([0x80, 0x0a])]);
  fs.writeFileSync(path.join(audit, 'audit.log'), Buffer.concat([Buffer.from(lines.join('\n') + '\n'), binary, Buffer.from(`${plain(4)}\n`)]));
  const rawTorn = secretGet('passraw-1', S.passRaw);
  fs.writeFileSync(path.join(raw, 'raw.log'), `${rawTorn.slice(0, rawTorn.indexOf(S.passRaw) + S.passRaw.length)}\nnot json at all\n${plain(5)}\n`);

  const config = path.join(root, 'ktrail.yaml');
  fs.writeFileSync(
    config,
    `service:
  state_dir: ${root}/state
  log_level: debug
  shutdown_timeout: 5s
  metrics: { enabled: false }
inputs:
  audit:
    type: audit_file
    paths: [${audit}/audit*.log*]
    start_at: beginning
    max_line_bytes: 64KiB
    oversize_sample_bytes: 32KiB
  raw:
    type: audit_file
    paths: [${raw}/raw*.log]
    start_at: beginning
    on_parse_error: pass_raw
processors:
  secrets:
    type: redact
outputs:
  file:
    type: file
    path: ${root}/out/audit.ndjson
  stdout:
    type: stdout
  http:
    type: http
    url: http://collector:${S.urlPass}@127.0.0.1:${httpPort}/ingest?token=${S.query}&tenant=a
    headers:
      X-Api-Key: ${S.header}
    auth:
      bearer_token: { file: ${tokenFile} }
  es:
    type: elasticsearch
    url: http://127.0.0.1:${es.port}
    auth:
      username: elastic
      password: \${KTRAIL_TEST_ES_PASSWORD}
  s3:
    type: s3
    bucket: audit
    endpoint: ${s3.proxyEndpoint}
    force_path_style: true
    region: ${s3.region}
    access_key_id: ${s3.accessKeyId}
    secret_access_key: ${s3.secretAccessKey}
    max_object_age: 500ms
  otel:
    type: otlp_http
    endpoint: ${otlp.url}
    headers:
      X-Api-Key: ${S.otlpHeader}
`,
  );
  const env = { ...process.env, KTRAIL_TEST_ES_PASSWORD: S.env };
  const check = spawnSync(process.execPath, [BIN, 'check', '-c', config], { encoding: 'utf8', env, timeout: 30_000 });
  checkOut = check.stdout + check.stderr;
  expect(check.status, checkOut).toBe(0);

  const child = spawn(process.execPath, [BIN, 'run', '-c', config], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.setEncoding('latin1').on('data', (d: string) => (agentStdout += d));
  child.stderr.setEncoding('latin1').on('data', (d: string) => (agentStderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const fileOut = path.join(root, 'out/audit.ndjson');
  // 7 records: plain 1-5, whole (redacted), refused (redacted) plus the pass_raw line that holds nothing.
  const delivered = () => (fs.existsSync(fileOut) ? fs.readFileSync(fileOut, 'utf8').split('\n').filter(Boolean).length : 0);
  await waitFor(() => delivered() >= 8, 20_000, 'records at the file output');
  await waitFor(() => es.allDocs().length >= 7, 20_000, 'records at Elasticsearch');
  await waitFor(async () => (await s3.listKeys('audit')).length > 0, 20_000, 'an object at S3');
  await waitFor(() => httpBodies.length > 0, 20_000, 'a request at the HTTP collector');
  await waitFor(() => otlp.logs.length >= 8, 20_000, 'records at the OTLP receiver');
  await waitFor(() => agentStderr.includes('records dead-lettered by output'), 20_000, 'the refused record dead-lettered');
  child.kill('SIGTERM');
  expect(await exited).toBe(0);

  const status = spawnSync(process.execPath, [BIN, 'status', '-c', config, '--verbose'], { encoding: 'utf8', env, timeout: 30_000 });
  const statusJson = spawnSync(process.execPath, [BIN, 'status', '-c', config, '--json', '--verbose'], { encoding: 'utf8', env, timeout: 30_000 });
  statusOut = status.stdout + status.stderr + statusJson.stdout + statusJson.stderr;
  expect(status.status, statusOut).toBe(0);
}, 120_000);

afterAll(async () => {
  await es?.close();
  await s3?.stop();
  await otlp?.close();
  await new Promise((resolve) => httpServer?.close(resolve));
  fs.rmSync(root, { recursive: true, force: true });
});

describe('planted secrets never leave ktrail unredacted', () => {
  it('the run did what the test relies on: every output got records, the refused and unparsable ones are accounted for', () => {
    const fileRecords = fs.readFileSync(path.join(root, 'out/audit.ndjson'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const ids = fileRecords.map((r) => r.auditID ?? (r.message as string)).sort();
    expect(ids).toEqual(['not json at all', 'plain-1', 'plain-2', 'plain-3', 'plain-4', 'plain-5', 'refused-1', 'whole-1']);
    expect(statusOut).toMatch(/audit: \d+ × parse_error \(\d+ withheld: metadata only\)/);
    expect(statusOut).toMatch(/audit: 1 × oversize \(1 withheld: metadata only\)/);
    expect(statusOut).toMatch(/es: 1 × mapper_parsing_exception/);
    expect(checkOut).toContain('valid');
  });

  it('no output, state file, log line, check or status printout holds any planted secret', async () => {
    const haystacks: Array<[string, Buffer | string]> = [];
    for (const f of filesUnder(path.join(root, 'out'))) haystacks.push([f, fs.readFileSync(f)]);
    for (const f of filesUnder(path.join(root, 'state'))) haystacks.push([f, fs.readFileSync(f)]);
    haystacks.push(['elasticsearch documents', JSON.stringify(es.allDocs())]);
    for (const key of await s3.listKeys('audit')) haystacks.push([`s3 ${key}`, await s3.getObjectGunzipped('audit', key)]);
    httpBodies.forEach((b, i) => haystacks.push([`http request ${i}`, b]));
    // Bodies and attributes as the receiver decoded them.
    haystacks.push(['otlp log records', JSON.stringify(otlp.logs)]);
    haystacks.push(['agent stdout (stdout output)', agentStdout], ['agent logs', agentStderr], ['ktrail check', checkOut], ['ktrail status', statusOut]);
    expect(grepAll(haystacks)).toEqual([]);
    // Not vacuous: the searched places hold what they should.
    expect(agentStderr).toContain('dead-lettered as metadata only');
    expect(checkOut).toContain('127.0.0.1');
    expect(agentStdout).toContain('plain-1');
  });
});
