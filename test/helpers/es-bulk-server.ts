/**
 * An in-memory stand-in for Elasticsearch / OpenSearch that speaks the `_bulk` API in the
 * server's own request and response format, for testing the elasticsearch output.
 *
 * Invariants the tests rely on:
 * - Every HTTP request is recorded (raw bytes as received, decoded text, status answered),
 *   including the ones answered by an injected fault.
 * - Items are processed in request order; an item that fails (injected or semantic) is never
 *   stored, so `docs()` holds exactly what a real cluster would have indexed.
 * - Faults are deterministic: counted per request / per item, never random or time-based.
 * - `create` on an existing `_id` answers 409 `version_conflict_engine_exception`, which is
 *   what makes a replayed batch harmless.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';

export type EsFlavor = 'elasticsearch' | 'opensearch';
export type EsBulkAction = 'index' | 'create' | 'update' | 'delete';

export interface EsBulkServerOptions {
  /** Answer `GET /` and errors like this product. Default `elasticsearch`. */
  flavor?: EsFlavor;
  /** `version.number` of `GET /`. Default 8.15.0 (elasticsearch) or 2.17.0 (opensearch). */
  versionNumber?: string;
  clusterName?: string;
  /** Names that are data streams: only `create` is allowed, `@timestamp` is required. */
  dataStreams?: readonly string[];
  /**
   * Accepted `Authorization` header values (exact match), e.g. `basicAuthorization('u','p')`,
   * `ApiKey <base64>`, `Bearer <token>`. Unset: no auth required.
   */
  authorization?: string | readonly string[];
  /** Like `http.max_content_length`: larger (decompressed) bodies get 413. */
  maxContentLengthBytes?: number;
  /** Wait this long before answering each request. */
  delayMs?: number;
  /** Gzip responses when the request says `Accept-Encoding: gzip` (ES `http.compression`). */
  gzipResponses?: boolean;
}

/** What a fault predicate sees of one bulk item. */
export interface EsBulkItemInfo {
  /** The effective action: `index` with `op_type: create` is reported as `create`. */
  action: EsBulkAction;
  /** Target as sent (index or data stream name). */
  index: string;
  id: string;
  idGenerated: boolean;
  /** Parsed source line; undefined for delete or unparsable JSON. */
  source: unknown;
  /** 1-based number of the `_bulk` request this item came in. */
  requestNumber: number;
  /** 0-based position of the item in its request. */
  position: number;
}

export interface EsItemFailure {
  status: number;
  type?: string;
  reason?: string;
}

export interface EsFailItemsRule extends EsItemFailure {
  /** Only these `_id`s; each listed id fails `times` times. */
  ids?: readonly string[];
  /** Only items for which this returns true; `times` counts all matched items together. */
  match?: (item: EsBulkItemInfo) => boolean;
  /** Default: forever. */
  times?: number;
}

export type EsFailItemsPredicate = (item: EsBulkItemInfo) => EsItemFailure | undefined;

export interface EsFailRequestsRule {
  /** Default 1. */
  times?: number;
  status: number;
  retryAfterSeconds?: number;
  type?: string;
  reason?: string;
}

export interface EsResetOptions {
  /** Process (store) the items, then drop the connection: the response is lost, the writes are not. */
  afterProcessing?: boolean;
}

export interface EsFaultHandle {
  /** How many times the fault fired. */
  readonly hits: number;
  cancel(): void;
}

export interface EsStoredDoc {
  index: string;
  id: string;
  version: number;
  seqNo: number;
  source: Record<string, unknown>;
}

export type EsRequestOutcome = 'answered' | 'reset' | 'injected-failure';

export interface RecordedEsRequest {
  method: string;
  url: string;
  path: string;
  query: Record<string, string>;
  headers: http.IncomingHttpHeaders;
  /** Body bytes as received (still gzip-compressed if it was sent so). */
  rawBody: Buffer;
  /** Decompressed body text. */
  body: string;
  isBulk: boolean;
  /** Number of bulk items parsed (0 when the request was rejected before parsing). */
  itemCount: number;
  status: number;
  outcome: EsRequestOutcome;
  /** Parsed JSON response body when there was one. */
  response: unknown;
}

export interface EsBulkServerStats {
  requests: number;
  bulkRequests: number;
  /** Bulk items parsed, whatever their outcome. */
  items: number;
  /** Items that were stored (created, updated, deleted). */
  itemsSucceeded: number;
  itemsFailed: number;
  /** Raw bytes received in request bodies. */
  bytesReceived: number;
}

/** `Basic <base64(user:pass)>` */
export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** `ApiKey <base64(id:key)>`, the form Elasticsearch's create-API-key answer calls `encoded`. */
export function apiKeyAuthorization(id: string, key: string): string {
  return `ApiKey ${Buffer.from(`${id}:${key}`).toString('base64')}`;
}

export async function startEsBulkServer(options: EsBulkServerOptions = {}): Promise<EsBulkServer> {
  const server = new EsBulkServer(options);
  await server.listen();
  return server;
}

interface IndexState {
  uuid: string;
  nextSeqNo: number;
  docs: Map<string, { source: Record<string, unknown>; version: number; seqNo: number }>;
}

interface ItemRuleState {
  rule: EsFailItemsRule | EsFailItemsPredicate;
  hits: number;
  perId: Map<string, number>;
  cancelled: boolean;
}

interface RequestRuleState {
  rule: EsFailRequestsRule;
  remaining: number;
  hits: number;
  cancelled: boolean;
}

interface ResetState {
  remaining: number;
  afterProcessing: boolean;
  hits: number;
  cancelled: boolean;
}

class EsHttpError extends Error {
  readonly status: number;
  readonly type: string;
  constructor(status: number, type: string, reason: string) {
    super(reason);
    this.status = status;
    this.type = type;
  }
}

const DEFAULT_VERSION: Record<EsFlavor, string> = { elasticsearch: '8.15.0', opensearch: '2.17.0' };
const SHARDS_OK = { total: 2, successful: 1, failed: 0 } as const;
const KNOWN_METADATA = new Set([
  '_index', '_id', 'routing', 'op_type', 'version', 'version_type', 'if_seq_no', 'if_primary_term',
  'retry_on_conflict', 'pipeline', '_source', 'require_alias', 'require_data_stream',
  'dynamic_templates', 'list_executed_pipelines',
]);
const ACCEPTED_CONTENT_TYPES = new Set([
  'application/json', 'application/x-ndjson',
  'application/vnd.elasticsearch+json', 'application/vnd.elasticsearch+x-ndjson',
]);

export class EsBulkServer {
  /** Mutable at any time; applies to the next request. */
  maxContentLengthBytes: number | undefined;
  delayMs: number;
  gzipResponses: boolean;

  readonly flavor: EsFlavor;
  readonly versionNumber: string;
  readonly clusterName: string;

  #server: http.Server;
  #sockets = new Set<Socket>();
  #port = 0;
  #down = false;
  #authorization: Set<string> | undefined;
  #dataStreams: Set<string>;
  #indices = new Map<string, IndexState>();
  #requests: RecordedEsRequest[] = [];
  #bulkRequestCount = 0;
  #stats: EsBulkServerStats = emptyStats();
  #itemRules: ItemRuleState[] = [];
  #requestRules: RequestRuleState[] = [];
  #resets: ResetState[] = [];
  #dateForBackingIndex = new Date().toISOString().slice(0, 10).replaceAll('-', '.');

  constructor(options: EsBulkServerOptions = {}) {
    this.flavor = options.flavor ?? 'elasticsearch';
    this.versionNumber = options.versionNumber ?? DEFAULT_VERSION[this.flavor];
    this.clusterName = options.clusterName ?? 'ktrail-test';
    this.maxContentLengthBytes = options.maxContentLengthBytes;
    this.delayMs = options.delayMs ?? 0;
    this.gzipResponses = options.gzipResponses ?? false;
    this.#dataStreams = new Set(options.dataStreams ?? []);
    this.setAuthorization(options.authorization);
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: String(err), status: 500 }));
        } else {
          res.destroy();
        }
      });
    });
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** Starts listening on 127.0.0.1 (port 0 the first time, then the same port again). */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  get port(): number {
    return this.#port;
  }

  /** `http://127.0.0.1:PORT` */
  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get down(): boolean {
    return this.#down;
  }

  /**
   * Down: stop listening and drop open connections, so clients get ECONNREFUSED / ECONNRESET.
   * Up again: listen on the same port.
   */
  async setDown(down: boolean): Promise<void> {
    if (down === this.#down) return;
    this.#down = down;
    if (down) {
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const socket of this.#sockets) socket.destroy();
      await closed;
    } else {
      await this.listen();
    }
  }

  async close(): Promise<void> {
    this.#itemRules = [];
    this.#requestRules = [];
    this.#resets = [];
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  /** Replace the accepted `Authorization` values; undefined turns auth off. */
  setAuthorization(values: string | readonly string[] | undefined): void {
    if (values === undefined) this.#authorization = undefined;
    else this.#authorization = new Set(typeof values === 'string' ? [values] : values);
  }

  addDataStream(name: string): void {
    this.#dataStreams.add(name);
  }

  /** Stored documents of one index or data stream, by `_id`. */
  docs(index: string): Map<string, Record<string, unknown>> {
    const state = this.#indices.get(index);
    const out = new Map<string, Record<string, unknown>>();
    if (!state) return out;
    for (const [id, doc] of state.docs) out.set(id, structuredClone(doc.source));
    return out;
  }

  /** Remove one stored document (a test tampering with the destination). Returns whether it existed. */
  deleteDoc(index: string, id: string): boolean {
    return this.#indices.get(index)?.docs.delete(id) ?? false;
  }

  /** Replace one stored document's source in place (a test tampering with the destination). */
  replaceDoc(index: string, id: string, source: Record<string, unknown>): void {
    const doc = this.#indices.get(index)?.docs.get(id);
    if (!doc) throw new Error(`no document ${index}/${id}`);
    doc.source = structuredClone(source);
    doc.version++;
  }

  /**
   * `_mget`: `{"docs":[{"_index","_id"}]}` or, with an index in the path, `{"ids":[…]}`.
   * Answers in request order, `found: false` for an absent id and an
   * `index_not_found_exception` item for an absent index, as Elasticsearch does.
   */
  #mget(body: string, pathIndex: string | undefined): unknown {
    const req = JSON.parse(body || '{}') as { docs?: Array<{ _index?: string; _id: string }>; ids?: string[] };
    const wanted = req.docs ?? (req.ids ?? []).map((id) => ({ _index: pathIndex === undefined ? undefined : decodeURIComponent(pathIndex), _id: id }));
    return {
      docs: wanted.map((w) => {
        const index = w._index ?? (pathIndex === undefined ? undefined : decodeURIComponent(pathIndex));
        if (index === undefined) return { _index: null, _id: w._id, error: { type: 'action_request_validation_exception', reason: 'index is missing' } };
        const state = this.#indices.get(index);
        if (!state) return { _index: index, _id: w._id, error: { root_cause: [], type: 'index_not_found_exception', reason: `no such index [${index}]`, index } };
        const doc = state.docs.get(w._id);
        if (!doc) return { _index: index, _id: w._id, found: false };
        return { _index: index, _id: w._id, _version: doc.version, _seq_no: doc.seqNo, _primary_term: 1, found: true, _source: doc.source };
      }),
    };
  }

  allDocs(): EsStoredDoc[] {
    const out: EsStoredDoc[] = [];
    for (const [index, state] of this.#indices) {
      for (const [id, doc] of state.docs) {
        out.push({ index, id, version: doc.version, seqNo: doc.seqNo, source: structuredClone(doc.source) });
      }
    }
    return out;
  }

  docCount(index?: string): number {
    if (index !== undefined) return this.#indices.get(index)?.docs.size ?? 0;
    let n = 0;
    for (const state of this.#indices.values()) n += state.docs.size;
    return n;
  }

  /** Index and data stream names that hold or held documents. */
  indices(): string[] {
    return [...this.#indices.keys()];
  }

  get requests(): readonly RecordedEsRequest[] {
    return this.#requests;
  }

  get bulkRequests(): RecordedEsRequest[] {
    return this.#requests.filter((r) => r.isBulk);
  }

  get stats(): Readonly<EsBulkServerStats> {
    return { ...this.#stats };
  }

  /** Forget documents, recorded requests, counters and faults. */
  reset(): void {
    this.#indices.clear();
    this.#requests = [];
    this.#bulkRequestCount = 0;
    this.#stats = emptyStats();
    this.clearFaults();
  }

  clearFaults(): void {
    for (const r of this.#itemRules) r.cancelled = true;
    for (const r of this.#requestRules) r.cancelled = true;
    for (const r of this.#resets) r.cancelled = true;
    this.#itemRules = [];
    this.#requestRules = [];
    this.#resets = [];
  }

  /** Matching items answer with an item-level error and are not stored. First matching rule wins. */
  failItems(rule: EsFailItemsRule | EsFailItemsPredicate): EsFaultHandle {
    const state: ItemRuleState = { rule, hits: 0, perId: new Map(), cancelled: false };
    this.#itemRules.push(state);
    return {
      get hits() {
        return state.hits;
      },
      cancel: () => {
        state.cancelled = true;
      },
    };
  }

  /** The next `times` `_bulk` requests answer with a whole-request error; nothing is stored. */
  failRequests(rule: EsFailRequestsRule): EsFaultHandle {
    const state: RequestRuleState = { rule, remaining: rule.times ?? 1, hits: 0, cancelled: false };
    this.#requestRules.push(state);
    return {
      get hits() {
        return state.hits;
      },
      cancel: () => {
        state.cancelled = true;
      },
    };
  }

  /** The next `n` `_bulk` requests get their connection destroyed without an answer. */
  resetNext(n: number, options: EsResetOptions = {}): EsFaultHandle {
    const state: ResetState = { remaining: n, afterProcessing: options.afterProcessing ?? false, hits: 0, cancelled: false };
    this.#resets.push(state);
    return {
      get hits() {
        return state.hits;
      },
      cancel: () => {
        state.cancelled = true;
      },
    };
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rawBody = await readBody(req);
    const parsedUrl = new URL(req.url ?? '/', 'http://localhost');
    const path = parsedUrl.pathname;
    const query: Record<string, string> = {};
    for (const [k, v] of parsedUrl.searchParams) query[k] = v;
    const isBulk = /^\/(?:[^/]+\/)?_bulk\/?$/.test(path);
    const record: RecordedEsRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      path,
      query,
      headers: req.headers,
      rawBody,
      body: '',
      isBulk,
      itemCount: 0,
      status: 0,
      outcome: 'answered',
      response: undefined,
    };
    this.#requests.push(record);
    this.#stats.requests++;
    this.#stats.bytesReceived += rawBody.length;
    if (isBulk) this.#stats.bulkRequests++;

    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));

    const reset = isBulk ? this.#takeReset() : undefined;
    if (reset && !reset.afterProcessing) {
      record.outcome = 'reset';
      req.socket.destroy();
      return;
    }

    const send = (status: number, body: unknown, headers: Record<string, string | string[]> = {}): void => {
      record.status = status;
      record.response = body;
      if (reset) {
        record.outcome = 'reset';
        req.socket.destroy();
        return;
      }
      const outHeaders: Record<string, string | string[]> = { ...headers };
      if (this.flavor === 'elasticsearch' && status !== 401) outHeaders['x-elastic-product'] = 'Elasticsearch';
      let payload: Buffer;
      if (body === undefined) {
        payload = Buffer.alloc(0);
      } else {
        payload = Buffer.from(typeof body === 'string' ? body : JSON.stringify(filterPath(body, query['filter_path'])));
        outHeaders['content-type'] ??= 'application/json';
      }
      if (this.gzipResponses && payload.length > 0 && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
        payload = zlib.gzipSync(payload);
        outHeaders['content-encoding'] = 'gzip';
      }
      outHeaders['content-length'] = String(payload.length);
      res.writeHead(status, outHeaders);
      res.end(payload);
    };

    let body: Buffer;
    try {
      body = decodeBody(rawBody, req.headers['content-encoding']);
    } catch {
      send(400, errorBody(400, 'parse_exception', 'failed to decompress the request body'));
      return;
    }
    record.body = body.toString('utf8');

    // Elasticsearch enforces the size limit before authentication, on the decoded body.
    if (this.maxContentLengthBytes !== undefined && body.length > this.maxContentLengthBytes) {
      send(413, undefined);
      return;
    }

    const auth = this.#checkAuth(req.headers.authorization, path);
    if (auth) {
      send(401, auth.body, auth.headers);
      return;
    }

    if (isBulk) {
      const rule = this.#takeRequestRule();
      if (rule) {
        record.outcome = 'injected-failure';
        const headers: Record<string, string> = {};
        if (rule.retryAfterSeconds !== undefined) headers['retry-after'] = String(rule.retryAfterSeconds);
        if (rule.status === 413) {
          send(413, undefined, headers);
        } else {
          const [type, reason] = defaultRequestError(rule.status);
          send(rule.status, errorBody(rule.status, rule.type ?? type, rule.reason ?? reason), headers);
        }
        return;
      }
    }

    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      if (req.method === 'HEAD') send(200, undefined);
      else send(200, this.#rootInfo());
      return;
    }

    if (path === '/_cluster/health' && req.method === 'GET') {
      send(200, { cluster_name: this.#rootInfo().cluster_name, status: 'green', timed_out: false, number_of_nodes: 1, number_of_data_nodes: 1 });
      return;
    }

    if (/^\/(?:[^/]+\/)?_mget\/?$/.test(path) && (req.method === 'POST' || req.method === 'GET')) {
      send(200, this.#mget(record.body, /^\/([^/]+)\/_mget\/?$/.exec(path)?.[1]));
      return;
    }

    if (isBulk) {
      if (req.method !== 'POST' && req.method !== 'PUT') {
        send(405, { error: `Incorrect HTTP method for uri [${record.url}] and method [${req.method}], allowed: [POST, PUT]`, status: 405 });
        return;
      }
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      if (contentType === '') {
        send(406, { error: 'Content-Type header is missing', status: 406 });
        return;
      }
      if (!ACCEPTED_CONTENT_TYPES.has(contentType)) {
        send(406, { error: `Content-Type header [${req.headers['content-type']}] is not supported`, status: 406 });
        return;
      }
      if (query['refresh'] !== undefined && !['', 'true', 'false', 'wait_for'].includes(query['refresh'])) {
        send(400, errorBody(400, 'illegal_argument_exception', `Unknown value for refresh: [${query['refresh']}].`));
        return;
      }
      const pathIndex = /^\/([^/]+)\/_bulk\/?$/.exec(path)?.[1];
      try {
        const started = performance.now();
        const requestNumber = ++this.#bulkRequestCount;
        const lines = parseBulkBody(record.body, pathIndex !== undefined ? decodeURIComponent(pathIndex) : undefined);
        record.itemCount = lines.length;
        this.#stats.items += lines.length;
        const items = lines.map((line, position) => this.#processItem(line, requestNumber, position));
        const errors = items.some((item) => Object.values(item)[0]?.error !== undefined);
        send(200, { took: Math.round(performance.now() - started), errors, items });
      } catch (err) {
        if (err instanceof EsHttpError) send(err.status, errorBody(err.status, err.type, err.message));
        else throw err;
      }
      return;
    }

    send(400, { error: `no handler found for uri [${record.url}] and method [${req.method}]`, status: 400 });
  }

  #rootInfo(): Record<string, unknown> {
    const common = {
      name: 'ktrail-test-node',
      cluster_name: this.clusterName,
      cluster_uuid: 'kTrAiLtEsTcLuStErUuId0',
    };
    if (this.flavor === 'opensearch') {
      return {
        ...common,
        version: {
          distribution: 'opensearch',
          number: this.versionNumber,
          build_type: 'tar',
          build_hash: '0000000000000000000000000000000000000000',
          build_date: '2024-09-01T00:00:00.000000000Z',
          build_snapshot: false,
          lucene_version: '9.11.1',
          minimum_wire_compatibility_version: '7.10.0',
          minimum_index_compatibility_version: '7.0.0',
        },
        tagline: 'The OpenSearch Project: https://opensearch.org/',
      };
    }
    return {
      ...common,
      version: {
        number: this.versionNumber,
        build_flavor: 'default',
        build_type: 'docker',
        build_hash: '0000000000000000000000000000000000000000',
        build_date: '2024-08-05T00:00:00.000000000Z',
        build_snapshot: false,
        lucene_version: '9.11.1',
        minimum_wire_compatibility_version: '7.17.0',
        minimum_index_compatibility_version: '7.0.0',
      },
      tagline: 'You Know, for Search',
    };
  }

  #checkAuth(
    header: string | undefined,
    path: string,
  ): { body: unknown; headers: Record<string, string | string[]> } | undefined {
    if (!this.#authorization || (header !== undefined && this.#authorization.has(header))) return undefined;
    if (this.flavor === 'opensearch') {
      return { body: 'Unauthorized', headers: { 'www-authenticate': 'Basic realm="OpenSearch Security"', 'content-type': 'text/plain; charset=UTF-8' } };
    }
    let reason: string;
    if (header === undefined) {
      reason = `missing authentication credentials for REST request [${path}]`;
    } else if (/^basic /i.test(header)) {
      const user = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8').split(':')[0] ?? '';
      reason = `unable to authenticate user [${user}] for REST request [${path}]`;
    } else {
      reason = 'unable to authenticate with provided credentials and anonymous access is not allowed for this request';
    }
    const challenge = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', 'ApiKey'];
    const cause = { type: 'security_exception', reason, header: { 'WWW-Authenticate': challenge } };
    return {
      body: { error: { root_cause: [cause], ...cause }, status: 401 },
      headers: { 'www-authenticate': challenge },
    };
  }

  #takeReset(): ResetState | undefined {
    const state = this.#resets.find((r) => !r.cancelled && r.remaining > 0);
    if (!state) return undefined;
    state.remaining--;
    state.hits++;
    return state;
  }

  #takeRequestRule(): EsFailRequestsRule | undefined {
    const state = this.#requestRules.find((r) => !r.cancelled && r.remaining > 0);
    if (!state) return undefined;
    state.remaining--;
    state.hits++;
    return state.rule;
  }

  #injectedItemFailure(item: EsBulkItemInfo): EsItemFailure | undefined {
    for (const state of this.#itemRules) {
      if (state.cancelled) continue;
      const { rule } = state;
      if (typeof rule === 'function') {
        const failure = rule(item);
        if (failure) {
          state.hits++;
          return failure;
        }
        continue;
      }
      if (rule.ids && !rule.ids.includes(item.id)) continue;
      if (rule.match && !rule.match(item)) continue;
      const times = rule.times ?? Infinity;
      if (rule.ids) {
        const used = state.perId.get(item.id) ?? 0;
        if (used >= times) continue;
        state.perId.set(item.id, used + 1);
      } else {
        if (state.hits >= times) continue;
      }
      state.hits++;
      return rule;
    }
    return undefined;
  }

  #indexState(name: string): IndexState {
    let state = this.#indices.get(name);
    if (!state) {
      state = { uuid: randomBytes(16).toString('base64url').slice(0, 22), nextSeqNo: 0, docs: new Map() };
      this.#indices.set(name, state);
    }
    return state;
  }

  #processItem(line: ParsedBulkLine, requestNumber: number, position: number): Record<string, EsItemResult> {
    const isDataStream = this.#dataStreams.has(line.index);
    const responseIndex = isDataStream ? `.ds-${line.index}-${this.#dateForBackingIndex}-000001` : line.index;
    const key = line.action;
    const fail = (status: number, error: Record<string, unknown>, id: string | null = line.id): Record<string, EsItemResult> => {
      this.#stats.itemsFailed++;
      return { [key]: { _index: responseIndex, _id: id, status, error } };
    };

    const indexError = invalidIndexNameReason(line.index);
    if (indexError) {
      return fail(400, { type: 'invalid_index_name_exception', reason: `Invalid index name [${line.index}], ${indexError}`, index_uuid: '_na_', index: line.index });
    }
    if (isDataStream && line.action !== 'create') {
      return fail(400, { type: 'illegal_argument_exception', reason: 'only write ops with an op_type of create are allowed in data streams' }, line.idGenerated ? null : line.id);
    }

    const info: EsBulkItemInfo = {
      action: line.action,
      index: line.index,
      id: line.id,
      idGenerated: line.idGenerated,
      source: line.source,
      requestNumber,
      position,
    };
    const injected = this.#injectedItemFailure(info);
    if (injected) {
      const [type, reason] = this.#defaultItemError(injected.status, line);
      const error: Record<string, unknown> = { type: injected.type ?? type, reason: injected.reason ?? reason };
      if (injected.status === 503 || injected.status === 409) {
        Object.assign(error, { index_uuid: this.#indexState(line.index).uuid, shard: '0', index: responseIndex });
      }
      return fail(injected.status, error);
    }

    if (line.action !== 'delete' && !isPlainObject(line.source)) {
      return fail(400, { type: this.#parsingErrorType(), reason: `[1:1] failed to parse: ${line.sourceError ?? 'source is not a JSON object'}` });
    }
    if (isDataStream && isPlainObject(line.source) && !('@timestamp' in line.source)) {
      return fail(400, { type: this.#parsingErrorType(), reason: '[1:1] failed to parse: data stream timestamp field [@timestamp] is missing' });
    }

    const state = this.#indexState(line.index);
    const existing = state.docs.get(line.id);
    const ok = (result: string, status: number, version: number, seqNo: number, shards: object = SHARDS_OK): Record<string, EsItemResult> => {
      this.#stats.itemsSucceeded++;
      return {
        [key]: { _index: responseIndex, _id: line.id, _version: version, result, _shards: { ...shards }, _seq_no: seqNo, _primary_term: 1, status },
      };
    };
    const conflictOrMissing = (status: number, type: string, reason: string): Record<string, EsItemResult> =>
      fail(status, { type, reason, index_uuid: state.uuid, shard: '0', index: responseIndex });

    switch (line.action) {
      case 'create':
      case 'index': {
        const source = line.source as Record<string, unknown>;
        if (existing && line.action === 'create') {
          return conflictOrMissing(409, 'version_conflict_engine_exception', `[${line.id}]: version conflict, document already exists (current version [${existing.version}])`);
        }
        const seqNo = state.nextSeqNo++;
        const version = existing ? existing.version + 1 : 1;
        state.docs.set(line.id, { source: structuredClone(source), version, seqNo });
        return existing ? ok('updated', 200, version, seqNo) : ok('created', 201, version, seqNo);
      }
      case 'delete': {
        const seqNo = state.nextSeqNo++;
        if (!existing) return ok('not_found', 404, 1, seqNo);
        state.docs.delete(line.id);
        return ok('deleted', 200, existing.version + 1, seqNo);
      }
      case 'update': {
        const spec = line.source as Record<string, unknown>;
        if ('script' in spec) {
          return fail(400, { type: 'illegal_argument_exception', reason: 'scripted updates are not supported by this test server' });
        }
        const doc = isPlainObject(spec['doc']) ? spec['doc'] : undefined;
        if (!existing) {
          const upsert = spec['doc_as_upsert'] === true ? doc : isPlainObject(spec['upsert']) ? spec['upsert'] : undefined;
          if (!upsert) {
            return conflictOrMissing(404, 'document_missing_exception', `[${line.id}]: document missing`);
          }
          const seqNo = state.nextSeqNo++;
          state.docs.set(line.id, { source: structuredClone(upsert), version: 1, seqNo });
          return ok('created', 201, 1, seqNo);
        }
        if (!doc) {
          return fail(400, { type: 'action_request_validation_exception', reason: 'Validation Failed: 1: script or doc is missing;' });
        }
        const merged = deepMerge(existing.source, doc);
        if (JSON.stringify(merged) === JSON.stringify(existing.source)) {
          return ok('noop', 200, existing.version, existing.seqNo, { total: 0, successful: 0, failed: 0 });
        }
        const seqNo = state.nextSeqNo++;
        const version = existing.version + 1;
        state.docs.set(line.id, { source: merged, version, seqNo });
        return ok('updated', 200, version, seqNo);
      }
    }
  }

  #parsingErrorType(): string {
    // Elasticsearch renamed it in 8.8; OpenSearch kept the old name.
    return this.flavor === 'opensearch' ? 'mapper_parsing_exception' : 'document_parsing_exception';
  }

  #defaultItemError(status: number, line: ParsedBulkLine): [string, string] {
    switch (status) {
      case 429:
        return [
          'es_rejected_execution_exception',
          'rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=1024, max_coordinating_and_primary_bytes=107374182]',
        ];
      case 400:
        return [this.#parsingErrorType(), `[1:2] failed to parse field [message] of type [long] in document with id '${line.id}'. Preview of field's value: 'x'`];
      case 403:
        return ['security_exception', `action [indices:data/write/bulk[s]] is unauthorized on indices [${line.index}]`];
      case 404:
        return ['index_not_found_exception', `no such index [${line.index}]`];
      case 409:
        return ['version_conflict_engine_exception', `[${line.id}]: version conflict, document already exists (current version [1])`];
      case 503:
        return ['unavailable_shards_exception', `[${line.index}][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[${line.index}][0]] containing [1] requests]`];
      case 500:
        return ['illegal_state_exception', 'injected internal error'];
      default:
        return ['exception', `injected failure with status ${status}`];
    }
  }
}

interface EsItemResult {
  _index: string;
  _id: string | null;
  status: number;
  error?: Record<string, unknown>;
  [k: string]: unknown;
}

interface ParsedBulkLine {
  action: EsBulkAction;
  index: string;
  id: string;
  idGenerated: boolean;
  source: unknown;
  sourceError?: string;
}

function emptyStats(): EsBulkServerStats {
  return { requests: 0, bulkRequests: 0, items: 0, itemsSucceeded: 0, itemsFailed: 0, bytesReceived: 0 };
}

function errorBody(status: number, type: string, reason: string): Record<string, unknown> {
  return { error: { root_cause: [{ type, reason }], type, reason }, status };
}

function defaultRequestError(status: number): [string, string] {
  switch (status) {
    case 429:
      return ['es_rejected_execution_exception', 'rejected execution of coordinating operation [coordinating_and_primary_bytes=107000000, replica_bytes=0, all_bytes=107000000, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=107374182]'];
    case 503:
      return ['cluster_block_exception', 'blocked by: [SERVICE_UNAVAILABLE/2/no master];'];
    case 500:
      return ['illegal_state_exception', 'injected internal error'];
    default:
      return ['exception', `injected failure with status ${status}`];
  }
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function decodeBody(raw: Buffer, encoding: string | undefined): Buffer {
  const enc = (encoding ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return raw;
  if (enc === 'gzip' || enc === 'x-gzip') return zlib.gunzipSync(raw);
  if (enc === 'deflate') return zlib.inflateSync(raw);
  throw new Error(`unsupported content-encoding ${enc}`);
}

/** Parses NDJSON into items; throws EsHttpError for what Elasticsearch rejects as a whole. */
function parseBulkBody(body: string, pathIndex: string | undefined): ParsedBulkLine[] {
  if (body.length > 0 && !body.endsWith('\n')) {
    throw new EsHttpError(400, 'illegal_argument_exception', 'The bulk request must be terminated by a newline [\\n]');
  }
  const lines = body.split('\n');
  lines.pop(); // after the terminating newline
  const out: ParsedBulkLine[] = [];
  const validation: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const lineNo = i + 1;
    const raw = (lines[i] ?? '').trim();
    i++;
    if (raw === '') continue;
    let action: unknown;
    try {
      action = JSON.parse(raw);
    } catch (err) {
      throw new EsHttpError(400, 'x_content_parse_exception', `[${lineNo}:1] Malformed action/metadata line [${lineNo}]: ${(err as Error).message}`);
    }
    if (!isPlainObject(action) || Object.keys(action).length !== 1) {
      throw new EsHttpError(400, 'illegal_argument_exception', `Malformed action/metadata line [${lineNo}], expected a simple value for field [_index] but found [START_OBJECT]`);
    }
    const name = Object.keys(action)[0] ?? '';
    if (name !== 'index' && name !== 'create' && name !== 'update' && name !== 'delete') {
      throw new EsHttpError(400, 'illegal_argument_exception', `Malformed action/metadata line [${lineNo}], expected field [create], [delete], [index] or [update] but found [${name}]`);
    }
    const meta = action[name];
    if (!isPlainObject(meta)) {
      throw new EsHttpError(400, 'illegal_argument_exception', `Malformed action/metadata line [${lineNo}], expected START_OBJECT but found [${typeof meta}]`);
    }
    for (const k of Object.keys(meta)) {
      if (!KNOWN_METADATA.has(k)) {
        throw new EsHttpError(400, 'illegal_argument_exception', `Action/metadata line [${lineNo}] contains an unknown parameter [${k}]`);
      }
    }
    const index = typeof meta['_index'] === 'string' ? meta['_index'] : pathIndex;
    const givenId = meta['_id'] === undefined || meta['_id'] === null ? undefined : String(meta['_id']);
    let effective: EsBulkAction = name;
    if (name === 'index' && meta['op_type'] === 'create') effective = 'create';
    if (index === undefined) validation.push('index is missing');
    if ((name === 'update' || name === 'delete') && givenId === undefined) validation.push('id is missing');
    let source: unknown;
    let sourceError: string | undefined;
    if (name !== 'delete') {
      if (i >= lines.length) {
        validation.push('source is missing');
      } else {
        const sourceLine = lines[i] ?? '';
        i++;
        try {
          source = JSON.parse(sourceLine);
        } catch (err) {
          sourceError = (err as Error).message;
        }
      }
    }
    const parsed: ParsedBulkLine = {
      action: effective,
      index: index ?? '',
      id: givenId ?? generateId(),
      idGenerated: givenId === undefined,
      source,
    };
    if (sourceError !== undefined) parsed.sourceError = sourceError;
    out.push(parsed);
  }
  if (out.length === 0) validation.push('no requests added');
  if (validation.length > 0) {
    const unique = [...new Set(validation)];
    throw new EsHttpError(400, 'action_request_validation_exception', `Validation Failed: ${unique.map((v, n) => `${n + 1}: ${v};`).join('')}`);
  }
  return out;
}

/** Elasticsearch auto-ids are 20 URL-safe base64 characters. */
function generateId(): string {
  return randomBytes(15).toString('base64url');
}

function invalidIndexNameReason(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name !== name.toLowerCase()) return 'must be lowercase';
  if (/^[_\-+]/.test(name)) return "must not start with '_', '-', or '+'";
  if (/[\\/*?"<>| ,#:]/.test(name)) return 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]';
  if (name === '.' || name === '..') return "must not be '.' or '..'";
  if (Buffer.byteLength(name) > 255) return 'index name is too long';
  return undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(base);
  for (const [k, v] of Object.entries(patch)) {
    const current = out[k];
    out[k] = isPlainObject(current) && isPlainObject(v) ? deepMerge(current, v) : structuredClone(v);
  }
  return out;
}

/**
 * Elasticsearch's `filter_path` (inclusive form): comma-separated dotted paths, `*` matches
 * within one key, `**` any depth; arrays are transparent and elements left empty are dropped.
 */
export function filterPath(value: unknown, spec: string | undefined): unknown {
  if (spec === undefined || spec === '') return value;
  const patterns = spec.split(',').map((p) => p.trim()).filter((p) => p !== '' && !p.startsWith('-')).map((p) => p.split('.'));
  if (patterns.length === 0) return value;
  const result = applyFilter(value, patterns);
  return result === undefined ? {} : result;
}

function applyFilter(value: unknown, patterns: string[][]): unknown {
  if (patterns.some((p) => p.length === 0 || (p.length === 1 && p[0] === '**'))) return value;
  if (Array.isArray(value)) {
    const kept = value.map((v) => applyFilter(v, patterns)).filter((v) => v !== undefined);
    return kept.length > 0 ? kept : undefined;
  }
  if (!isPlainObject(value)) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const next: string[][] = [];
    for (const p of patterns) {
      const head = p[0] ?? '';
      if (head === '**') {
        next.push(p); // ** keeps matching deeper
        if (p.length > 1 && segmentMatches(p[1] ?? '', k)) next.push(p.slice(2));
      } else if (segmentMatches(head, k)) {
        next.push(p.slice(1));
      }
    }
    if (next.length === 0) continue;
    const filtered = applyFilter(v, next);
    if (filtered !== undefined) out[k] = filtered;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function segmentMatches(pattern: string, key: string): boolean {
  if (!pattern.includes('*')) return pattern === key;
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(key);
}
