// The apiserver stores one Event object and serves it through core/v1 and events.k8s.io/v1
// by converting field by field (pkg/apis/events/v1 conversion): regarding ↔ involvedObject,
// note ↔ message, deprecatedCount ↔ count, deprecatedFirst/LastTimestamp ↔ first/lastTimestamp,
// deprecatedSource ↔ source, reportingController ↔ reportingComponent. The emulation keeps the
// core shape in its store, so both APIs see the same uid and resourceVersion.
import type { KubeObject } from './types.ts';

function isEmptyObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Object.keys(value).length === 0;
}

function setIfPresent(target: KubeObject, key: string, value: unknown): void {
  if (value === undefined || value === null || value === '' || value === 0 || isEmptyObject(value)) return;
  target[key] = value;
}

/**
 * The core/v1 JSON the apiserver emits: Go struct fields without omitempty always appear
 * (`source: {}`, `firstTimestamp: null`, `reportingComponent: ""`), so a client written against
 * real output sees the same keys here.
 */
export function canonicalCoreEvent(obj: KubeObject): KubeObject {
  const out: KubeObject = { ...obj };
  out.involvedObject = obj.involvedObject ?? {};
  out.source = obj.source ?? {};
  out.firstTimestamp = obj.firstTimestamp ?? null;
  out.lastTimestamp = obj.lastTimestamp ?? null;
  out.eventTime = obj.eventTime ?? null;
  out.reportingComponent = obj.reportingComponent ?? '';
  out.reportingInstance = obj.reportingInstance ?? '';
  return out;
}

export function eventsV1ToCore(obj: KubeObject): KubeObject {
  const out: KubeObject = {};
  if (obj.metadata !== undefined) out.metadata = obj.metadata;
  out.involvedObject = obj.regarding ?? {};
  setIfPresent(out, 'reason', obj.reason);
  setIfPresent(out, 'message', obj.note);
  out.source = obj.deprecatedSource ?? {};
  out.firstTimestamp = obj.deprecatedFirstTimestamp ?? null;
  out.lastTimestamp = obj.deprecatedLastTimestamp ?? null;
  setIfPresent(out, 'count', obj.deprecatedCount);
  setIfPresent(out, 'type', obj.type);
  out.eventTime = obj.eventTime ?? null;
  setIfPresent(out, 'series', obj.series);
  setIfPresent(out, 'action', obj.action);
  setIfPresent(out, 'related', obj.related);
  out.reportingComponent = obj.reportingController ?? '';
  out.reportingInstance = obj.reportingInstance ?? '';
  return out;
}

export function coreToEventsV1(obj: KubeObject): KubeObject {
  const out: KubeObject = { kind: 'Event', apiVersion: 'events.k8s.io/v1' };
  if (obj.metadata !== undefined) out.metadata = obj.metadata;
  // eventTime has no omitempty in events.k8s.io/v1: a core event without one reads as null.
  out.eventTime = obj.eventTime ?? null;
  setIfPresent(out, 'series', obj.series);
  setIfPresent(out, 'reportingController', obj.reportingComponent);
  setIfPresent(out, 'reportingInstance', obj.reportingInstance);
  setIfPresent(out, 'action', obj.action);
  setIfPresent(out, 'reason', obj.reason);
  out.regarding = obj.involvedObject ?? {};
  setIfPresent(out, 'related', obj.related);
  setIfPresent(out, 'note', obj.message);
  setIfPresent(out, 'type', obj.type);
  setIfPresent(out, 'deprecatedSource', obj.source);
  setIfPresent(out, 'deprecatedFirstTimestamp', obj.firstTimestamp);
  setIfPresent(out, 'deprecatedLastTimestamp', obj.lastTimestamp);
  setIfPresent(out, 'deprecatedCount', obj.count);
  return out;
}
