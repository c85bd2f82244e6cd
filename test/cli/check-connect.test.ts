import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuthorization, startEsBulkServer, type EsBulkServer } from '../helpers/es-bulk-server.ts';
import { KubeApiServer } from '../helpers/kube-api-server.ts';
import { writeKubeconfig } from '../helpers/kubeconfig.ts';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';
import { ktrail, tmpDir, writeConfig } from './check-support.ts';

/**
 * `ktrail check --connect` against real servers on 127.0.0.1: for every
 * destination kind the four cases an operator meets first — good, wrong
 * credentials, unreachable (a closed port), bad TLS (a self-signed
 * certificate nobody trusts).
 */

const dirs: string[] = [];
const closers: Array<() => Promise<unknown> | unknown> = [];
let dir: string;
let es: EsBulkServer;
let s3: S3TestServer;
let kube: KubeApiServer;
let ingest: string;
let selfSigned: string;
let closedPort: number;

const ES_PASSWORD = 'es-password-very-secret';
const HTTP_TOKEN = 'http-token-very-secret';
const KUBE_TOKEN = 'kube-token-very-secret';
const WRONG = 'wrong-secret-value';

async function listen(server: http.Server | https.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return (server.address() as net.AddressInfo).port;
}

beforeAll(async () => {
  dir = tmpDir(dirs);
  es = await startEsBulkServer({ authorization: basicAuthorization('elastic', ES_PASSWORD) });
  closers.push(() => es.close());
  s3 = await startS3Server({ buckets: ['audit'] });
  closers.push(() => s3.stop());
  kube = await KubeApiServer.start({ token: KUBE_TOKEN });
  closers.push(() => kube.close());
  // An ingest endpoint that takes only POST with the right bearer token.
  const ingestPort = await listen(
    http.createServer((req, res) => {
      req.resume();
      if (req.headers.authorization !== `Bearer ${HTTP_TOKEN}`) res.writeHead(401).end('bad token');
      else if (req.method !== 'POST') res.writeHead(405).end();
      else res.writeHead(200).end();
    }),
  );
  ingest = `http://127.0.0.1:${ingestPort}/ingest`;
  // Bad TLS: a self-signed certificate that no configured CA vouches for.
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', 'self.key', '-out', 'self.pem'],
    { cwd: dir, stdio: 'ignore' },
  );
  const tlsPort = await listen(
    https.createServer({ key: fs.readFileSync(path.join(dir, 'self.key')), cert: fs.readFileSync(path.join(dir, 'self.pem')) }, (_req, res) => res.writeHead(200).end('{}')),
  );
  selfSigned = `https://127.0.0.1:${tlsPort}`;
  // A port nobody listens on: bound once, then closed.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  closedPort = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
}, 60_000);

afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const s3Output = (name: string, endpoint: string, secret: string) =>
  `  ${name}:\n    type: s3\n    bucket: audit\n    endpoint: ${endpoint}\n    force_path_style: true\n    region: us-east-1\n    access_key_id: S3RVER\n    secret_access_key: "${secret}"`;

/** The line `check --connect` printed for one component. */
function line(stdout: string, where: string): string {
  const found = stdout.split('\n').find((l) => l.trimStart().startsWith(`${where} (`));
  if (found === undefined) throw new Error(`no line for ${where} in:\n${stdout}`);
  return found;
}

describe('ktrail check --connect', () => {
  it('good, wrong credentials, unreachable and bad TLS, for Elasticsearch, S3, HTTP and the Kubernetes API; one line each, exit 1', async () => {
    const d = tmpDir(dirs);
    const goodKube = writeKubeconfig(fs.mkdtempSync(path.join(d, 'k1-')), kube.url, { token: KUBE_TOKEN });
    const badKube = writeKubeconfig(fs.mkdtempSync(path.join(d, 'k2-')), kube.url, { token: WRONG });
    const file = writeConfig(d, {
      inputs: `  events:\n    type: k8s_events\n    kubeconfig: ${goodKube}\n    leader_election: { enabled: false }\n  events_bad:\n    type: k8s_events\n    kubeconfig: ${badKube}\n    leader_election: { enabled: false }`,
      processors: `  meta:\n    type: k8s_metadata\n    kubeconfig: ${goodKube}`,
      outputs: [
        `  es_good:\n    type: elasticsearch\n    url: ${es.url}\n    auth: { username: elastic, password: "${ES_PASSWORD}" }`,
        `  es_creds:\n    type: elasticsearch\n    url: ${es.url}\n    auth: { username: elastic, password: "${WRONG}" }`,
        `  es_down:\n    type: elasticsearch\n    url: http://127.0.0.1:${closedPort}`,
        `  es_tls:\n    type: elasticsearch\n    url: ${selfSigned}\n    auth: { username: elastic, password: "${ES_PASSWORD}" }`,
        s3Output('s3_good', s3.proxyEndpoint, 'S3RVER'),
        s3Output('s3_creds', s3.proxyEndpoint, WRONG),
        s3Output('s3_down', `http://127.0.0.1:${closedPort}`, 'S3RVER'),
        s3Output('s3_tls', selfSigned, 'S3RVER'),
        `  http_good:\n    type: http\n    url: ${ingest}\n    auth: { bearer_token: "${HTTP_TOKEN}" }`,
        `  http_creds:\n    type: http\n    url: ${ingest}\n    auth: { bearer_token: "${WRONG}" }`,
        `  http_down:\n    type: http\n    url: http://127.0.0.1:${closedPort}/ingest`,
        `  http_tls:\n    type: http\n    url: ${selfSigned}/ingest`,
        `  local:\n    type: file\n    path: ${d}/out/audit.ndjson`,
        '  console:\n    type: stdout',
      ].join('\n'),
    });
    fs.writeFileSync(path.join(d, 'logs', 'audit.log'), '');
    const r = await ktrail(['check', '-c', file, '--connect']);
    expect(r.status).toBe(1);
    const out = r.stdout;

    expect(line(out, 'outputs.es_good')).toMatch(/: ok GET http:\/\/127\.0\.0\.1:\d+\/_cluster\/health — reachable, plain HTTP \(no TLS\), credentials accepted \(cluster status green\)$/);
    expect(line(out, 'outputs.es_creds')).toMatch(/: FAILED GET .* — reachable, plain HTTP \(no TLS\), credentials rejected \(HTTP 401/);
    expect(line(out, 'outputs.es_down')).toMatch(/: FAILED GET .* — unreachable: .*ECONNREFUSED/);
    expect(line(out, 'outputs.es_tls')).toMatch(/: FAILED GET https:.* — reachable, TLS NOT valid: self[- ]signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\); trust the server's CA with tls.ca_file$/);

    expect(line(out, 'outputs.s3_good')).toMatch(/: ok HeadBucket http:\/\/127\.0\.0\.1:\d+\/audit — reachable, plain HTTP \(no TLS\), credentials accepted \(bucket audit exists/);
    expect(line(out, 'outputs.s3_creds')).toMatch(/: FAILED HeadBucket .* — reachable, plain HTTP \(no TLS\), credentials rejected or not allowed to use the bucket \(HTTP 403/);
    expect(line(out, 'outputs.s3_down')).toMatch(/: FAILED HeadBucket .* — unreachable: .*ECONNREFUSED/);
    expect(line(out, 'outputs.s3_tls')).toMatch(/: FAILED HeadBucket https:.* — reachable, TLS NOT valid: .*\(DEPTH_ZERO_SELF_SIGNED_CERT\)/);

    expect(line(out, 'outputs.http_good')).toMatch(/: ok HEAD http:\/\/127\.0\.0\.1:\d+\/ingest — reachable, plain HTTP \(no TLS\), credentials accepted \(HEAD answered HTTP 405/);
    expect(line(out, 'outputs.http_creds')).toMatch(/: FAILED HEAD .* — reachable, plain HTTP \(no TLS\), credentials rejected \(HTTP 401/);
    expect(line(out, 'outputs.http_down')).toMatch(/: FAILED HEAD .* — unreachable: .*ECONNREFUSED/);
    expect(line(out, 'outputs.http_tls')).toMatch(/: FAILED HEAD https:.* — reachable, TLS NOT valid: .*\(DEPTH_ZERO_SELF_SIGNED_CERT\)/);

    expect(line(out, 'inputs.events')).toMatch(/: ok GET http:\/\/127\.0\.0\.1:\d+\/api\/v1\/events\?limit=1 — reachable, plain HTTP \(no TLS\), credentials accepted/);
    expect(line(out, 'inputs.events_bad')).toMatch(/: FAILED GET .*\/api\/v1\/events\?limit=1 — reachable, plain HTTP \(no TLS\), credentials rejected \(HTTP 401/);
    expect(line(out, 'processors.meta')).toMatch(/: ok GET .*\/api\/v1\/pods\?limit=1 — reachable, plain HTTP \(no TLS\), credentials accepted/);

    expect(line(out, 'outputs.local')).toContain(`: ok ${d}/out/audit.ndjson — a local file, no connection needed; writable`);
    expect(line(out, 'outputs.console')).toContain(': ok standard output — no connection needed');
    expect(out).toContain('10 connection checks failed');
    // No line, and nothing else printed, carries a secret.
    for (const secret of [ES_PASSWORD, HTTP_TOKEN, KUBE_TOKEN, WRONG]) {
      expect(r.stdout).not.toContain(secret);
      expect(r.stderr).not.toContain(secret);
    }
  }, 60_000);

  it('all destinations reachable with valid credentials: exit 0; a configured HTTP probe must answer 2xx', async () => {
    const d = tmpDir(dirs);
    const file = writeConfig(d, {
      outputs: [
        `  es:\n    type: elasticsearch\n    url: ${es.url}\n    auth: { username: elastic, password: "${ES_PASSWORD}" }`,
        `  http:\n    type: http\n    url: ${ingest}\n    auth: { bearer_token: "${HTTP_TOKEN}" }`,
      ].join('\n'),
    });
    fs.writeFileSync(path.join(d, 'logs', 'audit.log'), '');
    const good = await ktrail(['check', '-c', file, '--connect']);
    expect(good.stderr).toBe('');
    expect(good.status).toBe(0);
    expect(line(good.stdout, 'outputs.es')).toContain(': ok ');
    expect(line(good.stdout, 'outputs.http')).toContain(': ok ');

    // The ingest endpoint answers GET with 405: as an explicit health probe that is a failure.
    fs.appendFileSync(file, `    probe: { url: "${ingest}", method: GET }\n`);
    const probed = await ktrail(['check', '-c', file, '--connect']);
    expect(probed.status).toBe(1);
    expect(line(probed.stdout, 'outputs.http')).toMatch(/: FAILED GET http:.*\/ingest — reachable, plain HTTP \(no TLS\), but GET answered HTTP 405$/);
  }, 60_000);
});
