import type { EmitGap, InputContext, InputDeadLetter } from '../../plugin.ts';
import type { LogRecord } from '../../pipeline/record.ts';
import { compareRv, isNewVersion, isNumericRv, toRecord, type EventApi, type EventObject } from './convert.ts';
import type { EventsState, SeenEntry } from './state.ts';
import { k8sEventsMetrics } from './telemetry.ts';

/**
 * Turns event objects into records and commits them — with the seen-set rows
 * and cursors they imply — in one spool transaction.
 *
 * Dedup looks, in order, at what is staged, what is being committed, and the
 * committed state, so a version is never staged twice even while a commit is
 * in flight.
 *
 * Without leader election every page or watch read is committed at once. A
 * leader gathers for up to `flushIntervalMs` (its retry period), so that
 * commits and Lease writes stay bounded however fast events arrive. What the
 * leader mirrors into the Lease is the delivered state, not the committed one
 * (see delivered.ts).
 */

export interface CommitterOptions {
  ctx: InputContext;
  state: EventsState;
  api: EventApi;
  /** 0: commit each page / watch read at once; otherwise gather for up to this long. */
  flushIntervalMs: number;
  /** Commit early when this many records are staged; staging waits while one such commit runs. */
  maxBatchRecords: number;
  /** Runs inside the transaction; throwing rolls the batch back (the leader fence). */
  fence?: () => void;
  /** Runs inside the transaction, after the state was written (the leader notes the spool's newest batch id). */
  inTransaction?: () => void;
  /** After each commit (the leader mirrors into its Lease). */
  afterCommit?: () => Promise<void>;
  /** A background commit failed: the collector must stop. */
  onFatal?: (err: unknown) => void;
  /** Committed seen-set size changed by this many rows. */
  onSeenDelta?: (delta: number) => void;
}

interface Staged {
  records: LogRecord[];
  deadLetters: InputDeadLetter[];
  seen: Map<string, SeenEntry>;
  cursors: Map<string, string>;
  newUids: number;
  /** Lowest and highest resourceVersion staged (the chain entry's range). */
  minRv: string | undefined;
  maxRv: string | undefined;
  /** Possible gaps noticed since the last commit (the completeness chain). */
  gaps: EmitGap[];
}

function empty(): Staged {
  return { records: [], deadLetters: [], seen: new Map(), cursors: new Map(), newUids: 0, minRv: undefined, maxRv: undefined, gaps: [] };
}

function lowerRv(a: string | undefined, b: string): string {
  if (a === undefined) return b;
  return isNumericRv(a) && isNumericRv(b) && compareRv(b, a) < 0 ? b : a;
}

function higherRv(a: string | undefined, b: string): string {
  if (a === undefined) return b;
  return isNumericRv(a) && isNumericRv(b) && compareRv(b, a) > 0 ? b : a;
}

/** One cursor as is; several (one per namespace scope) as `scope=rv,…`. */
function cursorText(cursors: ReadonlyMap<string, string | undefined>): string | null {
  if (cursors.size === 0) return null;
  if (cursors.size === 1) return [...cursors.values()][0] ?? null;
  return [...cursors].map(([scope, rv]) => `${scope}=${rv ?? ''}`).join(',');
}

export class Committer {
  readonly #o: CommitterOptions;
  readonly #labels: { input: string };
  #staged: Staged = empty();
  #inflight: Staged | undefined;
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #failure: unknown;
  #closed = false;
  /** Wall time of the last commit. */
  lastCommitMs = 0;

  constructor(opts: CommitterOptions) {
    this.#o = opts;
    this.#labels = { input: opts.ctx.name };
  }

  /** The scope's cursor as staged, in flight, or committed. */
  cursor(scope: string): string | undefined {
    return this.#staged.cursors.get(scope) ?? this.#inflight?.cursors.get(scope) ?? this.#o.state.cursor(scope)?.resourceVersion;
  }

  lastEmitted(uid: string): string | undefined {
    return this.#staged.seen.get(uid)?.resourceVersion ?? this.#inflight?.seen.get(uid)?.resourceVersion ?? this.#o.state.lastEmitted(uid);
  }

  /**
   * Stages the new versions among `objects` (and the cursor reached after
   * them); resolves once committed, or staged when gathering. Rejects when a
   * commit failed (the fence, or a closed spool).
   */
  async stage(scope: string, objects: readonly EventObject[], source: 'list' | 'watch', cursorAfter?: string): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const { ctx, api } = this.#o;
    const m = ctx.metrics;
    let duplicates = 0;
    const s = this.#staged;
    for (const obj of objects) {
      const uid = obj.metadata?.uid;
      const rv = obj.metadata?.resourceVersion;
      if (!uid || !rv) {
        s.deadLetters.push({ code: 'invalid_event', reason: 'invalid_event: no metadata.uid or metadata.resourceVersion', data: JSON.stringify(obj) });
        continue;
      }
      const last = this.lastEmitted(uid);
      if (!isNewVersion(rv, last, this.cursor(scope))) {
        duplicates++;
        continue;
      }
      s.records.push(toRecord(obj, api, ctx.name)!);
      s.minRv = lowerRv(s.minRv, rv);
      s.maxRv = higherRv(s.maxRv, rv);
      if (last === undefined) s.newUids++;
      s.seen.set(uid, { uid, scope, resourceVersion: rv });
    }
    if (cursorAfter !== undefined && cursorAfter !== '') s.cursors.set(scope, cursorAfter);
    if (objects.length > 0) {
      k8sEventsMetrics(m).received.inc({ ...this.#labels, source }, objects.length);
      ctx.telemetry.received(objects.length);
    }
    if (duplicates > 0) {
      k8sEventsMetrics(m).deduplicated.inc(this.#labels, duplicates);
      ctx.telemetry.discarded('duplicate', duplicates);
    }
    if (this.#o.flushIntervalMs === 0 || s.records.length >= this.#o.maxBatchRecords) {
      await this.flush();
    } else if (this.#timer === undefined && !this.#closed) {
      const waitMs = Math.max(0, this.lastCommitMs + this.#o.flushIntervalMs - Date.now());
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush().catch((err: unknown) => this.#o.onFatal?.(err));
      }, waitMs);
    }
  }

  /**
   * A possible gap (events expired before they could be read): an entry of
   * its own in the completeness chain, committed now.
   */
  async gap(gap: EmitGap): Promise<void> {
    this.#staged.gaps.push(gap);
    await this.flush();
  }

  /** Commits whatever is staged (serialized with other commits). */
  flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const next = this.#chain.then(() => this.#commit());
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async #commit(): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const batch = this.#staged;
    if (batch.records.length === 0 && batch.deadLetters.length === 0 && batch.cursors.size === 0 && batch.gaps.length === 0) return;
    this.#staged = empty();
    this.#inflight = batch;
    const { ctx, state, fence } = this.#o;
    const before = new Map<string, string | undefined>();
    for (const scope of batch.cursors.keys()) before.set(scope, state.cursor(scope)?.resourceVersion);
    try {
      await ctx.emit({
        records: batch.records,
        deadLetters: batch.deadLetters,
        manifest: {
          source: { resourceVersion: { cursorFrom: cursorText(before), cursorTo: cursorText(batch.cursors), min: batch.minRv ?? null, max: batch.maxRv ?? null } },
          gaps: batch.gaps.length > 0 ? batch.gaps : undefined,
        },
        checkpoint: () => {
          fence?.();
          state.commit(batch.seen.values(), batch.cursors, Date.now());
          this.#o.inTransaction?.();
        },
      });
    } catch (err) {
      this.#failure = err;
      throw err;
    } finally {
      this.#inflight = undefined;
    }
    this.lastCommitMs = Date.now();
    if (batch.records.length > 0) k8sEventsMetrics(ctx.metrics).emitted.inc(this.#labels, batch.records.length);
    if (batch.newUids > 0) this.#o.onSeenDelta?.(batch.newUids);
    await this.#o.afterCommit?.();
  }

  /** Stops the gathering timer; staged records are dropped unless flushed first. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Forget anything staged (leadership lost: the next leader reads it again). */
  discard(): void {
    this.#staged = empty();
  }
}
