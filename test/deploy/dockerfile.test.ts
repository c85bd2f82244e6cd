import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { build, find, loadObjects, REPO, type K8sObject, type LoadedObject, type Workload } from './manifests.ts';

/**
 * The Dockerfile, checked statically (there is no Docker engine here), and
 * the two file sets it assembles checked for real: the build stage's context
 * type-checks, and the runtime stage's files run `ktrail check` on the
 * shipped configs without anything else from the repository.
 */

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Instructions with line continuations joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!;
    if (/^\s*(#|$)/.test(line)) continue;
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      i++;
      const next = lines[i]!;
      // Comment lines inside a continued instruction are removed by Docker.
      line = line.replace(/\\\s*$/, ' ') + (/^\s*#/.test(next) ? '' : next.trim());
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/s.exec(line);
    if (!m) throw new Error(`Dockerfile line ${start + 1}: cannot parse "${line}"`);
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start + 1 });
  }
  return out;
}

function stagesOf(instructions: Instruction[]): Stage[] {
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: FROM ${ins.args}`);
      stages.push({ from: m[1]!, name: m[2], instructions: [] });
    } else if (stages.length > 0) {
      stages.at(-1)!.instructions.push(ins);
    } else if (ins.keyword !== 'ARG') {
      throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
    }
  }
  return stages;
}

/** `COPY [--from=x] [--chown=...] src... dest` */
function parseCopy(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  let from: string | undefined;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
  }
  const dest = words.pop()!;
  return { from, sources: words, dest };
}

/** .dockerignore semantics for the patterns used here: `*`, `**`, `?`, `!` re-includes, a match of a parent excludes its contents. */
function dockerIgnored(patterns: string[], file: string): boolean {
  const toRe = (p: string) =>
    new RegExp(
      `^${p
        .replace(/^\/+/, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\/?/g, '%GLOBSTAR%')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')
        .replace(/%GLOBSTAR%/g, '(?:.*/)?')}(?:/.*)?$`,
    );
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const p = negate ? raw.slice(1) : raw;
    if (toRe(p).test(file)) ignored = !negate;
  }
  return ignored;
}

const dockerfile = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
const instructions = parseDockerfile(dockerfile);
const stages = stagesOf(instructions);
const final = stages.at(-1)!;
const ignorePatterns = fs
  .readFileSync(path.join(REPO, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
  license: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const runsOf = (s: Stage) => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
const copiesOf = (s: Stage) => s.instructions.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD').map((i) => ({ ...parseCopy(i.args), keyword: i.keyword }));
const last = (s: Stage, keyword: string) => s.instructions.filter((i) => i.keyword === keyword).at(-1);
const execForm = (args: string): string[] => {
  const v = JSON.parse(args) as unknown;
  expect(Array.isArray(v) && v.every((x) => typeof x === 'string'), `not exec form: ${args}`).toBe(true);
  return v as string[];
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-image-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('Dockerfile', () => {
  it('is multi-stage, and the final stage runs Node 24 on the same base the addon was built on', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(final.from).toMatch(/^(docker\.io\/library\/)?node:24([-.@]|$)|distroless\/nodejs24/);
    // better-sqlite3 is compiled in the build stage and loaded in the final one: same Node ABI and libc.
    const builder = stages.find((s) => s !== final && runsOf(s).some((r) => /\bnpm ci\b/.test(r)))!;
    expect(builder.from).toBe(final.from);
  });

  it('builds the native addon with node-gyp tools and type-checks in the build stage only', () => {
    const build = stages.find((s) => s.name === parseCopy(final.instructions.find((i) => /node_modules/.test(i.args))!.args).from)!;
    expect(build).toBeDefined();
    const runs = runsOf(build).join('\n');
    for (const tool of ['python3', 'make', 'g++']) expect(runs).toMatch(new RegExp(`apt-get install[^\\n]*\\s${tool.replace('+', '\\+')}(\\s|$)`));
    expect(runs).toMatch(/\bnpm ci\b/);
    expect(runs).toMatch(/\bnpm run typecheck\b/);
    for (const r of runsOf(final)) expect(r).not.toMatch(/apt-get install|npm (ci|install)\b|node-gyp/);
  });

  it('ships no dev dependencies: the stage whose node_modules is copied prunes them after the type check', () => {
    const copy = copiesOf(final).find((c) => c.sources.some((s) => /node_modules\/?$/.test(s)))!;
    expect(copy.from).toBeDefined();
    const source = stages.find((s) => s.name === copy.from)!;
    const runs = runsOf(source);
    const ci = runs.findIndex((r) => /\bnpm ci\b/.test(r));
    const typecheck = runs.findIndex((r) => /\bnpm run typecheck\b/.test(r));
    const prune = runs.findIndex((r) => /\bnpm prune\b[^\n]*--omit=dev/.test(r) || /\bnpm ci\b[^\n]*--omit=dev/.test(r));
    expect(ci).toBeGreaterThanOrEqual(0);
    expect(prune, 'npm prune --omit=dev (or npm ci --omit=dev) is missing').toBeGreaterThanOrEqual(0);
    expect(prune).toBeGreaterThan(typecheck);
    // Nothing installs into node_modules after the prune.
    for (const r of runs.slice(prune + 1)) expect(r).not.toMatch(/npm (ci|install|i)\b/);
  });

  it('copies exactly package.json, node_modules, bin/ and src/ into the final stage', () => {
    const copies = copiesOf(final);
    expect(copies.every((c) => c.keyword === 'COPY')).toBe(true);
    const shipped = copies.flatMap((c) => c.sources.map((s) => s.replace(/^\/app\//, '').replace(/\/$/, ''))).sort();
    expect(shipped).toEqual(['bin', 'node_modules', 'package.json', 'src']);
  });

  it('runs as a numeric non-root user by default', () => {
    const user = last(final, 'USER');
    expect(user).toBeDefined();
    const [uid, gid] = user!.args.split(':');
    expect(uid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThan(0);
    if (gid !== undefined) expect(Number(gid)).toBeGreaterThan(0);
    // The events collector runs as that same user; the audit agent overrides it to 0 on purpose.
    const objects = loadObjects();
    for (const name of ['ktrail-events-collector', 'ktrail-webhook']) {
      const deployment = find<Workload>(objects, 'Deployment', name);
      expect(deployment.spec.template.spec.securityContext?.runAsUser, name).toBe(Number(uid));
    }
  });

  it('has an exec-form ENTRYPOINT running ktrail with node, and a CMD matching the mounted config', () => {
    expect(execForm(last(final, 'ENTRYPOINT')!.args)).toEqual(['node', 'bin/ktrail.js']);
    const cmd = execForm(last(final, 'CMD')!.args);
    expect(cmd).toEqual(['run', '-c', '/etc/ktrail/ktrail.yaml']);
    const objects = loadObjects();
    for (const w of [find<Workload>(objects, 'DaemonSet', 'ktrail-audit-agent'), find<Workload>(objects, 'Deployment', 'ktrail-events-collector'), find<Workload>(objects, 'Deployment', 'ktrail-webhook')]) {
      const c = w.spec.template.spec.containers[0]!;
      expect(c.args).toEqual(cmd);
    }
    expect(final.instructions.find((i) => i.keyword === 'WORKDIR')?.args).toBe('/app');
    expect(final.instructions.find((i) => i.keyword === 'EXPOSE')?.args).toBe('9464');
    const stop = last(final, 'STOPSIGNAL');
    if (stop) expect(stop.args).toBe('SIGTERM');
  });

  it('carries the OCI image labels, with the package license', () => {
    const labels = final.instructions
      .filter((i) => i.keyword === 'LABEL')
      .map((i) => i.args)
      .join(' ');
    const values = Object.fromEntries([...labels.matchAll(/([a-z.]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    for (const k of ['title', 'description', 'licenses', 'source', 'version', 'revision']) {
      expect(Object.keys(values)).toContain(`org.opencontainers.image.${k}`);
    }
    expect(values['org.opencontainers.image.licenses']).toBe(pkg.license);
  });

  it('sends the build stage everything it copies from the context (not excluded by .dockerignore)', () => {
    const fromContext = stages.flatMap((s) => copiesOf(s).filter((c) => c.from === undefined)).flatMap((c) => c.sources);
    expect(fromContext.length).toBeGreaterThan(0);
    for (const src of fromContext) {
      expect(fs.existsSync(path.join(REPO, src)), `${src} does not exist`).toBe(true);
      expect(dockerIgnored(ignorePatterns, src.replace(/^\.\//, '').replace(/\/$/, '')), `${src} is excluded by .dockerignore`).toBe(false);
    }
  });
});

describe('.dockerignore', () => {
  it('excludes local dependencies, toolchain, state, output and tests from the build context', () => {
    for (const p of ['node_modules', 'sub/dir/node_modules', '.toolchain', '.state', 'out', 'test', 'test/deploy/manifests.test.ts', '.git']) {
      expect(dockerIgnored(ignorePatterns, p), p).toBe(true);
    }
  });

  it('keeps what the build needs', () => {
    for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'bin/ktrail.js', 'src/cli/main.ts', 'src/registry.ts']) {
      expect(dockerIgnored(ignorePatterns, p), p).toBe(false);
    }
  });
});

describe('the image file sets, assembled for real', () => {
  /** Copies what the Dockerfile copies from the context (minus .dockerignore) into `dir`. */
  function assembleContext(dir: string, sources: string[]): void {
    for (const src of sources) {
      const rel = src.replace(/^\.\//, '').replace(/\/$/, '');
      fs.cpSync(path.join(REPO, rel), path.join(dir, rel), {
        recursive: true,
        filter: (p) => !dockerIgnored(ignorePatterns, path.relative(REPO, p)),
      });
    }
    // node_modules comes from `npm ci` in the image; the installed one stands in for it.
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  }

  it('no production source imports a dev dependency (the pruned image would fail at runtime)', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.(ts|js)$/.test(e.name)) files.push(p);
      }
    };
    walk(path.join(REPO, 'src'));
    walk(path.join(REPO, 'bin'));
    const builtins = new Set(['node']);
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf8');
      const specs = [
        // Value imports only: `import type` is erased by type stripping.
        ...[...text.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'";]*?\sfrom\s+'([^']+)'/gm)].map((m) => m[1]!),
        ...[...text.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]!),
        ...[...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]!),
      ];
      for (const s of specs) {
        if (s.startsWith('.') || s.startsWith('node:') || builtins.has(s)) continue;
        const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!;
        expect(Object.keys(pkg.dependencies), `${path.relative(REPO, f)} imports ${s}, not a production dependency`).toContain(name);
      }
    }
  });

  it('the build stage context type-checks (npm run typecheck in the image)', async () => {
    const dir = path.join(tmp, 'build');
    fs.mkdirSync(dir);
    const build = stages.find((s) => runsOf(s).some((r) => /\bnpm run typecheck\b/.test(r)))!;
    assembleContext(dir, copiesOf(build).filter((c) => c.from === undefined).flatMap((c) => c.sources));
    const tsc = path.join(REPO, 'node_modules/typescript/bin/tsc');
    const r = await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.json', '--noEmit'], { cwd: dir }).then(
      () => ({ code: 0, out: '' }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
  });

  it('the runtime stage files alone run `ktrail check` on the shipped configs (every ConfigMap and the k8s-metadata component)', async () => {
    const dir = path.join(tmp, 'runtime');
    fs.mkdirSync(dir);
    const shipped = copiesOf(final)
      .flatMap((c) => c.sources.map((s) => s.replace(/^\/app\//, '').replace(/\/$/, '')))
      .filter((s) => s !== 'node_modules');
    assembleContext(dir, shipped);
    const objects = loadObjects();
    const withMetadata = build('manifests', ['manifests/components/k8s-metadata']);
    const configs: Array<[string, LoadedObject[]]> = [
      ['ktrail-audit-agent', objects],
      ['ktrail-events-collector', objects],
      ['ktrail-webhook', objects],
      // The audit agent config of components/k8s-metadata (with the k8s_metadata processor).
      ['ktrail-audit-agent', withMetadata],
    ];
    const checks = configs.map(async ([name, set], i) => {
      const cm = find<K8sObject & { data: Record<string, string> }>(set, 'ConfigMap', name);
      const cfg = path.join(tmp, `${name}-${i}.yaml`);
      fs.writeFileSync(cfg, cm.data['ktrail.yaml']!);
      expect(parseYaml(cm.data['ktrail.yaml']!)).toBeTypeOf('object');
      // cwd / : the image's code must not depend on files next to the repository checkout.
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(dir, 'bin/ktrail.js'), 'check', '-c', cfg], {
        cwd: '/',
        env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', NODE_NAME: 'cp-1', POD_NAME: 'p', POD_NAMESPACE: 'ktrail' },
      });
      return stdout;
    });
    const outs = await Promise.all(checks);
    expect(outs).toHaveLength(4);
    for (const stdout of outs) expect(stdout).toContain('valid');
  });
});
