import type { SpooledRecord } from '../../pipeline/record.ts';
import { msToNanos, recordTimestamp, unixNanos } from '../../delivery/record-time.ts';

/**
 * A spooled record as an OTLP LogRecord, as a plain object in proto3 JSON
 * field names (see proto.ts). The table in docs/outputs/otlp_http.md is the
 * reference; in short:
 *
 * - time: the event time (src/delivery/record-time.ts), exact to the
 *   nanosecond digits the document has; observed time: when the spool stored
 *   the record (the same on every resend), else now.
 * - Events: severity WARN (13) for `type: Warning`, INFO (9) for `Normal`,
 *   the type as severity text; audit events carry no severity.
 * - event_name `k8s.audit` or `k8s.event` (the LogRecord field: the
 *   `event.name` attribute is deprecated in favour of it).
 * - attributes: OpenTelemetry semantic conventions where one exists
 *   (`k8s.namespace.name`, `k8s.pod.name`, `user.name`, `client.address`,
 *   `user_agent.original`, `http.response.status_code`, the `k8s.event.*` of
 *   the Kubernetes event conventions), `k8s.audit.*` for the audit fields that
 *   have none, and `ktrail.record.id`: the record id, the same on every replay.
 * - body: the document as an AnyValue map (kvlist), or its JSON text.
 *
 * A record that is not a JSON object still goes out, its text as a string
 * body, with the attributes that do not need the document.
 */
export interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  /** int64: a decimal string, as OTLP/JSON writes it (protobuf.js encodes it exactly). */
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values: AnyValue[] };
  kvlistValue?: { values: KeyValue[] };
}

export interface KeyValue {
  key: string;
  value: AnyValue;
}

export interface OtlpLogRecord {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber?: number;
  severityText?: string;
  eventName?: string;
  body: AnyValue;
  attributes: KeyValue[];
}

export interface MappingOptions {
  body: 'map' | 'string';
  /** Top-level key of k8s_metadata enrichment (its `target_key`). */
  enrichmentKey: string;
}

export const SEVERITY_INFO = 9;
export const SEVERITY_WARN = 13;

type Json = Record<string, unknown>;

const obj = (v: unknown): Json | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * A string protobuf can carry: a lone UTF-16 surrogate (JSON allows `"\ud800"`) would be written
 * as invalid UTF-8, which receivers refuse (a Go collector answers 400 for the whole request);
 * it becomes U+FFFD. OTLP/JSON would escape it, but one rule serves both encodings.
 */
function wellFormed(s: string): string {
  return s.isWellFormed() ? s : s.toWellFormed();
}

/** Any JSON value as an AnyValue: objects become kvlists, arrays arrays, safe integers int64, other finite numbers doubles, null an empty value. */
export function anyValue(v: unknown): AnyValue {
  switch (typeof v) {
    case 'string':
      return { stringValue: wellFormed(v) };
    case 'boolean':
      return { boolValue: v };
    case 'number':
      // JSON.parse turns 1e999 into Infinity, which proto3 JSON cannot write as a number: keep its text.
      return Number.isSafeInteger(v) ? { intValue: String(v) } : Number.isFinite(v) ? { doubleValue: v } : { stringValue: String(v) };
    case 'object': {
      if (v === null) return {};
      if (Array.isArray(v)) return { arrayValue: { values: v.map(anyValue) } };
      const values: KeyValue[] = [];
      for (const key in v) values.push({ key, value: anyValue((v as Json)[key]) });
      return { kvlistValue: { values } };
    }
    default:
      return {};
  }
}

/** Attributes by key: unique keys, as OTLP requires; a later set of the same key replaces the value. */
class Attributes {
  readonly #m = new Map<string, AnyValue>();

  str(key: string, v: unknown): void {
    const s = str(v);
    if (s !== undefined) this.#m.set(key, { stringValue: wellFormed(s) });
  }

  int(key: string, v: unknown): void {
    if (typeof v === 'number' && Number.isSafeInteger(v)) this.#m.set(key, { intValue: String(v) });
  }

  strings(key: string, v: unknown): void {
    if (!Array.isArray(v)) return;
    const values = v.filter((x): x is string => typeof x === 'string').map((s) => ({ stringValue: wellFormed(s) }));
    if (values.length > 0) this.#m.set(key, { arrayValue: { values } });
  }

  map(prefix: string, v: unknown): void {
    const o = obj(v);
    if (o) for (const k in o) this.str(`${prefix}${k}`, o[k]);
  }

  list(): KeyValue[] {
    const out: KeyValue[] = [];
    for (const [key, value] of this.#m) out.push({ key, value });
    return out;
  }
}

/** The owner kinds that have a `k8s.<kind>.name` convention. */
const OWNER_KINDS: Readonly<Record<string, string>> = {
  Deployment: 'k8s.deployment.name',
  ReplicaSet: 'k8s.replicaset.name',
  StatefulSet: 'k8s.statefulset.name',
  DaemonSet: 'k8s.daemonset.name',
  Job: 'k8s.job.name',
  CronJob: 'k8s.cronjob.name',
};

/** A k8s_metadata pod (its PodView) under the pod conventions, or under `prefix` for the actor pod. */
function podAttributes(a: Attributes, pod: Json, prefix: string | undefined): void {
  if (prefix !== undefined) {
    a.str(`${prefix}.namespace`, pod.namespace);
    a.str(`${prefix}.name`, pod.name);
    a.str(`${prefix}.uid`, pod.uid);
    return;
  }
  a.str('k8s.namespace.name', pod.namespace);
  a.str('k8s.pod.name', pod.name);
  a.str('k8s.pod.uid', pod.uid);
  a.str('k8s.node.name', pod.node);
  a.str('k8s.replicaset.name', pod.replicaSet);
  const owner = obj(pod.owner);
  const ownerKey = owner && typeof owner.kind === 'string' ? OWNER_KINDS[owner.kind] : undefined;
  if (owner && ownerKey) a.str(ownerKey, owner.name);
  a.map('k8s.pod.label.', pod.labels);
  a.map('k8s.pod.annotation.', pod.annotations);
  a.map('k8s.namespace.label.', pod.namespaceLabels);
}

function enrichmentAttributes(a: Attributes, e: Json): void {
  a.str('k8s.cluster.name', e.cluster);
  const o = obj(e.object);
  if (o) podAttributes(a, o, undefined);
  const actor = obj(e.actor);
  if (actor) {
    const pod = obj(actor.pod);
    if (pod) podAttributes(a, pod, 'k8s.audit.actor.pod');
    a.str('k8s.audit.actor.node.name', actor.node);
    const sa = obj(actor.serviceAccount);
    if (sa) {
      a.str('k8s.audit.actor.service_account.namespace', sa.namespace);
      a.str('k8s.audit.actor.service_account.name', sa.name);
    }
  }
}

function auditAttributes(a: Attributes, d: Json): void {
  a.str('k8s.audit.id', d.auditID);
  a.str('k8s.audit.stage', d.stage);
  a.str('k8s.audit.level', d.level);
  a.str('k8s.audit.verb', d.verb);
  a.str('k8s.audit.request_uri', d.requestURI);
  // Who: the authenticated user (and whom they impersonated).
  const user = obj(d.user);
  if (user) {
    a.str('user.name', user.username);
    a.str('user.id', user.uid);
    a.strings('k8s.audit.user.groups', user.groups);
  }
  const imp = obj(d.impersonatedUser);
  if (imp) {
    a.str('k8s.audit.impersonated_user.name', imp.username);
    a.strings('k8s.audit.impersonated_user.groups', imp.groups);
  }
  // From where, with what.
  if (Array.isArray(d.sourceIPs)) {
    // The first is what the client said (X-Forwarded-For may set it); the last is the address
    // the apiserver itself saw the request come from.
    a.str('client.address', d.sourceIPs[0]);
    a.str('network.peer.address', d.sourceIPs[d.sourceIPs.length - 1]);
    a.strings('k8s.audit.source_ips', d.sourceIPs);
  }
  a.str('user_agent.original', d.userAgent);
  // On what.
  const ref = obj(d.objectRef);
  if (ref) {
    a.str('k8s.namespace.name', ref.namespace);
    a.str('k8s.audit.object.resource', ref.resource);
    a.str('k8s.audit.object.subresource', ref.subresource);
    a.str('k8s.audit.object.name', ref.name);
    a.str('k8s.audit.object.api_group', ref.apiGroup);
    a.str('k8s.audit.object.api_version', ref.apiVersion);
    if (ref.resource === 'pods') a.str('k8s.pod.name', ref.name);
    if (ref.resource === 'nodes') a.str('k8s.node.name', ref.name);
  }
  // With what result.
  const status = obj(d.responseStatus);
  if (status) a.int('http.response.status_code', status.code);
  const ann = obj(d.annotations);
  if (ann) {
    a.str('k8s.audit.authorization.decision', ann['authorization.k8s.io/decision']);
    a.str('k8s.audit.authorization.reason', ann['authorization.k8s.io/reason']);
  }
}

/** core/v1 Events (involvedObject, count) and events.k8s.io/v1 (regarding, deprecatedCount, series). */
function eventAttributes(a: Attributes, d: Json): void {
  const meta = obj(d.metadata);
  const ref = obj(d.involvedObject) ?? obj(d.regarding);
  a.str('k8s.namespace.name', meta?.namespace ?? ref?.namespace);
  a.str('k8s.event.name', meta?.name);
  a.str('k8s.event.uid', meta?.uid);
  a.str('k8s.event.reason', d.reason);
  a.str('k8s.event.action', d.action);
  a.str('k8s.event.start_time', d.firstTimestamp ?? d.deprecatedFirstTimestamp);
  a.int('k8s.event.count', d.count ?? d.deprecatedCount ?? obj(d.series)?.count);
  a.str('k8s.event.reporting_component', d.reportingComponent ?? d.reportingController ?? obj(d.source)?.component);
  if (ref) {
    a.str('k8s.object.kind', ref.kind);
    a.str('k8s.object.name', ref.name);
    a.str('k8s.object.uid', ref.uid);
    a.str('k8s.object.api_version', ref.apiVersion);
    a.str('k8s.object.resource_version', ref.resourceVersion);
    a.str('k8s.object.fieldpath', ref.fieldPath);
    if (ref.kind === 'Pod') {
      a.str('k8s.pod.name', ref.name);
      a.str('k8s.pod.uid', ref.uid);
    }
    if (ref.kind === 'Node') a.str('k8s.node.name', ref.name);
  }
}

function parse(json: string): Json | undefined {
  try {
    return obj(JSON.parse(json));
  } catch {
    return undefined;
  }
}

export function toLogRecord(r: SpooledRecord, o: MappingOptions, nowMs: number): OtlpLogRecord {
  const doc = parse(r.json);
  const stamp = recordTimestamp(r);
  const out: OtlpLogRecord = {
    timeUnixNano: (stamp !== undefined ? unixNanos(stamp) : undefined) ?? msToNanos(r.timeMs),
    observedTimeUnixNano: msToNanos(r.storedMs ?? nowMs),
    body: o.body === 'map' && doc ? anyValue(doc) : { stringValue: r.json },
    attributes: [],
  };
  const a = new Attributes();
  if (doc) {
    if (typeof doc.auditID === 'string') {
      out.eventName = 'k8s.audit';
      auditAttributes(a, doc);
    } else if (obj(doc.involvedObject) ?? obj(doc.regarding)) {
      out.eventName = 'k8s.event';
      eventAttributes(a, doc);
      const type = str(doc.type);
      if (type !== undefined) {
        out.severityText = type;
        if (type === 'Warning') out.severityNumber = SEVERITY_WARN;
        else if (type === 'Normal') out.severityNumber = SEVERITY_INFO;
      }
    }
    const e = obj(doc[o.enrichmentKey]);
    if (e) enrichmentAttributes(a, e);
  }
  a.str('ktrail.input', r.input);
  a.str('ktrail.record.id', r.id);
  out.attributes = a.list();
  return out;
}
