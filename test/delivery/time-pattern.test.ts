import { describe, expect, it } from 'vitest';
import { parsePattern, TimePattern } from '../../src/delivery/time-pattern.ts';

describe('time patterns', () => {
  it('formats UTC time tokens and placeholders', () => {
    const p = new TimePattern('a/%Y/%m/%d/%H/%M/{node}-{batch}%%', ['node', 'batch']);
    expect(p.format(Date.UTC(2024, 1, 29, 23, 5, 59), { node: 'n1', batch: 'o-1-2' })).toBe('a/2024/02/29/23/05/n1-o-1-2%');
  });

  it('the per-bucket cache never returns another bucket or another variable value', () => {
    const p = new TimePattern('i-%Y.%m.%d-{input}', ['input']);
    const midnight = Date.UTC(2025, 11, 31, 23, 59, 59, 999);
    expect(p.format(midnight, { input: 'a' })).toBe('i-2025.12.31-a');
    expect(p.format(midnight + 1, { input: 'a' })).toBe('i-2026.01.01-a');
    expect(p.format(midnight, { input: 'b' })).toBe('i-2025.12.31-b');
    expect(p.format(midnight, { input: 'a' })).toBe('i-2025.12.31-a');
  });

  it('reports unknown tokens and placeholders', () => {
    expect(parsePattern('x-%y', [])).toEqual({ error: expect.stringContaining('"%y"') });
    expect(parsePattern('x-%', [])).toEqual({ error: expect.stringContaining('unknown time token') });
    expect(parsePattern('x-{pod}', ['node'])).toEqual({ error: expect.stringContaining('"{pod}"; allowed: {node}') });
    expect(parsePattern('x-{node', ['node'])).toEqual({ error: expect.stringContaining('"{node"') });
    expect(new TimePattern('constant').isConstant).toBe(true);
  });
});
