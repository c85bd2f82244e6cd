// Regenerates the reference sections of docs/configuration.md and
// docs/metrics.md and docs/logs.md from the schemas, the metrics and the log events (npm run docs).
// test/docs/docs.test.ts fails when the committed docs are out of date.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderLogEventsReference, renderMetricsReference, renderOptionReference, replaceGenerated } from '../src/config/reference.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
for (const [file, render] of [
  ['docs/configuration.md', renderOptionReference],
  ['docs/metrics.md', renderMetricsReference],
  ['docs/logs.md', renderLogEventsReference],
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
