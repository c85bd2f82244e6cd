import { z } from 'zod';
import type { EmitBatch, Input, InputContext, InputPlugin } from '../../src/plugin.ts';
import { LogRecord } from '../../src/pipeline/record.ts';
import { readCheckpoint, writeCheckpoint } from '../../src/spool/spool.ts';

/**
 * A test input that emits `total` numbered records in batches of `batch`,
 * checkpointing the next sequence number with each batch — the same contract
 * the real inputs follow. Used to test the pipeline without a real source.
 */
export const fakeInputSchema = z.strictObject({
  total: z.number().int().nonnegative().default(100),
  batch: z.number().int().positive().default(10),
  bytes_per_record: z.number().int().nonnegative().default(0),
  delay_ms: z.number().int().nonnegative().default(0),
});

export function fakeInputPlugin(onEmit?: (b: EmitBatch) => void): InputPlugin<typeof fakeInputSchema> {
  return {
    kind: 'input',
    type: 'fake',
    description: 'test input',
    schema: fakeInputSchema,
    create(cfg, ctx: InputContext): Input & { emitted: number; done: Promise<void> } {
      let stopped = false;
      let resolveDone!: () => void;
      const done = new Promise<void>((r) => (resolveDone = r));
      const self = {
        emitted: 0,
        done,
        async start() {
          void (async () => {
            let next = Number(readCheckpoint(ctx.state.db, ctx.name, 'next') ?? '0');
            const pad = 'x'.repeat(cfg.bytes_per_record);
            while (!stopped && next < cfg.total) {
              const n = Math.min(cfg.batch, cfg.total - next);
              const records = Array.from({ length: n }, (_, i) => {
                const seq = next + i;
                return new LogRecord({ id: `rec-${seq}`, timeMs: 1_700_000_000_000 + seq, input: ctx.name, raw: JSON.stringify({ seq, pad }) });
              });
              const upto = next + n;
              const batch: EmitBatch = { records, checkpoint: (db) => writeCheckpoint(db, ctx.name, 'next', String(upto)) };
              onEmit?.(batch);
              await ctx.emit(batch);
              self.emitted += n;
              next = upto;
              if (cfg.delay_ms) await new Promise((r) => setTimeout(r, cfg.delay_ms));
            }
            resolveDone();
          })();
        },
        async stop() {
          stopped = true;
        },
      };
      return self;
    },
  };
}
