/**
 * Why a send did not fully succeed, as a code: the `reason` label of
 * `ktrail_output_retries_total`, `ktrail_dead_letters_total` and the
 * component error counters, and the `code` of a dead letter. Labels come only
 * from here, never from parsing a message. The detail text that goes with a
 * code (status line, the destination's message) is for logs and dead letters.
 *
 * The set is closed: the codes ktrail decides itself, plus two families made
 * only by the functions below, the HTTP status (`http_503`) and a
 * destination's own error type for one record (`mapper_parsing_exception`),
 * both bounded by what the destination can answer.
 */
export const LOCAL_CODES = [
  /** The connection failed: refused, reset, DNS, TLS. */
  'network',
  /** No answer within request_timeout. */
  'timeout',
  /** The send was cut short by shutdown or a lost leadership. */
  'aborted',
  /** A credential file could not be read. */
  'credentials_unavailable',
  /** A local write (file output) failed. */
  'write_failed',
  /** The destination answered something that is not its protocol. */
  'malformed_response',
  /** The output returned something that is not an outcome (a bug, counted, never delivered). */
  'invalid_outcome',
  /** The output threw instead of returning an outcome. */
  'exception',
  /** Still failing after retry.max_elapsed. */
  'retries_exhausted',
  /** One record alone is larger than the destination takes. */
  'too_large',
  /** The destination took the request but did not confirm it indexed it in time (Splunk indexer acknowledgement). */
  'ack_timeout',
] as const;

export type LocalCode = (typeof LOCAL_CODES)[number];
export type HttpCode = `http_${number}`;
declare const destinationBrand: unique symbol;
/** A destination's error type for one record, normalised by `destinationCode`. */
export type DestinationCode = string & { readonly [destinationBrand]: true };
export type OutcomeCode = LocalCode | HttpCode | DestinationCode;

export function httpCode(status: number): HttpCode {
  return `http_${Math.trunc(status)}`;
}

/** `mapper_parsing_exception`, `es_rejected_execution_exception`, … : lower case, [a-z0-9_], at most 40 characters. */
export function destinationCode(type: string): DestinationCode {
  const code = type.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 40);
  return (code === '' ? 'unknown_error' : code) as DestinationCode;
}
