import type { SpooledRecord } from '../pipeline/record.ts';

/**
 * The time a record's event happened, for outputs whose destination has a
 * time field of its own (Splunk HEC `time`, OTLP `time_unix_nano`). Audit
 * events: `stageTimestamp`, else `requestReceivedTimestamp`; Kubernetes
 * Events: `lastTimestamp`, else `eventTime` (events.k8s.io/v1), else
 * `metadata.creationTimestamp`; else the record time the input gave.
 *
 * The keys are found in the JSON text without parsing it (the hot path of
 * outputs that ship the document as it is). The first key of the list that
 * the text has wins. The apiserver writes an audit event's timestamps after
 * its requestObject and responseObject, whose content a user controls (a
 * custom resource may well have a `stageTimestamp` field), so the audit keys
 * are taken at their last occurrence: only `annotations` follows them, whose
 * keys are prefixed (`<plugin>/<key>`). An Event's keys are its own top-level
 * ones, before anything nested a user writes.
 * `"eventTime":null` (core/v1 Events) does not match and falls through.
 */
const TIME_KEYS: ReadonlyArray<[key: string, last: boolean]> = [
  ['"stageTimestamp":"', true],
  ['"requestReceivedTimestamp":"', true],
  ['"lastTimestamp":"', false],
  ['"eventTime":"', false],
  ['"creationTimestamp":"', false],
];

/** The RFC 3339 text of the event time, or undefined when the record has none that parses. */
export function recordTimestamp(r: SpooledRecord): string | undefined {
  for (const [k, last] of TIME_KEYS) {
    const i = last ? r.json.lastIndexOf(k) : r.json.indexOf(k);
    if (i === -1) continue;
    const end = r.json.indexOf('"', i + k.length);
    const text = r.json.slice(i + k.length, end);
    if (Number.isFinite(Date.parse(text))) return text;
  }
  return undefined;
}

/** The event time in ms since the epoch (see above); the record time when the document has none. */
export function recordTimeMs(r: SpooledRecord): number {
  const t = recordTimestamp(r);
  return t === undefined ? r.timeMs : Date.parse(t);
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$/;

/**
 * Nanoseconds since the epoch as a decimal string, exact to the digits the
 * text has (`2026-12-07T10:00:00.123456789Z`: a Number holds only about 15.9
 * digits). The whole seconds and the fraction are written side by side, so
 * no arithmetic can round. Undefined when the text is not RFC 3339 or is
 * before 1970.
 */
export function unixNanos(text: string): string | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (!Number.isFinite(ms) || ms < 1000) return undefined;
  return `${ms / 1000}${m[2] === undefined ? '000000000' : m[2].padEnd(9, '0')}`;
}

/** ms since the epoch as nanoseconds, a decimal string. */
export function msToNanos(ms: number): string {
  return ms <= 0 ? '0' : `${Math.trunc(ms)}000000`;
}
