// The API surface: which group/version/plural serves which stored resource, in what shape,
// and which fields a fieldSelector may name (the apiserver's per-resource selectable fields;
// anything else is rejected, as the real server does).
import { canonicalCoreEvent, coreToEventsV1, eventsV1ToCore } from './event-conversion.ts';
import type { KubeObject, ResourceKey, StoredObject } from './types.ts';

export interface ResourceView {
  /** The stored resource this API serves; two views may share one (events). */
  resource: ResourceKey;
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  /** Selectable fields, read from the stored (core) shape. */
  fields: ReadonlyMap<string, (obj: StoredObject) => string>;
  /** Stored shape → this API's shape, with apiVersion and kind. */
  toApi(obj: StoredObject): KubeObject;
  /** This API's shape → stored shape. */
  fromApi(obj: KubeObject): KubeObject;
}

export function apiVersionOf(view: ResourceView): string {
  return view.group === '' ? view.version : `${view.group}/${view.version}`;
}

function readPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Field selectors compare strings; an unset field reads as its zero value. */
function fieldString(obj: unknown, path: string): string {
  const value = readPath(obj, path);
  if (value === undefined || value === null) return '';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return value;
  return '';
}

type FieldGetter = (obj: StoredObject) => string;

function fieldMap(namespaced: boolean, extra: Record<string, string | FieldGetter>): Map<string, FieldGetter> {
  const map = new Map<string, FieldGetter>();
  map.set('metadata.name', (o) => o.metadata.name);
  if (namespaced) map.set('metadata.namespace', (o) => o.metadata.namespace ?? '');
  for (const [field, source] of Object.entries(extra)) {
    map.set(field, typeof source === 'string' ? (o) => fieldString(o, source) : source);
  }
  return map;
}

function identityView(
  resource: ResourceKey,
  group: string,
  version: string,
  kind: string,
  namespaced: boolean,
  shortNames: string[],
  fields: Record<string, string | FieldGetter>,
): ResourceView {
  const apiVersion = group === '' ? version : `${group}/${version}`;
  return {
    resource,
    group,
    version,
    plural: resource,
    singular: kind.toLowerCase(),
    kind,
    namespaced,
    shortNames,
    fields: fieldMap(namespaced, fields),
    toApi: (obj) => ({ apiVersion, kind, ...withoutTypeMeta(obj) }),
    fromApi: (obj) => withoutTypeMeta(obj),
  };
}

function withoutTypeMeta(obj: KubeObject): KubeObject {
  const { apiVersion: _apiVersion, kind: _kind, ...rest } = obj;
  return rest;
}

const involvedFields = ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'];

// The core strategy indexes `source` as source.component, falling back to reportingComponent.
const eventSource: FieldGetter = (o) => fieldString(o, 'source.component') || fieldString(o, 'reportingComponent');

const coreEventFields: Record<string, string | FieldGetter> = {
  ...Object.fromEntries(involvedFields.map((f) => [`involvedObject.${f}`, `involvedObject.${f}`])),
  reason: 'reason',
  reportingComponent: 'reportingComponent',
  source: eventSource,
  type: 'type',
};

const coreEvents: ResourceView = {
  ...identityView('events', '', 'v1', 'Event', true, ['ev'], coreEventFields),
  toApi: (obj) => ({ apiVersion: 'v1', kind: 'Event', ...withoutTypeMeta(canonicalCoreEvent(obj)) }),
  fromApi: (obj) => withoutTypeMeta(canonicalCoreEvent(obj)),
};

// events.k8s.io/v1 selects on its own spellings (regarding.*, reportingController), which the
// apiserver maps to the core fields; the core spellings are accepted too so a selector that
// works on either API works here.
const eventsV1Events: ResourceView = {
  ...identityView('events', 'events.k8s.io', 'v1', 'Event', true, ['ev'], {
    ...coreEventFields,
    ...Object.fromEntries(involvedFields.map((f) => [`regarding.${f}`, `involvedObject.${f}`])),
    reportingController: 'reportingComponent',
  }),
  toApi: (obj) => coreToEventsV1(obj),
  fromApi: (obj) => withoutTypeMeta(canonicalCoreEvent(eventsV1ToCore(obj))),
};

const pods = identityView('pods', '', 'v1', 'Pod', true, ['po'], {
  'spec.nodeName': 'spec.nodeName',
  'spec.restartPolicy': 'spec.restartPolicy',
  'spec.schedulerName': 'spec.schedulerName',
  'spec.serviceAccountName': 'spec.serviceAccountName',
  'spec.hostNetwork': (o) => (readPath(o, 'spec.hostNetwork') === true ? 'true' : 'false'),
  'status.phase': 'status.phase',
  'status.podIP': 'status.podIP',
  'status.nominatedNodeName': 'status.nominatedNodeName',
});

const namespaces = identityView('namespaces', '', 'v1', 'Namespace', false, ['ns'], { 'status.phase': 'status.phase' });

const replicasets = identityView('replicasets', 'apps', 'v1', 'ReplicaSet', true, ['rs'], {
  'status.replicas': (o) => String(readPath(o, 'status.replicas') ?? 0),
});

const leases = identityView('leases', 'coordination.k8s.io', 'v1', 'Lease', true, [], {});

export const resourceViews: readonly ResourceView[] = [coreEvents, eventsV1Events, pods, namespaces, replicasets, leases];

/** The view the programmatic API (create/update/get) speaks for each stored resource. */
export const primaryViews: ReadonlyMap<ResourceKey, ResourceView> = new Map([
  ['events', coreEvents],
  ['pods', pods],
  ['namespaces', namespaces],
  ['replicasets', replicasets],
  ['leases', leases],
]);

export function findView(group: string, version: string, plural: string): ResourceView | undefined {
  return resourceViews.find((v) => v.group === group && v.version === version && v.plural === plural);
}

export function primaryView(resource: ResourceKey): ResourceView {
  const view = primaryViews.get(resource);
  if (view === undefined) throw new Error(`unknown resource ${String(resource)}`);
  return view;
}
