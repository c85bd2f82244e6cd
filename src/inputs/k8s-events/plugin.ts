import { z } from 'zod';
import { duration } from '../../config/units.ts';
import { ErrorCode, errorMessage, KtrailError } from '../../errors.ts';
import { sleep } from '../../delivery/backoff.ts';
import type { HealthReport, Input, InputContext, InputPlugin } from '../../plugin.ts';
import { KubeClient } from '../../kube/client.ts';
import { inspectKube, probeKube } from '../../kube/check.ts';
import { loadKubeConnection } from '../../kube/config.ts';
import type { LeaseElector } from '../../kube/lease.ts';
import { Committer } from './committer.ts';
import { DeliveredMirror } from './delivered.ts';
import { adoptMirror, createElector } from './leader.ts';
import { ALL_NAMESPACES, describeEventsState, EventsState, STATE_MIGRATIONS, STATE_OWNER } from './state.ts';
import { isConfigError, ScopeWatcher } from './watcher.ts';
import { k8sEventsEvent, k8sEventsLogEvents, k8sEventsMetrics } from './telemetry.ts';

/**
 * `k8s_events`: Kubernetes Events from the API (list + watch, or poll), each
 * new version of an event one record, never one twice. See
 * docs/inputs/k8s_events.md for the emission rule, gaps and leader election.
 */

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const leaderSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Run the input only while holding a coordination.k8s.io/v1 Lease (one active collector among replicas).'),
    lease_name: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a Lease name is lower-case letters, digits, "-" and "."')
      .max(253)
      .optional()
      .describe('Lease name; default `ktrail-events-<input name>`. One Lease per input.'),
    lease_namespace: z
      .string()
      .regex(dnsLabel, 'a namespace name is lower-case letters, digits and "-"')
      .optional()
      .describe("Lease namespace; default $POD_NAMESPACE, else the pod's own namespace (in-cluster), else the kubeconfig context's, else `default`."),
    lease_duration: duration().default(15_000).describe('How long a silent Lease stays with its holder before another instance may take it.'),
    renew_deadline: duration().default(10_000).describe('The leader stops when it could not renew for this long; must be below lease_duration.'),
    retry_period: duration().default(2_000).describe('Renewal and acquisition period; also the longest a leader gathers events before a commit.'),
    identity: z.string().min(1).optional().describe('This instance in the Lease; default $POD_NAME, else the hostname. Must differ between instances.'),
    handover_wait: duration()
      .default(5000)
      .describe(
        'On a graceful stop, how long the leader keeps the Lease after its last commit while the outputs acknowledge what it committed; then it releases. Keep it below service.shutdown_timeout.',
      ),
  })
  .prefault({})
  .superRefine((v, ctx) => {
    if (v.renew_deadline >= v.lease_duration) {
      ctx.addIssue({ code: 'custom', path: ['renew_deadline'], message: 'renew_deadline must be shorter than lease_duration (the leader must stop before another can take over)' });
    }
    if (v.retry_period >= v.renew_deadline) {
      ctx.addIssue({ code: 'custom', path: ['retry_period'], message: 'retry_period must be shorter than renew_deadline' });
    }
    if (v.lease_duration < 1000) ctx.addIssue({ code: 'custom', path: ['lease_duration'], message: 'lease_duration must be at least 1s' });
  });

const schema = z.strictObject({
  mode: z.enum(['watch', 'poll']).default('watch').describe('watch: list, then watch from the list\'s resourceVersion; poll: a paginated list every `interval`.'),
  api: z.enum(['core/v1', 'events.k8s.io/v1']).default('core/v1').describe('Which Events API to read (the same objects in two shapes).'),
  namespaces: z
    .array(z.string().regex(dnsLabel, 'a namespace name is lower-case letters, digits and "-"'))
    .default([])
    .describe('Namespaces to read, one list/watch each; empty: all namespaces (one cluster-wide list/watch).'),
  field_selector: z.string().min(1).optional().describe('Server-side field selector, e.g. `type=Warning` or `involvedObject.kind=Pod`.'),
  interval: duration().default(60_000).describe('mode: poll — time between lists.'),
  page_size: z.number().int().min(1).max(10_000).default(500).describe('`limit` of each list page.'),
  watch_timeout: duration().default(300_000).describe('Each watch asks the server to end it after a random time in [t, 2t]; it is then resumed.'),
  seen_retention: duration().default(7_200_000).describe('How long an emitted (uid, resourceVersion) is remembered; keep it above the apiserver --event-ttl (1h).'),
  max_batch_events: z.number().int().min(1).max(100_000).default(1000).describe('Most records committed in one spool transaction.'),
  kubeconfig: z.string().min(1).optional().describe('kubeconfig file; default: in-cluster service account in a pod, else $KUBECONFIG or ~/.kube/config.'),
  context: z.string().min(1).optional().describe("kubeconfig context; default the file's current-context."),
  request_timeout: duration().default(30_000).describe('Timeout of list and Lease requests (watches have their own).'),
  backoff: z
    .strictObject({
      initial: duration().default(1000).describe('First retry delay after a failed list/watch; also the pause before resuming a watch the server ended.'),
      max: duration().default(30_000).describe('Longest retry delay.'),
    })
    .prefault({})
    .describe('Retry delays of lists and watches (exponential, jittered).'),
  leader_election: leaderSchema.describe('Leader election on a Lease; the leader mirrors its cursor into it.'),
});

export type K8sEventsConfig = z.output<typeof schema>;

/** How many consecutive API failures make the input report unhealthy. */
const UNHEALTHY_AFTER_FAILURES = 3;

class LeadershipLost extends KtrailError {
  constructor() {
    super(ErrorCode.LEADERSHIP_LOST, 'lease not renewed within renew_deadline: this instance is no longer the leader');
  }
}

class K8sEventsInput implements Input {
  readonly #cfg: K8sEventsConfig;
  readonly #ctx: InputContext;
  readonly #abort = new AbortController();
  readonly #labels: { input: string };
  #client: KubeClient | undefined;
  #state: EventsState | undefined;
  #elector: LeaseElector | undefined;
  #delivered: DeliveredMirror | undefined;
  #running: Promise<void> | undefined;
  #timers: NodeJS.Timeout[] = [];
  #seenSize = 0;
  #active = false;
  #failures = 0;
  #lastError: unknown;

  constructor(cfg: K8sEventsConfig, ctx: InputContext) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#labels = { input: ctx.name };
  }

  async start(): Promise<void> {
    const ctx = this.#ctx;
    const cfg = this.#cfg;
    if (ctx.signal.aborted) return;
    ctx.signal.addEventListener('abort', () => this.#abort.abort(), { once: true });
    ctx.state.migrate(STATE_OWNER, STATE_MIGRATIONS);
    const state = new EventsState(ctx.state.db, ctx.name);
    this.#state = state;
    const conn = loadKubeConnection({ kubeconfig: cfg.kubeconfig, context: cfg.context });
    for (const w of conn.warnings ?? []) ctx.log.warn({ event: k8sEventsEvent.kubeconfig_warning, kubeconfig: conn.origin }, w);
    this.#client = new KubeClient(conn, { requestTimeoutMs: cfg.request_timeout });
    ctx.log.info(
      { event: k8sEventsEvent.starting, server: conn.server, source: conn.source, mode: cfg.mode, api: cfg.api, namespaces: cfg.namespaces.length ? cfg.namespaces : 'all', leaderElection: cfg.leader_election.enabled },
      'k8s_events input starting',
    );
    this.#seenSize = state.size();
    this.#prune();
    const pruneEveryMs = Math.max(1000, Math.min(60_000, Math.floor(cfg.seen_retention / 4)));
    this.#timers.push(setInterval(() => this.#prune(), pruneEveryMs), setInterval(() => this.#updateCursorAge(), 5000));
    for (const t of this.#timers) t.unref();

    if (cfg.leader_election.enabled) {
      const namespace = cfg.leader_election.lease_namespace ?? process.env.POD_NAMESPACE ?? conn.namespace ?? 'default';
      const elector = createElector({
        client: this.#client,
        cfg: cfg.leader_election,
        input: ctx.name,
        namespace,
        mirror: () => this.#delivered?.encode(),
        log: ctx.log,
      });
      this.#elector = elector;
      k8sEventsMetrics(ctx.metrics).leader.set(this.#labels, 0);
      this.#running = elector.run(this.#abort.signal, async ({ signal, lease }) => {
        const adopted = adoptMirror(lease, state);
        const delivered = new DeliveredMirror(ctx.state.db, ctx.name, state, adopted.mirror);
        this.#delivered = delivered;
        ctx.log.info({ event: k8sEventsEvent.leading, lease: elector.path, identity: elector.identity, mirror: adopted.found, cursorsAdopted: adopted.scopes }, 'leading: starting the events collector');
        this.#seenSize = state.size();
        k8sEventsMetrics(ctx.metrics).leader.set(this.#labels, 1);
        try {
          await this.#collect(signal, elector, delivered);
        } finally {
          k8sEventsMetrics(ctx.metrics).leader.set(this.#labels, 0);
          k8sEventsMetrics(ctx.metrics).cursorAge.set(this.#labels, 0);
        }
      });
    } else {
      k8sEventsMetrics(ctx.metrics).leader.set(this.#labels, 1);
      this.#running = this.#runStandalone();
    }
  }

  async #runStandalone(): Promise<void> {
    const signal = this.#abort.signal;
    let failures = 0;
    while (!signal.aborted) {
      const startedMs = Date.now();
      try {
        await this.#collect(signal, undefined, undefined);
      } catch (err) {
        if (signal.aborted) return;
        // A collector that ran for a while before failing starts over from a short pause.
        failures = Date.now() - startedMs >= 60_000 ? 1 : failures + 1;
        this.#ctx.log.error({ event: k8sEventsEvent.failed, err: errorMessage(err) }, 'events collector failed; restarting it');
        await sleep(Math.min(this.#cfg.backoff.max, this.#cfg.backoff.initial * 2 ** Math.min(failures, 10)), signal);
      }
    }
  }

  /** Runs every scope until `signal` aborts or a commit fails; then commits what is staged when allowed. */
  async #collect(signal: AbortSignal, elector: LeaseElector | undefined, delivered: DeliveredMirror | undefined): Promise<void> {
    const ctx = this.#ctx;
    const cfg = this.#cfg;
    const state = this.#state!;
    const client = this.#client!;
    const stop = new AbortController();
    const runSignal = AbortSignal.any([signal, stop.signal]);
    let fatal: unknown;
    const fail = (err: unknown) => {
      fatal ??= err;
      stop.abort();
    };
    let lastBatchId = 0;
    const committer = new Committer({
      ctx,
      state,
      api: cfg.api,
      flushIntervalMs: elector ? cfg.leader_election.retry_period : 0,
      maxBatchRecords: cfg.max_batch_events,
      fence: elector
        ? () => {
            if (!elector.holds()) throw new LeadershipLost();
          }
        : undefined,
      inTransaction: delivered
        ? () => {
            lastBatchId = delivered.lastBatchId();
          }
        : undefined,
      afterCommit: async () => {
        this.#updateCursorAge();
        delivered?.committed(lastBatchId);
        if (elector) await elector.sync();
      },
      onFatal: fail,
      onSeenDelta: (d) => {
        this.#seenSize += d;
        k8sEventsMetrics(ctx.metrics).seenSetSize.set(this.#labels, this.#seenSize);
      },
    });
    const scopes = cfg.namespaces.length > 0 ? cfg.namespaces : [ALL_NAMESPACES];
    const watchers = scopes.map(
      (scope) =>
        new ScopeWatcher({
          ctx,
          client,
          committer,
          state,
          api: cfg.api,
          scope,
          mode: cfg.mode,
          fieldSelector: cfg.field_selector,
          pageSize: cfg.page_size,
          pollIntervalMs: cfg.interval,
          watchTimeoutMs: cfg.watch_timeout,
          backoff: { initialMs: cfg.backoff.initial, maxMs: cfg.backoff.max },
          onContact: () => {
            this.#failures = 0;
            this.#lastError = undefined;
          },
          onFailure: (err) => {
            this.#failures++;
            this.#lastError = err;
          },
        }),
    );
    this.#active = true;
    this.#updateCursorAge();
    try {
      await Promise.all(watchers.map((w) => w.run(runSignal).catch(fail)));
      committer.close();
      if (fatal === undefined) {
        // Graceful stop: what a leader gathered is committed (the fence still applies) before the release.
        const flushed = await committer.flush().then(
          () => true,
          (err: unknown) => {
            if (!(err instanceof LeadershipLost)) ctx.log.error({ event: k8sEventsEvent.final_commit_failed, err: errorMessage(err) }, 'final commit failed');
            return false;
          },
        );
        if (flushed && elector && delivered) await this.#awaitDelivery(elector, delivered);
      } else {
        committer.discard();
      }
    } finally {
      this.#active = false;
    }
    if (fatal instanceof LeadershipLost) {
      ctx.log.warn({ event: k8sEventsEvent.leadership_lost }, 'leadership lost before a commit; the next leader reads those events again');
      return;
    }
    if (fatal !== undefined && !signal.aborted) throw fatal;
  }

  /**
   * Graceful handover: keep the Lease (renewing it) until the outputs have
   * acknowledged everything committed, so that the release carries the
   * final cursor and the next leader repeats nothing; give up after
   * handover_wait (the next leader then re-emits the rest, as the same ids).
   */
  async #awaitDelivery(elector: LeaseElector, delivered: DeliveredMirror): Promise<void> {
    const le = this.#cfg.leader_election;
    const startMs = Date.now();
    let syncedMs = startMs;
    while (!delivered.caughtUp()) {
      const now = Date.now();
      if (now - startMs >= le.handover_wait) {
        this.#ctx.log.warn({ event: k8sEventsEvent.handover_timeout, waitedMs: now - startMs }, 'handover_wait over with records not yet acknowledged; the next leader re-emits them');
        return;
      }
      if (now - syncedMs >= le.retry_period) {
        syncedMs = now;
        if (!(await elector.sync())) return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    this.#ctx.log.info({ event: k8sEventsEvent.handover, waitedMs: Date.now() - startMs }, 'everything committed is acknowledged; handing the Lease over');
  }

  #prune(): void {
    const state = this.#state;
    if (!state) return;
    try {
      const removed = state.prune(Date.now() - this.#cfg.seen_retention);
      if (removed > 0) this.#seenSize = state.size();
      k8sEventsMetrics(this.#ctx.metrics).seenSetSize.set(this.#labels, this.#seenSize);
    } catch (err) {
      // The spool closes during shutdown; the next start prunes.
      this.#ctx.log.debug({ err: errorMessage(err) }, 'seen-set prune skipped');
    }
  }

  #updateCursorAge(): void {
    if (!this.#active || !this.#state) return;
    try {
      const cursors = this.#state.cursors();
      if (cursors.length === 0) return;
      const oldest = Math.min(...cursors.map((c) => c.advancedMs));
      k8sEventsMetrics(this.#ctx.metrics).cursorAge.set(this.#labels, Math.max(0, (Date.now() - oldest) / 1000));
    } catch {
      // spool closed
    }
  }

  health(): HealthReport {
    const elector = this.#elector;
    if (elector && !elector.isLeader) {
      const err = elector.lastError;
      return { ok: true, detail: err ? `standby; lease errors: ${err}` : 'standby: another instance holds the lease' };
    }
    if (this.#lastError !== undefined && (isConfigError(this.#lastError) || this.#failures >= UNHEALTHY_AFTER_FAILURES)) {
      return { ok: false, detail: `Kubernetes API: ${errorMessage(this.#lastError)}` };
    }
    return { ok: true, detail: elector ? 'leader' : undefined };
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    try {
      await this.#running;
    } catch (err) {
      this.#ctx.log.error({ event: k8sEventsEvent.ended_with_error, err: errorMessage(err) }, 'events input ended with an error');
    }
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#client?.close();
  }
}

export const k8sEventsInput: InputPlugin<typeof schema> = {
  kind: 'input',
  type: 'k8s_events',
  description: 'Kubernetes Events from the API (list + watch or poll): each new event version once, with leader election.',
  schema,
  metrics: k8sEventsMetrics,
  logEvents: k8sEventsLogEvents,
  create: (cfg, ctx) => new K8sEventsInput(cfg, ctx),
  describeState: describeEventsState,
  inspect: (cfg) => inspectKube({ kubeconfig: cfg.kubeconfig, context: cfg.context }),
  // The list the input starts with: events of its first namespace, or of all.
  probe: (cfg, ctx) => {
    const base = cfg.api === 'core/v1' ? '/api/v1' : '/apis/events.k8s.io/v1';
    const ns = cfg.namespaces[0];
    return probeKube({ kubeconfig: cfg.kubeconfig, context: cfg.context }, ns === undefined ? `${base}/events` : `${base}/namespaces/${encodeURIComponent(ns)}/events`, ctx);
  },
};
