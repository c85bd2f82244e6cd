import os from 'node:os';
import type { KubeClient } from '../../kube/client.ts';
import { LeaseElector, type LeaseObject } from '../../kube/lease.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { parseMirror, type CursorMirror, type EventsState } from './state.ts';

/**
 * The events input's use of a Lease: one active collector, and its cursor
 * mirrored into the Lease so that a leader on another node — whose own
 * database is empty or stale — resumes where the last one stopped.
 *
 * The mirror is the delivered state (delivered.ts): cursors plus the emitted
 * versions the cursors do not cover, counting only what every output has
 * acknowledged. It is written with every renewal, right after each commit
 * and on release. A new leader adopts whichever cursor is newer, its own or
 * the Lease's, and merges the mirrored seen entries into its seen-set.
 */

export const MIRROR_ANNOTATION = 'ktrail.io/k8s-events-cursor';

export interface LeaderElectionConfig {
  enabled: boolean;
  lease_name?: string | undefined;
  lease_namespace?: string | undefined;
  lease_duration: number;
  renew_deadline: number;
  retry_period: number;
  identity?: string | undefined;
}

/** Default Lease name: one per input, a valid object name. */
export function defaultLeaseName(input: string): string {
  return `ktrail-events-${input.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 63).replace(/-+$/, '');
}

export function defaultIdentity(): string {
  return process.env.POD_NAME || os.hostname();
}

export function createElector(opts: {
  client: KubeClient;
  cfg: LeaderElectionConfig;
  input: string;
  namespace: string;
  /** The annotation text (the delivered mirror); undefined leaves the Lease's as it is. */
  mirror: () => string | undefined;
  log: Logger;
}): LeaseElector {
  const { cfg } = opts;
  return new LeaseElector({
    client: opts.client,
    namespace: opts.namespace,
    name: cfg.lease_name ?? defaultLeaseName(opts.input),
    identity: cfg.identity ?? defaultIdentity(),
    leaseDurationMs: cfg.lease_duration,
    renewDeadlineMs: cfg.renew_deadline,
    retryPeriodMs: cfg.retry_period,
    log: opts.log,
    // A warm standby: it sees a release as it happens and takes over at once.
    watchForRelease: true,
    annotations: (): Record<string, string> => {
      const text = opts.mirror();
      return text === undefined ? {} : { [MIRROR_ANNOTATION]: text };
    },
  });
}

/** Adopts the previous leader's mirror from the Lease as found; returns a summary for the log. */
export function adoptMirror(lease: LeaseObject, state: EventsState, nowMs = Date.now()): { found: boolean; scopes: string[]; mirror: CursorMirror | undefined } {
  const mirror = parseMirror(lease.metadata.annotations?.[MIRROR_ANNOTATION]);
  if (!mirror) return { found: false, scopes: [], mirror: undefined };
  return { found: true, scopes: state.adopt(mirror, nowMs), mirror };
}
