/**
 * Every error ktrail raises on purpose carries a stable code, so logs, tests and
 * users can match on it instead of on a message that may be reworded.
 */
export const ErrorCode = {
  CONFIG_INVALID: 'KTRAIL_ERR_CONFIG_INVALID',
  CONFIG_READ: 'KTRAIL_ERR_CONFIG_READ',
  SPOOL_SCHEMA: 'KTRAIL_ERR_SPOOL_SCHEMA',
  SPOOL_CLOSED: 'KTRAIL_ERR_SPOOL_CLOSED',
  SECRET_READ: 'KTRAIL_ERR_SECRET_READ',
  /** The events collector's lease was not renewed in time: another instance may lead now. */
  LEADERSHIP_LOST: 'KTRAIL_ERR_LEADERSHIP_LOST',
  STATE_DIR: 'KTRAIL_ERR_STATE_DIR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class KtrailError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KtrailError';
    this.code = code;
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
