// Shapes shared by the Kubernetes API server emulation. They follow the JSON the real
// apiserver speaks; only the fields the emulation reads or writes are typed, the rest
// passes through untouched.

export type ResourceKey = 'events' | 'pods' | 'namespaces' | 'replicasets' | 'leases';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  [key: string]: unknown;
}

/** Any object as a client sends it: metadata may be partial. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [key: string]: unknown;
}

/** An object as the store holds it: the server-owned metadata is always set. */
export interface StoredObject extends KubeObject {
  metadata: ObjectMeta & {
    name: string;
    uid: string;
    resourceVersion: string;
    creationTimestamp: string;
  };
}

export interface ObjectReference {
  kind?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiVersion?: string;
  resourceVersion?: string;
  fieldPath?: string;
}

/** A core/v1 Event as stored (the events.k8s.io/v1 view is derived from it on read). */
export interface CoreEvent extends StoredObject {
  involvedObject: ObjectReference;
  reason?: string;
  message?: string;
  type?: string;
  count?: number;
  source?: { component?: string; host?: string };
  firstTimestamp?: string | null;
  lastTimestamp?: string | null;
  eventTime?: string | null;
  reportingComponent?: string;
  reportingInstance?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: Array<{ reason?: string; message?: string; field?: string }>;
  retryAfterSeconds?: number;
}

// A type alias, not an interface, so a Status is also a KubeObject (watch ERROR events carry one).
export type Status = {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: { continue?: string; remainingItemCount?: number; resourceVersion?: string };
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
};

export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject;
}

export interface KubeApiServerOptions {
  /** When set, every request needs `Authorization: Bearer <token>`; otherwise 401. */
  token?: string;
  /** Server-side cap on a watch's life; a client's smaller `timeoutSeconds` wins. */
  watchTimeoutSeconds?: number;
  /** How many resourceVersions of change history stay available to watches and snapshots. */
  compactionWindow?: number;
  /** Events not written for this long are deleted, like the apiserver's --event-ttl. */
  eventTtlMs?: number;
  /** BOOKMARK cadence on watches opened with allowWatchBookmarks=true. */
  bookmarkIntervalMs?: number;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
  accept: string | undefined;
  /** HTTP status sent; 0 when the connection was reset instead. Unset while a response is pending. */
  status: number | undefined;
  timeMs: number;
}

export interface FailNextOptions {
  /** Only requests whose path contains this string (or matches this RegExp) consume the failure. */
  path?: string | RegExp;
  method?: string;
  retryAfterSeconds?: number;
  message?: string;
}

export type DownMode = 'reset' | '503';
