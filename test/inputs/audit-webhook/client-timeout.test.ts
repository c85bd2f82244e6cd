import { describe, expect, it } from 'vitest';
import { clientTimeoutMs } from '../../../src/inputs/audit-webhook/input.ts';

describe('audit_webhook: the ?timeout= of the apiserver rest client', () => {
  it('reads Go durations as the client writes them', () => {
    expect(clientTimeoutMs('30s')).toBe(30_000);
    expect(clientTimeoutMs('1m0s')).toBe(60_000);
    expect(clientTimeoutMs('1m30s')).toBe(90_000);
    expect(clientTimeoutMs('500ms')).toBe(500);
    expect(clientTimeoutMs('1.5s')).toBe(1500);
    expect(clientTimeoutMs('1h')).toBe(3_600_000);
  });

  it('ignores what is not one (the configured request_timeout then applies alone)', () => {
    for (const v of [null, '', '30', 's', '-5s', '30 s', 'abc']) expect(clientTimeoutMs(v), String(v)).toBeUndefined();
  });
});
