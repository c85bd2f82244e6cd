// Regenerates the reference sections of docs/configuration.md and
// docs/metrics.md from the schemas and the metrics module (npm run docs).
// test/docs/docs.test.ts fails when the committed docs are out of date.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderMetricsReference, renderOptionReference, replaceGenerated } from '../src/config/reference.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
for (const [file, render] of [
  ['docs/configuration.md', renderOptionReference],
  ['docs/metrics.md', renderMetricsReference],
] as const) {
  const path = `${root}${file}`;
  const before = fs.readFileSync(path, 'utf8');
  const after = replaceGenerated(before, await render());
  if (after !== before) {
    fs.writeFileSync(path, after);
    console.log(`updated ${file}`);
  } else {
    console.log(`${file} is up to date`);
  }
}
