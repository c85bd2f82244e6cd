import type { IncomingHttpHeaders } from 'node:http';
import type { ItemFailure, SendOutcome } from '../../plugin.ts';
import { destinationCode, httpCode } from '../../delivery/outcome.ts';
import { bodyDetail, retryAfterMs } from '../../delivery/http/status.ts';
import { scrubText } from '../../telemetry/scrub.ts';
import { otlpTypes } from './proto.ts';

/**
 * How an OTLP/HTTP answer is read (OTLP specification, "OTLP/HTTP Response"):
 *
 * | answer                                   | outcome                                                 |
 * |------------------------------------------|---------------------------------------------------------|
 * | 200, no partial_success (or rejected 0)  | ok (an error_message alone is a warning: logged)        |
 * | 200, rejected_log_records = all          | every record dead-lettered, code `otlp_rejected`        |
 * | 200, 0 < rejected < all                  | `on_partial_success` (below)                            |
 * | 200 whose body is not an OTLP answer     | retryable `malformed_response` (data stays spooled)     |
 * | 429, 502, 503, 504                       | retryable, Retry-After honoured                         |
 * | 401, 403                                 | retryable: credentials may be rotated (as every output) |
 * | 413                                      | too_large: the runner splits the request                |
 * | a status in `retry_statuses`             | retryable                                               |
 * | 400 and every other 4xx/5xx              | permanent: dead-lettered with `http_<status>` — the     |
 * |                                          | specification says they MUST NOT be retried             |
 *
 * A partial success does not say which records were rejected, and it must not
 * be retried. `dead_letter` (default): every record of the request goes to the
 * dead letters, code `otlp_partially_rejected`, with the receiver's message —
 * the rejected ones are certainly among them, so nothing is lost, and the
 * accepted ones that are there too carry the same `ktrail.record.id` if they
 * are ever sent again. `count`: the request counts as delivered; the rejected
 * number is counted and logged with the message, nothing is dead-lettered.
 */
export type PartialSuccessAction = 'dead_letter' | 'count';

export const OTLP_RETRYABLE = new Set([429, 502, 503, 504]);

/** The `message` of the google.rpc.Status an error answer carries (protobuf or JSON), else the body's text. */
export function statusMessage(bytes: Buffer, text: string, headers: IncomingHttpHeaders): string {
  const type = String(headers['content-type'] ?? '');
  try {
    if (type.includes('json')) {
      const j = JSON.parse(text) as { message?: unknown };
      if (typeof j.message === 'string') return j.message.slice(0, 500);
    } else if (type.includes('protobuf')) {
      const s = otlpTypes().status.decode(bytes) as unknown as { message?: string };
      if (s.message) return s.message.replace(/\s+/g, ' ').slice(0, 500);
      return '';
    }
  } catch {
    // Not a Status after all: the text below says what there was.
  }
  return bodyDetail(text);
}

/** The outcome of an answer that is not 2xx. */
export function judgeOtlpError(status: number, text: string, answer: { bytes: Buffer; headers: IncomingHttpHeaders }, retryStatuses: ReadonlySet<number>): SendOutcome {
  // The receiver's words go to dead letters too, which the log scrubber does not see.
  const msg = scrubText(statusMessage(answer.bytes, text, answer.headers));
  const detail = `HTTP ${status}${msg ? `: ${msg}` : ''}`;
  const code = httpCode(status);
  if (status === 413) return { kind: 'too_large', code, detail };
  if (OTLP_RETRYABLE.has(status) || status === 401 || status === 403 || retryStatuses.has(status) || status < 400) {
    return { kind: 'retryable', code, detail, retryAfterMs: retryAfterMs(answer.headers) };
  }
  return { kind: 'permanent', code, detail };
}

export interface PartialSuccess {
  rejected: number;
  message: string;
}

/**
 * The partial_success of a 200 answer: undefined when the body is not an
 * ExportLogsServiceResponse in the content type the receiver names. An empty
 * body is a full success (an empty message encodes to no bytes).
 */
export function readSuccess(bytes: Buffer, contentType: string): PartialSuccess | undefined {
  if (bytes.length === 0) return { rejected: 0, message: '' };
  const { response } = otlpTypes();
  let ps: { rejectedLogRecords?: unknown; errorMessage?: unknown } | undefined;
  try {
    if (contentType.includes('json')) {
      const j = JSON.parse(bytes.toString('utf8')) as unknown;
      if (j === null || typeof j !== 'object' || Array.isArray(j)) return undefined;
      // fromObject reads the proto3 JSON mapping (int64 as a string or a number; unknown fields ignored, as OTLP/JSON requires).
      const m = response.toObject(response.fromObject(j), { longs: String }) as { partialSuccess?: typeof ps };
      ps = m.partialSuccess;
    } else if (contentType.includes('protobuf')) {
      const m = response.toObject(response.decode(bytes), { longs: String }) as { partialSuccess?: typeof ps };
      ps = m.partialSuccess;
    } else {
      return undefined;
    }
  } catch {
    return undefined;
  }
  const rejected = Number(ps?.rejectedLogRecords ?? 0);
  return { rejected: Number.isFinite(rejected) && rejected > 0 ? rejected : 0, message: typeof ps?.errorMessage === 'string' ? ps.errorMessage : '' };
}

/** The outcome of a partial success that rejected `ps.rejected` of `records` records. */
export function partialOutcome(ps: PartialSuccess, records: number, action: PartialSuccessAction): SendOutcome {
  const msg = scrubText(ps.message.replace(/\s+/g, ' ').slice(0, 500));
  const all = ps.rejected >= records;
  if (!all && action === 'count') return { kind: 'ok' };
  const code = destinationCode(all ? 'otlp_rejected' : 'otlp_partially_rejected');
  const detail = all
    ? `the receiver rejected all ${records} log records of the request: ${msg || '(no message)'}`
    : `the receiver rejected ${ps.rejected} of ${records} log records of the request and does not say which (this one may have been accepted; its ktrail.record.id identifies a repeat): ${msg || '(no message)'}`;
  const failures: ItemFailure[] = [];
  for (let i = 0; i < records; i++) failures.push({ index: i, kind: 'permanent', code, detail });
  return { kind: 'partial', failures };
}
