/**
 * How a manifest travels: a spool record of this input name (no configured
 * input can have it: names are [a-z0-9_-]), with the id
 * `ktrail-manifest:<output>:<seq>`. Outputs that give manifests a place of
 * their own (S3 `manifests/…`, an Elasticsearch manifest index) tell them
 * apart by the input; file and http ship them as records.
 */
export const MANIFEST_INPUT = 'ktrail.manifest';
export const MANIFEST_ID_PREFIX = 'ktrail-manifest:';

/** The manifest's seq, from its record id. */
export function manifestSeqOf(recordId: string): number {
  return Number(recordId.slice(recordId.lastIndexOf(':') + 1));
}
