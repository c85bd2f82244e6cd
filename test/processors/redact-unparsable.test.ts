import { describe, expect, it } from 'vitest';
import { LogRecord } from '../../src/pipeline/record.ts';
import { redactProcessor, RedactProcessor } from '../../src/processors/redact/redact.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { ComponentTelemetry, createMetrics } from '../../src/telemetry/metrics.ts';

function processor(cfg: Record<string, unknown> = {}) {
  const metrics = createMetrics();
  const ctx = { name: 'secrets', log: createLogger('silent'), telemetry: new ComponentTelemetry(metrics, 'processor', 'secrets', 'redact'), metrics, nodeName: 'n', stateDir: '/tmp' };
  return { p: new RedactProcessor(redactProcessor.schema.parse(cfg), ctx), metrics };
}
const torn = '{"kind":"Event","objectRef":{"resource":"secrets","namespace":"default"},"responseObject":{"kind":"Secret","data":{"password":"aHVudGVy';

describe('redact: content that cannot be parsed', () => {
  it('mayChange answers the pre-check: whole text needs the condition and the path key; a part needs only a path key', () => {
    const { p } = processor();
    expect(p.mayChange(torn, false)).toBe(true);
    expect(p.mayChange('{"objectRef":{"resource":"pods"},"responseObject":{"kind":"Pod"', false)).toBe(false);
    expect(p.mayChange('just some text', false)).toBe(false);
    // A head sample: the condition could hold in the unseen rest, so a path key alone is enough.
    expect(p.mayChange('{"objectRef":{"resource":"pods"},"responseObject":{"x":', true)).toBe(true);
    expect(p.mayChange('{"kind":"Event","auditID":"a","objectRef":{"resource":"secrets"}', true)).toBe(false);
  });

  it('a pass_raw wrapper around a torn Secret line is dropped (counted); a harmless one passes; unparsable: keep keeps it', async () => {
    const wrap = (text: string) => new LogRecord({ id: 'f:1', timeMs: 0, input: 'audit', raw: JSON.stringify({ message: text }), unparsed: { text, partial: false } });
    const { p, metrics } = processor();
    const kept = p.process([wrap(torn), wrap('not json at all')]);
    expect(kept.map((r) => r.doc.message)).toEqual(['not json at all']);
    const discarded = (await metrics.discardedEvents.get()).values.find((v) => v.labels.reason === 'unparsable');
    expect(discarded?.value).toBe(1);
    const keep = processor({ unparsable: 'keep' }).p;
    expect(keep.process([wrap(torn)])).toHaveLength(1);
  });
});
