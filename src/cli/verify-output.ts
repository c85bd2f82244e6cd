import { errorMessage } from '../errors.ts';
import type { Destination } from '../manifest/verify-output.ts';
import type { ElasticsearchConfig } from '../outputs/elasticsearch/elasticsearch.ts';
import type { S3OutputConfig } from '../outputs/s3/s3.ts';

/** `ktrail verify -c FILE --output NAME [--from T] [--to T]`. */
export async function verifyOutputCommand(args: { config: string; output: string; from?: string; to?: string; hmacKey?: Buffer; json: boolean }): Promise<number> {
  const { loadConfigFile } = await import('../config/load.ts');
  const { rememberConfigSecrets, scrubText } = await import('../telemetry/scrub.ts');
  let cfg;
  try {
    cfg = loadConfigFile(args.config);
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    return 2;
  }
  rememberConfigSecrets(cfg);
  const oc = cfg.outputs.find((o) => o.name === args.output);
  if (!oc) {
    process.stderr.write(`ktrail: no output "${args.output}" in ${args.config} (outputs: ${cfg.outputs.map((o) => o.name).join(', ')})\n`);
    return 2;
  }
  const window = { fromMs: parseTime(args.from), toMs: parseTime(args.to) };
  if (Number.isNaN(window.fromMs) || Number.isNaN(window.toMs)) {
    process.stderr.write('ktrail: --from/--to take an ISO time, e.g. 2026-01-02T10:00:00Z\n');
    return 2;
  }
  let dest: Destination;
  try {
    dest = await destinationOf(oc.plugin.type, oc.config, oc.name);
  } catch (err) {
    process.stderr.write(`ktrail: ${errorMessage(err)}\n`);
    return 1;
  }
  const { formatOutput, verifyDestination } = await import('../manifest/verify-output.ts');
  const report = await verifyDestination(oc.name, dest, { ...window, hmacKey: args.hmacKey });
  process.stdout.write(scrubText(args.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatOutput(report, window)}\n`));
  return report.ok ? 0 : 1;
}

function parseTime(t: string | undefined): number | undefined {
  return t === undefined ? undefined : Date.parse(t);
}

async function destinationOf(type: string, config: Record<string, unknown>, name: string): Promise<Destination> {
  switch (type) {
    case 'file': {
      const { fileDestination } = await import('../manifest/destinations/file.ts');
      return fileDestination(config.path as string);
    }
    case 's3': {
      const [{ s3Destination }, { createLogger }] = await Promise.all([import('../manifest/destinations/s3.ts'), import('../telemetry/logger.ts')]);
      // The config passed the s3 schema when it was loaded. Warnings (tls.insecure_skip_verify) go to stderr, apart from the report.
      return s3Destination(config as unknown as S3OutputConfig, createLogger('warn', 2, 'text'));
    }
    case 'elasticsearch': {
      const { elasticsearchDestination } = await import('../manifest/destinations/elasticsearch.ts');
      // The config passed the elasticsearch schema when it was loaded.
      return elasticsearchDestination(config as unknown as ElasticsearchConfig, name);
    }
    default:
      throw new Error(`verify cannot read back a ${type} output (file, s3 and elasticsearch are supported; http manifests arrive as records at the receiver)`);
  }
}
