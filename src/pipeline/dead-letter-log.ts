import type { DeadLetterEntry } from '../spool/dead-letter.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * Warn logs for dead letters that do not flood: the first of each component
 * and code is logged with its detail (reason, record id, source; never the
 * content), the rest are counted and logged once a minute as totals.
 */
export class DeadLetterLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #seen = new Set<string>();
  readonly #pending = new Map<string, { component: string; code: string; count: number; withheld: number }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(log: Logger, intervalMs = 60_000) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  note(entries: readonly DeadLetterEntry[]): void {
    for (const e of entries) {
      const key = `${e.component}\0${e.code}`;
      if (!this.#seen.has(key)) {
        this.#seen.add(key);
        this.#log.warn(
          {
            component: e.component,
            code: e.code,
            reason: e.reason,
            recordId: e.recordId,
            source: e.source,
            withheld: e.withheld === true,
            perMinute: true,
          },
          e.withheld
            ? 'dead-lettered as metadata only (a redact rule could apply to content that could not be parsed); more of this code are counted per minute'
            : 'dead-lettered; more of this code are counted per minute',
        );
        continue;
      }
      let p = this.#pending.get(key);
      if (p === undefined) this.#pending.set(key, (p = { component: e.component, code: e.code, count: 0, withheld: 0 }));
      p.count++;
      if (e.withheld) p.withheld++;
    }
    if (this.#pending.size > 0 && this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, this.#intervalMs);
      this.#timer.unref();
    }
  }

  /** Log the counts gathered since the last flush. */
  flush(): void {
    for (const p of this.#pending.values()) {
      this.#log.warn({ component: p.component, code: p.code, count: p.count, withheld: p.withheld, intervalS: this.#intervalMs / 1000 }, 'more records dead-lettered');
    }
    this.#pending.clear();
  }

  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.flush();
  }
}
