/**
 * A real S3-compatible server for tests: s3rver runs in its own Node process on 127.0.0.1,
 * storing objects in a temp dir, with a recording / fault-injecting proxy in front of it.
 *
 * What the proxy adds, because s3rver 3.7 does not do it itself:
 * - SigV4 verification. s3rver only checks that the access key exists ("Signature version 4
 *   calculation is unimplemented" in its source); the proxy recomputes the signature with the
 *   secret key and answers 403 SignatureDoesNotMatch like S3.
 * - `aws-chunked` bodies. Current AWS SDKs send streaming bodies with a CRC32 trailer in
 *   `Content-Encoding: aws-chunked`; s3rver would store the chunk framing as the object. The
 *   proxy decodes them (as S3 does), checks the trailer checksum, and forwards a plain body.
 * - `x-amz-checksum-crc32` / `-sha1` / `-sha256` and hex `x-amz-content-sha256` checks (400 BadDigest
 *   / XAmzContentSHA256Mismatch), so a corrupt upload is caught at the server.
 * So for ktrail's s3 output tests, point the output at `proxyEndpoint`; `endpoint` is s3rver bare.
 *
 * Invariants: every request through the proxy is recorded (headers as sent, including the ones
 * s3rver ignores such as x-amz-server-side-encryption); faults are counted, never random; the
 * helper methods (listKeys, getObjectBytes, ...) go straight to s3rver so they neither show up in
 * the records nor hit injected faults.
 */
import http from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';

export const S3_REGION = 'us-east-1';
export const S3_ACCESS_KEY_ID = 'S3RVER';
export const S3_SECRET_ACCESS_KEY = 'S3RVER';

export interface StartS3ServerOptions {
  buckets: readonly string[];
  /** Verify SigV4 signatures at the proxy (default true). */
  verifySignatures?: boolean;
}

export interface S3ClientOptions {
  /** Talk to the proxy instead of s3rver directly (default false). */
  viaProxy?: boolean;
  /** Merged over the defaults (e.g. `maxAttempts: 1`). */
  config?: Partial<S3ClientConfig>;
}

export interface S3ObjectHead {
  contentLength: number | undefined;
  contentType: string | undefined;
  contentEncoding: string | undefined;
  /** s3rver does not report it; check `proxy.requests` for the header that was sent. */
  serverSideEncryption: string | undefined;
  storageClass: string | undefined;
  etag: string | undefined;
  lastModified: Date | undefined;
  metadata: Record<string, string>;
}

export type S3Operation =
  | 'ListBuckets' | 'CreateBucket' | 'HeadBucket' | 'DeleteBucket' | 'ListObjects' | 'ListObjectsV2'
  | 'ListMultipartUploads' | 'DeleteObjects' | 'PutObject' | 'CopyObject' | 'GetObject' | 'HeadObject'
  | 'DeleteObject' | 'CreateMultipartUpload' | 'UploadPart' | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload' | 'ListParts' | 'Other';

export type S3SignatureCheck = 'valid' | 'invalid' | 'absent' | 'unchecked';
export type S3ProxyOutcome = 'forwarded' | 'injected-failure' | 'reset' | 'rejected';

export interface RecordedS3Request {
  method: string;
  url: string;
  path: string;
  query: Record<string, string>;
  bucket: string | undefined;
  key: string | undefined;
  operation: S3Operation;
  /** Headers exactly as the client sent them. */
  headers: http.IncomingHttpHeaders;
  hasAuthorization: boolean;
  /** Body bytes received (aws-chunked framing included). */
  bodyBytes: number;
  /** Body bytes forwarded to s3rver after aws-chunked decoding. */
  payloadBytes: number;
  /** Checksums from the aws-chunked trailer, e.g. `{ 'x-amz-checksum-crc32': '...' }`. */
  trailers: Record<string, string>;
  signature: S3SignatureCheck;
  status: number;
  outcome: S3ProxyOutcome;
}

export interface S3RequestFilter {
  method?: string;
  pathRegex?: RegExp;
  operation?: S3Operation;
}

export interface S3FaultHandle {
  readonly hits: number;
  cancel(): void;
}

export interface S3FaultProxy {
  readonly endpoint: string;
  readonly requests: readonly RecordedS3Request[];
  clearRequests(): void;
  /** The next `n` matching requests answer `status` with an S3 XML error and are not forwarded. */
  failNext(n: number, status?: 500 | 503 | number, filter?: S3RequestFilter): S3FaultHandle;
  /** The next `n` matching requests get their connection destroyed; afterForwarding lets s3rver act first. */
  resetNext(n: number, filter?: S3RequestFilter & { afterForwarding?: boolean }): S3FaultHandle;
  clearFaults(): void;
}

export interface S3TestServer {
  /** s3rver itself, e.g. `http://127.0.0.1:40123`. */
  readonly endpoint: string;
  /** The recording / fault-injecting / signature-verifying proxy. */
  readonly proxyEndpoint: string;
  readonly region: typeof S3_REGION;
  readonly accessKeyId: typeof S3_ACCESS_KEY_ID;
  readonly secretAccessKey: typeof S3_SECRET_ACCESS_KEY;
  /** s3rver's data directory (removed by stop()). */
  readonly dir: string;
  /** s3rver's process id. */
  readonly pid: number;
  readonly proxy: S3FaultProxy;
  client(options?: S3ClientOptions): S3Client;
  listKeys(bucket: string, prefix?: string): Promise<string[]>;
  getObjectBytes(bucket: string, key: string): Promise<Buffer>;
  getObjectGunzipped(bucket: string, key: string): Promise<string>;
  headObject(bucket: string, key: string): Promise<S3ObjectHead>;
  /** s3rver's stderr so far, for diagnosing a failed test. */
  stderr(): string;
  stop(): Promise<void>;
}

// Runs in the child. The parent's stdin pipe closing (parent gone, even by SIGKILL) ends it, so no
// s3rver outlives a crashed test worker.
const CHILD_SCRIPT = `
const S3rver = require(process.env.KTRAIL_S3RVER_MODULE);
const buckets = JSON.parse(process.env.KTRAIL_S3RVER_BUCKETS);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory: process.env.KTRAIL_S3RVER_DIR,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.close().catch(() => {}).finally(() => process.exit(0));
};
server.run().then(
  ({ port }) => process.stdout.write(JSON.stringify({ port }) + '\\n'),
  (err) => { console.error(err); process.exit(1); },
);
// Parent gone: nothing to be graceful for.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', stop);
`;

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

export async function startS3Server(options: StartS3ServerOptions): Promise<S3TestServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-s3rver-'));
  const require = createRequire(import.meta.url);
  const child = spawn(process.execPath, ['-e', CHILD_SCRIPT], {
    env: {
      ...process.env,
      KTRAIL_S3RVER_MODULE: require.resolve('s3rver'),
      KTRAIL_S3RVER_DIR: dir,
      KTRAIL_S3RVER_BUCKETS: JSON.stringify(options.buckets),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr += d;
  });
  let port: number;
  try {
    port = await waitForPort(child, () => stderr);
  } catch (err) {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const proxy = new FaultProxy(port, options.verifySignatures ?? true);
  await proxy.listen();

  const clients: S3Client[] = [];
  const makeClient = (opts: S3ClientOptions = {}): S3Client => {
    const c = new S3Client({
      endpoint: opts.viaProxy ? proxy.endpoint : endpoint,
      region: S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY },
      // s3rver stores aws-chunked framing verbatim; only the proxy decodes it.
      ...(opts.viaProxy ? {} : { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }),
      ...opts.config,
    });
    clients.push(c);
    return c;
  };
  const direct = makeClient();

  const getObjectBytes = async (bucket: string, key: string): Promise<Buffer> => {
    const out = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!out.Body) return Buffer.alloc(0);
    return Buffer.from(await out.Body.transformToByteArray());
  };

  let stopped = false;
  return {
    endpoint,
    proxyEndpoint: proxy.endpoint,
    region: S3_REGION,
    accessKeyId: S3_ACCESS_KEY_ID,
    secretAccessKey: S3_SECRET_ACCESS_KEY,
    dir,
    pid: child.pid ?? -1,
    proxy,
    client: makeClient,
    async listKeys(bucket, prefix) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const out = await direct.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const c of out.Contents ?? []) if (c.Key !== undefined) keys.push(c.Key);
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    },
    getObjectBytes,
    async getObjectGunzipped(bucket, key) {
      return zlib.gunzipSync(await getObjectBytes(bucket, key)).toString('utf8');
    },
    async headObject(bucket, key) {
      const h = await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return {
        contentLength: h.ContentLength,
        contentType: h.ContentType,
        contentEncoding: h.ContentEncoding,
        serverSideEncryption: h.ServerSideEncryption,
        storageClass: h.StorageClass,
        etag: h.ETag,
        lastModified: h.LastModified,
        metadata: h.Metadata ?? {},
      };
    },
    stderr: () => stderr,
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of clients) c.destroy();
      await proxy.close();
      await stopChild(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function waitForPort(child: ChildProcess, stderr: () => string): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${STARTUP_TIMEOUT_MS} ms: ${stderr()}`)), STARTUP_TIMEOUT_MS);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited before listening (code ${code}, signal ${signal}): ${stderr()}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

interface FaultState {
  remaining: number;
  hits: number;
  cancelled: boolean;
  filter: S3RequestFilter;
}

interface FailState extends FaultState {
  status: number;
}

interface ResetState extends FaultState {
  afterForwarding: boolean;
}

class FaultProxy implements S3FaultProxy {
  #upstreamPort: number;
  #verifySignatures: boolean;
  #server: http.Server;
  #sockets = new Set<Socket>();
  #port = 0;
  #requests: RecordedS3Request[] = [];
  #fails: FailState[] = [];
  #resets: ResetState[] = [];

  constructor(upstreamPort: number, verifySignatures: boolean) {
    this.#upstreamPort = upstreamPort;
    this.#verifySignatures = verifySignatures;
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendXmlError(res, 500, 'InternalError', `proxy error: ${String(err)}`);
        else res.destroy();
      });
    });
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get requests(): readonly RecordedS3Request[] {
    return this.#requests;
  }

  clearRequests(): void {
    this.#requests = [];
  }

  failNext(n: number, status = 500, filter: S3RequestFilter = {}): S3FaultHandle {
    const state: FailState = { remaining: n, hits: 0, cancelled: false, filter, status };
    this.#fails.push(state);
    return handleOf(state);
  }

  resetNext(n: number, filter: S3RequestFilter & { afterForwarding?: boolean } = {}): S3FaultHandle {
    const state: ResetState = { remaining: n, hits: 0, cancelled: false, filter, afterForwarding: filter.afterForwarding ?? false };
    this.#resets.push(state);
    return handleOf(state);
  }

  clearFaults(): void {
    for (const f of [...this.#fails, ...this.#resets]) f.cancelled = true;
    this.#fails = [];
    this.#resets = [];
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const url = req.url ?? '/';
    const parsed = new URL(url, 'http://localhost');
    const query: Record<string, string> = {};
    for (const [k, v] of parsed.searchParams) query[k] = v;
    const { bucket, key } = splitPath(parsed.pathname);
    const method = req.method ?? 'GET';
    const record: RecordedS3Request = {
      method,
      url,
      path: parsed.pathname,
      query,
      bucket,
      key,
      operation: inferOperation(method, bucket, key, query, req.headers),
      headers: req.headers,
      hasAuthorization: req.headers.authorization !== undefined,
      bodyBytes: raw.length,
      payloadBytes: raw.length,
      trailers: {},
      signature: 'absent',
      status: 0,
      outcome: 'forwarded',
    };
    this.#requests.push(record);

    const reset = takeFault(this.#resets, record);
    if (reset && !reset.afterForwarding) {
      record.outcome = 'reset';
      req.socket.destroy();
      return;
    }
    const fail = takeFault(this.#fails, record);
    if (fail) {
      record.outcome = 'injected-failure';
      record.status = fail.status;
      if (fail.status === 503) sendXmlError(res, 503, 'SlowDown', 'Please reduce your request rate.');
      else if (fail.status === 500) sendXmlError(res, 500, 'InternalError', 'We encountered an internal error. Please try again.');
      else sendXmlError(res, fail.status, 'InjectedFailure', `Injected failure with status ${fail.status}.`);
      return;
    }

    const reject = (status: number, code: string, message: string): void => {
      record.outcome = 'rejected';
      record.status = status;
      sendXmlError(res, status, code, message);
    };

    if (req.headers.authorization !== undefined) {
      if (!this.#verifySignatures) {
        record.signature = 'unchecked';
      } else {
        const check = verifySigV4(method, url, req.headersDistinct, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY);
        record.signature = check.ok ? 'valid' : 'invalid';
        if (!check.ok) {
          reject(403, check.code, check.message);
          return;
        }
      }
    } else if ('X-Amz-Signature' in query) {
      record.signature = 'unchecked'; // presigned URLs are passed through unverified
    }

    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    let body: Buffer = raw;
    const contentEncodings = (req.headers['content-encoding'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
    const sha256Header = firstHeader(req.headers['x-amz-content-sha256']);
    if (contentEncodings.includes('aws-chunked') || sha256Header.startsWith('STREAMING-')) {
      let decoded: { data: Buffer; trailers: Record<string, string> };
      try {
        decoded = decodeAwsChunked(raw);
      } catch (err) {
        reject(400, 'IncompleteBody', `Could not decode aws-chunked body: ${(err as Error).message}`);
        return;
      }
      body = decoded.data;
      record.trailers = decoded.trailers;
      const declared = req.headers['x-amz-decoded-content-length'];
      if (declared !== undefined && Number(declared) !== body.length) {
        reject(400, 'IncompleteBody', 'The request body terminated unexpectedly');
        return;
      }
      const rest = contentEncodings.filter((e) => e !== 'aws-chunked');
      if (rest.length > 0) headers['content-encoding'] = rest.join(',');
      else delete headers['content-encoding'];
      delete headers['x-amz-decoded-content-length'];
      delete headers['x-amz-trailer'];
      headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      Object.assign(headers, decoded.trailers);
    } else if (/^[0-9a-f]{64}$/i.test(sha256Header)) {
      if (createHash('sha256').update(body).digest('hex') !== sha256Header.toLowerCase()) {
        reject(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
        return;
      }
    }
    record.payloadBytes = body.length;
    const digestError = checkChecksums(body, { ...pickChecksums(req.headers), ...record.trailers });
    if (digestError) {
      reject(400, 'BadDigest', digestError);
      return;
    }
    delete headers['transfer-encoding'];
    if (body.length > 0 || req.headers['content-length'] !== undefined) headers['content-length'] = String(body.length);

    const upstream = await new Promise<http.IncomingMessage>((resolve, rejectUpstream) => {
      const out = http.request({ host: '127.0.0.1', port: this.#upstreamPort, method, path: url, headers }, resolve);
      out.on('error', rejectUpstream);
      out.end(body);
    });
    const upstreamBody: Buffer[] = [];
    for await (const c of upstream) upstreamBody.push(c as Buffer);
    record.status = upstream.statusCode ?? 502;
    if (reset) {
      record.outcome = 'reset';
      req.socket.destroy();
      return;
    }
    res.writeHead(record.status, upstream.headers);
    res.end(Buffer.concat(upstreamBody));
  }
}

function firstHeader(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

function handleOf(state: FaultState): S3FaultHandle {
  return {
    get hits() {
      return state.hits;
    },
    cancel() {
      state.cancelled = true;
    },
  };
}

function takeFault<T extends FaultState>(faults: readonly T[], record: RecordedS3Request): T | undefined {
  for (const f of faults) {
    if (f.cancelled || f.remaining <= 0) continue;
    if (f.filter.method && f.filter.method.toUpperCase() !== record.method) continue;
    if (f.filter.pathRegex && !f.filter.pathRegex.test(record.url)) continue;
    if (f.filter.operation && f.filter.operation !== record.operation) continue;
    f.remaining--;
    f.hits++;
    return f;
  }
  return undefined;
}

function sendXmlError(res: http.ServerResponse, status: number, code: string, message: string): void {
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message><RequestId>KTRAILPROXY</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function splitPath(pathname: string): { bucket: string | undefined; key: string | undefined } {
  const trimmed = pathname.replace(/^\/+/, '');
  if (trimmed === '') return { bucket: undefined, key: undefined };
  const slash = trimmed.indexOf('/');
  if (slash === -1) return { bucket: safeDecode(trimmed), key: undefined };
  const key = trimmed.slice(slash + 1);
  return { bucket: safeDecode(trimmed.slice(0, slash)), key: key === '' ? undefined : safeDecode(key) };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function inferOperation(
  method: string,
  bucket: string | undefined,
  key: string | undefined,
  q: Record<string, string>,
  headers: http.IncomingHttpHeaders,
): S3Operation {
  if (bucket === undefined) return method === 'GET' ? 'ListBuckets' : 'Other';
  if (key === undefined) {
    if (method === 'PUT') return 'CreateBucket';
    if (method === 'HEAD') return 'HeadBucket';
    if (method === 'DELETE') return 'DeleteBucket';
    if (method === 'POST' && 'delete' in q) return 'DeleteObjects';
    if (method === 'GET' && 'uploads' in q) return 'ListMultipartUploads';
    if (method === 'GET') return q['list-type'] === '2' ? 'ListObjectsV2' : 'ListObjects';
    return 'Other';
  }
  if (method === 'POST' && 'uploads' in q) return 'CreateMultipartUpload';
  if (method === 'POST' && 'uploadId' in q) return 'CompleteMultipartUpload';
  if (method === 'PUT' && 'uploadId' in q && 'partNumber' in q) return 'UploadPart';
  if (method === 'DELETE' && 'uploadId' in q) return 'AbortMultipartUpload';
  if (method === 'GET' && 'uploadId' in q) return 'ListParts';
  if (method === 'PUT') return headers['x-amz-copy-source'] !== undefined ? 'CopyObject' : 'PutObject';
  if (method === 'GET') return 'GetObject';
  if (method === 'HEAD') return 'HeadObject';
  if (method === 'DELETE') return 'DeleteObject';
  return 'Other';
}

/** `hex-size[;chunk-signature=...]\r\n<data>\r\n ... 0\r\n<trailer-lines>\r\n` */
export function decodeAwsChunked(raw: Buffer): { data: Buffer; trailers: Record<string, string> } {
  const parts: Buffer[] = [];
  let pos = 0;
  const readLine = (): string => {
    const end = raw.indexOf('\r\n', pos);
    if (end === -1) throw new Error('unterminated line');
    const line = raw.subarray(pos, end).toString('latin1');
    pos = end + 2;
    return line;
  };
  for (;;) {
    const header = readLine();
    const size = Number.parseInt(header.split(';')[0] ?? '', 16);
    if (!Number.isFinite(size) || size < 0) throw new Error(`bad chunk header ${JSON.stringify(header)}`);
    if (size === 0) break;
    if (pos + size > raw.length) throw new Error('truncated chunk');
    parts.push(raw.subarray(pos, pos + size));
    pos += size;
    if (raw.subarray(pos, pos + 2).toString('latin1') !== '\r\n') throw new Error('chunk not followed by CRLF');
    pos += 2;
  }
  const trailers: Record<string, string> = {};
  while (pos < raw.length) {
    const line = readLine();
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon === -1) throw new Error(`bad trailer ${JSON.stringify(line)}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    // The signed trailer variant ends with x-amz-trailer-signature, which is not a checksum.
    if (name !== 'x-amz-trailer-signature') trailers[name] = line.slice(colon + 1).trim();
  }
  return { data: Buffer.concat(parts), trailers };
}

function pickChecksums(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith('x-amz-checksum-') && k !== 'x-amz-checksum-mode' && k !== 'x-amz-checksum-type' && typeof v === 'string') out[k] = v;
  }
  return out;
}

/** Verifies the checksum kinds Node can compute; CRC32C / CRC64NVME are passed through unchecked. */
function checkChecksums(body: Buffer, checksums: Record<string, string>): string | undefined {
  for (const [name, expected] of Object.entries(checksums)) {
    let actual: string | undefined;
    if (name === 'x-amz-checksum-crc32') {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(zlib.crc32(body) >>> 0);
      actual = b.toString('base64');
    } else if (name === 'x-amz-checksum-sha256') {
      actual = createHash('sha256').update(body).digest('base64');
    } else if (name === 'x-amz-checksum-sha1') {
      actual = createHash('sha1').update(body).digest('base64');
    }
    if (actual !== undefined && actual !== expected) {
      return `The ${name.slice('x-amz-checksum-'.length).toUpperCase()} you specified did not match the calculated checksum.`;
    }
  }
  return undefined;
}

type SigCheck = { ok: true } | { ok: false; code: string; message: string };

const SIGV4_RE =
  /^AWS4-HMAC-SHA256\s+Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

/**
 * Recomputes an `Authorization: AWS4-HMAC-SHA256 ...` signature the way S3 does (single URI
 * encoding of the path, payload hash taken from x-amz-content-sha256).
 */
export function verifySigV4(
  method: string,
  rawUrl: string,
  headers: Record<string, string[] | undefined>,
  accessKeyId: string,
  secretAccessKey: string,
): SigCheck {
  const mismatch: SigCheck = {
    ok: false,
    code: 'SignatureDoesNotMatch',
    message: 'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
  };
  const auth = headers['authorization']?.[0] ?? '';
  const m = SIGV4_RE.exec(auth.trim());
  if (!m) {
    return { ok: false, code: 'AuthorizationHeaderMalformed', message: 'The authorization header is malformed.' };
  }
  const [, keyId = '', date = '', region = '', service = '', signedHeadersList = '', signature = ''] = m;
  if (keyId !== accessKeyId) {
    return { ok: false, code: 'InvalidAccessKeyId', message: 'The AWS Access Key Id you provided does not exist in our records.' };
  }
  const amzDate = headers['x-amz-date']?.[0] ?? '';
  if (!amzDate.startsWith(date)) {
    return { ok: false, code: 'AuthorizationHeaderMalformed', message: 'The credential scope date does not match x-amz-date.' };
  }
  const signedHeaders = signedHeadersList.split(';');
  if (!signedHeaders.includes('host')) return mismatch;
  const canonicalHeaders = signedHeaders
    .map((h) => `${h}:${(headers[h] ?? []).map((v) => v.trim().replace(/\s+/g, ' ')).join(',')}\n`)
    .join('');
  const payloadHash = headers['x-amz-content-sha256']?.[0] ?? createHash('sha256').update('').digest('hex');
  const q = rawUrl.indexOf('?');
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const rawQuery = q === -1 ? '' : rawUrl.slice(q + 1);
  const canonicalQuery = rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      const k = eq === -1 ? p : p.slice(0, eq);
      const v = eq === -1 ? '' : p.slice(eq + 1);
      return [rfc3986(safeDecode(k)), rfc3986(safeDecode(v))] as const;
    })
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const normalizedPath = rawPath.split('/').map((seg) => rfc3986(safeDecode(seg))).join('/');
  const scope = `${date}/${region}/${service}/aws4_request`;
  let signingKey = createHmac('sha256', `AWS4${secretAccessKey}`).update(date).digest();
  for (const part of [region, service, 'aws4_request']) signingKey = createHmac('sha256', signingKey).update(part).digest();
  const expected = Buffer.from(signature, 'hex');
  // Clients differ in how they escape the path on the wire; S3 accepts the canonical form.
  for (const canonicalPath of new Set([normalizedPath, rawPath])) {
    const canonicalRequest = [method, canonicalPath, canonicalQuery, canonicalHeaders, signedHeadersList, payloadHash].join('\n');
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
    const computed = createHmac('sha256', signingKey).update(stringToSign).digest();
    if (computed.length === expected.length && timingSafeEqual(computed, expected)) return { ok: true };
  }
  return mismatch;
}

function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
