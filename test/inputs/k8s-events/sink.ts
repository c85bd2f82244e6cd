import { once } from 'node:events';
import http from 'node:http';

/**
 * An NDJSON receiver for the `http` output in crash tests. It keeps every
 * request as received, so a test can tell the two kinds of repetition apart:
 * a request re-sent after a crash (same Idempotency-Key, same body: the
 * output's at-least-once delivery) and a record the input emitted twice
 * (its id in two different requests), which must never happen.
 */
export interface SinkRequest {
  key: string;
  body: string;
  ids: string[];
  receivedMs: number;
}

export class NdjsonSink {
  readonly requests: SinkRequest[] = [];
  readonly #server: http.Server;
  url = '';

  private constructor() {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const ids: string[] = [];
        for (const line of body.split('\n')) {
          if (line.trim() === '') continue;
          const doc = JSON.parse(line) as { metadata?: { uid?: string; resourceVersion?: string } };
          ids.push(`${doc.metadata?.uid}:${doc.metadata?.resourceVersion}`);
        }
        this.requests.push({ key: String(req.headers['idempotency-key'] ?? ''), body, ids, receivedMs: Date.now() });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
  }

  static async start(): Promise<NdjsonSink> {
    const sink = new NdjsonSink();
    sink.#server.listen(0, '127.0.0.1');
    await once(sink.#server, 'listening');
    const addr = sink.#server.address() as { port: number };
    sink.url = `http://127.0.0.1:${addr.port}/bulk`;
    return sink;
  }

  /** Every id received, re-sent requests included. */
  rawIds(): string[] {
    return this.requests.flatMap((r) => r.ids);
  }

  /**
   * One entry per distinct request key. Throws if a key came back with a
   * different body: a re-send must be the same request.
   */
  distinctRequests(): SinkRequest[] {
    const byKey = new Map<string, SinkRequest>();
    for (const r of this.requests) {
      const prev = byKey.get(r.key);
      if (prev === undefined || r.key === '') byKey.set(r.key || `#${byKey.size}`, r);
      else if (prev.body !== r.body) throw new Error(`request ${r.key} re-sent with a different body`);
    }
    return [...byKey.values()];
  }

  /** Ids over distinct requests: an id twice here was emitted twice by the input. */
  idsOfDistinctRequests(): string[] {
    return this.distinctRequests().flatMap((r) => r.ids);
  }

  resentRequests(): number {
    return this.requests.length - this.distinctRequests().length;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
