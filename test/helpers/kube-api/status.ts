// Status objects exactly as the apiserver shapes them: clients key on `reason` and `code`,
// and client libraries parse `details`, so the wording follows the real messages.
import type { Status, StatusDetails } from './types.ts';

const reasonByCode: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  406: 'NotAcceptable',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export function reasonForCode(code: number): string {
  return reasonByCode[code] ?? 'Unknown';
}

export function failureStatus(code: number, reason: string, message: string, details?: StatusDetails): Status {
  const status: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details) status.details = details;
  return status;
}

/** A failed API call; `status` is what goes on the wire. */
export class KubeApiError extends Error {
  readonly status: Status;
  constructor(status: Status) {
    super(status.message ?? status.reason ?? `HTTP ${status.code}`);
    this.name = 'KubeApiError';
    this.status = status;
  }
  get code(): number {
    return this.status.code;
  }
}

/** `pods` for the core group, `leases.coordination.k8s.io` elsewhere, as in real messages. */
export function qualifiedResource(group: string, plural: string): string {
  return group === '' ? plural : `${plural}.${group}`;
}

function details(group: string, plural: string, name: string): StatusDetails {
  return group === '' ? { name, kind: plural } : { name, group, kind: plural };
}

export function notFound(group: string, plural: string, name: string): KubeApiError {
  return new KubeApiError(
    failureStatus(404, 'NotFound', `${qualifiedResource(group, plural)} "${name}" not found`, details(group, plural, name)),
  );
}

export function alreadyExists(group: string, plural: string, name: string): KubeApiError {
  return new KubeApiError(
    failureStatus(409, 'AlreadyExists', `${qualifiedResource(group, plural)} "${name}" already exists`, details(group, plural, name)),
  );
}

export function conflict(group: string, plural: string, name: string): KubeApiError {
  return new KubeApiError(
    failureStatus(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${qualifiedResource(group, plural)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      details(group, plural, name),
    ),
  );
}

export function badRequest(message: string): KubeApiError {
  return new KubeApiError(failureStatus(400, 'BadRequest', message));
}

export function invalid(kind: string, name: string, message: string): KubeApiError {
  return new KubeApiError(failureStatus(422, 'Invalid', `${kind} "${name}" is invalid: ${message}`, { name, kind }));
}

export function expired(message: string): KubeApiError {
  return new KubeApiError(failureStatus(410, 'Expired', message));
}

export function tooLargeResourceVersion(requestedRv: number, currentRv: number): KubeApiError {
  return new KubeApiError(
    failureStatus(504, 'Timeout', `Too large resource version: ${requestedRv}, current: ${currentRv}`, {
      causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
      retryAfterSeconds: 1,
    }),
  );
}

export function pathNotFound(): KubeApiError {
  return new KubeApiError(failureStatus(404, 'NotFound', 'the server could not find the requested resource'));
}
