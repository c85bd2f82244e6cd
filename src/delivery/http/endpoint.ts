import type { IncomingHttpHeaders } from 'node:http';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { Dispatcher } from 'undici';
import type { OutboundRequest, Output, SendOutcome } from '../../plugin.ts';
import { ByteWriterPool, type ByteWriter } from '../byte-writer.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { Authorizer, urlBasicAuth, type AuthConfig } from './auth.ts';
import { HttpPool } from './pool.ts';
import { httpCode } from '../outcome.ts';
import { bodyDetail, classifyStatus, readBytes, retryAfterMs, transportFailure } from './status.ts';
import type { TlsConfig } from './tls.ts';

const gzip = promisify(zlib.gzip);

/**
 * One HTTP destination of an output (http, elasticsearch, and the outputs
 * that come after them): the connection pool with its TLS files, the
 * credentials (re-read when the destination refuses them), optional gzip of
 * request bodies, and the status table of status.ts for answers that are not
 * 2xx. An output builds its body and headers and reads a 2xx itself; all the
 * rest is here.
 */
export interface HttpEndpointOptions {
  url: URL;
  connections: number;
  tls: TlsConfig | undefined;
  auth: AuthConfig | undefined;
  /** Headers of every request (lower-case names); `user:password@` in `url` adds basic auth unless `auth` is set. */
  headers: Record<string, string>;
  compression: 'none' | 'gzip';
  compressionLevel: number;
  log: Logger;
}

export type Exchange = { ok: true; res: Dispatcher.ResponseData } | { ok: false; outcome: SendOutcome };

/** Lower-cased copies of user headers, without those the transport owns. */
export function userHeaders(headers: Record<string, string>, reserved: ReadonlySet<string> = new Set()): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (!reserved.has(k.toLowerCase())) out[k.toLowerCase()] = v;
  return out;
}

/**
 * The headers of every request an output sends: the user's (as `userHeaders`),
 * the body's content type (a default the user may override when
 * `userContentType`), and `user-agent: ktrail` unless the user set one.
 */
export function requestHeaders(
  user: Record<string, string>,
  contentType: string,
  opts: { reserved?: ReadonlySet<string>; userContentType?: boolean } = {},
): Record<string, string> {
  const headers = userHeaders(user, opts.reserved);
  if (opts.userContentType) headers['content-type'] ??= contentType;
  else headers['content-type'] = contentType;
  headers['user-agent'] ??= 'ktrail';
  return headers;
}

export class HttpEndpoint {
  readonly #o: HttpEndpointOptions;
  readonly #pool: HttpPool;
  readonly #auth: Authorizer;
  readonly #headers: Record<string, string>;

  constructor(opts: HttpEndpointOptions) {
    this.#o = opts;
    this.#pool = new HttpPool(opts.url.origin, { connections: opts.connections, tls: opts.tls, log: opts.log });
    this.#auth = new Authorizer(opts.auth, opts.log);
    const headers = { ...opts.headers };
    const basic = urlBasicAuth(opts.url);
    if (basic) headers.authorization = basic;
    this.#headers = headers;
  }

  start(): void {
    this.#pool.start();
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  /**
   * Send `body` (gzipped when configured) with the endpoint's headers, the
   * credentials and `extra` headers. A 2xx comes back as the response for the
   * caller to read; anything else is already an outcome (its body consumed).
   * `retryStatus` marks statuses the table calls permanent that this
   * destination means as "fix the config", to retry rather than dead-letter.
   */
  async exchange(
    req: {
      path: string;
      method: 'POST' | 'PUT' | 'GET';
      body?: Buffer;
      extra?: Record<string, string>;
      retryStatus?: (status: number) => boolean;
      /** false: send the body as it is, whatever the configured compression (small control requests). */
      compress?: boolean;
      /**
       * A destination's own reading of an error answer (its body as text, and for
       * binary protocols its bytes and the response headers), before the status table's.
       */
      judge?: (status: number, body: string, answer: { bytes: Buffer; headers: IncomingHttpHeaders }) => SendOutcome | undefined;
    },
    signal: AbortSignal,
  ): Promise<Exchange> {
    const headers: Record<string, string> = { ...this.#headers, ...req.extra };
    const auth = this.#auth.header();
    if (auth.error) return { ok: false, outcome: { kind: 'retryable', code: 'credentials_unavailable', detail: auth.error } };
    if (auth.value) headers.authorization = auth.value;
    let body = req.body;
    if (body !== undefined && this.#o.compression === 'gzip' && req.compress !== false) {
      body = await gzip(body, { level: this.#o.compressionLevel });
      headers['content-encoding'] = 'gzip';
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#pool.get().request({ path: req.path, method: req.method, headers, body, signal });
    } catch (err) {
      return { ok: false, outcome: transportFailure(err, signal) };
    }
    const cls = classifyStatus(res.statusCode);
    if (cls === 'ok') return { ok: true, res };
    const bytes = await readBytes(res.body);
    const raw = bytes.toString('utf8');
    const judged = req.judge?.(res.statusCode, raw, { bytes, headers: res.headers });
    const detail = bodyDetail(raw);
    if (judged) {
      if (cls === 'auth') this.#auth.rejected(res.statusCode, detail);
      return { ok: false, outcome: judged };
    }
    const text = `HTTP ${res.statusCode}${detail ? `: ${detail}` : ''}`;
    const code = httpCode(res.statusCode);
    if (cls === 'too_large') return { ok: false, outcome: { kind: 'too_large', code, detail: text } };
    if (cls === 'auth') this.#auth.rejected(res.statusCode, detail);
    if (cls === 'permanent' && req.retryStatus?.(res.statusCode) !== true) return { ok: false, outcome: { kind: 'permanent', code, detail: text } };
    return { ok: false, outcome: { kind: 'retryable', code, detail: text, retryAfterMs: retryAfterMs(res.headers) } };
  }
}

/** The keys every HTTP-based output's config has for its endpoint. */
export interface EndpointConfig {
  url: string;
  tls?: TlsConfig | undefined;
  auth?: AuthConfig | undefined;
  compression: 'none' | 'gzip';
  compression_level: number;
}

/**
 * An output that sends one HTTP request per request part: it writes the body
 * into a reused buffer (`encode`) and reads a 2xx answer (`accepted`); the
 * endpoint does the rest, and any exception is a retryable transport failure.
 */
export abstract class EndpointOutput implements Output {
  protected readonly endpoint: HttpEndpoint;
  readonly #writers: ByteWriterPool;

  constructor(cfg: EndpointConfig, opts: { connections: number; headers: Record<string, string>; log: Logger; maxWriterBytes: number }) {
    this.endpoint = new HttpEndpoint({
      url: new URL(cfg.url),
      connections: opts.connections,
      tls: cfg.tls,
      auth: cfg.auth,
      headers: opts.headers,
      compression: cfg.compression,
      compressionLevel: cfg.compression_level,
      log: opts.log,
    });
    this.#writers = new ByteWriterPool(opts.maxWriterBytes);
  }

  async start(): Promise<void> {
    this.endpoint.start();
  }

  async close(): Promise<void> {
    await this.endpoint.close();
  }

  async send(request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    const writer = this.#writers.take();
    try {
      return await this.sendPart(writer, request, signal);
    } catch (err) {
      return transportFailure(err, signal);
    } finally {
      this.#writers.give(writer);
    }
  }

  /** Encode `request` into `writer`, send it with `this.endpoint.exchange`, and judge a 2xx. */
  protected abstract sendPart(writer: ByteWriter, request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome>;
}
