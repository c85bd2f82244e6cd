import { z } from 'zod';
import type { OutboundRequest, Output, OutputPlugin, SendOutcome } from '../../src/plugin.ts';

/**
 * A test output whose behaviour the test switches at run time: `open` (ok),
 * `closed` (waits), `failing` (503). It remembers every delivered record id.
 */
export class Gate {
  mode: 'open' | 'closed' | 'failing' = 'open';
  readonly delivered: string[] = [];
  #waiters: Array<() => void> = [];
  set(mode: Gate['mode']): void {
    this.mode = mode;
    for (const w of this.#waiters.splice(0)) w();
  }
  wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }
}

const schema = z.strictObject({ gate: z.string() });

export function gatedOutputPlugin(gates: Record<string, Gate>): OutputPlugin<typeof schema> {
  return {
    kind: 'output',
    type: 'gated',
    description: 'test output',
    schema,
    delivery: { batch: { flush_interval: 0 } },
    create(cfg): Output {
      const gate = gates[cfg.gate]!;
      return {
        async send(req: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
          while (gate.mode === 'closed' && !signal.aborted) await gate.wait(signal);
          if (signal.aborted) return { kind: 'retryable', code: 'aborted', detail: 'aborted' };
          if (gate.mode === 'failing') return { kind: 'retryable', code: 'http_503', detail: 'HTTP 503' };
          for (const r of req.records) gate.delivered.push(r.id);
          return { kind: 'ok' };
        },
      };
    },
  };
}
