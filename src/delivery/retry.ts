import { jsonSize, type SpooledRecord } from '../pipeline/record.ts';
import type { ItemFailure, OutboundRequest, Output, SendOutcome } from '../plugin.ts';
import type { ComponentTelemetry, Metrics } from '../telemetry/metrics.ts';
import type { Logger } from '../telemetry/logger.ts';
import { errorMessage } from '../errors.ts';
import type { OutcomeCode } from './outcome.ts';
import { retryDelayMs, sleep } from './backoff.ts';

/**
 * Retry: one request part sent until each of its records is delivered or has
 * failed for good. Retryable outcomes back off (backoff.ts) and resend only
 * what is left; a request the destination finds too large is halved; per-item
 * results (partial) resend only the items that can still succeed. Nothing
 * here acknowledges the spool: the runner does, with the failures returned.
 */

export interface RetryConfig {
  requestTimeoutMs: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Dead-letter what still fails after this long; undefined = retry forever. */
  maxElapsedMs: number | undefined;
}

export interface RetryOptions {
  name: string;
  output: Output;
  config: RetryConfig;
  metrics: Metrics;
  telemetry: ComponentTelemetry;
  log: Logger;
  /** Aborted when the runner stops: the part stays journaled and unacked. */
  stop: AbortSignal;
  /** Called whenever records were delivered. */
  onProgress: () => void;
  random?: () => number;
}

/** The batch range a part belongs to (its request group). */
export interface GroupRange {
  firstBatch: number;
  lastBatch: number;
}

/** A record that failed for good: its index in the part, and why (a code, and the detail for the dead letter). */
export interface RecordFailure {
  index: number;
  record: SpooledRecord;
  code: OutcomeCode;
  detail: string;
}

export class RetryingSender {
  readonly #o: RetryOptions;

  constructor(opts: RetryOptions) {
    this.#o = opts;
  }

  /**
   * Send until every record is delivered or permanently failed. Returns the
   * permanent failures (index into `records`), or 'stopped' when the agent
   * stopped first.
   */
  async send(group: GroupRange, key: string, records: readonly SpooledRecord[]): Promise<RecordFailure[] | 'stopped'> {
    const { output, config, metrics, telemetry, log, name } = this.#o;
    const failed: RecordFailure[] = [];
    // Indexes (into `records`) still to deliver.
    let todo = records.map((_, i) => i);
    const startedMs = Date.now();
    let attempt = 0;
    let last: { code: OutcomeCode; detail: string } = { code: 'exception', detail: '' };
    while (todo.length > 0) {
      if (this.#o.stop.aborted) return 'stopped';
      attempt++;
      const batch = todo.map((i) => records[i]!);
      const bytes = batch.reduce((n, r) => n + jsonSize(r) + 1, 0);
      const request: OutboundRequest = { key, firstBatchId: group.firstBatch, lastBatchId: group.lastBatch, records: batch, attempt };
      const timeout = AbortSignal.timeout(config.requestTimeoutMs);
      const signal = AbortSignal.any([this.#o.stop, timeout]);
      const t0 = performance.now();
      let outcome: SendOutcome;
      try {
        // An output that ignores its signal must not hold up a timeout or a stop.
        outcome = validOutcome(await Promise.race([output.send(request, signal), aborted(signal)]), batch.length);
      } catch (err) {
        outcome = { kind: 'retryable', code: 'exception', detail: errorMessage(err) };
      }
      if (timeout.aborted && outcome.kind !== 'ok') outcome = { kind: 'retryable', code: 'timeout', detail: `timeout after ${config.requestTimeoutMs} ms` };
      if (this.#o.stop.aborted && outcome.kind !== 'ok') return 'stopped';
      const label = outcome.kind === 'retryable' && timeout.aborted ? 'timeout' : outcome.kind;
      metrics.outputRequests.inc({ output: name, outcome: label });
      metrics.outputRequestSeconds.observe({ output: name, outcome: label }, (performance.now() - t0) / 1000);

      let retryAfterMs: number | undefined;
      switch (outcome.kind) {
        case 'ok':
          telemetry.sent(batch.length, bytes);
          metrics.outputLastSuccess.set({ output: name }, Date.now() / 1000);
          this.#o.onProgress();
          todo = [];
          continue;
        case 'permanent':
          for (const i of todo) failed.push({ index: i, record: records[i]!, code: outcome.code, detail: outcome.detail });
          telemetry.error(outcome.code, 1);
          todo = [];
          continue;
        case 'too_large': {
          if (todo.length === 1) {
            failed.push({ index: todo[0]!, record: records[todo[0]!]!, code: 'too_large', detail: `too large for the destination: ${outcome.detail}` });
            todo = [];
            continue;
          }
          // Halve and deliver each half on its own (deterministic split, stable keys).
          const mid = Math.ceil(todo.length / 2);
          for (const [h, half] of [todo.slice(0, mid), todo.slice(mid)].entries()) {
            const sub = await this.send(group, `${key}-s${h}`, half.map((i) => records[i]!));
            if (sub === 'stopped') return 'stopped';
            for (const f of sub) failed.push({ ...f, index: half[f.index]! });
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
            telemetry.error(f.code, 1);
            if (f.kind === 'permanent') failed.push({ index: idx, record: records[idx]!, code: f.code, detail: f.detail });
            else {
              retry.push(idx);
              last = f;
            }
          }
          const delivered = batch.length - failedHere.size;
          if (delivered > 0) {
            telemetry.sent(delivered);
            metrics.outputLastSuccess.set({ output: name }, Date.now() / 1000);
            this.#o.onProgress();
          }
          todo = retry;
          retryAfterMs = outcome.retryAfterMs;
          if (todo.length === 0) continue;
          break;
        }
        case 'retryable':
          last = outcome;
          retryAfterMs = outcome.retryAfterMs;
          telemetry.error(outcome.code);
          break;
      }
      if (config.maxElapsedMs !== undefined && Date.now() - startedMs >= config.maxElapsedMs) {
        for (const i of todo) failed.push({ index: i, record: records[i]!, code: 'retries_exhausted', detail: `retries exhausted after ${config.maxElapsedMs} ms: ${last.detail}` });
        todo = [];
        continue;
      }
      const delay = retryDelayMs({ initialBackoffMs: config.initialBackoffMs, maxBackoffMs: config.maxBackoffMs }, attempt, retryAfterMs, this.#o.random);
      metrics.outputRetries.inc({ output: name, reason: last.code });
      if (attempt === 1 || attempt % 10 === 0) log.warn({ key, attempt, delayMs: delay, code: last.code, reason: last.detail, records: todo.length }, 'send failed; retrying');
      await sleep(delay, this.#o.stop);
    }
    return failed;
  }
}

function aborted(signal: AbortSignal): Promise<SendOutcome> {
  return new Promise((resolve) => {
    const done = () => resolve({ kind: 'retryable', code: 'aborted', detail: 'aborted' });
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
}

const CODE_RE = /^[a-z][a-z0-9_]{0,39}$/;

/** An output's code, if it has the shape of one (outcome.ts); else the code of a malformed outcome. */
function validCode(c: unknown): OutcomeCode {
  return typeof c === 'string' && CODE_RE.test(c) ? (c as OutcomeCode) : 'invalid_outcome';
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
      return { ...v, code: validCode(v.code), detail: typeof v.detail === 'string' ? v.detail : String(v.detail) };
    case 'partial':
      if (Array.isArray(v.failures) && v.failures.every((f) => Number.isInteger(f?.index) && f.index >= 0 && f.index < records)) {
        return { ...v, failures: v.failures.map((f) => ({ ...f, code: validCode(f.code), detail: typeof f.detail === 'string' ? f.detail : String(f.detail) })) };
      }
      return { kind: 'retryable', code: 'invalid_outcome', detail: 'output returned malformed per-item results' };
    default:
      return { kind: 'retryable', code: 'invalid_outcome', detail: `output returned an invalid outcome: ${JSON.stringify(o)?.slice(0, 80)}` };
  }
}
