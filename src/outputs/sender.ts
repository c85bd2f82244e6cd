import type { DeadLetterEntry, Spool } from '../spool/spool.ts';
import type { SpooledRecord } from '../pipeline/record.ts';
import type { ItemFailure, OutboundRequest, Output, SendOutcome } from '../plugin.ts';
import type { ComponentTelemetry, Metrics } from '../telemetry/metrics.ts';
import type { Logger } from '../telemetry/logger.ts';
import { errorMessage } from '../errors.ts';
import { reasonCode } from '../spool/dead-letter.ts';
import { retryDelayMs, sleep } from './backoff.ts';

/**
 * The shared sender: the one delivery loop every output runs in. An output
 * only encodes and sends; batching, retry, timeouts, dead-lettering and
 * acknowledging the spool live here.
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

export interface SenderConfig {
  maxBatchBytes: number;
  maxBatchRecords: number;
  flushIntervalMs: number;
  concurrency: number;
  requestTimeoutMs: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Dead-letter what still fails after this long; undefined = retry forever. */
  maxElapsedMs: number | undefined;
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

interface Group {
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
  #wake: (() => void) | undefined;
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
  }

  start(): void {
    if (this.#loop) return;
    const { spool, name } = this.#o;
    // Replay journaled groups first, exactly as they were composed.
    for (const j of spool.journaledRequests(name)) {
      const refs = spool.pending(name, j.firstBatch - 1, FETCH_LIMIT).filter((b) => b.id <= j.lastBatch);
      if (refs.length === 0) {
        spool.dropJournaledRequest(name, j.firstBatch);
        continue;
      }
      this.#replay.push({ firstBatch: j.firstBatch, lastBatch: j.lastBatch, batchIds: refs.map((r) => r.id) });
      this.#cursor = Math.max(this.#cursor, j.lastBatch);
    }
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
    this.hurry();
    while (Date.now() < deadlineMs) {
      if (this.#inflight.size === 0 && this.#replay.length === 0 && this.#o.spool.pending(this.name, 0, 1).length === 0) break;
      await sleep(Math.min(50, deadlineMs - Date.now()));
    }
    const drained = this.#o.spool.pending(this.name, 0, 1).length === 0;
    await this.stop();
    return drained;
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
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #waitForWork(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const t = setTimeout(done, Math.max(1, timeoutMs));
      this.#wake = done;
    });
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

  /** Greedy: whole batches until a limit is reached, or the oldest has waited flush_interval. */
  #nextGroup(): { group?: Group; waitMs: number } {
    const { spool, config, name } = this.#o;
    const refs = spool.pending(name, this.#cursor, FETCH_LIMIT);
    if (refs.length === 0) return { waitMs: 5000 };
    let bytes = 0;
    let records = 0;
    const ids: number[] = [];
    let full = false;
    for (const ref of refs) {
      if (ids.length > 0 && (bytes + ref.bytes > config.maxBatchBytes || records + ref.recordCount > config.maxBatchRecords)) {
        full = true;
        break;
      }
      ids.push(ref.id);
      bytes += ref.bytes;
      records += ref.recordCount;
      if (bytes >= config.maxBatchBytes || records >= config.maxBatchRecords) {
        full = true;
        break;
      }
    }
    const ageMs = Date.now() - refs[0]!.createdMs;
    if (!full && !this.#draining && ageMs < config.flushIntervalMs) {
      const waitMs = config.flushIntervalMs - ageMs;
      this.#waiting = { records, bytes, dueMs: Date.now() + waitMs };
      return { waitMs };
    }
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
      const done = await this.#sendWithRetry(group, partKey, part);
      if (done === 'stopped') return; // stays journaled; resent after restart
      for (const f of done) {
        deadLetters.push({
          component: name,
          output: name,
          input: f.record.input,
          recordId: f.record.id,
          batchId: batchOf[offset + f.index],
          code: reasonCode(f.reason),
          reason: f.reason,
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

  /**
   * Send until every record is delivered or permanently failed. Returns the
   * permanent failures (index into `records`), or 'stopped' when the agent
   * stopped first.
   */
  async #sendWithRetry(
    group: Group,
    key: string,
    records: readonly SpooledRecord[],
  ): Promise<Array<{ index: number; record: SpooledRecord; reason: string }> | 'stopped'> {
    const { output, config, metrics, telemetry, log, name } = this.#o;
    const failed: Array<{ index: number; record: SpooledRecord; reason: string }> = [];
    // Indexes (into `records`) still to deliver.
    let todo = records.map((_, i) => i);
    const startedMs = Date.now();
    let attempt = 0;
    let lastReason = '';
    while (todo.length > 0) {
      if (this.#stop.signal.aborted) return 'stopped';
      attempt++;
      const batch = todo.map((i) => records[i]!);
      const bytes = batch.reduce((n, r) => n + r.json.length + 1, 0);
      const request: OutboundRequest = { key, firstBatchId: group.firstBatch, lastBatchId: group.lastBatch, records: batch, attempt };
      const timeout = AbortSignal.timeout(config.requestTimeoutMs);
      const signal = AbortSignal.any([this.#stop.signal, timeout]);
      const t0 = performance.now();
      let outcome: SendOutcome;
      try {
        // An output that ignores its signal must not hold up a timeout or a stop.
        outcome = validOutcome(await Promise.race([output.send(request, signal), aborted(signal)]), batch.length);
      } catch (err) {
        outcome = { kind: 'retryable', reason: errorMessage(err) };
      }
      if (timeout.aborted && outcome.kind !== 'ok') outcome = { kind: 'retryable', reason: `timeout after ${config.requestTimeoutMs} ms` };
      if (this.#stop.signal.aborted && outcome.kind !== 'ok') return 'stopped';
      const label = outcome.kind === 'retryable' && timeout.aborted ? 'timeout' : outcome.kind;
      metrics.outputRequests.inc({ output: name, outcome: label });
      metrics.outputRequestSeconds.observe({ output: name, outcome: label }, (performance.now() - t0) / 1000);

      let retryAfterMs: number | undefined;
      switch (outcome.kind) {
        case 'ok':
          telemetry.sent(batch.length, bytes);
          metrics.outputLastSuccess.set({ output: name }, Date.now() / 1000);
          this.#lastProgressMs = Date.now();
          todo = [];
          continue;
        case 'permanent':
          for (const i of todo) failed.push({ index: i, record: records[i]!, reason: outcome.reason });
          telemetry.error(reasonCode(outcome.reason), 1);
          todo = [];
          continue;
        case 'too_large': {
          if (todo.length === 1) {
            failed.push({ index: todo[0]!, record: records[todo[0]!]!, reason: `too large for the destination: ${outcome.reason}` });
            todo = [];
            continue;
          }
          // Halve and deliver each half on its own (deterministic split, stable keys).
          const mid = Math.ceil(todo.length / 2);
          for (const [h, half] of [todo.slice(0, mid), todo.slice(mid)].entries()) {
            const sub = await this.#sendWithRetry(group, `${key}-s${h}`, half.map((i) => records[i]!));
            if (sub === 'stopped') return 'stopped';
            for (const f of sub) failed.push({ index: half[f.index]!, record: f.record, reason: f.reason });
          }
          todo = [];
          continue;
        }
        case 'partial': {
          const retry: number[] = [];
          const failedHere = new Set<number>();
          for (const f of outcome.failures as ItemFailure[]) {
            const idx = todo[f.index];
            // One verdict per item: the first one an output reports wins.
            if (idx === undefined || failedHere.has(f.index)) continue;
            failedHere.add(f.index);
            if (f.kind === 'permanent') failed.push({ index: idx, record: records[idx]!, reason: f.reason });
            else {
              retry.push(idx);
              lastReason = f.reason;
            }
          }
          const delivered = batch.length - failedHere.size;
          if (delivered > 0) {
            telemetry.sent(delivered);
            metrics.outputLastSuccess.set({ output: name }, Date.now() / 1000);
            this.#lastProgressMs = Date.now();
          }
          todo = retry;
          retryAfterMs = outcome.retryAfterMs;
          if (todo.length === 0) continue;
          break;
        }
        case 'retryable':
          lastReason = outcome.reason;
          retryAfterMs = outcome.retryAfterMs;
          telemetry.error(reasonCode(outcome.reason));
          break;
      }
      if (config.maxElapsedMs !== undefined && Date.now() - startedMs >= config.maxElapsedMs) {
        for (const i of todo) failed.push({ index: i, record: records[i]!, reason: `retries exhausted after ${config.maxElapsedMs} ms: ${lastReason}` });
        todo = [];
        continue;
      }
      const delay = retryDelayMs({ initialBackoffMs: config.initialBackoffMs, maxBackoffMs: config.maxBackoffMs }, attempt, retryAfterMs, this.#o.random);
      metrics.outputRetries.inc({ output: name, reason: reasonCode(lastReason) });
      if (attempt === 1 || attempt % 10 === 0) log.warn({ key, attempt, delayMs: delay, reason: lastReason, records: todo.length }, 'send failed; retrying');
      await sleep(delay, this.#stop.signal);
    }
    return failed;
  }
}

function aborted(signal: AbortSignal): Promise<SendOutcome> {
  return new Promise((resolve) => {
    const done = () => resolve({ kind: 'retryable', reason: 'aborted' });
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
}

/** Anything but a well-formed outcome is treated as retryable, never as delivered. */
function validOutcome(o: unknown, records: number): SendOutcome {
  const v = o as SendOutcome | undefined;
  switch (v?.kind) {
    case 'ok':
      return v;
    case 'retryable':
    case 'permanent':
    case 'too_large':
      return { ...v, reason: typeof v.reason === 'string' ? v.reason : String(v.reason) };
    case 'partial':
      if (Array.isArray(v.failures) && v.failures.every((f) => Number.isInteger(f?.index) && f.index >= 0 && f.index < records)) return v;
      return { kind: 'retryable', reason: 'output returned malformed per-item results' };
    default:
      return { kind: 'retryable', reason: `output returned an invalid outcome: ${JSON.stringify(o)?.slice(0, 80)}` };
  }
}

/** Split into request parts that respect both limits (at least one record per part). */
export function splitRecords(records: readonly SpooledRecord[], maxBytes: number, maxRecords: number): SpooledRecord[][] {
  const parts: SpooledRecord[][] = [];
  let cur: SpooledRecord[] = [];
  let bytes = 0;
  for (const r of records) {
    const n = r.json.length + 1;
    if (cur.length > 0 && (bytes + n > maxBytes || cur.length >= maxRecords)) {
      parts.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += n;
  }
  if (cur.length > 0) parts.push(cur);
  return parts;
}
