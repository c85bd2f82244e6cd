/**
 * The pod metadata cache: what the k8s_metadata processor knows about pods,
 * reduced on arrival to the few fields it ships (target: well under 1 KiB
 * per pod; bench/processors.ts measures it).
 *
 * Invariants:
 * - One entry per pod incarnation (uid). `byName` points at the newest
 *   incarnation of a namespace/name, so a StatefulSet pod recreated under the
 *   same name is told apart by uid when the record carries one.
 * - A deleted pod stays (marked) until `deletedTtlMs` after its deletion, so
 *   audit lines about a pod's last moments — written after the watch saw the
 *   delete — are still enriched.
 * - A pod the API said does not exist is remembered (negative entry) for
 *   `negativeTtlMs`, so a stream of lines about a missing pod costs one GET;
 *   the watch announcing that pod clears the negative entry at once.
 * - A relist (start, 410 Gone) is a full snapshot: live entries absent from
 *   it were deleted while the watch was away and are marked deleted then.
 */

export interface PodOwner {
  kind: string;
  name: string;
}

export class PodEntry {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  labels: Readonly<Record<string, string>> | undefined;
  annotations: Readonly<Record<string, string>> | undefined;
  node: string | undefined;
  /** The controller owner as the pod names it (a ReplicaSet for Deployment pods). */
  owner: PodOwner | undefined;
  /** Set when the owner ReplicaSet was resolved to its Deployment. */
  replicaSet: string | undefined;
  /** 0 while the pod exists; else when the deletion was seen (ms since epoch). */
  deletedAtMs = 0;

  constructor(namespace: string, name: string, uid: string) {
    this.namespace = namespace;
    this.name = name;
    this.uid = uid;
    this.labels = undefined;
    this.annotations = undefined;
    this.node = undefined;
    this.owner = undefined;
    this.replicaSet = undefined;
  }
}

/** A pod as list, watch or get return it: full or PartialObjectMetadata. */
export interface PodObject {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ kind?: string; name?: string; controller?: boolean; [k: string]: unknown }>;
    [k: string]: unknown;
  };
  spec?: { nodeName?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface PodCacheOptions {
  deletedTtlMs: number;
  negativeTtlMs: number;
  /** Annotation keys to keep; a trailing `*` keeps every key with that prefix. Empty: none. */
  annotations: readonly string[];
  now?: () => number;
}

export type Lookup = { kind: 'hit'; pod: PodEntry } | { kind: 'negative' } | { kind: 'miss' };

export class PodCache {
  readonly #byUid = new Map<string, PodEntry>();
  readonly #byName = new Map<string, PodEntry>();
  /** namespace/name (or namespace/name/uid) → expiry of the negative entry. */
  readonly #negative = new Map<string, number>();
  readonly #opts: PodCacheOptions;
  readonly #now: () => number;
  readonly #exactAnnotations: Set<string>;
  readonly #annotationPrefixes: string[];
  /** Strings repeated across pods (namespaces, nodes, label values) are stored once. */
  readonly #interned = new Map<string, string>();

  constructor(opts: PodCacheOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#exactAnnotations = new Set(opts.annotations.filter((a) => !a.endsWith('*')));
    this.#annotationPrefixes = opts.annotations.filter((a) => a.endsWith('*')).map((a) => a.slice(0, -1));
  }

  /** Entries held, deleted ones included. */
  get size(): number {
    return this.#byUid.size;
  }

  get negativeSize(): number {
    return this.#negative.size;
  }

  lookup(namespace: string, name: string, uid?: string): Lookup {
    const e = uid ? this.#byUid.get(uid) : this.#byName.get(nameKey(namespace, name));
    if (e !== undefined) {
      if (e.deletedAtMs === 0 || e.deletedAtMs + this.#opts.deletedTtlMs > this.#now()) return { kind: 'hit', pod: e };
      this.#remove(e);
    }
    if (this.#isNegative(nameKey(namespace, name)) || (uid && this.#isNegative(negativeKey(namespace, name, uid)))) return { kind: 'negative' };
    return { kind: 'miss' };
  }

  #isNegative(key: string): boolean {
    const until = this.#negative.get(key);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#negative.delete(key);
    return false;
  }

  /**
   * Adds or refreshes a pod from a list page, watch event or GET. `knownNode`:
   * the node a `spec.nodeName` field selector guarantees (metadata-only
   * answers omit spec.nodeName). Returns the entry, or undefined for an
   * object without identity.
   */
  upsert(obj: PodObject, knownNode?: string): PodEntry | undefined {
    const m = obj.metadata;
    const uid = m?.uid;
    const name = m?.name;
    const namespace = m?.namespace;
    if (!uid || !name || !namespace) return undefined;
    let e = this.#byUid.get(uid);
    if (e === undefined) {
      e = new PodEntry(this.intern(namespace), name, uid);
      this.#byUid.set(uid, e);
    }
    e.labels = this.#internValues(m.labels);
    e.annotations = this.#pickAnnotations(m.annotations);
    const node = obj.spec?.nodeName ?? knownNode;
    // nodeName never changes once set; a metadata-only update must not erase it.
    if (node) e.node = this.intern(node);
    const owner = controllerOf(m.ownerReferences, this);
    // Keep a resolved Deployment while the pod still names the same ReplicaSet.
    if (!(e.replicaSet !== undefined && owner?.kind === 'ReplicaSet' && owner.name === e.replicaSet)) {
      e.owner = owner;
      e.replicaSet = undefined;
    }
    e.deletedAtMs = 0;
    const key = nameKey(namespace, name);
    this.#byName.set(key, e);
    this.#negative.delete(key);
    this.#negative.delete(negativeKey(namespace, name, uid));
    return e;
  }

  /** The watch saw the pod deleted: keep it for deletedTtlMs. */
  markDeleted(obj: PodObject, knownNode?: string): void {
    const uid = obj.metadata?.uid;
    const e = uid ? this.#byUid.get(uid) : undefined;
    if (e === undefined) {
      // Never seen alive (created and deleted between two lists): keep it too.
      const added = this.upsert(obj, knownNode);
      if (added) added.deletedAtMs = this.#now();
      return;
    }
    this.upsert(obj, knownNode);
    e.deletedAtMs = this.#now();
  }

  /**
   * The API has no such pod: without `uid`, no pod of that name (404); with
   * `uid`, not that incarnation (the name now belongs to another uid).
   */
  markMissing(namespace: string, name: string, uid?: string): void {
    this.#negative.set(negativeKey(namespace, name, uid), this.#now() + this.#opts.negativeTtlMs);
  }

  /**
   * A full list ended: live pods it did not return (`seenUids`) were deleted
   * while no watch was running. `inScope` limits this to the pods the list
   * covers (one namespace when several namespace-scoped lists feed the cache).
   * Returns how many were marked deleted.
   */
  endList(seenUids: ReadonlySet<string>, inScope: (e: PodEntry) => boolean = () => true): number {
    const now = this.#now();
    let gone = 0;
    for (const e of this.#byUid.values()) {
      if (e.deletedAtMs === 0 && !seenUids.has(e.uid) && inScope(e)) {
        e.deletedAtMs = now;
        gone++;
      }
    }
    return gone;
  }

  /** Records that the pod's ReplicaSet belongs to a Deployment. */
  resolveOwner(e: PodEntry, deployment: string): void {
    if (e.owner?.kind !== 'ReplicaSet') return;
    e.replicaSet = e.owner.name;
    e.owner = { kind: 'Deployment', name: deployment };
  }

  #remove(e: PodEntry): void {
    this.#byUid.delete(e.uid);
    const key = nameKey(e.namespace, e.name);
    if (this.#byName.get(key) === e) this.#byName.delete(key);
  }

  /** Drops deleted entries past deletedTtlMs and expired negative entries. Returns entries removed. */
  sweep(): number {
    const now = this.#now();
    let removed = 0;
    for (const e of this.#byUid.values()) {
      if (e.deletedAtMs !== 0 && e.deletedAtMs + this.#opts.deletedTtlMs <= now) {
        this.#remove(e);
        removed++;
      }
    }
    for (const [key, until] of this.#negative) if (until <= now) this.#negative.delete(key);
    // Interned strings no pod uses any more would otherwise pile up over weeks of churn.
    if (this.#interned.size > 4 * this.#byUid.size + 1024) this.#interned.clear();
    return removed;
  }

  intern(s: string): string {
    const have = this.#interned.get(s);
    if (have !== undefined) return have;
    this.#interned.set(s, s);
    return s;
  }

  #internValues(labels: Record<string, string> | undefined): Record<string, string> | undefined {
    if (labels === undefined || labels === null || typeof labels !== 'object') return undefined;
    let out: Record<string, string> | undefined;
    for (const k in labels) {
      const v = labels[k];
      if (typeof v !== 'string') continue;
      (out ??= {})[k] = v.length <= 64 ? this.intern(v) : v;
    }
    return out;
  }

  #pickAnnotations(annotations: Record<string, string> | undefined): Record<string, string> | undefined {
    if (annotations === undefined || annotations === null || typeof annotations !== 'object') return undefined;
    if (this.#exactAnnotations.size === 0 && this.#annotationPrefixes.length === 0) return undefined;
    let out: Record<string, string> | undefined;
    for (const k in annotations) {
      if (this.#exactAnnotations.has(k) || this.#annotationPrefixes.some((p) => k.startsWith(p))) {
        const v = annotations[k];
        if (typeof v === 'string') (out ??= {})[k] = v;
      }
    }
    return out;
  }
}

function controllerOf(refs: NonNullable<PodObject['metadata']>['ownerReferences'], cache: PodCache): PodOwner | undefined {
  if (!Array.isArray(refs) || refs.length === 0) return undefined;
  const ref = refs.find((r) => r.controller === true) ?? refs[0]!;
  if (!ref.kind || !ref.name) return undefined;
  return { kind: cache.intern(ref.kind), name: ref.name };
}

export function nameKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function negativeKey(namespace: string, name: string, uid: string | undefined): string {
  return uid ? `${namespace}/${name}/${uid}` : `${namespace}/${name}`;
}
