import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { SHIPPED_V8_FLAGS } from '../../bench/lib.ts';
import { REPO } from './manifests.ts';

/**
 * ktrail ships one set of V8 heap flags: the manifests' NODE_OPTIONS, the
 * image's NODE_OPTIONS and `npm start` run the agent with the same flags, and
 * `npm run bench` measures with exactly those (bench/lib.ts).
 */
const read = (f: string) => fs.readFileSync(path.join(REPO, f), 'utf8');
const heapFlags = (text: string) => text.split(/\s+/).filter((t) => /^--max-(old|semi)-space-size=/.test(t));

describe('V8 heap flags', () => {
  const expected = [...SHIPPED_V8_FLAGS];

  it('the manifests set them in NODE_OPTIONS of every ktrail container', () => {
    let seen = 0;
    for (const f of fs.readdirSync(path.join(REPO, 'manifests')).filter((n) => n.endsWith('.yaml'))) {
      for (const doc of parseAllDocuments(read(path.join('manifests', f)))) {
        const text = JSON.stringify(doc.toJSON() ?? {});
        for (const m of text.matchAll(/"name":"NODE_OPTIONS","value":"([^"]*)"/g)) {
          expect(heapFlags(m[1]!), f).toEqual(expected);
          seen++;
        }
      }
    }
    expect(seen).toBeGreaterThanOrEqual(2);
  });

  it('the image sets them in NODE_OPTIONS', () => {
    const env = /^ENV NODE_OPTIONS="([^"]*)"/m.exec(read('Dockerfile'));
    expect(env, 'ENV NODE_OPTIONS in the Dockerfile').not.toBeNull();
    expect(heapFlags(env![1]!)).toEqual(expected);
  });

  it('npm start passes them to node', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start!;
    expect(start).toMatch(/\bnode .*bin\/ktrail\.js\b/);
    expect(heapFlags(start)).toEqual(expected);
  });
});
