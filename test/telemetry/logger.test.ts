import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { resolveLogFormat } from '../../src/telemetry/logger.ts';

const run = promisify(execFile);
const logger = path.join(import.meta.dirname, '..', '..', 'src', 'telemetry', 'logger.ts');

/** Logs one warn line to stderr (a pipe here, as in a container) in the given format. */
async function logOnce(format: string): Promise<string> {
  const code = `const { createLogger } = await import(${JSON.stringify(logger)});
createLogger('info', 2, ${JSON.stringify(format)}).warn({ output: 'es' }, 'output unreachable');`;
  const { stderr } = await run(process.execPath, ['--input-type=module', '-e', code]);
  return stderr;
}

describe('log_format', () => {
  it('auto is text on a terminal and JSON otherwise; json and text are taken as given', () => {
    expect(resolveLogFormat('auto', 2, () => true)).toBe('text');
    expect(resolveLogFormat('auto', 2, () => false)).toBe('json');
    expect(resolveLogFormat('json', 2, () => true)).toBe('json');
    expect(resolveLogFormat('text', 2, () => false)).toBe('text');
  });

  it('json writes one JSON object a line', async () => {
    const line = JSON.parse((await logOnce('json')).trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'warn', msg: 'output unreachable', output: 'es', app: 'ktrail' });
  });

  it('text writes a human-readable line (level, message, fields), not JSON', async () => {
    const out = (await logOnce('text')).trim();
    expect(() => JSON.parse(out)).toThrow();
    expect(out).toMatch(/WARN/);
    expect(out).toMatch(/output unreachable/);
    expect(out).toMatch(/output: "es"/);
    expect(out.includes(String.fromCharCode(27))).toBe(false); // no colours into a pipe
  });

  it('auto on a pipe (a container) stays JSON', async () => {
    expect(JSON.parse((await logOnce('auto')).trim())).toMatchObject({ level: 'warn' });
  });
});
