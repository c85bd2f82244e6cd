import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfigText } from '../../src/config/load.ts';
import { fakeInputPlugin } from '../support/fake-input.ts';
import { Secret } from '../../src/config/secret.ts';

const fixtures = path.join(import.meta.dirname, 'fixtures');
const extraPlugins = [fakeInputPlugin()];
const load = (text: string, env: NodeJS.ProcessEnv = {}) => loadConfigText(text, 'test.yaml', { extraPlugins, env });

describe('config: valid fixtures', () => {
  for (const file of fs.readdirSync(path.join(fixtures, 'valid'))) {
    it(`loads ${file}`, () => {
      const cfg = load(fs.readFileSync(path.join(fixtures, 'valid', file), 'utf8'));
      expect(cfg.inputs.length).toBeGreaterThan(0);
      expect(cfg.outputs.length).toBeGreaterThan(0);
    });
  }

  it('resolves defaults, units and ${ENV:-default}', () => {
    const cfg = load(fs.readFileSync(path.join(fixtures, 'valid', 'full.yaml'), 'utf8'), { STATE_DIR: '/srv/state' });
    expect(cfg.service.state_dir).toBe('/srv/state');
    expect(cfg.service.shutdown_timeout).toBe(15_000);
    expect(cfg.spool).toEqual({ max_bytes: 64 * 1024 * 1024, when_full: 'drop_newest', dead_letter_max_bytes: 32 * 1024 * 1024, release_removed_outputs: true, dead_letter_store_unredactable: false });
    const file = cfg.outputs.find((o) => o.name === 'file-a')!;
    expect(file.config.batch).toEqual({ max_bytes: 512 * 1024, max_records: 100, flush_interval: 250 });
    expect(file.config.retry).toEqual({ initial_backoff: 100, max_backoff: 30_000, max_elapsed: 3_600_000 });
    expect(file.match).toEqual(['gen-a']);
    expect(cfg.outputs.find((o) => o.name === 'all')!.match).toEqual(['gen-*']);
    const defaults = load(fs.readFileSync(path.join(fixtures, 'valid', 'minimal.yaml'), 'utf8'), {});
    expect(defaults.spool).toEqual({
      max_bytes: 512 * 1024 * 1024,
      when_full: 'block',
      dead_letter_max_bytes: 256 * 1024 * 1024,
      release_removed_outputs: false,
      dead_letter_store_unredactable: false,
    });
    expect(defaults.service.metrics).toEqual({ enabled: true, listen: '0.0.0.0:9464' });
    expect(defaults.outputs[0]!.match).toEqual(['*']);
  });

  it('keeps processors in the order written', () => {
    // No processors are registered by the fake set; order is checked on inputs/outputs maps instead.
    const cfg = load('inputs: { b: { type: fake }, a: { type: fake } }\noutputs: { z: { type: stdout }, y: { type: stdout } }');
    expect(cfg.inputs.map((i) => i.name)).toEqual(['b', 'a']);
    expect(cfg.outputs.map((o) => o.name)).toEqual(['z', 'y']);
  });

  it('$${ is a literal ${', () => {
    const cfg = load('service: { state_dir: "/tmp/$${NOT_A_VAR}" }\ninputs: { a: { type: fake } }\noutputs: { z: { type: stdout } }');
    expect(cfg.service.state_dir).toBe('/tmp/${NOT_A_VAR}');
  });
});

describe('config: ${ENV} values', () => {
  const problemsOf = (text: string, env: NodeJS.ProcessEnv) => {
    try {
      load(text, env);
    } catch (err) {
      return (err as ConfigError).problems;
    }
    throw new Error('expected the config to be rejected');
  };

  it('a value that is exactly one reference becomes the number or boolean the key asks for', () => {
    const cfg = load(
      [
        'service:',
        '  progress: ${P:-true}',
        'inputs:',
        '  gen:',
        '    type: fake',
        '    total: ${TOTAL}',
        'outputs:',
        '  out:',
        '    type: stdout',
        '    concurrency: ${C}',
        '    batch:',
        '      max_records: ${MAX_RECORDS:-250}',
      ].join('\n'),
      { C: '4', TOTAL: '0' },
    );
    expect(cfg.service.progress).toBe(true);
    expect(cfg.inputs[0]!.config.total).toBe(0);
    expect(cfg.outputs[0]!.config.concurrency).toBe(4);
    expect(cfg.outputs[0]!.config.batch).toEqual({ max_records: 250 });
    expect(load('service:\n  progress: ${P}\ninputs: { gen: { type: fake } }\noutputs: { out: { type: stdout } }', { P: 'false' }).service.progress).toBe(false);
  });

  it('keeps digits a string where the key takes a string (a password "123456")', () => {
    const cfg = load(
      [
        'service:',
        '  node_name: ${NODE}',
        'inputs: { gen: { type: fake } }',
        'outputs:',
        '  out:',
        '    type: http',
        '    url: http://127.0.0.1:9/ingest',
        '    concurrency: ${C}',
        '    auth:',
        '      username: ${USER_NAME}',
        '      password: ${PASSWORD}',
      ].join('\n'),
      { NODE: '42', C: '2', USER_NAME: '1000', PASSWORD: '123456' },
    );
    expect(cfg.service.node_name).toBe('42');
    const out = cfg.outputs[0]!.config;
    expect(out.concurrency).toBe(2);
    const auth = out.auth as { username: unknown; password: Secret };
    expect(auth.username).toBe('1000');
    expect(auth.password.get()).toBe('123456');
  });

  it('converts only substituted values: a quoted "4" or text around a reference is still an error', () => {
    const quoted = problemsOf('inputs: { gen: { type: fake } }\noutputs:\n  out:\n    type: stdout\n    concurrency: "4"', {});
    expect(quoted.map((p) => p.message)).toEqual(['expected a number, got "4"']);
    const mixed = problemsOf('inputs: { gen: { type: fake } }\noutputs:\n  out:\n    type: stdout\n    concurrency: ${C}0', { C: '1' });
    expect(mixed.map((p) => p.message)).toEqual(['expected a number, got "10"']);
    const word = problemsOf('inputs: { gen: { type: fake } }\noutputs:\n  out:\n    type: stdout\n    concurrency: ${C}', { C: 'four' });
    expect(word.map((p) => `${p.path}: ${p.message}`)).toEqual(['outputs.out.concurrency: expected a number, got "four"']);
    const bounded = problemsOf('inputs: { gen: { type: fake } }\noutputs:\n  out:\n    type: stdout\n    concurrency: ${C}', { C: '100' });
    expect(bounded.map((p) => p.message)).toEqual(['number 100 is too large: must be at most 64']);
  });

  it('says whether a variable is unset or set but empty; an empty one with a default takes the default', () => {
    const text = 'service:\n  state_dir: ${DIR}\ninputs: { gen: { type: fake } }\noutputs: { out: { type: stdout } }';
    expect(problemsOf(text, {})).toEqual([
      expect.objectContaining({ path: 'service.state_dir', line: 2, message: 'environment variable DIR is not set' }),
    ]);
    const empty = problemsOf(text, { DIR: '' });
    expect(empty).toEqual([expect.objectContaining({ path: 'service.state_dir', line: 2, message: 'environment variable DIR is set but empty' })]);
    expect(empty[0]!.fix).toContain('${DIR:-value}');
    const cfg = load('service:\n  state_dir: ${DIR:-/srv/ktrail}\ninputs: { gen: { type: fake } }\noutputs: { out: { type: stdout } }', { DIR: '' });
    expect(cfg.service.state_dir).toBe('/srv/ktrail');
  });
});

describe('config: invalid fixtures fail with their messages', () => {
  for (const file of fs.readdirSync(path.join(fixtures, 'invalid'))) {
    it(file, () => {
      const text = fs.readFileSync(path.join(fixtures, 'invalid', file), 'utf8');
      const expected = [...text.matchAll(/^# expect: (.*)$/gm)].map((m) => m[1]!);
      expect(expected.length).toBeGreaterThan(0);
      let error: unknown;
      try {
        load(text);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as ConfigError).message;
      for (const e of expected) expect(message).toContain(e);
    });
  }

  it('reports every problem at once, each with a path', () => {
    const text = fs.readFileSync(path.join(fixtures, 'invalid', 'many-problems.yaml'), 'utf8');
    try {
      load(text);
      expect.unreachable();
    } catch (err) {
      const problems = (err as ConfigError).problems;
      expect(problems.map((p) => p.path).sort()).toEqual(
        ['inputs.gen.total', 'outputs.out.batch.flush_interval', 'outputs.out.concurrency', 'spool.max_bytes', 'spool.when_ful'].sort(),
      );
      expect(problems.every((p) => p.fix !== undefined || p.message.length > 0)).toBe(true);
    }
  });
});

describe('config: secrets', () => {
  it('reads secrets from files and re-reads them when they change', async () => {
    const dir = fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'ktrail-'));
    const file = path.join(dir, 'token');
    fs.writeFileSync(file, 'one\n');
    const s = new Secret({ file });
    expect(s.get()).toBe('one');
    fs.writeFileSync(file, 'second-token\n');
    expect(s.get()).toBe('second-token');
    expect(JSON.stringify({ s })).toBe(`{"s":{"file":${JSON.stringify(file)}}}`);
    expect(JSON.stringify({ s: new Secret({ value: 'hunter2' }) })).toBe('{"s":"***"}');
    fs.rmSync(dir, { recursive: true });
  });
});
