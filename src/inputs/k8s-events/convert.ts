import { LogRecord } from '../../pipeline/record.ts';

/**
 * An Event object → one record.
 *
 * - id `metadata.uid + ":" + metadata.resourceVersion`: each version of an
 *   event (a count or series bump writes a new one) is its own record, and a
 *   replay of the same version has the same id.
 * - time: the latest observation this version reports — the newest of
 *   `series.lastObservedTime`, `lastTimestamp` (events.k8s.io/v1:
 *   `deprecatedLastTimestamp`) and `eventTime`; failing those
 *   `firstTimestamp` / `deprecatedFirstTimestamp`, then
 *   `metadata.creationTimestamp`, then the time it was read.
 * - document: the object as the API sent it. Items of a list carry no
 *   `apiVersion`/`kind` (only the list does), watch objects do; both are set
 *   when missing so that every record says which API shape it has.
 */

export type EventApi = 'core/v1' | 'events.k8s.io/v1';

export interface EventObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { uid?: string; resourceVersion?: string; namespace?: string; name?: string; creationTimestamp?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export function apiVersionOf(api: EventApi): string {
  return api === 'core/v1' ? 'v1' : 'events.k8s.io/v1';
}

export function recordId(uid: string, resourceVersion: string): string {
  return `${uid}:${resourceVersion}`;
}

function parseTimeMs(v: unknown): number | undefined {
  if (typeof v !== 'string' || v === '') return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

export function eventTimeMs(obj: EventObject, fallbackMs: number = Date.now()): number {
  const series = obj.series as { lastObservedTime?: unknown } | undefined;
  let best: number | undefined;
  for (const v of [series?.lastObservedTime, obj.lastTimestamp, obj.deprecatedLastTimestamp, obj.eventTime]) {
    const t = parseTimeMs(v);
    if (t !== undefined && (best === undefined || t > best)) best = t;
  }
  return (
    best ?? parseTimeMs(obj.firstTimestamp) ?? parseTimeMs(obj.deprecatedFirstTimestamp) ?? parseTimeMs(obj.metadata?.creationTimestamp) ?? fallbackMs
  );
}

/** The record for one event version; undefined when the object has no uid or resourceVersion. */
export function toRecord(obj: EventObject, api: EventApi, input: string): LogRecord | undefined {
  const uid = obj.metadata?.uid;
  const rv = obj.metadata?.resourceVersion;
  if (!uid || !rv) return undefined;
  let doc = obj;
  if (obj.apiVersion === undefined || obj.kind === undefined) {
    doc = { apiVersion: obj.apiVersion ?? apiVersionOf(api), kind: obj.kind ?? 'Event', ...obj };
  }
  return new LogRecord({ id: recordId(uid, rv), timeMs: eventTimeMs(obj), input, doc });
}

/** True for decimal resourceVersions (etcd revisions), which can be ordered. */
export function isNumericRv(rv: string): boolean {
  return /^[1-9]\d*$/.test(rv) || rv === '0';
}

/** Orders two numeric resourceVersions without BigInt: longer is larger, else lexical. */
export function compareRv(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The emission rule. A version is new unless it is the one last emitted for
 * its uid (or older than it), or it is at or below the scope's cursor — every
 * version at or below the cursor was emitted before the cursor got there.
 * resourceVersions are compared as numbers only when both are decimal; an
 * opaque one is new unless equal to the last emitted.
 */
export function isNewVersion(rv: string, lastEmitted: string | undefined, cursor: string | undefined): boolean {
  const numeric = isNumericRv(rv);
  if (lastEmitted !== undefined) {
    if (rv === lastEmitted) return false;
    if (numeric && isNumericRv(lastEmitted) && compareRv(rv, lastEmitted) < 0) return false;
  }
  if (cursor !== undefined && numeric && isNumericRv(cursor) && compareRv(rv, cursor) <= 0) return false;
  return true;
}
