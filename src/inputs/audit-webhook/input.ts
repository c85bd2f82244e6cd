import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ErrorCode, KtrailError } from '../../errors.ts';
import { LogRecord } from '../../pipeline/record.ts';
import type { EmitBatch, Input, InputContext, InputDeadLetter } from '../../plugin.ts';
import { rememberSecret } from '../../telemetry/scrub.ts';
import { parseAuditLine } from '../audit-file/parse.ts';
import type { AuditWebhookConfig } from './plugin.ts';
import { auditWebhookEvent, auditWebhookMetrics } from './telemetry.ts';

/**
 * The audit_webhook server. One request = one EventList = one emit (one spool
 * transaction); the answer is 2xx only after that emit resolved. Anything an
 * authenticated client sent that is not an event is dead-lettered and still
 * answered 2xx, because the apiserver resends a refused body 5 times and then
 * drops it: a 4xx would lose the good events with the bad. Refusals (413, 429,
 * 503) are counted as batches at risk. The spool keeps a reserve for this
 * input (spool_headroom): other inputs pause before it is touched, and only
 * when it too is used up is a request refused (429, at once).
 */

const LOG_EVERY_MS = 10_000;

type Outcome = { status: number; headers?: Record<string, string>; body: string };

interface Files {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
  token?: Buffer;
}

export class AuditWebhookInput implements Input {
  readonly #cfg: AuditWebhookConfig;
  readonly #ctx: InputContext;
  #server: http.Server | https.Server | undefined;
  #files: Files = {};
  #mtimes = new Map<string, number>();
  #reloadTimer: NodeJS.Timeout | undefined;
  #inFlight = new Set<Promise<void>>();
  #active = 0;
  /** Bumped when the TLS files change; a connection made under an older one is closed after its answer. */
  #tlsGeneration = 0;
  readonly #socketGeneration = new WeakMap<object, number>();
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #lastLog = new Map<string, number>();
  #suppressed = new Map<string, number>();

  /** `cfg` passed validation: it names a client CA or a token, or allows unauthenticated requests. */
  constructor(cfg: AuditWebhookConfig, ctx: InputContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
  }

  async start(): Promise<void> {
    this.#readFiles(true);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.#track(this.#handle(req, res));
    if (this.#cfg.tls.enabled) {
      const f = this.#files;
      this.#server = https.createServer(
        {
          cert: f.cert,
          key: f.key,
          ca: f.ca,
          // Verified per request (403, counted) rather than in the handshake, which the apiserver only sees as a TLS error.
          requestCert: f.ca !== undefined,
          rejectUnauthorized: false,
        },
        handler,
      );
    } else {
      this.#server = http.createServer(handler);
    }
    const server = this.#server;
    server.on('secureConnection', (sock: object) => this.#socketGeneration.set(sock, this.#tlsGeneration));
    server.requestTimeout = this.#cfg.request_timeout + 5000;
    server.headersTimeout = Math.min(60_000, this.#cfg.request_timeout);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#cfg.port, this.#cfg.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.#ctx.log.error({ event: auditWebhookEvent.server_error, err }, 'audit webhook server error'));
    const a = server.address() as AddressInfo;
    this.#ctx.log.info({ event: auditWebhookEvent.listening, address: a.address, port: a.port, tls: this.#cfg.tls.enabled, mtls: this.#files.ca !== undefined, token: this.#files.token !== undefined, path: this.#cfg.path }, 'audit webhook listening');
    this.#reloadTimer = setInterval(() => this.#reload(), this.#cfg.tls.reload_interval);
    this.#reloadTimer.unref();
  }

  /** Stop accepting, finish what is in flight (each bounded by request_timeout), then resolve. */
  stop(): Promise<void> {
    this.#stopped ??= this.#drain();
    return this.#stopped;
  }

  health() {
    return { ok: this.#server?.listening === true && !this.#stopping };
  }

  async #drain(): Promise<void> {
    this.#stopping = true;
    if (this.#reloadTimer) clearInterval(this.#reloadTimer);
    const server = this.#server;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    while (this.#inFlight.size > 0) await Promise.allSettled(this.#inFlight);
    server.closeAllConnections();
    await closed;
    this.#ctx.log.info({ event: auditWebhookEvent.stopped }, 'audit webhook stopped');
  }

  #track(p: Promise<void>): void {
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p));
  }

  /** Reads the configured files; `first`: a missing file is fatal, later it keeps the previous content. */
  #readFiles(first: boolean): boolean {
    const t = this.#cfg.tls;
    const want: Array<[keyof Files, string | undefined]> = [
      ['cert', t.enabled ? t.cert_file : undefined],
      ['key', t.enabled ? t.key_file : undefined],
      ['ca', t.enabled ? t.client_ca_file : undefined],
      ['token', this.#cfg.bearer_token_file],
    ];
    let changed = false;
    const next: Files = { ...this.#files };
    for (const [k, file] of want) {
      if (file === undefined) continue;
      let st: fs.Stats;
      let data: Buffer;
      try {
        st = fs.statSync(file);
        if (!first && this.#mtimes.get(file) === st.mtimeMs) continue;
        data = fs.readFileSync(file);
      } catch (err) {
        if (first) throw new KtrailError(ErrorCode.SECRET_READ, `inputs.${this.#ctx.name}: cannot read ${file}: ${(err as Error).message}`);
        this.#logLimited('reload', 'warn', { event: auditWebhookEvent.reload_failed, file, err: (err as Error).message }, 'audit webhook: cannot re-read file; keeping the previous content');
        continue;
      }
      this.#mtimes.set(file, st.mtimeMs);
      if (k === 'token') {
        const token = data.toString('utf8').trim();
        if (token === '') {
          if (first) throw new KtrailError(ErrorCode.SECRET_READ, `inputs.${this.#ctx.name}: bearer_token_file ${file} is empty`);
          continue;
        }
        rememberSecret(token);
        data = Buffer.from(token, 'utf8');
      }
      next[k] = data;
      changed = true;
    }
    this.#files = next;
    return changed;
  }

  #reload(): void {
    const before = this.#files;
    if (!this.#readFiles(false)) return;
    const server = this.#server;
    const f = this.#files;
    const tlsChanged = f.cert !== before.cert || f.key !== before.key || f.ca !== before.ca;
    if (tlsChanged && server instanceof https.Server) {
      try {
        server.setSecureContext({ cert: f.cert, key: f.key, ca: f.ca });
        // A keep-alive connection keeps the verdict of its handshake: idle ones are closed now, busy
        // ones after their answer, so every next request is judged by the new client CA.
        this.#tlsGeneration++;
        server.closeIdleConnections();
        this.#ctx.log.info({ event: auditWebhookEvent.reloaded }, 'audit webhook: serving certificate / client CA reloaded');
      } catch (err) {
        // A cert and key caught mid-rotation (one written, not the other): try again next time.
        this.#mtimes.clear();
        this.#files = before;
        this.#logLimited('reload', 'warn', { event: auditWebhookEvent.reload_failed, err: (err as Error).message }, 'audit webhook: new certificate files do not load; keeping the previous ones');
      }
    }
    if (f.token !== before.token) this.#ctx.log.info({ event: auditWebhookEvent.reloaded }, 'audit webhook: bearer token reloaded');
  }

  #logLimited(key: string, level: 'warn' | 'info', obj: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const last = this.#lastLog.get(key) ?? 0;
    if (now - last < LOG_EVERY_MS) {
      this.#suppressed.set(key, (this.#suppressed.get(key) ?? 0) + 1);
      return;
    }
    this.#lastLog.set(key, now);
    const suppressed = this.#suppressed.get(key) ?? 0;
    this.#suppressed.delete(key);
    this.#ctx.log[level]({ ...obj, suppressedSinceLastLog: suppressed }, msg);
  }

  #authorize(req: http.IncomingMessage): Outcome | undefined {
    const f = this.#files;
    if (f.ca !== undefined) {
      const sock = req.socket as TLSSocket;
      if (!sock.authorized) {
        this.#logLimited('auth403', 'warn', { event: auditWebhookEvent.auth_failed, remote: req.socket.remoteAddress, reason: sock.authorizationError?.toString() ?? 'no client certificate' }, 'audit webhook: client certificate rejected');
        return { status: 403, body: 'client certificate required\n' };
      }
    }
    if (f.token !== undefined) {
      const h = req.headers.authorization ?? '';
      const m = /^Bearer\s+(.+)$/i.exec(h);
      const given = Buffer.from(m ? m[1]!.trim() : '', 'utf8');
      // Hashes have equal length, so the comparison time says nothing about the token.
      const ok = m !== null && timingSafeEqual(sha256(given), sha256(f.token));
      if (!ok) {
        this.#logLimited('auth401', 'warn', { event: auditWebhookEvent.auth_failed, remote: req.socket.remoteAddress, hadToken: m !== null }, 'audit webhook: missing or wrong bearer token');
        return { status: 401, headers: { 'www-authenticate': 'Bearer' }, body: 'unauthorized\n' };
      }
    }
    return undefined;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { metrics } = this.#ctx;
    const input = this.#ctx.name;
    const startMs = performance.now();
    this.#active++;
    auditWebhookMetrics(metrics).inFlight.set({ input }, this.#active);
    let out: Outcome;
    try {
      out = await this.#route(req, startMs);
    } catch (err) {
      this.#logLimited('error', 'warn', { event: auditWebhookEvent.request_failed, err: (err as Error).message }, 'audit webhook: request failed');
      out = { status: 500, body: 'internal error\n' };
    } finally {
      this.#active--;
      auditWebhookMetrics(metrics).inFlight.set({ input }, this.#active);
    }
    auditWebhookMetrics(metrics).requests.inc({ input, code: String(out.status) });
    if (res.headersSent || res.destroyed) return;
    const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', ...out.headers };
    if (this.#stopping || (this.#socketGeneration.get(req.socket) ?? this.#tlsGeneration) < this.#tlsGeneration) headers.connection = 'close';
    res.writeHead(out.status, headers);
    res.end(out.body);
  }

  async #route(req: http.IncomingMessage, startMs: number): Promise<Outcome> {
    const input = this.#ctx.name;
    const url = new URL(req.url ?? '/', 'http://x');
    const prefix = this.#cfg.path;
    if (!(prefix === '/' || url.pathname === prefix || url.pathname.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`))) {
      req.resume();
      return { status: 404, body: 'not found\n' };
    }
    if (req.method !== 'POST') {
      req.resume();
      return { status: 405, headers: { allow: 'POST' }, body: 'method not allowed\n' };
    }
    const denied = this.#authorize(req);
    if (denied) {
      req.resume();
      return denied;
    }
    if (this.#stopping) {
      req.resume();
      return this.#refuse('stopping', 503);
    }
    // this.#active counts this request too.
    if (this.#active > this.#cfg.max_concurrent_requests) {
      req.resume();
      return this.#refuse('too_many_requests', 429);
    }
    const body = await this.#readBody(req);
    if (body === 'oversize') {
      auditWebhookMetrics(this.#ctx.metrics).badRequests.inc({ input, reason: 'oversize' });
      this.#ctx.telemetry.discarded('oversize', 1);
      this.#logLimited('oversize', 'warn', { event: auditWebhookEvent.oversize, remote: req.socket.remoteAddress, maxBodyBytes: this.#cfg.max_body_bytes, contentLength: req.headers['content-length'] }, 'audit webhook: body over max_body_bytes refused (413); the apiserver drops it after its retries');
      auditWebhookMetrics(this.#ctx.metrics).batchesAtRisk.inc({ input, reason: 'oversize' });
      return { status: 413, body: 'body over max_body_bytes\n', headers: { connection: 'close' } };
    }
    if (body === 'aborted') return { status: 400, body: 'aborted\n' };
    const bodyDone = performance.now();
    const { batch, count } = this.#toBatch(body, url.pathname, req.socket.remoteAddress ?? '');
    // Within the client's own deadline too (the apiserver sends ?timeout=30s): a 2xx it no longer
    // waits for is a resend, so a later answer buys nothing.
    const budget = Math.min(this.#cfg.request_timeout, clientTimeoutMs(url.searchParams.get('timeout')) ?? Number.POSITIVE_INFINITY);
    const deadline = Math.max(0, budget - (bodyDone - startMs));
    // A full spool never makes this wait: the emit refuses at once (nothing committed) when even
    // the reserve (spool_headroom) is used up. The deadline only bounds slow processors; an emit
    // past it is not abandoned and still commits (the resend carries the same ids, which dedupe).
    const emitted = this.#ctx.emit({ ...batch, refuseWhenFull: true }).then(
      // Nothing dropped is ever answered as stored (a refusing emit never drops; checked anyway).
      (res) => (res.refusedFull === true || res.droppedFull > 0 ? ('full' as const) : ('ok' as const)),
      (err: unknown) => err,
    );
    // Counted when committed, also when that is after the deadline (a 503 the resend dedupes).
    this.#track(emitted.then((res) => void (res === 'ok' && count())));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), deadline);
    });
    const r = await Promise.race([emitted, timedOut]);
    clearTimeout(timer);
    if (r === 'full') return this.#refuse('spool_full', 429);
    if (r === 'timeout') {
      // The commit goes on after the answer: it keeps its place in max_concurrent_requests until
      // it settles, so resends of slow batches cannot pile up copies in memory.
      this.#active++;
      void emitted.finally(() => {
        this.#active--;
        auditWebhookMetrics(this.#ctx.metrics).inFlight.set({ input }, this.#active);
      });
      return this.#refuse('commit_timeout', 503);
    }
    if (r !== 'ok') throw r;
    auditWebhookMetrics(this.#ctx.metrics).commitSeconds.observe({ input }, (performance.now() - bodyDone) / 1000);
    return { status: 200, body: '{"status":"ok"}\n', headers: { 'content-type': 'application/json' } };
  }

  #refuse(reason: string, status: number): Outcome {
    const input = this.#ctx.name;
    auditWebhookMetrics(this.#ctx.metrics).batchesAtRisk.inc({ input, reason });
    this.#logLimited(`refuse-${reason}`, 'warn', { event: auditWebhookEvent.refused, reason, status }, 'audit webhook: batch refused; the apiserver retries it (5 attempts in all) and then drops it');
    return { status, headers: { 'retry-after': String(Math.ceil(this.#cfg.retry_after / 1000)) }, body: `${reason}\n` };
  }

  /** The body, up to max_body_bytes (read as a stream: no more than the limit is ever held). */
  #readBody(req: http.IncomingMessage): Promise<Buffer | 'oversize' | 'aborted'> {
    const limit = this.#cfg.max_body_bytes;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      return Promise.resolve('oversize');
    }
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let n = 0;
      let done = false;
      const finish = (v: Buffer | 'oversize' | 'aborted') => {
        if (done) return;
        done = true;
        resolve(v);
      };
      req.on('data', (c: Buffer) => {
        if (done) return;
        n += c.length;
        if (n > limit) {
          chunks.length = 0;
          req.resume();
          finish('oversize');
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => finish(Buffer.concat(chunks, n)));
      req.on('error', () => finish('aborted'));
      req.on('close', () => finish('aborted'));
    });
  }

  /**
   * The body as records and dead letters, and `count`, which counts them in the
   * metrics once the batch is committed (a refused body is counted when a resend
   * of it is taken, not on every try).
   */
  #toBatch(body: Buffer, path: string, remote: string): { batch: EmitBatch; count: () => void } {
    const { metrics, telemetry } = this.#ctx;
    const input = this.#ctx.name;
    const nowMs = Date.now();
    const bodyId = `webhook:${createHash('sha256').update(body).digest('hex').slice(0, 32)}`;
    const source = (length: number, offset = 0) => ({ file: `audit_webhook ${remote} POST ${path}`, offset, length });
    const deadLetters: InputDeadLetter[] = [];
    const records: LogRecord[] = [];
    const whole = (code: string, why: string) => ({
      // Logged (rate-limited) and redact-checked with every other dead letter by the pipeline.
      batch: { records: [], deadLetters: [{ code, reason: `${code}: ${why} (${body.length} bytes from ${remote})`, data: body, recordId: bodyId, source: source(body.length) }] },
      count: () => {
        auditWebhookMetrics(metrics).badRequests.inc({ input, reason: code });
        telemetry.discarded(code, 1);
        this.#logLimited(`bad-${code}`, 'warn', { event: auditWebhookEvent.bad_body, reason: why, bytes: body.length, remote }, 'audit webhook: body is not an EventList; stored whole as a dead letter');
      },
    });
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      return whole('not_json', 'body is not valid JSON');
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return whole('not_event_list', 'body is not a JSON object');
    const list = doc as Record<string, unknown>;
    if (list.kind !== 'EventList' || !Array.isArray(list.items)) return whole('not_event_list', `kind ${JSON.stringify(String(list.kind)).slice(0, 40)} with ${Array.isArray(list.items) ? 'items' : 'no items array'}, not an EventList`);
    const items = list.items as unknown[];
    let bytes = 0;
    let invalid = 0;
    items.forEach((item, i) => {
      // The document as encoding/json writes it for the log file (key order kept by JSON.parse/stringify).
      const raw = JSON.stringify(item) ?? 'null';
      bytes += raw.length;
      const p = parseAuditLine(raw, nowMs);
      if (p.ok) {
        records.push(new LogRecord({ id: p.id, timeMs: p.timeMs, input, raw }));
        return;
      }
      invalid++;
      deadLetters.push({ code: 'invalid_event', reason: `invalid_event: ${p.error} (item ${i} of ${items.length} from ${remote})`, data: raw, recordId: `${bodyId}:${i}`, source: source(raw.length, i) });
    });
    const count = () => {
      auditWebhookMetrics(metrics).events.inc({ input }, items.length);
      auditWebhookMetrics(metrics).batchEvents.observe({ input }, items.length);
      if (records.length > 0) telemetry.received(records.length, bytes);
      if (invalid > 0) {
        auditWebhookMetrics(metrics).badRequests.inc({ input, reason: 'invalid_event' }, invalid);
        telemetry.discarded('invalid_event', invalid);
        this.#logLimited('bad-invalid_event', 'warn', { event: auditWebhookEvent.invalid_events, invalid, items: items.length, remote }, 'audit webhook: events without auditID/stage dead-lettered; the rest accepted');
      }
    };
    return { batch: { records, deadLetters: deadLetters.length > 0 ? deadLetters : undefined }, count };
  }
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

/** A Go duration as the apiserver's rest client writes it in `?timeout=` ("30s", "1m0s", "500ms"); undefined if it is not one. */
export function clientTimeoutMs(v: string | null): number | undefined {
  if (v === null || !/^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/.test(v)) return undefined;
  const unit: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };
  let ms = 0;
  for (const [, n, u] of v.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)) ms += Number(n) * unit[u!]!;
  return ms;
}
