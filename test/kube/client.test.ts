import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Secret } from '../../src/config/secret.ts';
import { KubeApiError, KubeClient, type WatchChunk } from '../../src/kube/client.ts';
import type { KubeConnection } from '../../src/kube/config.ts';
import { KubeApiServer } from '../helpers/kube-api-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(token = 't1') {
  const kube = await KubeApiServer.start({ token, bookmarkIntervalMs: 100 });
  cleanups.push(() => kube.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-kube-client-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, token);
  const conn: KubeConnection = {
    server: kube.url,
    tls: {},
    auth: { kind: 'token-file', file: new Secret({ file: tokenFile }) },
    namespace: undefined,
    source: 'kubeconfig',
    origin: 'test',
  };
  const client = new KubeClient(conn, { requestTimeoutMs: 5000 });
  cleanups.push(() => client.close());
  return { kube, client, tokenFile };
}

function event(kube: KubeApiServer, name: string) {
  return kube.addEvent({ namespace: 'default', name, reason: 'Test', message: name, involvedObject: { kind: 'Pod', name } });
}

describe('KubeClient', () => {
  it('GETs JSON and turns a Status answer into a KubeApiError with code and reason', async () => {
    const { kube, client } = await setup();
    event(kube, 'e1');
    const list = await client.request<{ items: unknown[]; metadata: { resourceVersion: string } }>({ path: '/api/v1/events', query: { limit: 10, continue: undefined } });
    expect(list.items).toHaveLength(1);
    expect(list.metadata.resourceVersion).toBe(kube.resourceVersion);
    const err = await client.request({ path: '/api/v1/namespaces/default/events/nope' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect(err).toMatchObject({ statusCode: 404, reason: 'NotFound' });
    kube.failNext(1, 429, { retryAfterSeconds: 3 });
    const throttled = await client.request({ path: '/api/v1/events' }).catch((e: unknown) => e);
    expect(throttled).toMatchObject({ statusCode: 429, retryAfterMs: 3000 });
  });

  it('a 401 re-reads the token file once and retries; a token still refused is a 401 error after two tries', async () => {
    const { kube, client, tokenFile } = await setup();
    await client.request({ path: '/api/v1/events' });
    // Rotated on disk without changing mtime or size: only the 401 makes the client read it again.
    const st = fs.statSync(tokenFile);
    fs.writeFileSync(tokenFile, 't2');
    fs.utimesSync(tokenFile, st.atimeMs / 1000, st.mtimeMs / 1000);
    kube.setToken('t2');
    kube.requests.length = 0;
    await client.request({ path: '/api/v1/events' });
    expect(kube.requests.map((r) => r.status)).toEqual([401, 200]);
    kube.setToken('t3');
    kube.requests.length = 0;
    const err = await client.request({ path: '/api/v1/events' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 401 });
    expect(kube.requests.map((r) => r.status)).toEqual([401, 401]);
  });

  it('streams a watch chunk by chunk, in order', async () => {
    const { kube, client } = await setup();
    const rv = kube.resourceVersion;
    const abort = new AbortController();
    const stream = client.watch({ path: '/api/v1/events', query: { watch: 1, resourceVersion: rv }, signal: abort.signal, maxLifeMs: 30_000 });
    const first = stream.next();
    await kube.waitForWatches(1);
    event(kube, 'a');
    const chunk = (await first).value as WatchChunk;
    expect(chunk.events[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'a' } } });
    for (let i = 0; i < 500; i++) event(kube, `b${i}`);
    const names: string[] = [];
    while (names.length < 500) {
      const next = await stream.next();
      if (next.done) break;
      for (const e of (next.value as WatchChunk).events) names.push(String((e.object.metadata as { name: string }).name));
    }
    expect(names).toEqual(Array.from({ length: 500 }, (_, i) => `b${i}`));
    await stream.return(undefined);
    abort.abort();
    await new Promise((r) => setTimeout(r, 50));
    expect(kube.activeWatchCount).toBe(0);
  });

  it('backpressure: while the consumer waits nothing more is read, so the server holds the rest', async () => {
    // A raw server that writes a 32 MiB watch body only as fast as the socket takes it.
    const line = `${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'x', resourceVersion: '1', uid: 'u' }, pad: 'p'.repeat(1000) } })}\n`;
    const totalBytes = 32 * 1024 * 1024;
    let accepted = 0;
    const server = http.createServer(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      while (accepted < totalBytes && !res.destroyed) {
        accepted += line.length;
        if (!res.write(line)) await new Promise((r) => res.once('drain', r).once('close', r));
      }
      res.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
    const port = (server.address() as { port: number }).port;
    const client = new KubeClient({ server: `http://127.0.0.1:${port}`, tls: {}, auth: { kind: 'none' }, namespace: undefined, source: 'kubeconfig', origin: 'test' });
    cleanups.push(() => client.close());
    const stream = client.watch({ path: '/api/v1/events', query: { watch: 1 }, maxLifeMs: 30_000 });
    const firstChunk = await stream.next();
    await new Promise((r) => setTimeout(r, 500));
    const whilePaused = accepted;
    await new Promise((r) => setTimeout(r, 300));
    // Only socket buffers' worth went out, and nothing more while paused.
    expect(accepted).toBe(whilePaused);
    expect(whilePaused).toBeLessThan(totalBytes / 2);
    let events = (firstChunk.value as WatchChunk).events.length;
    for await (const chunk of stream) events += chunk.events.length;
    expect(events).toBe(Math.ceil(totalBytes / line.length));
  });
});
