// An etcd-like store. Invariants:
// - one global revision: every write (create, update, delete) bumps it by exactly one, across
//   all resources, and the written object carries it as metadata.resourceVersion;
// - the history holds every change with rv > compactedRv, oldest first, with the state before
//   and after, so the state of any resource at any rv >= compactedRv can be rebuilt (paginated
//   snapshots, Exact lists) and watches can resume from any such rv;
// - stored objects are never mutated in place: a write replaces them, so history entries and
//   snapshots can share them.
import { randomUUID } from 'node:crypto';
import { expired } from './status.ts';
import type { ResourceKey, StoredObject, KubeObject } from './types.ts';

export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface Change {
  rv: number;
  resource: ResourceKey;
  key: string;
  type: ChangeType;
  /** State after the change; for DELETED the last state, stamped with the deletion's rv (as etcd watches report it). */
  object: StoredObject;
  /** State before the change. */
  prev: StoredObject | undefined;
}

/** Metav1.Time: RFC 3339 in UTC with second precision. */
export function kubeTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Metav1.MicroTime: RFC 3339 in UTC with microseconds. */
export function kubeMicroTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

function withRv(obj: StoredObject, rv: number): StoredObject {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
}

export class ObjectStore {
  #rv: number;
  #compactedRv: number;
  readonly #windowRvs: number;
  readonly #objects = new Map<ResourceKey, Map<string, StoredObject>>();
  readonly #writtenAtMs = new Map<ResourceKey, Map<string, number>>();
  readonly #history: Change[] = [];
  readonly #listeners = new Set<(change: Change) => void>();

  constructor(initialRv: number, windowRvs: number) {
    this.#rv = initialRv;
    this.#compactedRv = initialRv;
    this.#windowRvs = windowRvs;
  }

  get currentRv(): number {
    return this.#rv;
  }

  /** Changes at or below this rv are forgotten; watches and snapshots from below it are Expired. */
  get compactedRv(): number {
    return this.#compactedRv;
  }

  subscribe(listener: (change: Change) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #bucket(resource: ResourceKey): Map<string, StoredObject> {
    let bucket = this.#objects.get(resource);
    if (bucket === undefined) {
      bucket = new Map();
      this.#objects.set(resource, bucket);
    }
    return bucket;
  }

  #writeTimes(resource: ResourceKey): Map<string, number> {
    let times = this.#writtenAtMs.get(resource);
    if (times === undefined) {
      times = new Map();
      this.#writtenAtMs.set(resource, times);
    }
    return times;
  }

  get(resource: ResourceKey, key: string): StoredObject | undefined {
    return this.#objects.get(resource)?.get(key);
  }

  /** Current objects in key order (namespace, then name), as etcd ranges return them. */
  current(resource: ResourceKey): StoredObject[] {
    const bucket = this.#objects.get(resource);
    if (bucket === undefined) return [];
    return [...bucket.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, obj]) => obj);
  }

  writtenAtMs(resource: ResourceKey, key: string): number | undefined {
    return this.#writtenAtMs.get(resource)?.get(key);
  }

  /** The resource's objects as they were right after revision `rv`, in key order. */
  snapshotAt(resource: ResourceKey, rv: number): StoredObject[] {
    if (rv < this.#compactedRv) {
      throw expired('The resourceVersion for the provided list is too old.');
    }
    const state = new Map(this.#objects.get(resource) ?? []);
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const change = this.#history[i] as Change;
      if (change.rv <= rv) break;
      if (change.resource !== resource) continue;
      if (change.prev === undefined) state.delete(change.key);
      else state.set(change.key, change.prev);
    }
    return [...state.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, obj]) => obj);
  }

  /** Every change after `rv`, oldest first. The caller checks `rv >= compactedRv`. */
  changesAfter(rv: number): Change[] {
    // History rvs are consecutive, so the first change after `rv` sits at a computable index.
    const first = this.#history[0];
    if (first === undefined) return [];
    const start = Math.max(0, rv + 1 - first.rv);
    return this.#history.slice(start);
  }

  insert(resource: ResourceKey, key: string, obj: KubeObject, nowMs: number): StoredObject {
    const rv = this.#rv + 1;
    const metadata = obj.metadata ?? {};
    const stored: StoredObject = {
      ...obj,
      metadata: {
        ...metadata,
        name: String(metadata.name),
        uid: randomUUID(),
        resourceVersion: String(rv),
        creationTimestamp: kubeTime(nowMs),
      },
    };
    this.#commit({ rv, resource, key, type: 'ADDED', object: stored, prev: undefined }, nowMs);
    return stored;
  }

  /** Replaces an existing object, keeping the identity fields the server owns. */
  replace(resource: ResourceKey, key: string, obj: KubeObject, nowMs: number): StoredObject {
    const prev = this.get(resource, key);
    if (prev === undefined) throw new Error(`replace of missing ${resource} ${key}`);
    const rv = this.#rv + 1;
    const stored: StoredObject = {
      ...obj,
      metadata: {
        ...obj.metadata,
        name: prev.metadata.name,
        uid: prev.metadata.uid,
        resourceVersion: String(rv),
        creationTimestamp: prev.metadata.creationTimestamp,
      },
    };
    if (prev.metadata.namespace !== undefined) stored.metadata.namespace = prev.metadata.namespace;
    this.#commit({ rv, resource, key, type: 'MODIFIED', object: stored, prev }, nowMs);
    return stored;
  }

  remove(resource: ResourceKey, key: string, nowMs: number): StoredObject {
    const prev = this.get(resource, key);
    if (prev === undefined) throw new Error(`remove of missing ${resource} ${key}`);
    const rv = this.#rv + 1;
    const change: Change = { rv, resource, key, type: 'DELETED', object: withRv(prev, rv), prev };
    this.#commit(change, nowMs);
    return change.object;
  }

  /** Forgets all history: any rv older than the current one is now Expired. */
  compactAll(): void {
    this.#compactedRv = this.#rv;
    this.#history.length = 0;
  }

  #commit(change: Change, nowMs: number): void {
    this.#rv = change.rv;
    const bucket = this.#bucket(change.resource);
    const times = this.#writeTimes(change.resource);
    if (change.type === 'DELETED') {
      bucket.delete(change.key);
      times.delete(change.key);
    } else {
      bucket.set(change.key, change.object);
      times.set(change.key, nowMs);
    }
    this.#history.push(change);
    const floor = this.#rv - this.#windowRvs;
    if (floor > this.#compactedRv) {
      this.#compactedRv = floor;
      let drop = 0;
      while (drop < this.#history.length && (this.#history[drop] as Change).rv <= floor) drop++;
      this.#history.splice(0, drop);
    }
    for (const listener of this.#listeners) listener(change);
  }
}
