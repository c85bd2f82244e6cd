import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..', '..');
const { nodeVersionProblem } = createRequire(import.meta.url)(path.join(root, 'bin', 'check-node.cjs')) as {
  nodeVersionProblem: (v: string) => string | null;
};
const run = promisify(execFile);
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('the Node.js version gate', () => {
  it('turns away every Node below 22.18 with one line that names the fix', () => {
    for (const v of ['v18.20.0', 'v20.20.2', 'v22.0.0', 'v22.17.1', '22.17.0']) {
      const msg = nodeVersionProblem(v);
      expect(msg, v).toMatch(/^ktrail needs Node\.js >= 22\.18 \(found v[\d.]+\)\. On an older system Node run: \. scripts\/toolchain\.sh$/);
      expect(msg).toContain(v.replace(/^v/, ''));
    }
  });

  it('accepts 22.18 and later', () => {
    for (const v of ['v22.18.0', 'v22.20.1', 'v23.0.0', 'v24.21.0', process.version]) expect(nodeVersionProblem(v), v).toBeNull();
  });

  it('agrees with package.json engines, and .npmrc makes npm enforce them', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe('>=22.18');
    expect(fs.readFileSync(path.join(root, '.npmrc'), 'utf8')).toMatch(/^engine-strict=true$/m);
  });

  // The running Node is new enough, so a copy of the project that asks for a
  // Node no one has plays the old-Node case: with the repo's .npmrc, `npm ci`
  // must stop before it installs (or fetches) anything.
  it('npm ci stops at once, installing nothing, when engines do not match', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-npmci-'));
    dirs.push(dir);
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    pkg.engines.node = '>=999';
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg));
    const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: unknown }> };
    lock.packages['']!.engines = pkg.engines;
    fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify(lock));
    fs.copyFileSync(path.join(root, '.npmrc'), path.join(dir, '.npmrc'));
    const err = await run('npm', ['ci', '--no-audit', '--no-fund', '--offline'], { cwd: dir }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).not.toBeNull();
    expect(err!.stderr).toMatch(/EBADENGINE/);
    expect(err!.stderr).toContain('ktrail');
    expect(fs.existsSync(path.join(dir, 'node_modules'))).toBe(false);
  }, 60_000);
});

describe('scripts/toolchain.sh', () => {
  it('treats every Node below 22.18 as too old (its test expression)', () => {
    const sh = fs.readFileSync(path.join(root, 'scripts', 'toolchain.sh'), 'utf8');
    const expr = /node -p '([^']+)'/.exec(sh)?.[1];
    expect(expr).toBeDefined();
    // `node -p` prints the script's completion value; vm gives the same for a fake process.
    const ok = (v: string) => vm.runInNewContext(expr!, { process: { versions: { node: v } } }) as number;
    expect([ok('20.20.2'), ok('22.0.0'), ok('22.17.9')]).toEqual([0, 0, 0]);
    expect([ok('22.18.0'), ok('24.1.0')]).toEqual([1, 1]);
  });
});
