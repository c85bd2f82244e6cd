import type { ItemFailure, SendOutcome } from '../../plugin.ts';
import { destinationCode, httpCode } from '../../delivery/outcome.ts';

/**
 * Splunk HTTP Event Collector answers: `{"text": "...", "code": N}` with the
 * HTTP status, and on /services/collector/event with indexer acknowledgement
 * an `ackId`. How each code is read (from Splunk's documentation of the
 * HEC status codes):
 *
 * | code | meaning                              | outcome                                          |
 * |------|--------------------------------------|--------------------------------------------------|
 * | 1–4  | token disabled, required, invalid    | retryable: the data stays spooled until fixed    |
 * | 6    | invalid data format                  | the event it names is dead-lettered; see below    |
 * | 7    | incorrect index                      | permanent: dead-lettered with the code           |
 * | 8, 9 | internal error, server busy          | retryable                                        |
 * | 10, 11 | data channel missing or invalid    | retryable (a new channel is not needed: it is ours) |
 * | 12, 13 | event field required or blank      | like 6                                           |
 * | 14   | ACK is disabled                      | retryable: set `ack.enabled: false` or enable it |
 * | other 4xx                                   | permanent                                        |
 *
 * A batch refused for one event (`invalid-event-number`) had the events
 * before it processed: without acknowledgement they count as delivered, with
 * it they are sent again (their ack is unknown); the event itself is
 * dead-lettered, the ones after it are sent again.
 */
export interface HecAnswer {
  text?: string;
  code?: number;
  ackId?: number;
  'invalid-event-number'?: number;
}

const NAMES: Record<number, string> = {
  1: 'token_disabled',
  2: 'token_required',
  3: 'invalid_authorization',
  4: 'invalid_token',
  5: 'no_data',
  6: 'invalid_data_format',
  7: 'incorrect_index',
  8: 'internal_error',
  9: 'server_busy',
  10: 'channel_missing',
  11: 'invalid_channel',
  12: 'event_field_required',
  13: 'event_field_blank',
  14: 'ack_disabled',
  15: 'indexed_fields_error',
};

export function parseHecAnswer(body: string): HecAnswer | undefined {
  try {
    const j = JSON.parse(body) as unknown;
    return j !== null && typeof j === 'object' ? (j as HecAnswer) : undefined;
  } catch {
    return undefined;
  }
}

function hecCode(code: number) {
  return destinationCode(`hec_${NAMES[code] ?? `code_${code}`}`);
}

/** The outcome of an error answer, or undefined when the body is not a HEC answer (the status table decides). */
export function judgeHecError(status: number, body: string, records: number, ack: boolean): SendOutcome | undefined {
  const a = parseHecAnswer(body);
  if (a?.code === undefined) return undefined;
  const detail = `HTTP ${status} HEC code ${a.code}: ${a.text ?? ''}`.slice(0, 500);
  const bad = a['invalid-event-number'];
  if ((a.code === 6 || a.code === 12 || a.code === 13 || a.code === 15) && bad !== undefined && Number.isInteger(bad) && bad >= 0 && bad < records) {
    const failures: ItemFailure[] = [];
    for (let i = 0; i < records; i++) {
      if (i === bad) failures.push({ index: i, kind: 'permanent', code: hecCode(a.code), detail });
      else if (i > bad || ack) failures.push({ index: i, kind: 'retryable', code: hecCode(a.code), detail: `sent again: ${detail}` });
    }
    return { kind: 'partial', failures };
  }
  if (a.code >= 1 && a.code <= 4) return { kind: 'retryable', code: hecCode(a.code), detail };
  if (a.code === 8 || a.code === 9 || a.code === 10 || a.code === 11 || a.code === 14 || status >= 500 || status === 429) {
    return { kind: 'retryable', code: hecCode(a.code), detail };
  }
  if (status === 413) return { kind: 'too_large', code: httpCode(413), detail };
  if (status >= 400) return { kind: 'permanent', code: hecCode(a.code), detail };
  return { kind: 'retryable', code: hecCode(a.code), detail };
}
