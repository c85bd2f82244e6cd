import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { auditId, childAgentsKilledAfterEach, fetchMetrics, metricValue, readSink, waitFor } from '../audit-file/harness.ts';
import { deadLetters, event, eventList, post, postHalf, sendLikeApiserver, setup, startAgent } from './support.ts';

/** audit_webhook against a real agent process, over HTTPS with certificates made by openssl. */
const agents = childAgentsKilledAfterEach();

function sinkIds(outFile: string): Set<string> {
  return new Set(readSink(outFile).map((r) => r.id));
}

async function metrics(a: { metricsUrl(): Promise<string> }): Promise<string> {
  return fetchMetrics(await a.metricsUrl());
}

describe('audit_webhook', () => {
  it('loses no event the client did not drop while the agent is SIGKILLed 5 times (100k events, mTLS)', async () => {
    const env = setup();
    let agent = await startAgent(env);
    agents.push(agent);
    const total = 100_000;
    const perBatch = 400;
    const batches: number[][] = [];
    for (let s = 0; s < total; s += perBatch) batches.push(Array.from({ length: perBatch }, (_, i) => s + i));
    const dropped = new Set<number>();
    let next = 0;
    let sent = 0;
    // Each restart binds a new port: the client follows it, as the apiserver follows the Service.
    const client = { get port() { return env.port; }, dir: env.dir };
    const worker = async () => {
      while (next < batches.length) {
        const b = batches[next++]!;
        const r = await sendLikeApiserver(client, eventList(b.map((seq) => event(seq))), 150);
        if (r === 'dropped') for (const seq of b) dropped.add(seq);
        sent++;
      }
    };
    const workers = Promise.all(Array.from({ length: 4 }, () => worker()));
    for (let k = 0; k < 5; k++) {
      const at = Math.floor(((k + 1) * batches.length) / 7);
      await waitFor(() => sent >= at, 60_000, `batch ${at}`);
      agent.kill('SIGKILL');
      await agent.exited;
      await new Promise((r) => setTimeout(r, 200));
      agent = await startAgent(env);
      agents.push(agent);
    }
    await workers;
    const want = total - dropped.size;
    await waitFor(() => sinkIds(env.outFile).size >= want, 30_000, `${want} events at the sink`);
    const ids = sinkIds(env.outFile);
    const missing: number[] = [];
    for (let seq = 0; seq < total; seq++) if (!dropped.has(seq) && !ids.has(`${auditId(seq)}:ResponseComplete`)) missing.push(seq);
    expect(missing).toEqual([]);
    // Duplicates only as the same ids; every record is a full event.
    for (const r of readSink(env.outFile).slice(0, 10)) expect(r.doc.kind).toBe('Event');
  }, 90_000);

  it('stores the same record JSON and id as audit_file would (the event as the apiserver writes it)', async () => {
    const env = setup();
    const a = await startAgent(env);
    agents.push(a);
    const e = event(7);
    const r = await post({ port: env.port, dir: env.dir }, eventList([e]));
    expect(r.status).toBe(200);
    await waitFor(() => readSink(env.outFile).length === 1, 10_000, 'the record');
    const rec = readSink(env.outFile)[0]!;
    expect(rec.id).toBe(`${auditId(7)}:ResponseComplete`);
    expect(rec.doc).toEqual(e);
  }, 30_000);

  it('dead-letters a non-JSON body and a non-EventList body whole, answering 2xx', async () => {
    const env = setup();
    const a = await startAgent(env);
    agents.push(a);
    const c = { port: env.port, dir: env.dir };
    expect((await post(c, 'this is {not json')).status).toBe(200);
    expect((await post(c, JSON.stringify({ kind: 'Status', items: 3 }))).status).toBe(200);
    expect((await post(c, eventList([event(1)]))).status).toBe(200);
    await waitFor(() => readSink(env.outFile).length === 1, 10_000, 'the good record');
    const dl = deadLetters(env.stateDir);
    expect(dl.map((d) => d.code).sort()).toEqual(['not_event_list', 'not_json']);
    expect(dl.find((d) => d.code === 'not_json')!.data!.toString()).toBe('this is {not json');
    expect(dl.find((d) => d.code === 'not_event_list')!.data!.toString()).toBe(JSON.stringify({ kind: 'Status', items: 3 }));
    const m = await metrics(a);
    expect(metricValue(m, 'ktrail_audit_webhook_bad_requests_total', { reason: 'not_json' })).toBe(1);
    expect(metricValue(m, 'ktrail_audit_webhook_bad_requests_total', { reason: 'not_event_list' })).toBe(1);
  }, 30_000);

  it('dead-letters an event without auditID and accepts the rest', async () => {
    const env = setup();
    const a = await startAgent(env);
    agents.push(a);
    const bad = event(2);
    delete bad.auditID;
    const r = await post({ port: env.port, dir: env.dir }, eventList([event(1), bad, event(3)]));
    expect(r.status).toBe(200);
    await waitFor(() => readSink(env.outFile).length === 2, 10_000, 'the good records');
    expect(sinkIds(env.outFile)).toEqual(new Set([`${auditId(1)}:ResponseComplete`, `${auditId(3)}:ResponseComplete`]));
    const dl = deadLetters(env.stateDir);
    expect(dl).toHaveLength(1);
    expect(dl[0]!.code).toBe('invalid_event');
    expect(dl[0]!.reason).toContain('no auditID');
    expect(JSON.parse(dl[0]!.data!.toString())).toEqual(bad);
  }, 30_000);

  it('answers 413 to a body over max_body_bytes, counts it at risk, and keeps taking other bodies', async () => {
    const env = setup({ max_body_bytes: '1MiB' });
    const a = await startAgent(env);
    agents.push(a);
    const c = { port: env.port, dir: env.dir };
    const big = eventList(Array.from({ length: 20 }, (_, i) => event(100 + i, 64 * 1024)));
    expect((await post(c, big)).status).toBe(413);
    expect((await post(c, eventList([event(1)]))).status).toBe(200);
    await waitFor(() => readSink(env.outFile).length === 1, 10_000, 'the small record');
    const m = await metrics(a);
    expect(metricValue(m, 'ktrail_audit_webhook_requests_total', { code: '413' })).toBe(1);
    expect(metricValue(m, 'ktrail_audit_webhook_batches_at_risk_total', { reason: 'oversize' })).toBe(1);
    expect(a.stderr).toContain('body over max_body_bytes refused');
    expect(deadLetters(env.stateDir)).toHaveLength(0);
  }, 30_000);

  it('default max_body_bytes takes 400 RequestResponse events of 100KiB', async () => {
    const env = setup();
    const a = await startAgent(env);
    agents.push(a);
    const body = eventList(Array.from({ length: 400 }, (_, i) => event(i, 100 * 1024)));
    expect(body.length).toBeGreaterThan(40_000_000);
    expect((await post({ port: env.port, dir: env.dir }, body)).status).toBe(200);
    await waitFor(() => sinkIds(env.outFile).size === 400, 20_000, '400 records');
  }, 40_000);

  it('answers 403 without a client certificate or with one from another CA, and 401 with a wrong bearer token; counted', async () => {
    const env = setup();
    const tokenFile = path.join(env.dir, 'token');
    fs.writeFileSync(tokenFile, 's3cr3t-t0ken\n');
    const cfg = fs.readFileSync(env.cfgFile, 'utf8').replace('"type":"audit_webhook"', `"type":"audit_webhook","bearer_token_file":${JSON.stringify(tokenFile)}`);
    fs.writeFileSync(env.cfgFile, cfg);
    const a = await startAgent(env);
    agents.push(a);
    const body = eventList([event(1)]);
    expect((await post({ port: env.port, dir: env.dir, cert: null, token: 's3cr3t-t0ken' }, body)).status).toBe(403);
    expect((await post({ port: env.port, dir: env.dir, cert: 'stranger', token: 's3cr3t-t0ken' }, body)).status).toBe(403);
    expect((await post({ port: env.port, dir: env.dir, token: 'wrong' }, body)).status).toBe(401);
    expect((await post({ port: env.port, dir: env.dir }, body)).status).toBe(401);
    expect(readSink(env.outFile)).toHaveLength(0);
    expect((await post({ port: env.port, dir: env.dir, token: 's3cr3t-t0ken' }, body)).status).toBe(200);
    await waitFor(() => readSink(env.outFile).length === 1, 10_000, 'the record');
    const m = await metrics(a);
    expect(metricValue(m, 'ktrail_audit_webhook_requests_total', { code: '403' })).toBe(2);
    expect(metricValue(m, 'ktrail_audit_webhook_requests_total', { code: '401' })).toBe(2);
    expect(a.stderr).not.toContain('s3cr3t-t0ken');
  }, 30_000);

  it('serves a rotated certificate without a restart', async () => {
    const env = setup();
    const a = await startAgent(env);
    agents.push(a);
    const peerSerial = () =>
      new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: env.port, ca: fs.readFileSync(path.join(env.dir, 'ca.pem')), cert: fs.readFileSync(path.join(env.dir, 'apiserver.pem')), key: fs.readFileSync(path.join(env.dir, 'apiserver.key')) }, () => {
            const serial = s.getPeerCertificate().serialNumber;
            s.end();
            resolve(serial);
          });
          s.on('error', reject);
      });
    const before = await peerSerial();
    fs.copyFileSync(path.join(env.dir, 'server2.key'), path.join(env.dir, 'server.key'));
    fs.copyFileSync(path.join(env.dir, 'server2.pem'), path.join(env.dir, 'server.pem'));
    await waitFor(() => a.stderr.includes('serving certificate / client CA reloaded'), 10_000, 'reload');
    const after = await peerSerial();
    expect(after).not.toBe(before);
    expect((await post({ port: env.port, dir: env.dir }, eventList([event(1)]))).status).toBe(200);
  }, 30_000);

  it('a client CA change closes kept-alive connections, so the next request is judged by the new CA', async () => {
    const env = setup();
    const a = await startAgent(env);
    agents.push(a);
    const serverCa = fs.readFileSync(path.join(env.dir, 'ca.pem'));
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const send = (seq: number) =>
      new Promise<{ status: number; socket: net.Socket }>((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port: env.port,
            method: 'POST',
            path: '/audit?timeout=30s',
            ca: serverCa,
            cert: fs.readFileSync(path.join(env.dir, 'apiserver.pem')),
            key: fs.readFileSync(path.join(env.dir, 'apiserver.key')),
            agent: keepAlive,
            headers: { 'content-type': 'application/json' },
          },
          (res) => {
            const socket = res.socket as net.Socket;
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, socket }));
          },
        );
        req.on('error', reject);
        req.end(eventList([event(seq)]));
      });
    try {
      const first = await send(1);
      expect(first.status).toBe(200);
      const closed = new Promise<boolean>((resolve) => {
        first.socket.once('close', () => resolve(true));
        setTimeout(() => resolve(false), 8000).unref();
      });
      // The apiserver's client certificate is no longer trusted.
      fs.copyFileSync(path.join(env.dir, 'other-ca.pem'), path.join(env.dir, 'ca.pem'));
      await waitFor(() => a.stderr.includes('serving certificate / client CA reloaded'), 10_000, 'reload');
      expect(await closed).toBe(true);
      expect((await send(2)).status).toBe(403);
    } finally {
      keepAlive.destroy();
    }
  }, 30_000);

  it('drains on SIGTERM: new connections are refused, the request in flight is answered 200 after its commit, exit 0', async () => {
    const env = setup();
    const a = await startAgent(env);
    agents.push(a);
    const metricsUrl = await a.metricsUrl();
    const seqs = Array.from({ length: 50 }, (_, i) => i);
    const body = eventList(seqs.map((s) => event(s)));
    // Headers and half the body now, the rest after SIGTERM: the request is in flight across the stop.
    const held = postHalf({ port: env.port, dir: env.dir }, body);
    await waitFor(async () => metricValue(await fetchMetrics(metricsUrl), 'ktrail_audit_webhook_in_flight_requests') === 1, 10_000, 'the request in flight');
    a.kill('SIGTERM');
    const refused = () =>
      new Promise<boolean>((resolve) => {
        const s = net.connect(env.port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(false);
        });
        s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
      });
    await waitFor(refused, 10_000, 'the listener to close');
    expect(a.child.exitCode).toBeNull();
    held.finish();
    expect(await held.answer).toBe(200);
    expect(await a.exited).toBe(0);
    // Committed before the answer, and delivered by the outputs' drain before the exit.
    expect(sinkIds(env.outFile)).toEqual(new Set(seqs.map((s) => `${auditId(s)}:ResponseComplete`)));
  }, 30_000);

  it('refuses a TLS config without cert files at validation, naming the keys', async () => {
    const { loadConfigText } = await import('../../../src/config/load.ts');
    const base = 'service: { state_dir: /tmp/x }\noutputs:\n  o: { type: stdout }\ninputs:\n  hook: ';
    expect(() => loadConfigText(`${base}{ type: audit_webhook, tls: { client_ca_file: /x } }`, 't')).toThrow(/cert_file[\s\S]*key_file/);
  });
});
