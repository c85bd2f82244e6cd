// Kubernetes API server emulation for tests; see test/helpers/README.md.
export {
  KubeApiServer,
  ownerReferenceTo,
  type AddEventOptions,
  type AddNamespaceOptions,
  type AddPodOptions,
  type AddReplicaSetOptions,
} from './kube-api/server.ts';
export { KubeApiError } from './kube-api/status.ts';
export { kubeMicroTime, kubeTime } from './kube-api/store.ts';
export type {
  CoreEvent,
  DownMode,
  FailNextOptions,
  KubeApiServerOptions,
  KubeObject,
  ObjectMeta,
  ObjectReference,
  OwnerReference,
  RequestLogEntry,
  ResourceKey,
  Status,
  StoredObject,
  WatchEvent,
  WatchEventType,
} from './kube-api/types.ts';
