import { createHash } from 'node:crypto';
import type { SignatureV4 } from '@smithy/signature-v4';
import type { IncomingHttpHeaders } from 'node:http';
import { errorMessage } from '../../errors.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { readBytes, readText, retryAfterMs } from '../../delivery/http/status.ts';
import { HttpPool } from '../../delivery/http/pool.ts';
import type { TlsConfig } from '../../delivery/http/tls.ts';

/**
 * The few S3 calls the s3 output needs — PutObject and the multipart upload
 * API — over undici, signed with SigV4 by the AWS SDK's own signer; and the
 * two `ktrail verify` reads back with (ListObjectsV2, GetObject), so that it
 * reaches the bucket with the same endpoint, TLS and credentials. Payloads
 * are signed (x-amz-content-sha256 is the body's SHA-256), so S3 rejects a
 * body corrupted on the way.
 */

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

export type CredentialProvider = () => Promise<AwsCredentials>;

export interface S3ClientOptions {
  bucket: string;
  region: string;
  /** Base URL; default https://s3.<region>.amazonaws.com. */
  endpoint: string | undefined;
  forcePathStyle: boolean;
  credentials: CredentialProvider;
  tls: TlsConfig | undefined;
  log: Logger;
}

/** A non-2xx S3 answer (status 0: no request was made, e.g. no credentials). */
export class S3Error extends Error {
  readonly status: number;
  readonly code: string;
  readonly retryAfterMs: number | undefined;
  constructor(status: number, code: string, message: string, retryAfterMs?: number) {
    super(message);
    this.name = 'S3Error';
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

export interface CompletedPart {
  partNumber: number;
  etag: string;
}

interface S3Response {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The body as bytes (GetObject); else empty, the body is in `text`. */
  bytes: Buffer;
}

/** One page of ListObjectsV2. */
export interface ObjectList {
  keys: string[];
  /** Set when more keys follow (pass it back to get them). */
  nextToken: string | undefined;
}

/** Largest object GetObject reads into memory (a Buffer's limit is near 4 GiB; objects are bounded by max_object_bytes). */
const MAX_GET_BYTES = 2 * 1024 * 1024 * 1024;

/** RFC 3986 escaping, as SigV4 canonicalises it. */
export function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function encodeKey(key: string): string {
  return key.split('/').map(escapeUri).join('/');
}

export class S3Client {
  readonly bucket: string;
  readonly #pool: HttpPool;
  readonly #signer: SignatureV4;
  readonly #protocol: string;
  readonly #hostname: string;
  readonly #port: number | undefined;
  readonly #hostHeader: string;
  /** Path before the key: endpoint path, plus /bucket for path-style. */
  readonly #basePath: string;

  /** Loads the AWS signing packages on first use: `ktrail check` and `status` never need them. */
  static async create(opts: S3ClientOptions): Promise<S3Client> {
    const [{ SignatureV4: Signer }, { Sha256 }] = await Promise.all([import('@smithy/signature-v4'), import('@aws-crypto/sha256-js')]);
    const signer = new Signer({
      service: 's3',
      region: opts.region,
      credentials: opts.credentials,
      sha256: Sha256,
      // S3 signs the path as sent (encoded once), unlike other services.
      uriEscapePath: false,
      applyChecksum: false,
    });
    return new S3Client(opts, signer);
  }

  constructor(opts: S3ClientOptions, signer: SignatureV4) {
    this.bucket = opts.bucket;
    const endpoint = new URL(opts.endpoint ?? `https://s3.${opts.region}.amazonaws.com`);
    const endpointPath = endpoint.pathname.replace(/\/+$/, '');
    this.#protocol = endpoint.protocol;
    this.#hostname = opts.forcePathStyle ? endpoint.hostname : `${opts.bucket}.${endpoint.hostname}`;
    this.#port = endpoint.port ? Number(endpoint.port) : undefined;
    this.#hostHeader = endpoint.port ? `${this.#hostname}:${endpoint.port}` : this.#hostname;
    this.#basePath = opts.forcePathStyle ? `${endpointPath}/${escapeUri(opts.bucket)}` : endpointPath;
    const origin = `${endpoint.protocol}//${this.#hostHeader}`;
    this.#pool = new HttpPool(origin, { connections: 8, tls: opts.tls, log: opts.log });
    this.#signer = signer;
  }

  start(): void {
    this.#pool.start();
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  /** Returns the object's ETag ('' if the store sent none). */
  async putObject(key: string, body: Buffer, headers: Record<string, string>, signal: AbortSignal): Promise<string> {
    const res = await this.#request('PUT', key, {}, headers, body, signal);
    return typeof res.headers.etag === 'string' ? res.headers.etag : '';
  }

  async createMultipartUpload(key: string, headers: Record<string, string>, signal: AbortSignal): Promise<string> {
    const res = await this.#request('POST', key, { uploads: '' }, headers, undefined, signal);
    const uploadId = xmlValue(res.text, 'UploadId');
    if (!uploadId) throw new S3Error(500, 'MalformedResponse', 'CreateMultipartUpload answer has no UploadId');
    return uploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer, signal: AbortSignal): Promise<string> {
    const res = await this.#request('PUT', key, { partNumber: String(partNumber), uploadId }, {}, body, signal);
    const etag = res.headers.etag;
    if (typeof etag !== 'string' || etag === '') throw new S3Error(500, 'MalformedResponse', `UploadPart ${partNumber} answer has no ETag`);
    return etag;
  }

  /** Returns the object's ETag ('' if the answer named none). */
  async completeMultipartUpload(key: string, uploadId: string, parts: readonly CompletedPart[], signal: AbortSignal): Promise<string> {
    let xml = '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">';
    for (const p of parts) xml += `<Part><PartNumber>${p.partNumber}</PartNumber><ETag>${escapeXml(p.etag)}</ETag></Part>`;
    xml += '</CompleteMultipartUpload>';
    const res = await this.#request('POST', key, { uploadId }, { 'content-type': 'application/xml' }, Buffer.from(xml), signal);
    // S3 may answer 200 and report the failure in the body.
    if (/<Error>/.test(res.text)) {
      throw new S3Error(500, xmlValue(res.text, 'Code') ?? 'InternalError', xmlValue(res.text, 'Message') ?? 'CompleteMultipartUpload failed');
    }
    return xmlValue(res.text, 'ETag') ?? '';
  }

  async abortMultipartUpload(key: string, uploadId: string, signal: AbortSignal): Promise<void> {
    await this.#request('DELETE', key, { uploadId }, {}, undefined, signal);
  }

  /** HeadBucket: the bucket exists and these credentials may use it (`ktrail check --connect`). */
  async headBucket(signal: AbortSignal): Promise<{ status: number; headers: IncomingHttpHeaders }> {
    const res = await this.#request('HEAD', undefined, {}, {}, undefined, signal);
    return { status: res.status, headers: res.headers };
  }

  /** ListObjectsV2: one page of the keys under `prefix`. */
  async listObjects(prefix: string, continuationToken: string | undefined, signal: AbortSignal): Promise<ObjectList> {
    const query: Record<string, string> = { 'list-type': '2', prefix };
    if (continuationToken !== undefined) query['continuation-token'] = continuationToken;
    const res = await this.#request('GET', undefined, query, {}, undefined, signal);
    const keys = [...res.text.matchAll(/<Contents>[\s\S]*?<Key>([^<]*)<\/Key>[\s\S]*?<\/Contents>/g)].map((m) => unescapeXml(m[1]!));
    const truncated = xmlValue(res.text, 'IsTruncated') === 'true';
    return { keys, nextToken: truncated ? xmlValue(res.text, 'NextContinuationToken') : undefined };
  }

  /** GetObject: the object's bytes as stored (no decoding) and its ETag. Throws S3Error (code NoSuchKey) when absent. */
  async getObject(key: string, signal: AbortSignal): Promise<{ bytes: Buffer; etag: string | undefined }> {
    const res = await this.#request('GET', key, {}, {}, undefined, signal, true);
    return { bytes: res.bytes, etag: typeof res.headers.etag === 'string' ? res.headers.etag : undefined };
  }

  /** Origin and path of the bucket, for messages (no credentials in it). */
  get bucketUrl(): string {
    return `${this.#protocol}//${this.#hostHeader}${this.#basePath || '/'}`;
  }

  async #request(
    method: string,
    key: string | undefined,
    query: Record<string, string>,
    extraHeaders: Record<string, string>,
    body: Buffer | undefined,
    signal: AbortSignal,
    wantBytes = false,
  ): Promise<S3Response> {
    // No key: the bucket itself (path-style /bucket, virtual-hosted /).
    const path = key === undefined ? this.#basePath || '/' : `${this.#basePath}/${encodeKey(key)}`;
    const headers: Record<string, string> = {
      ...extraHeaders,
      host: this.#hostHeader,
      'x-amz-content-sha256': createHash('sha256')
        .update(body ?? '')
        .digest('hex'),
    };
    let signed: { headers: Record<string, string> };
    try {
      signed = (await this.#signer.sign({
        method,
        protocol: this.#protocol,
        hostname: this.#hostname,
        port: this.#port,
        path,
        query,
        headers,
      })) as { headers: Record<string, string> };
    } catch (err) {
      throw new S3Error(0, 'CredentialsError', `cannot sign the request: ${errorMessage(err)}`);
    }
    const qs = Object.keys(query)
      .sort()
      .map((k) => `${escapeUri(k)}=${escapeUri(query[k]!)}`)
      .join('&');
    const res = await this.#pool.get().request({
      path: qs ? `${path}?${qs}` : path,
      method: method as 'PUT',
      headers: signed.headers,
      body: body ?? null,
      signal,
    });
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    if (ok && wantBytes) {
      const bytes = await readBytes(res.body, MAX_GET_BYTES);
      const length = Number(res.headers['content-length']);
      if (Number.isFinite(length) && bytes.length !== length) throw new S3Error(0, 'IncompleteBody', `GetObject ${key ?? ''}: read ${bytes.length} of ${length} bytes`);
      return { status: res.statusCode, headers: res.headers, text: '', bytes };
    }
    const text = await readText(res.body, 1024 * 1024);
    if (!ok) {
      const code = xmlValue(text, 'Code') ?? `HTTP${res.statusCode}`;
      const message = xmlValue(text, 'Message') ?? (text.trim().slice(0, 200) || 'no details');
      throw new S3Error(res.statusCode, code, message, retryAfterMs(res.headers));
    }
    return { status: res.statusCode, headers: res.headers, text, bytes: Buffer.alloc(0) };
  }
}

function xmlValue(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? unescapeXml(m[1]!) : undefined;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function unescapeXml(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCharCode(Number(d)))
    .replace(/&amp;/g, '&');
}
