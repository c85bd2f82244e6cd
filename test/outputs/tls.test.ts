import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import type { Output } from '../../src/plugin.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { makeRecords, outbound, outputContext, tempDir } from './support/harness.ts';

/** TLS against a real https server requiring client certificates, with certificates made by openssl. */
const cleanups: Array<() => unknown> = [];
let dir: string;
let url: string;
let server: https.Server;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`);
}

function makeCert(name: string, ca: string, ext: string): void {
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
}

beforeAll(async () => {
  dir = tempDir(cleanups);
  makeCa('ca');
  makeCa('rogue-ca');
  makeCert('server', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  makeCert('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  makeCert('rogue', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
  const read = (f: string) => fs.readFileSync(path.join(dir, f));
  server = https.createServer({ key: read('server.key'), cert: read('server.pem'), ca: read('ca.pem'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200);
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function createOutput(tls: string): Promise<Output> {
  const state = tempDir(cleanups);
  const cfg = loadConfigText(`service: { state_dir: ${state} }\ninputs: { gen: { type: fake } }\noutputs:\n  out: { type: http, url: "${url}", tls: ${tls} }`, 't.yaml', {
    extraPlugins: [fakeInputPlugin()],
  });
  const oc = cfg.outputs[0]!;
  const { ctx, spool } = outputContext(state, 'out', 'http');
  const output = oc.plugin.create(oc.config, ctx);
  await output.start?.();
  cleanups.push(() => spool.close());
  cleanups.push(() => output.close?.());
  return output;
}

const send = (o: Output) => o.send(outbound(makeRecords(2)), AbortSignal.timeout(10_000));

describe('tls', () => {
  it('trusts ca_file and presents the client certificate (mutual TLS)', async () => {
    const o = await createOutput(`{ ca_file: ${dir}/ca.pem, cert_file: ${dir}/client.pem, key_file: ${dir}/client.key }`);
    expect(await send(o)).toEqual({ kind: 'ok' });
  });

  it('an untrusted server certificate is a retryable failure', async () => {
    const o = await createOutput(`{ cert_file: ${dir}/client.pem, key_file: ${dir}/client.key }`);
    const r = await send(o);
    expect(r.kind).toBe('retryable');
  });

  it('insecure_skip_verify skips the server check (the client certificate is still required by this server)', async () => {
    const o = await createOutput(`{ insecure_skip_verify: true, cert_file: ${dir}/client.pem, key_file: ${dir}/client.key }`);
    expect(await send(o)).toEqual({ kind: 'ok' });
  });

  it('a rotated client certificate file is used for the next request', async () => {
    const certFile = path.join(dir, 'rotating.pem');
    const keyFile = path.join(dir, 'rotating.key');
    fs.copyFileSync(path.join(dir, 'rogue.pem'), certFile);
    fs.copyFileSync(path.join(dir, 'rogue.key'), keyFile);
    const o = await createOutput(`{ ca_file: ${dir}/ca.pem, cert_file: ${certFile}, key_file: ${keyFile} }`);
    expect((await send(o)).kind).toBe('retryable');
    fs.copyFileSync(path.join(dir, 'client.pem'), certFile);
    fs.copyFileSync(path.join(dir, 'client.key'), keyFile);
    // mtime granularity: make sure the change is visible even within the same millisecond
    const later = new Date(Date.now() + 2000);
    fs.utimesSync(certFile, later, later);
    expect(await send(o)).toEqual({ kind: 'ok' });
  });

  it('an unreadable ca_file fails start with the path in the message', async () => {
    await expect(createOutput(`{ ca_file: ${dir}/missing.pem }`)).rejects.toThrow(/missing\.pem/);
  });
});
