import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { Agent } from '../../src/pipeline/agent.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { auditLine } from '../generators/audit-gen.ts';
import { makeCerts } from '../helpers/certs.ts';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';
import { ktrailVerifyAsync } from './scenario.ts';

/**
 * `ktrail verify` reads an S3 bucket back with the s3 output's own client:
 * behind HTTPS with a private CA it needs the output's `tls.ca_file` (or
 * `insecure_skip_verify`), the endpoint and path-style addressing, exactly as
 * the uploads did. s3rver speaks plain HTTP, so a TLS-terminating proxy with
 * a certificate of the test CA stands in front of it.
 */

const BUCKET = 'audit-tls';
let s3: S3TestServer;
let proxy: https.Server;
let endpoint: string;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-verify-s3-tls-'));
  makeCerts(dir);
  s3 = await startS3Server({ buckets: [BUCKET] });
  const upstream = new URL(s3.endpoint);
  // Headers (Host included) pass unchanged, so the SigV4 signatures still match.
  proxy = https.createServer({ cert: fs.readFileSync(path.join(dir, 'server.pem')), key: fs.readFileSync(path.join(dir, 'server.key')) }, (req, res) => {
    const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  endpoint = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});

afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await s3?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function config(tls: string): string {
  return `
service: { state_dir: ${dir}/state, metrics: { enabled: false } }
manifest: { enabled: true, seal_interval: 1s }
inputs:
  audit: { type: audit_file, paths: ["${dir}/audit/audit.log"], start_at: beginning }
outputs:
  sink: { type: s3, bucket: ${BUCKET}, endpoint: "${endpoint}", force_path_style: true, region: ${s3.region}, access_key_id: ${s3.accessKeyId}, secret_access_key: ${s3.secretAccessKey}, max_object_age: 200ms${tls} }
`;
}

describe('ktrail verify against an s3 output behind TLS', () => {
  it("uses the output's ca_file, endpoint and path-style settings; without the CA it fails on the certificate; insecure_skip_verify is honoured and warned about", async () => {
    fs.mkdirSync(path.join(dir, 'audit'));
    const lines = Array.from({ length: 40 }, (_, i) => auditLine({ auditID: `0000tls0-0000-4000-8000-${String(i).padStart(12, '0')}` }));
    fs.writeFileSync(path.join(dir, 'audit', 'audit.log'), `${lines.join('\n')}\n`);
    const withCa = `, tls: { ca_file: ${dir}/ca.pem }`;
    const agent = new Agent(loadConfigText(config(withCa), 'tls.yaml'), { log: createLogger('silent'), metrics: createMetrics() });
    await agent.start();
    const dataKeys = async () => (await s3.listKeys(BUCKET)).filter((k) => !k.includes('/manifests/'));
    const end = Date.now() + 20_000;
    while ((await dataKeys()).length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    await agent.stop();
    expect((await s3.listKeys(BUCKET)).some((k) => k.includes('/manifests/'))).toBe(true);

    const write = (name: string, tls: string) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, config(tls));
      return f;
    };
    const good = await ktrailVerifyAsync(write('with-ca.yaml', withCa));
    expect(good.stderr).toBe('');
    expect(good.stdout).toContain('40 of 40 record(s) present and unchanged');
    expect(good.stdout).toContain('result: OK');
    expect(good.status).toBe(0);

    // The system CAs do not know the test CA: verify cannot connect, says so, and fails.
    const noCa = await ktrailVerifyAsync(write('no-ca.yaml', ''));
    expect(noCa.status).not.toBe(0);
    expect(`${noCa.stdout}${noCa.stderr}`).toMatch(/certificate|self.signed|UNABLE_TO_VERIFY|issuer/i);

    const insecure = await ktrailVerifyAsync(write('insecure.yaml', ', tls: { insecure_skip_verify: true }'));
    expect(insecure.stdout).toContain('result: OK');
    expect(insecure.status).toBe(0);
    expect(insecure.stderr).toContain('insecure_skip_verify');
  });
});
