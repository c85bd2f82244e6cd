import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { SendOutcome } from '../../plugin.ts';
import { parseRetryAfterMs } from '../backoff.ts';
import { errorMessage } from '../../errors.ts';

/**
 * How the HTTP-based outputs (http, elasticsearch, s3) turn an HTTP answer or
 * a transport error into a send outcome. One table, documented in each
 * output's page:
 *
 * | answer                         | outcome                                    |
 * |--------------------------------|--------------------------------------------|
 * | 2xx                            | ok                                         |
 * | 408, 429, 5xx                  | retryable (Retry-After honoured)           |
 * | 401, 403                       | retryable: credentials may be rotated      |
 * | 413                            | too_large: the sender splits the request   |
 * | 1xx/3xx (not followed)         | retryable: a config problem, nothing lost  |
 * | other 4xx                      | permanent: dead-lettered with the reason   |
 * | network error, timeout         | retryable                                  |
 */

export type StatusClass = 'ok' | 'retryable' | 'auth' | 'too_large' | 'permanent';

export function classifyStatus(status: number): StatusClass {
  if (status >= 200 && status < 300) return 'ok';
  if (status === 401 || status === 403) return 'auth';
  if (status === 413) return 'too_large';
  if (status === 408 || status === 429 || status >= 500) return 'retryable';
  if (status >= 400) return 'permanent';
  return 'retryable';
}

export function retryAfterMs(headers: IncomingHttpHeaders): number | undefined {
  return parseRetryAfterMs(headers['retry-after']);
}

/** A transport problem (refused, reset, TLS, aborted): always retryable. */
export function transportFailure(err: unknown, signal: AbortSignal): SendOutcome {
  if (signal.aborted) return { kind: 'retryable', code: 'aborted', detail: 'aborted (timeout or shutdown)' };
  const e = err as { code?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof e?.cause?.code === 'string' ? e.cause.code : typeof e?.code === 'string' ? e.code : undefined;
  const cause = typeof e?.cause?.message === 'string' && e.cause.message !== errorMessage(err) ? ` (${e.cause.message})` : '';
  return { kind: 'retryable', code: 'network', detail: `network ${code ?? 'error'}: ${errorMessage(err)}${cause}` };
}

/** Read at most `maxBytes` of an (error) body as text and release the connection. */
export async function readText(body: Dispatcher.ResponseData['body'], maxBytes = 16 * 1024): Promise<string> {
  return (await readBytes(body, maxBytes)).toString('utf8');
}

/** Read at most `maxBytes` of a body (the rest is drained, not kept) and release the connection. */
export async function readBytes(body: Dispatcher.ResponseData['body'], maxBytes = 16 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of body) {
      const b = chunk as Buffer;
      if (n < maxBytes) chunks.push(b.subarray(0, maxBytes - n));
      n += b.length;
    }
  } catch {
    // A body cut short still tells what it had.
  }
  return Buffer.concat(chunks);
}

/** Compact one-line detail from an error body (JSON `error.type/reason`, XML `<Code>`, or text). */
export function bodyDetail(text: string): string {
  const t = text.trim();
  if (t === '') return '';
  if (t.startsWith('{')) {
    try {
      const j = JSON.parse(t) as { error?: unknown; message?: unknown };
      if (j.error && typeof j.error === 'object') {
        const e = j.error as { type?: unknown; reason?: unknown };
        if (typeof e.type === 'string') return `${e.type}: ${typeof e.reason === 'string' ? e.reason : ''}`.slice(0, 500);
      }
      if (typeof j.error === 'string') return j.error.slice(0, 500);
      if (typeof j.message === 'string') return j.message.slice(0, 500);
    } catch {
      /* not JSON after all */
    }
  }
  return t.replace(/\s+/g, ' ').slice(0, 300);
}
