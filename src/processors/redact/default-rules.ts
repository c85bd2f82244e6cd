import type { ConditionConfig } from '../filter/condition.ts';

/**
 * The rules the redact processor applies unless `defaults: false`. They keep
 * credentials and bulky copies of objects out of shipped audit logs:
 *
 * - Secret bodies: a Secret's data is base64, not encrypted. At Request /
 *   RequestResponse level the apiserver logs it in requestObject (create,
 *   update, patch) and responseObject (get, list → SecretList, watch events
 *   are not logged). Both objects are removed for the core-group `secrets`
 *   resource, and wherever a request or response object is a Secret or a
 *   SecretList whatever the objectRef says.
 * - TokenReviews: the request carries a bearer token (spec.token), the
 *   response the authenticated user's identity; both objects are removed.
 * - ServiceAccount token requests (`serviceaccounts/token`): the response
 *   carries a freshly issued token (status.token).
 * - `kubectl.kubernetes.io/last-applied-configuration`: a full copy of the
 *   applied object (for a Secret applied with kubectl: its data) in
 *   metadata.annotations, wherever an object appears — request and response
 *   objects, items of lists, Event objects from the k8s_events input.
 */

export interface RedactRuleConfig {
  name: string;
  action: 'remove' | 'mask';
  paths: string[];
  when?: ConditionConfig;
  mask_with: 'text' | 'sha256';
  mask_text: string;
  hash_chars: number;
}

const coreGroup: ConditionConfig = { any: [{ field: 'objectRef.apiGroup', exists: false }, { field: 'objectRef.apiGroup', equals: '' }] };
const maskDefaults = { mask_with: 'text', mask_text: '[REDACTED]', hash_chars: 16 } as const;

export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

export const DEFAULT_REDACT_RULES: readonly RedactRuleConfig[] = [
  {
    name: 'secret-bodies',
    action: 'remove',
    paths: ['requestObject', 'responseObject'],
    when: { all: [{ field: 'objectRef.resource', equals: 'secrets' }, coreGroup] },
    ...maskDefaults,
  },
  {
    name: 'secret-objects',
    action: 'remove',
    paths: ['requestObject', 'responseObject'],
    when: {
      any: [
        { field: 'requestObject.kind', in: ['Secret', 'SecretList'] },
        { field: 'responseObject.kind', in: ['Secret', 'SecretList'] },
      ],
    },
    ...maskDefaults,
  },
  {
    name: 'tokenreview-bodies',
    action: 'remove',
    paths: ['requestObject', 'responseObject'],
    when: { all: [{ field: 'objectRef.resource', equals: 'tokenreviews' }, { field: 'objectRef.apiGroup', equals: 'authentication.k8s.io' }] },
    ...maskDefaults,
  },
  {
    name: 'serviceaccount-token',
    action: 'remove',
    paths: ['responseObject'],
    when: { all: [{ field: 'objectRef.resource', equals: 'serviceaccounts' }, { field: 'objectRef.subresource', equals: 'token' }, coreGroup] },
    ...maskDefaults,
  },
  {
    name: 'last-applied-configuration',
    action: 'remove',
    paths: [`**.metadata.annotations["${LAST_APPLIED}"]`],
    ...maskDefaults,
  },
];
