import type { DeadLetterEntry, Spool } from '../spool/spool.ts';
import type { SpooledRecord } from '../pipeline/record.ts';
import type { Output } from '../plugin.ts';
import type { ComponentTelemetry, Metrics } from '../telemetry/metrics.ts';
import type { Logger } from '../telemetry/logger.ts';
import { errorMessage } from '../errors.ts';
import { retryDelayMs, sleep } from './backoff.ts';
import { composeGroup, splitRecords, type BatchLimits } from './batching.ts';
import { journaledGroups } from './journal.ts';
import { RetryingSender, type RetryConfig } from './retry.ts';
import { Waker } from '../waker.ts';

/**
 * The delivery runner: the one loop every output runs in, from the spool to
 * the output's `send`. An output only encodes and sends; this file composes
 * request groups and acknowledges the spool, with one concern per module
 * beside it: batching.ts (which batches make a request), retry.ts (sending a
 * part until each record is delivered or failed for good), journal.ts (the
 * groups to send again after a restart) and backoff.ts.
 *
 * Invariants:
 * - A request is a run of whole spool batches (a batch too large for one
 *   request is split into parts, all inside the same request group). Its
 *   composition is journaled before the first send, so after a crash the same
 *   group — with the same `key` — is sent again: sinks that write by key (S3)
 *   or dedupe by key (Idempotency-Key) see a harmless replay.
 * - Batches are acked only after every record in them was delivered or
 *   dead-lettered; the ack, the dead letters and the journal removal are one
 *   transaction.
 * - Memory is bounded by `maxBatchBytes * concurrency` plus one spool batch.
 */

export interface SenderConfig extends BatchLimits, RetryConfig {
  concurrency: number;
}

export interface OutputRunnerOptions {
  name: string;
  output: Output;
  spool: Spool;
  config: SenderConfig;
  metrics: Metrics;
  telemetry: ComponentTelemetry;
  log: Logger;
  random?: () => number;
}

export interface Group {
  firstBatch: number;
  lastBatch: number;
  batchIds: number[];
  /** Failed deliveries of this group in this process (an exception, not an outcome). */
  failures?: number;
}

/** How many pending batch refs are fetched from the spool at a time. */
const FETCH_LIMIT = 2048;

export class OutputRunner {
  readonly name: string;
  readonly #o: OutputRunnerOptions;
  readonly #stop = new AbortController();
  #cursor = 0;
  #replay: Group[] = [];
  #inflight = new Set<Promise<void>>();
  readonly #work = new Waker();
  readonly #retry: RetryingSender;
  #loop: Promise<void> | undefined;
  #draining = false;
  #stopped = false;
  #lastProgressMs = Date.now();
  #unsubscribe: (() => void) | undefined;
  /** While a partial group waits for flush_interval: its size and when it is due. */
  #waiting: { records: number; bytes: number; dueMs: number } | undefined;

  constructor(opts: OutputRunnerOptions) {
    this.name = opts.name;
    this.#o = opts;
    this.#retry = new RetryingSender({
      name: opts.name,
      output: opts.output,
      config: opts.config,
      metrics: opts.metrics,
      telemetry: opts.telemetry,
      log: opts.log,
      stop: this.#stop.signal,
      onProgress: () => {
        this.#lastProgressMs = Date.now();
      },
      random: opts.random,
    });
  }

  start(): void {
    if (this.#loop) return;
    const { spool, name } = this.#o;
    // Replay journaled groups first, exactly as they were composed.
    const { groups, cursor } = journaledGroups(spool, name, FETCH_LIMIT);
    this.#replay.push(...groups);
    this.#cursor = Math.max(this.#cursor, cursor);
    this.#unsubscribe = spool.onAppend((e) => {
      if (!e.routes.includes(name)) return;
      const w = this.#waiting;
      if (w) {
        // A group waiting for flush_interval only needs a new look once it is full.
        w.records += e.records;
        w.bytes += e.bytes;
        if (w.records < this.#o.config.maxBatchRecords && w.bytes < this.#o.config.maxBatchBytes) return;
        this.#waiting = undefined;
      }
      this.#poke();
    });
    this.#loop = this.#run().catch((err: unknown) => {
      this.#o.log.error({ err: errorMessage(err) }, 'output loop failed');
    });
  }

  /**
   * How long the output has had data pending without making progress: since
   * its last success or since the oldest pending batch arrived, whichever is
   * later (an output idle for an hour is not stalled by one new record).
   */
  stalledForMs(nowMs = Date.now()): number {
    const oldest = this.#o.spool.backlog(this.name).oldestCreatedMs;
    if (oldest === undefined) return 0;
    return Math.max(0, nowMs - Math.max(this.#lastProgressMs, oldest));
  }

  /**
   * Shutdown has begun: a partial group goes out now instead of waiting for
   * flush_interval, and so does whatever the stopping inputs still append.
   * Inputs that wait for their records to be acknowledged before they stop
   * (the events collector's Lease handover) are then not held up by it.
   */
  hurry(): void {
    this.#draining = true;
    this.#waiting = undefined;
    this.#poke();
  }

  /** Deliver what is pending until the backlog is empty or the deadline passes, then stop. */
  async drain(deadlineMs: number): Promise<boolean> {
    if (!this.#loop) return this.#o.spool.backlog(this.name).pendingBatches === 0;
    const drained = await this.settle(deadlineMs);
    await this.stop();
    return drained;
  }

  /** Deliver what is pending until the backlog is empty or the deadline passes, and keep running (shutdown seals manifests in between). */
  async settle(deadlineMs: number): Promise<boolean> {
    if (!this.#loop) return this.#o.spool.backlog(this.name).pendingBatches === 0;
    this.hurry();
    while (Date.now() < deadlineMs) {
      if (this.#inflight.size === 0 && this.#replay.length === 0 && this.#o.spool.pending(this.name, 0, 1).length === 0) break;
      await sleep(Math.min(50, deadlineMs - Date.now()));
    }
    return this.#o.spool.pending(this.name, 0, 1).length === 0;
  }

  /** Stop now: in-flight sends are aborted and stay journaled for the next start. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stop.abort();
    this.#poke();
    this.#unsubscribe?.();
    await this.#loop;
    await Promise.allSettled(this.#inflight);
  }

  #poke(): void {
    this.#work.wake();
  }

  #waitForWork(timeoutMs: number): Promise<void> {
    return this.#work.wait(timeoutMs);
  }

  async #run(): Promise<void> {
    const { config, log } = this.#o;
    let loopFailures = 0;
    while (!this.#stopped) {
      if (this.#inflight.size >= config.concurrency) {
        await Promise.race([...this.#inflight, this.#waitForWork(1000)]);
        continue;
      }
      const replay = this.#replay.shift();
      if (replay) {
        this.#dispatch(replay);
        continue;
      }
      const w = this.#waiting;
      if (w && Date.now() < w.dueMs && !this.#draining) {
        await this.#waitForWork(w.dueMs - Date.now());
        continue;
      }
      this.#waiting = undefined;
      let next: { group?: Group; waitMs: number };
      try {
        next = this.#nextGroup();
        loopFailures = 0;
      } catch (err) {
        // The spool could not be read or journaled (disk full, I/O error): keep the
        // output alive and try again, instead of ending its loop for good.
        loopFailures++;
        log.error({ err: errorMessage(err), attempt: loopFailures }, 'cannot read the spool for this output; retrying');
        await sleep(Math.min(30_000, 500 * 2 ** Math.min(loopFailures, 6)), this.#stop.signal);
        continue;
      }
      if (next.group) {
        this.#dispatch(next.group);
        continue;
      }
      await this.#waitForWork(next.waitMs);
    }
  }

  /** The next group to send (journaled before it is returned), or how long to wait for one. */
  #nextGroup(): { group?: Group; waitMs: number } {
    const { spool, config, name } = this.#o;
    const refs = spool.pending(name, this.#cursor, FETCH_LIMIT);
    if (refs.length === 0) return { waitMs: 5000 };
    const c = composeGroup(refs, config, this.#draining, Date.now());
    if (c.kind === 'wait') {
      this.#waiting = { records: c.records, bytes: c.bytes, dueMs: Date.now() + c.waitMs };
      return { waitMs: c.waitMs };
    }
    const ids = c.batchIds;
    const group = { firstBatch: ids[0]!, lastBatch: ids[ids.length - 1]!, batchIds: ids };
    spool.journalRequest(name, group.firstBatch, group.lastBatch);
    this.#cursor = group.lastBatch;
    return { group, waitMs: 0 };
  }

  #dispatch(group: Group): void {
    const p = this.#deliverGroup(group)
      .catch(async (err: unknown) => {
        // Not a delivery outcome but an exception (spool I/O, a bug in an
        // output): the group is still journaled and unacked. Put it back, after
        // a backoff, so it is retried in this process, not only after a restart.
        group.failures = (group.failures ?? 0) + 1;
        this.#o.telemetry.error('exception');
        this.#o.log.error(
          { err: errorMessage(err), firstBatch: group.firstBatch, attempt: group.failures },
          'delivery of a request group failed; it stays spooled and is retried',
        );
        const { initialBackoffMs, maxBackoffMs } = this.#o.config;
        await sleep(retryDelayMs({ initialBackoffMs, maxBackoffMs }, group.failures, undefined, this.#o.random), this.#stop.signal);
        if (!this.#stop.signal.aborted) this.#replay.push(group);
      })
      .finally(() => {
        this.#inflight.delete(p);
        this.#poke();
      });
    this.#inflight.add(p);
  }

  async #deliverGroup(group: Group): Promise<void> {
    const { spool, config, name } = this.#o;
    const records: SpooledRecord[] = [];
    const batchOf: number[] = [];
    for (const id of group.batchIds) {
      for (const r of spool.readBatch(id)) {
        records.push(r);
        batchOf.push(id);
      }
    }
    const key = `${name}-${group.firstBatch}-${group.lastBatch}`;
    const parts = splitRecords(records, config.maxBatchBytes, config.maxBatchRecords);
    const deadLetters: DeadLetterEntry[] = [];
    let offset = 0;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const partKey = parts.length === 1 ? key : `${key}-p${i}`;
      const done = await this.#retry.send(group, partKey, part);
      if (done === 'stopped') return; // stays journaled; resent after restart
      for (const f of done) {
        deadLetters.push({
          component: name,
          output: name,
          input: f.record.input,
          recordId: f.record.id,
          batchId: batchOf[offset + f.index],
          code: f.code,
          reason: f.detail,
          // Records in the spool have been through the processors: redacted.
          data: f.record.json,
        });
      }
      offset += part.length;
    }
    spool.ack(name, group.batchIds, { deadLetters, requestFirstBatch: group.firstBatch });
    this.#lastProgressMs = Date.now();
    if (deadLetters.length > 0) {
      const byCode = new Map<string, number>();
      for (const d of deadLetters) byCode.set(d.code, (byCode.get(d.code) ?? 0) + 1);
      for (const [code, n] of byCode) {
        this.#o.metrics.deadLetters.inc({ component_id: name, reason: code }, n);
        this.#o.telemetry.discarded(`dead_letter_${code}`, n);
      }
      this.#o.log.warn(
        { deadLettered: deadLetters.length, sample: { recordId: deadLetters[0]!.recordId, reason: deadLetters[0]!.reason } },
        'records dead-lettered by output',
      );
    }
  }
}
