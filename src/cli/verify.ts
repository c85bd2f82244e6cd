import { errorMessage } from '../errors.ts';
import { readKeyFile } from '../manifest/manifest.ts';
import { formatLocal, verifyLocal } from '../manifest/verify-local.ts';
import { Spool } from '../spool/spool.ts';

/**
 * `ktrail verify`: the completeness chain checked locally (`--state-dir`) or
 * against what an output's destination holds (`-c FILE --output NAME`).
 * Exit 0 when everything checked holds, 1 on any failure, 2 on usage. The
 * HMAC key is only read, never printed.
 */

export interface VerifyArgs {
  stateDir?: string;
  config?: string;
  output?: string;
  from?: string;
  to?: string;
  hmacKeyFile?: string;
  json: boolean;
}

export async function verify(args: VerifyArgs): Promise<number> {
  let hmacKey: Buffer | undefined;
  try {
    hmacKey = args.hmacKeyFile !== undefined ? readKeyFile(args.hmacKeyFile) : undefined;
  } catch (err) {
    process.stderr.write(`ktrail: ${errorMessage(err)}\n`);
    return 2;
  }
  if (args.output !== undefined || (args.config !== undefined && args.stateDir === undefined)) {
    if (args.config === undefined || args.output === undefined) {
      process.stderr.write('ktrail: verify against a destination needs -c FILE and --output NAME\n');
      return 2;
    }
    const { verifyOutputCommand } = await import('./verify-output.ts');
    return verifyOutputCommand({ config: args.config, output: args.output, from: args.from, to: args.to, hmacKey, json: args.json });
  }
  if (args.stateDir === undefined) {
    process.stderr.write('ktrail: verify needs --state-dir DIR (the local chain) or -c FILE --output NAME (a destination)\n');
    return 2;
  }
  let spool: Spool;
  try {
    spool = new Spool({ stateDir: args.stateDir, maxBytes: 0, readonly: true });
  } catch (err) {
    process.stderr.write(`ktrail: ${errorMessage(err)}\n`);
    return 1;
  }
  try {
    const report = verifyLocal(spool.db, { hmacKey });
    process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatLocal(report, args.stateDir)}\n`);
    return report.ok ? 0 : 1;
  } finally {
    spool.close();
  }
}
