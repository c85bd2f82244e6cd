// Child process for the spool crash test: appends batches of numbered records,
// each with a checkpoint "next = first unwritten number", as fast as it can
// until it is killed. Prints "ready" after the first commit.
import { Spool, writeCheckpoint } from '../../src/spool/spool.ts';

const dir = process.argv[2]!;
const spool = new Spool({ stateDir: dir, maxBytes: 1024 ** 3 });
let next = Number(
  (spool.db.prepare("SELECT value FROM input_checkpoints WHERE input = 'crash' AND key = 'next'").get() as { value: string } | undefined)?.value ?? '0',
);
let first = true;
for (;;) {
  const n = 1 + (next % 50);
  const records = Array.from({ length: n }, (_, i) => ({
    id: `r${next + i}`,
    timeMs: next + i,
    input: 'crash',
    json: JSON.stringify({ seq: next + i, pad: 'y'.repeat(200) }),
  }));
  const upto = next + n;
  spool.append({ input: 'crash', records, routes: ['a', 'b'], checkpoint: (db) => writeCheckpoint(db, 'crash', 'next', String(upto)) });
  next = upto;
  if (first) {
    process.stdout.write('ready\n');
    first = false;
  }
}
