// Request semantics shared by HTTP handlers and the programmatic helpers: list with snapshot
// pagination and resourceVersion matching, get, create, update with optimistic concurrency,
// patch and delete. Everything here is synchronous, so a write and the watch notifications
// it causes happen atomically with respect to other requests.
import { randomBytes } from 'node:crypto';
import { jsonPatch, mergePatch } from './patch.ts';
import type { ResourceView } from './resources.ts';
import { checkFieldsSupported, matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from './selectors.ts';
import {
  alreadyExists,
  badRequest,
  conflict,
  failureStatus,
  invalid,
  KubeApiError,
  notFound,
  tooLargeResourceVersion,
} from './status.ts';
import { type ObjectStore, objectKey } from './store.ts';
import type { KubeObject, StoredObject } from './types.ts';

export interface ListQuery {
  namespace?: string | undefined;
  fieldSelector?: string | undefined;
  labelSelector?: string | undefined;
  limit?: string | undefined;
  continue?: string | undefined;
  resourceVersion?: string | undefined;
  resourceVersionMatch?: string | undefined;
}

export interface ListResult {
  items: StoredObject[];
  resourceVersion: number;
  continue?: string;
  remainingItemCount?: number;
}

export type Matcher = (obj: StoredObject) => boolean;

/** Namespace scope plus field and label selectors; selector errors surface as 400 before any work. */
export function buildMatcher(
  view: ResourceView,
  namespace: string | undefined,
  fieldSelector: string | undefined,
  labelSelector: string | undefined,
): Matcher {
  const fields = parseFieldSelector(fieldSelector);
  checkFieldsSupported(fields, new Set(view.fields.keys()));
  const labels = parseLabelSelector(labelSelector);
  return (obj) =>
    (namespace === undefined || obj.metadata.namespace === namespace) &&
    matchesFields(fields, (field) => (view.fields.get(field) as (o: StoredObject) => string)(obj)) &&
    matchesLabels(labels, obj.metadata.labels);
}

interface ContinueToken {
  /** Snapshot revision; -1 continues on the latest state (handed out after an Expired page). */
  rv: number;
  /** Key of the last item returned; the next page starts after it. */
  start: string;
}

export function encodeContinue(token: ContinueToken): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: token.rv, start: token.start })).toString('base64url');
}

function decodeContinue(raw: string): ContinueToken {
  try {
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Record<string, unknown>;
    if (parsed.v === 'meta.k8s.io/v1' && Number.isInteger(parsed.rv) && typeof parsed.start === 'string') {
      return { rv: parsed.rv as number, start: parsed.start };
    }
  } catch {
    // fall through to the apiserver's message
  }
  throw badRequest(`continue key is not valid: ${raw}`);
}

export function parseResourceVersion(raw: string): number {
  if (!/^\d+$/.test(raw)) {
    throw badRequest(`invalid resource version "${raw}": resource version must be an unsigned integer`);
  }
  return Number(raw);
}

function parseLimit(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  if (!/^-?\d+$/.test(raw)) throw badRequest(`invalid limit "${raw}"`);
  return Math.max(0, Number(raw));
}

function invalidListOptions(message: string): KubeApiError {
  return invalid('ListOptions', '', message);
}

/** JSON with sorted keys: two objects with the same content compare equal. */
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

function withoutRv(obj: KubeObject): KubeObject {
  const { resourceVersion: _rv, ...metadata } = obj.metadata ?? {};
  return { ...obj, metadata };
}

const generateNameAlphabet = 'bcdfghjklmnpqrstvwxz2456789';

function randomSuffix(): string {
  return [...randomBytes(5)].map((b) => generateNameAlphabet[b % generateNameAlphabet.length]).join('');
}

/** Things the real registry strategies set on every write of these kinds. */
function applyStrategy(view: ResourceView, obj: KubeObject, name: string): KubeObject {
  if (view.resource !== 'namespaces') return obj;
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const status = (obj.status ?? {}) as Record<string, unknown>;
  return {
    ...obj,
    metadata: { ...obj.metadata, labels: { ...obj.metadata?.labels, 'kubernetes.io/metadata.name': name } },
    spec: { finalizers: ['kubernetes'], ...spec },
    status: { phase: 'Active', ...status },
  };
}

// Registries that let PUT create a missing object (the events registry does; most do not).
const createOnUpdate = new Set(['events']);

export class ResourceApi {
  readonly #store: ObjectStore;
  readonly #nowMs: () => number;

  constructor(store: ObjectStore, nowMs: () => number) {
    this.#store = store;
    this.#nowMs = nowMs;
  }

  list(view: ResourceView, query: ListQuery): ListResult {
    const matcher = buildMatcher(view, query.namespace, query.fieldSelector, query.labelSelector);
    const limit = parseLimit(query.limit);
    const store = this.#store;
    const currentRv = store.currentRv;
    let snapshotRv = currentRv;
    let startAfter = '';
    const rvParam = query.resourceVersion ?? '';
    const match = query.resourceVersionMatch ?? '';

    if (query.continue !== undefined && query.continue !== '') {
      if (rvParam !== '' && rvParam !== '0') throw badRequest('specifying resource version is not allowed when using continue');
      const token = decodeContinue(query.continue);
      startAfter = token.start;
      snapshotRv = token.rv === -1 ? currentRv : token.rv;
      if (snapshotRv < store.compactedRv) {
        const status = failureStatus(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
        );
        status.metadata.continue = encodeContinue({ rv: -1, start: token.start });
        throw new KubeApiError(status);
      }
    } else {
      if (match !== '' && rvParam === '') {
        throw invalidListOptions('resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided');
      }
      if (match !== '' && match !== 'Exact' && match !== 'NotOlderThan') {
        throw invalidListOptions(`resourceVersionMatch: Unsupported value: "${match}": supported values: "Exact", "NotOlderThan"`);
      }
      if (match === 'Exact' && rvParam === '0') {
        throw invalidListOptions('resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"');
      }
      if (rvParam !== '' && rvParam !== '0') {
        const requested = parseResourceVersion(rvParam);
        if (requested > currentRv) throw tooLargeResourceVersion(requested, currentRv);
        // Legacy rule kept by the apiserver: a limit without resourceVersionMatch means Exact.
        const exact = match === 'Exact' || (match === '' && limit > 0);
        if (exact) snapshotRv = requested;
      }
    }

    const all = snapshotRv === currentRv ? store.current(view.resource) : store.snapshotAt(view.resource, snapshotRv);
    const inScope = all.filter(
      (obj) =>
        (query.namespace === undefined || obj.metadata.namespace === query.namespace) &&
        objectKey(obj.metadata.namespace, obj.metadata.name) > startAfter,
    );
    const hasSelectors = (query.fieldSelector ?? '') !== '' || (query.labelSelector ?? '') !== '';
    const items: StoredObject[] = [];
    for (let i = 0; i < inScope.length; i++) {
      const obj = inScope[i] as StoredObject;
      if (!matcher(obj)) continue;
      items.push(obj);
      if (limit > 0 && items.length === limit) {
        const remaining = inScope.length - i - 1;
        if (remaining === 0) break;
        const result: ListResult = {
          items,
          resourceVersion: snapshotRv,
          continue: encodeContinue({ rv: snapshotRv, start: objectKey(obj.metadata.namespace, obj.metadata.name) }),
        };
        // With selectors the server cannot know how many of the rest match, so it says nothing.
        if (!hasSelectors) result.remainingItemCount = remaining;
        return result;
      }
    }
    return { items, resourceVersion: snapshotRv };
  }

  get(view: ResourceView, namespace: string | undefined, name: string): StoredObject {
    const obj = this.#store.get(view.resource, objectKey(namespace, name));
    if (obj === undefined) throw notFound(view.group, view.plural, name);
    return obj;
  }

  create(view: ResourceView, namespace: string | undefined, body: KubeObject): StoredObject {
    this.#checkTypeMeta(view, body);
    return this.#insert(view, namespace, view.fromApi(body));
  }

  /** `obj` is already in the stored shape. */
  #insert(view: ResourceView, namespace: string | undefined, obj: KubeObject): StoredObject {
    const metadata = { ...obj.metadata };
    if (view.namespaced) {
      if (metadata.namespace !== undefined && metadata.namespace !== '' && namespace !== undefined && metadata.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      const ns = namespace ?? metadata.namespace;
      if (ns === undefined || ns === '') throw badRequest('the server could not find the requested resource: namespace is required');
      metadata.namespace = ns;
    } else {
      delete metadata.namespace;
    }
    if (metadata.resourceVersion !== undefined && metadata.resourceVersion !== '') {
      throw new KubeApiError(failureStatus(500, 'InternalError', 'resourceVersion should not be set on objects to be created'));
    }
    let name = metadata.name ?? '';
    if (name === '' && metadata.generateName !== undefined && metadata.generateName !== '') {
      do name = metadata.generateName + randomSuffix();
      while (this.#store.get(view.resource, objectKey(metadata.namespace, name)) !== undefined);
    }
    if (name === '') throw invalid(view.kind, '', 'metadata.name: Required value: name or generateName is required');
    metadata.name = name;
    const key = objectKey(metadata.namespace, name);
    if (this.#store.get(view.resource, key) !== undefined) throw alreadyExists(view.group, view.plural, name);
    return this.#store.insert(view.resource, key, applyStrategy(view, { ...obj, metadata }, name), this.#nowMs());
  }

  update(view: ResourceView, namespace: string | undefined, name: string, body: KubeObject): StoredObject {
    this.#checkTypeMeta(view, body);
    const obj = view.fromApi(body);
    const metadata = { ...obj.metadata };
    if (metadata.name !== undefined && metadata.name !== name) {
      throw badRequest(`the name of the object (${metadata.name}) does not match the name on the URL (${name})`);
    }
    if (view.namespaced && metadata.namespace !== undefined && metadata.namespace !== '' && metadata.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const key = objectKey(namespace, name);
    const existing = this.#store.get(view.resource, key);
    if (existing === undefined) {
      if (!createOnUpdate.has(view.resource)) throw notFound(view.group, view.plural, name);
      const { resourceVersion: _rv, ...rest } = metadata;
      return this.#insert(view, namespace, { ...obj, metadata: { ...rest, name } });
    }
    const rv = metadata.resourceVersion ?? '';
    // An empty resourceVersion is an unconditional update, which these registries allow.
    if (rv !== '' && rv !== existing.metadata.resourceVersion) throw conflict(view.group, view.plural, name);
    return this.#write(view, key, existing, { ...obj, metadata });
  }

  patch(view: ResourceView, namespace: string | undefined, name: string, contentType: string, patchBody: unknown): StoredObject {
    const key = objectKey(namespace, name);
    const existing = this.#store.get(view.resource, key);
    if (existing === undefined) throw notFound(view.group, view.plural, name);
    const current = view.toApi(existing);
    const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
    let patched: unknown;
    if (type === 'application/json-patch+json') {
      patched = jsonPatch(current, patchBody);
    } else if (type === 'application/merge-patch+json' || type === 'application/strategic-merge-patch+json') {
      patched = mergePatch(current, patchBody);
    } else {
      throw new KubeApiError(
        failureStatus(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
        ),
      );
    }
    if (typeof patched !== 'object' || patched === null || Array.isArray(patched)) throw badRequest('patch did not produce an object');
    const obj = view.fromApi(patched as KubeObject);
    const metadata = { ...obj.metadata };
    // A resourceVersion in the patched object is a precondition, as with PUT.
    if (metadata.resourceVersion !== undefined && metadata.resourceVersion !== '' && metadata.resourceVersion !== existing.metadata.resourceVersion) {
      throw conflict(view.group, view.plural, name);
    }
    if (metadata.name !== undefined && metadata.name !== name) {
      throw badRequest(`the name of the object (${String(metadata.name)}) does not match the name on the URL (${name})`);
    }
    return this.#write(view, key, existing, { ...obj, metadata });
  }

  delete(
    view: ResourceView,
    namespace: string | undefined,
    name: string,
    preconditions?: { uid?: string; resourceVersion?: string },
  ): StoredObject {
    const key = objectKey(namespace, name);
    const existing = this.#store.get(view.resource, key);
    if (existing === undefined) throw notFound(view.group, view.plural, name);
    if (preconditions?.uid !== undefined && preconditions.uid !== existing.metadata.uid) {
      throw new KubeApiError(
        failureStatus(409, 'Conflict', `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${existing.metadata.uid}`),
      );
    }
    if (preconditions?.resourceVersion !== undefined && preconditions.resourceVersion !== existing.metadata.resourceVersion) {
      throw new KubeApiError(
        failureStatus(
          409,
          'Conflict',
          `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${existing.metadata.resourceVersion}`,
        ),
      );
    }
    return this.#store.remove(view.resource, key, this.#nowMs());
  }

  /** Stores `candidate` over `existing` unless nothing changed: etcd skips no-op writes, so the rv stays. */
  #write(view: ResourceView, key: string, existing: StoredObject, candidate: KubeObject): StoredObject {
    const name = existing.metadata.name;
    const next = applyStrategy(view, candidate, name);
    const normalized: KubeObject = {
      ...next,
      metadata: {
        ...next.metadata,
        name,
        uid: existing.metadata.uid,
        creationTimestamp: existing.metadata.creationTimestamp,
        ...(existing.metadata.namespace === undefined ? {} : { namespace: existing.metadata.namespace }),
      },
    };
    if (stableJson(withoutRv(normalized)) === stableJson(withoutRv(existing))) return existing;
    return this.#store.replace(view.resource, key, normalized, this.#nowMs());
  }

  #checkTypeMeta(view: ResourceView, body: KubeObject): void {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the request body must be a JSON object');
    const apiVersion = view.group === '' ? view.version : `${view.group}/${view.version}`;
    if (body.kind !== undefined && body.kind !== '' && body.kind !== view.kind) {
      throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${view.kind})`);
    }
    if (body.apiVersion !== undefined && body.apiVersion !== '' && body.apiVersion !== apiVersion) {
      throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${apiVersion})`);
    }
  }
}
