import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.ts';
import { spoolHeadroomBytes } from '../../src/pipeline/agent.ts';

// The spool reserve of audit_webhook inputs (spool_headroom): what each input must leave free.
const hook = (share: number) => `{ type: audit_webhook, port: 0, tls: { enabled: false }, allow_unauthenticated: true, spool_headroom: ${share} }`;
const config = (inputs: string[]) =>
  loadConfigText(['spool: { max_bytes: 100MiB }', 'inputs:', ...inputs, 'outputs:', '  out: { type: stdout }'].join('\n'), 'test.yaml');

describe('spool headroom', () => {
  it('inputs without a reserve leave every webhook reserve free; a webhook leaves the others\', never its own', () => {
    const cfg = config([`  a: ${hook(0.2)}`, `  b: ${hook(0.1)}`, '  files: { type: audit_file, paths: [/tmp/none/audit.log] }']);
    const MiB = 1024 * 1024;
    expect(spoolHeadroomBytes(cfg)).toBe(Math.floor(100 * MiB * 0.3));
    expect(spoolHeadroomBytes(cfg, 'a')).toBe(Math.floor(100 * MiB * 0.1));
    expect(spoolHeadroomBytes(cfg, 'b')).toBe(Math.floor(100 * MiB * 0.2));
  });

  it('adds up to at most 0.9 of the spool', () => {
    const cfg = config([`  a: ${hook(0.9)}`, `  b: ${hook(0.9)}`]);
    expect(spoolHeadroomBytes(cfg)).toBe(Math.floor(100 * 1024 * 1024 * 0.9));
  });
});
