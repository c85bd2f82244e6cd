/**
 * Which pods a record is about, read from the record's document:
 *
 * - audit events (`auditID` present): the object acted on — `objectRef`
 *   with resource `pods` in the core group, any subresource (exec, log,
 *   binding, eviction, ...), when it names a pod; the actor — the pod a bound
 *   service-account token belongs to (`user.extra`
 *   `authentication.kubernetes.io/pod-name` / `pod-uid`), the service account
 *   from `system:serviceaccount:<namespace>:<name>`, the node from
 *   `system:node:<name>`;
 * - Kubernetes Events (core/v1 `involvedObject`, events.k8s.io/v1
 *   `regarding`) of kind Pod: that pod.
 */

export interface PodRef {
  namespace: string;
  name: string;
  uid: string | undefined;
}

export interface RecordRefs {
  object: PodRef | undefined;
  actorPod: PodRef | undefined;
  serviceAccount: { namespace: string; name: string } | undefined;
  actorNode: string | undefined;
}

export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
const SA_PREFIX = 'system:serviceaccount:';
const NODE_PREFIX = 'system:node:';

/**
 * Substrings one of which a raw line must contain for `extractRefs` to find
 * anything; lines with none are not parsed.
 */
export const REF_NEEDLES: readonly string[] = ['"pods"', 'pod-name', SA_PREFIX, NODE_PREFIX, '"Pod"'];

type Obj = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const obj = (v: unknown): Obj | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined);
const first = (v: unknown): string | undefined => (Array.isArray(v) ? str(v[0]) : str(v));

export function extractRefs(doc: unknown): RecordRefs {
  const refs: RecordRefs = { object: undefined, actorPod: undefined, serviceAccount: undefined, actorNode: undefined };
  const d = obj(doc);
  if (d === undefined) return refs;
  if (d.auditID !== undefined) {
    auditRefs(d, refs);
    return refs;
  }
  const involved = obj(d.involvedObject) ?? obj(d.regarding);
  if (involved !== undefined && involved.kind === 'Pod') {
    const apiVersion = involved.apiVersion;
    if (apiVersion === undefined || apiVersion === 'v1') {
      // An Event about a pod lives in the pod's namespace; older emitters leave involvedObject.namespace empty.
      const namespace = str(involved.namespace) ?? str(obj(d.metadata)?.namespace);
      const name = str(involved.name);
      if (namespace && name) refs.object = { namespace, name, uid: str(involved.uid) };
    }
  }
  return refs;
}

function auditRefs(d: Obj, refs: RecordRefs): void {
  const ref = obj(d.objectRef);
  if (ref !== undefined && ref.resource === 'pods' && !str(ref.apiGroup)) {
    const namespace = str(ref.namespace);
    const name = str(ref.name);
    if (namespace && name) refs.object = { namespace, name, uid: str(ref.uid) };
  }
  const user = obj(d.user);
  const username = str(user?.username);
  if (username === undefined) return;
  if (username.startsWith(SA_PREFIX)) {
    const rest = username.slice(SA_PREFIX.length);
    const colon = rest.indexOf(':');
    if (colon > 0 && colon < rest.length - 1) {
      const namespace = rest.slice(0, colon);
      refs.serviceAccount = { namespace, name: rest.slice(colon + 1) };
      const extra = obj(user?.extra);
      const podName = first(extra?.[POD_NAME_EXTRA]);
      // A bound token's pod runs in its service account's namespace.
      if (podName) refs.actorPod = { namespace, name: podName, uid: first(extra?.[POD_UID_EXTRA]) };
    }
  } else if (username.startsWith(NODE_PREFIX) && username.length > NODE_PREFIX.length) {
    refs.actorNode = username.slice(NODE_PREFIX.length);
  }
}
