#!/usr/bin/env node
// Launcher: Node >= 22.18 runs the TypeScript sources directly (type stripping).
import { createRequire } from 'node:module';
const problem = createRequire(import.meta.url)('./check-node.cjs').nodeVersionProblem(process.version);
if (problem) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name === 'ExperimentalWarning' && /type stripping/i.test(w.message)) return;
  process.stderr.write(`${w.name}: ${w.message}\n`);
});
// `ktrail check -c f | head`: a closed pipe ends the output, not the process with a stack trace.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
