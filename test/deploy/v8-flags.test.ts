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
    const files = fs.readdirSync(path.join(REPO, 'manifests'), { recursive: true }).map(String).filter((n) => n.endsWith('.yaml'));
    for (const f of files) {
      for (const doc of parseAllDocuments(read(path.join('manifests', f)))) {
        const text = JSON.stringify(doc.toJSON() ?? {});
        for (const m of text.matchAll(/"name":"NODE_OPTIONS","value":"([^"]*)"/g)) {
          const flags = heapFlags(m[1]!);
          if (f.startsWith('audit-webhook')) {
            // The receiver holds up to max_concurrent_requests bodies of max_body_bytes while it
            // parses them: a larger old space (its memory limit is sized to match), the same young one.
            expect(flags.filter((x) => x.startsWith('--max-semi')), f).toEqual(expected.filter((x) => x.startsWith('--max-semi')));
            expect(flags.some((x) => x.startsWith('--max-old-space-size=')), f).toBe(true);
          } else {
            expect(flags, f).toEqual(expected);
          }
          seen++;
        }
      }
    }
    expect(seen).toBeGreaterThanOrEqual(3);
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
