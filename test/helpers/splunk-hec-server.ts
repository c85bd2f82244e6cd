import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';

/**
 * A Splunk HTTP Event Collector on 127.0.0.1 that answers as HEC does:
 * `Authorization: Splunk <token>` (401 code 2 without it, 403 code 4 for a
 * wrong one), /services/collector/event with concatenated JSON envelopes
 * (gzip accepted), `{"text":"Success","code":0,"ackId":n}` on a channel,
 * /services/collector/ack answering `{"acks":{"n":true|false}}`, and
 * /services/collector/health. Test knobs: `busy` (503 code 9), allowed
 * indexes (400 code 7), events without `event` (400 code 12 with
 * invalid-event-number), acks that come late or never.
 */
export interface HecEvent {
  time?: number;
  host?: string;
  source?: string;
  sourcetype?: string;
  index?: string;
  fields?: Record<string, string>;
  event: unknown;
}

export class FakeHec {
  readonly indexed: HecEvent[] = [];
  token = 'hec-token';
  busy = 0;
  indexes: string[] | undefined;
  /** Ack ids that are never confirmed (the request is lost before indexing). */
  loseAcks = 0;
  ackRequired = true;
  /** How long after the request its ack turns true (indexing takes a while). */
  ackDelayMs = 0;
  ackPolls = 0;
  healthChecks = 0;
  eventRequests = 0;
  readonly #pending = new Map<string, Map<number, { events: HecEvent[]; lost: boolean; readyMs: number }>>();
  #nextAck = 0;
  #server: http.Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((r) => this.#server?.close(() => r()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
    const answer = (status: number, j: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(j));
    };
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/services/collector/health') {
      this.healthChecks++;
      return answer(200, { text: 'HEC is healthy', code: 17 });
    }
    const auth = req.headers.authorization;
    if (!auth) return answer(401, { text: 'Token is required', code: 2 });
    if (auth !== `Splunk ${this.token}`) return answer(403, { text: 'Invalid token', code: 4 });
    const channel = (req.headers['x-splunk-request-channel'] as string | undefined) ?? url.searchParams.get('channel') ?? undefined;
    if (url.pathname === '/services/collector/ack') {
      this.ackPolls++;
      const acks = (JSON.parse(body.toString()) as { acks: number[] }).acks;
      const mine = this.#pending.get(channel ?? '') ?? new Map();
      const out: Record<string, boolean> = {};
      for (const id of acks) {
        const p = mine.get(id);
        out[String(id)] = p !== undefined && !p.lost && Date.now() >= p.readyMs;
      }
      return answer(200, { acks: out });
    }
    if (url.pathname !== '/services/collector/event') return answer(404, { text: 'Not found', code: 404 });
    this.eventRequests++;
    if (this.busy > 0) {
      this.busy--;
      return answer(503, { text: 'Server is busy', code: 9 });
    }
    if (this.ackRequired && !channel) return answer(400, { text: 'Data channel is missing', code: 10 });
    const events: HecEvent[] = [];
    const text = body.toString();
    for (const line of text.split('\n')) if (line.trim() !== '') events.push(JSON.parse(line) as HecEvent);
    for (const [i, e] of events.entries()) {
      if (e.event === undefined) return answer(400, { text: 'Event field is required', code: 12, 'invalid-event-number': i });
      if (e.event === null || e.event === '') return answer(400, { text: 'Event field cannot be blank', code: 13, 'invalid-event-number': i });
      if (this.indexes && e.index !== undefined && !this.indexes.includes(e.index)) return answer(400, { text: 'Incorrect index', code: 7, 'invalid-event-number': i });
    }
    const ackId = this.#nextAck++;
    const lost = this.loseAcks > 0;
    if (lost) this.loseAcks--;
    else this.indexed.push(...events);
    if (!this.ackRequired) return answer(200, { text: 'Success', code: 0 });
    const mine = this.#pending.get(channel!) ?? new Map();
    mine.set(ackId, { events, lost, readyMs: Date.now() + this.ackDelayMs });
    this.#pending.set(channel!, mine);
    return answer(200, { text: 'Success', code: 0, ackId });
  }
}
