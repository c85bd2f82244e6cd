/**
 * The local destination of the end-to-end benchmarks, in its own process so
 * that the CPU and memory measured are the pipeline's alone.
 *
 *   node bench/sink-child.ts ndjson|bulk
 *
 * Prints `{"url": ...}` once listening. It counts the documents it receives
 * (newlines of NDJSON; half of them for `_bulk`, whose action lines come in
 * pairs with the documents) and answers 200 the way the destination would:
 * an empty body for NDJSON, Elasticsearch's item list (`errors: false`, a
 * `201` per item) for `_bulk`. Gzip bodies are gunzipped.
 *
 * Control endpoints (not part of any protocol):
 * - `GET /_bench/count` → `{"docs": n, "requests": n, "bytes": n}` (bytes as received on the wire);
 * - `POST /_bench/stall?on=1|0` → while on, every request is answered 503 (an outage).
 */
import http from 'node:http';
import zlib from 'node:zlib';

const mode = process.argv[2] === 'bulk' ? 'bulk' : 'ndjson';
let docs = 0;
let requests = 0;
let wireBytes = 0;
let stalled = false;

function countLines(body: Buffer): number {
  let n = 0;
  for (let i = body.indexOf(10); i !== -1; i = body.indexOf(10, i + 1)) n++;
  return n;
}

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  if (url.startsWith('/_bench/count')) {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ docs, requests, bytes: wireBytes }));
    return;
  }
  if (url.startsWith('/_bench/stall')) {
    stalled = url.includes('on=1');
    res.writeHead(204).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (stalled) {
      res.writeHead(503, { 'retry-after': '1' }).end('stalled');
      return;
    }
    let body = Buffer.concat(chunks);
    wireBytes += body.length;
    if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
    requests++;
    const lines = countLines(body);
    if (mode === 'ndjson') {
      docs += lines;
      res.writeHead(200).end();
      return;
    }
    const items = Math.floor(lines / 2);
    docs += items;
    const out = `{"took":1,"errors":false,"items":[${Array(items).fill('{"create":{"status":201}}').join(',')}]}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(out);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${a.port}` })}\n`);
});
// The parent ends stdin to stop the sink.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
