import fs from 'node:fs';
import path from 'node:path';
import { rolledNamePattern } from '../../outputs/file/file.ts';
import type { Destination } from '../verify-output.ts';
import { LineIndex } from './lines.ts';

/** The file output read back: its rolled files oldest first, then the current one. */
export function fileDestination(outputPath: string): Destination {
  const abs = path.resolve(outputPath);
  const { dir, name, ext } = path.parse(abs);
  const pattern = rolledNamePattern(name, ext);
  const files = fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => pattern.test(f))
        .sort()
        .map((f) => path.join(dir, f))
    : [];
  if (fs.existsSync(abs)) files.push(abs);
  const index = new LineIndex();
  for (const f of files) index.add(fs.readFileSync(f, 'utf8'), (n) => `${f}:${n}`);
  return {
    manifests: index.manifests,
    describe: `${files.length} file(s) at ${abs}`,
    prepare: async (entries) => index.prepare(entries),
    find: (_e, _i, id, hash) => index.find(id, hash),
  };
}
