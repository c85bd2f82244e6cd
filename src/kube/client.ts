import type https from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { Agent, ProxyAgent, type Dispatcher } from 'undici';
import { parseRetryAfterMs } from '../delivery/backoff.ts';
import { VERSION } from '../version.ts';
import type { Impersonation, KubeAuth, KubeConnection } from './config.ts';

/**
 * A small Kubernetes API client over undici: JSON requests and watch streams.
 *
 * - Authentication is added per request, so a rotated token file is picked
 *   up on the next request; a 401 re-reads the token once and retries before
 *   the caller backs off.
 * - A watch body is read only as fast as the caller consumes it: while the
 *   caller awaits (the spool is full), nothing more is read from the socket,
 *   TCP fills up and the server holds the rest.
 */

export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { retryAfterSeconds?: number; [k: string]: unknown };
  metadata?: { continue?: string; resourceVersion?: string };
}

/** An answer of the API server that is not 2xx, with its Status when it sent one. */
export class KubeApiError extends Error {
  readonly statusCode: number;
  readonly reason: string | undefined;
  readonly retryAfterMs: number | undefined;
  readonly status: KubeStatus | undefined;
  constructor(statusCode: number, message: string, status?: KubeStatus, retryAfterMs?: number) {
    super(message);
    this.name = 'KubeApiError';
    this.statusCode = statusCode;
    this.status = status;
    this.reason = status?.reason;
    this.retryAfterMs = retryAfterMs ?? (status?.details?.retryAfterSeconds !== undefined ? status.details.retryAfterSeconds * 1000 : undefined);
  }
  /** 410 Gone / Expired: the resourceVersion (or continue token) is too old. */
  get gone(): boolean {
    return this.statusCode === 410;
  }
}

export type QueryValue = string | number | boolean | undefined;

export interface KubeRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** API path, e.g. `/api/v1/namespaces/default/events`. */
  path: string;
  query?: Record<string, QueryValue>;
  body?: unknown;
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface RawWatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: Record<string, unknown>;
}

/** The events parsed from one read of a watch body, and the bytes that read carried. */
export interface WatchChunk {
  events: RawWatchEvent[];
  bytes: number;
}

export interface KubeClientOptions {
  requestTimeoutMs?: number;
  userAgent?: string;
}

export class KubeClient {
  readonly connection: KubeConnection;
  readonly #dispatcher: Dispatcher;
  readonly #requestTimeoutMs: number;
  readonly #userAgent: string;
  readonly #impersonation: Record<string, string | string[]>;
  #closed = false;

  constructor(connection: KubeConnection, opts: KubeClientOptions = {}) {
    this.connection = connection;
    this.#requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.#userAgent = opts.userAgent ?? `ktrail/${VERSION}`;
    const { tls } = connection;
    const connect = {
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert ? { cert: tls.cert } : {}),
      ...(tls.key ? { key: tls.key } : {}),
      ...(tls.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
    };
    // kubeconfig proxy-url: http(s) proxies tunnel with CONNECT, socks5:// too; the API server's TLS settings apply inside.
    this.#dispatcher = connection.proxyUrl
      ? new ProxyAgent({ uri: connection.proxyUrl, requestTls: connect, keepAliveTimeout: 30_000 })
      : new Agent({ connect, keepAliveTimeout: 30_000 });
    this.#impersonation = impersonationHeaders(connection.impersonate);
  }

  get server(): string {
    return this.connection.server;
  }

  /** A JSON request; resolves to the parsed body, rejects with `KubeApiError` for a non-2xx answer. */
  async request<T>(req: KubeRequest): Promise<T> {
    const timeoutMs = req.timeoutMs ?? this.#requestTimeoutMs;
    const res = await this.#send(req, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (text === '') return undefined as T;
    return JSON.parse(text) as T;
  }

  /**
   * Opens a watch and yields the events of each read, in order. The body is
   * pulled only when the consumer asks for the next chunk (backpressure).
   * `maxLifeMs` bounds a stream whose server went silent without closing it.
   */
  async *watch(req: KubeRequest & { maxLifeMs: number }): AsyncGenerator<WatchChunk, void, void> {
    const life = new AbortController();
    const timer = setTimeout(() => life.abort(new Error(`watch open longer than ${req.maxLifeMs} ms`)), req.maxLifeMs);
    timer.unref();
    const signal = req.signal ? AbortSignal.any([req.signal, life.signal]) : life.signal;
    let res: Dispatcher.ResponseData | undefined;
    try {
      res = await this.#send({ ...req, signal }, { headersTimeout: this.#requestTimeoutMs, bodyTimeout: 0 });
      const decoder = new StringDecoder('utf8');
      let pending = '';
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        pending += decoder.write(chunk);
        const nl = pending.lastIndexOf('\n');
        if (nl === -1) continue;
        const complete = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const events: RawWatchEvent[] = [];
        for (const line of complete.split('\n')) {
          if (line.trim() === '') continue;
          events.push(JSON.parse(line) as RawWatchEvent);
        }
        if (events.length > 0) yield { events, bytes: chunk.length };
      }
      if (life.signal.aborted) throw life.signal.reason;
    } finally {
      clearTimeout(timer);
      res?.body.destroy();
    }
  }

  async #send(req: KubeRequest, timeouts: { headersTimeout: number; bodyTimeout: number }): Promise<Dispatcher.ResponseData> {
    const url = new URL(this.connection.server + req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    let body: string | undefined;
    if (req.body !== undefined) body = typeof req.body === 'string' ? req.body : JSON.stringify(req.body);
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw new Error('Kubernetes client closed');
      const headers: Record<string, string | string[]> = {
        accept: req.accept ?? 'application/json',
        'user-agent': this.#userAgent,
        ...this.#impersonation,
        ...(await authHeaders(this.connection.auth)),
      };
      if (body !== undefined) headers['content-type'] = req.contentType ?? 'application/json';
      const res = await this.#dispatcher.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: req.method ?? 'GET',
        headers,
        body,
        signal: req.signal,
        ...timeouts,
      });
      if (res.statusCode >= 200 && res.statusCode < 300) return res;
      const text = await res.body.text().catch(() => '');
      // A projected token may have rotated since it was read: read it again, once.
      if (res.statusCode === 401 && attempt === 1 && invalidate(this.connection.auth)) continue;
      throw apiError(res.statusCode, text, res.headers['retry-after'], req);
    }
  }

  /** Closes the connections; a request still running after 2 s (a watch nobody aborted) is cut. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    const graceful = this.#dispatcher.close().then(
      () => true,
      () => false,
    );
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 2000)));
    const closed = await Promise.race([graceful, timedOut]);
    clearTimeout(timer);
    if (!closed) await this.#dispatcher.destroy().catch(() => undefined);
  }
}

function apiError(statusCode: number, text: string, retryAfter: string | string[] | undefined, req: KubeRequest): KubeApiError {
  let status: KubeStatus | undefined;
  try {
    const parsed = JSON.parse(text) as KubeStatus;
    if (parsed && parsed.kind === 'Status') status = parsed;
  } catch {
    // Not a Status (a proxy's HTML page, say): the text is the message.
  }
  const what = `${req.method ?? 'GET'} ${req.path}`;
  const message = status?.message ?? (text.slice(0, 200) || `HTTP ${statusCode}`);
  return new KubeApiError(statusCode, `${what}: ${statusCode} ${status?.reason ?? ''} ${message}`.replace(/\s+/g, ' ').trim(), status, parseRetryAfterMs(retryAfter));
}

/** kubeconfig `as`, `as-uid`, `as-groups`, `as-user-extra` as the API server's Impersonate-* headers. */
function impersonationHeaders(imp: Impersonation | undefined): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = {};
  if (imp === undefined) return h;
  if (imp.user !== undefined) h['impersonate-user'] = imp.user;
  if (imp.uid !== undefined) h['impersonate-uid'] = imp.uid;
  if (imp.groups !== undefined && imp.groups.length > 0) h['impersonate-group'] = imp.groups;
  // Extra keys go into a header name: percent-encoded, as kubectl sends them.
  for (const [k, v] of Object.entries(imp.extra ?? {})) if (v.length > 0) h[`impersonate-extra-${encodeURIComponent(k).toLowerCase()}`] = v;
  return h;
}

async function authHeaders(auth: KubeAuth): Promise<Record<string, string>> {
  switch (auth.kind) {
    case 'none':
      return {};
    case 'token':
      return { authorization: `Bearer ${auth.token}` };
    case 'token-file':
      return { authorization: `Bearer ${auth.file.get()}` };
    case 'basic':
      return { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` };
    case 'kubeconfig-plugin': {
      const opts: https.RequestOptions = {};
      try {
        await auth.kubeConfig.applyToHTTPSOptions(opts);
      } catch {
        // It sets the headers before building an agent (which refuses plain http); the headers are all we use.
      }
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries((opts.headers ?? {}) as Record<string, unknown>)) if (typeof v === 'string') out[k.toLowerCase()] = v;
      if (typeof opts.auth === 'string') out.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
      return out;
    }
  }
}

/** Forget cached credentials so the next request reads them again; false when there is nothing to re-read. */
function invalidate(auth: KubeAuth): boolean {
  if (auth.kind === 'token-file') {
    auth.file.invalidate();
    return true;
  }
  return auth.kind === 'kubeconfig-plugin';
}
