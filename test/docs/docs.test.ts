import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderLogEventsReference, renderMetricsReference, renderOptionReference, replaceGenerated } from '../../src/config/reference.ts';
import { allPlugins } from '../../src/registry.ts';

const plugins = allPlugins();

const root = path.join(import.meta.dirname, '..', '..');
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');

describe('docs stay true to the code', () => {
  it('docs/configuration.md lists every option of every plugin (run `npm run docs` after changing a schema)', () => {
    const doc = read('docs/configuration.md');
    expect(replaceGenerated(doc, renderOptionReference())).toBe(doc);
  });

  it('docs/metrics.md lists every metric (run `npm run docs` after adding one)', async () => {
    const doc = read('docs/metrics.md');
    expect(replaceGenerated(doc, await renderMetricsReference())).toBe(doc);
  });

  it('docs/logs.md lists every named log event (run `npm run docs` after adding one)', () => {
    const doc = read('docs/logs.md');
    expect(replaceGenerated(doc, renderLogEventsReference())).toBe(doc);
  });

  it('every registered plugin has its own page', () => {
    const dir = { input: 'inputs', processor: 'processors', output: 'outputs' } as const;
    for (const p of plugins) {
      const file = `docs/${dir[p.kind]}/${p.type}.md`;
      expect(fs.existsSync(path.join(root, file)), `${file} is missing`).toBe(true);
    }
  });

  it('relative links in README.md and docs/ point at files that exist', () => {
    const files = ['README.md', ...fs.readdirSync(path.join(root, 'docs'), { recursive: true }).map((f) => `docs/${f}`)].filter((f) =>
      f.endsWith('.md'),
    );
    for (const f of files) {
      for (const m of read(f).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const resolved = path.join(root, path.dirname(f), target);
        expect(fs.existsSync(resolved), `${f} links to missing ${target}`).toBe(true);
      }
    }
  });

  it('README starts with the two commands and names the toolchain script', () => {
    const readme = read('README.md');
    const head = readme.split('\n').slice(0, 40).join('\n');
    expect(head).toContain('npm ci && npm start');
    expect(head).toContain('npm test');
    expect(readme).toContain('scripts/toolchain.sh');
  });
});
