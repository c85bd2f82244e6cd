import { parseArgs } from 'node:util';
import { errorMessage, type KtrailError } from '../errors.ts';
import { VERSION } from '../version.ts';

// Commands import what they need when they run, so `--version` and `--help`
// answer without loading every plugin and its client libraries.

const HELP = `ktrail ${VERSION} — ships Kubernetes audit logs and events, nothing lost, nothing duplicated.

Usage:
  ktrail run -c FILE            run the agent with the config FILE
  ktrail check -c FILE          validate FILE, print the resolved config (secrets masked), warn about
                                paths that match nothing or cannot be written, list the files each
                                input path covers; --connect also tries every output and the
                                Kubernetes API (reachable, TLS valid, credentials accepted)
  ktrail status --state-dir DIR checkpoints, spool, output lag and dead letters (also while running);
                                --verbose lists every dead letter (never its bytes)
  ktrail verify --state-dir DIR checks the completeness chain in the state database: every link
                                and hash; prints the gaps; exit 1 if anything fails
  ktrail verify -c FILE --output NAME [--from T] [--to T]
                                reads the manifests and the records back from the output's
                                destination and proves every record of the interval present and
                                unchanged; prints missing and altered ranges and the gaps
  ktrail --version | --help

Options:
  -c, --config FILE     config file (YAML)
      --state-dir DIR   the agent's service.state_dir (status)
      --json            status/check: print JSON
      --connect         check: try each destination like a health check (exit 1 if one fails)
      --verbose         status: list dead letters one by one
      --output NAME     verify: the output whose destination to read back
      --from T, --to T  verify: only records sealed in this interval (ISO time, e.g. 2026-01-02T10:00:00Z)
      --hmac-key-file F verify: check the HMACs of entries and manifests with this key

Exit codes: 0 ok, 1 runtime error (verify: a check failed), 2 invalid config or usage.
Docs: docs/configuration.md, docs/metrics.md, docs/architecture.md, docs/verify.md`;

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'state-dir': { type: 'string' },
        json: { type: 'boolean', default: false },
        verbose: { type: 'boolean', default: false },
        connect: { type: 'boolean', default: false },
        output: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        'hmac-key-file': { type: 'string' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`ktrail: ${errorMessage(err)}\n\n${HELP}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`ktrail ${VERSION}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return command === undefined && !values.help ? 2 : 0;
  }
  switch (command) {
    case 'check': {
      if (!needConfig(values.config)) return 2;
      const { check } = await import('./check.ts');
      return check(values.config, { json: values.json === true, connect: values.connect === true });
    }
    case 'run':
      return run(values.config);
    case 'verify': {
      const { verify } = await import('./verify.ts');
      return verify({
        stateDir: values['state-dir'],
        config: values.config,
        output: values.output,
        from: values.from,
        to: values.to,
        hmacKeyFile: values['hmac-key-file'],
        json: values.json === true,
      });
    }
    case 'status':
      return status(values['state-dir'], values.config, values.json === true, values.verbose === true);
    default:
      process.stderr.write(`ktrail: unknown command "${command}"\n\n${HELP}\n`);
      return 2;
  }
}

function needConfig(file: string | undefined): file is string {
  if (file) return true;
  process.stderr.write('ktrail: -c FILE is required (the YAML config; see docs/configuration.md)\n');
  return false;
}

async function status(stateDir: string | undefined, file: string | undefined, json: boolean, verbose: boolean): Promise<number> {
  const { loadConfigFile } = await import('../config/load.ts');
  const { formatStatus, readStatus } = await import('./status.ts');
  const { rememberConfigSecrets, scrubText } = await import('../telemetry/scrub.ts');
  let dir = stateDir;
  if (file) {
    try {
      const cfg = loadConfigFile(file);
      // Reasons quote what destinations answered: mask whatever this config knows is secret.
      rememberConfigSecrets(cfg);
      dir ??= cfg.service.state_dir;
    } catch (err) {
      process.stderr.write(`${errorMessage(err)}\n`);
      return 2;
    }
  }
  if (!dir) {
    process.stderr.write('ktrail: status needs --state-dir DIR (or -c FILE to read service.state_dir from)\n');
    return 2;
  }
  try {
    const report = readStatus(dir, Date.now(), { verbose });
    process.stdout.write(scrubText(json ? `${JSON.stringify(report, null, 2)}\n` : `${formatStatus(report)}\n`));
    return 0;
  } catch (err) {
    process.stderr.write(`ktrail: ${errorMessage(err)}\n`);
    return 1;
  }
}

async function run(file: string | undefined): Promise<number> {
  if (!needConfig(file)) return 2;
  // Signals are taken before anything loads: a Ctrl-C during start-up still
  // stops the agent in order once it is up, instead of killing it mid-start.
  let stopRequested: ((signal: string) => void) | undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`ktrail: second ${sig}: exiting now; the spool keeps what was not delivered\n`);
      process.exit(130);
    }
    stopRequested?.(sig);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Files first: the audit files the config names are opened before the
  // validator even loads; kept if the validated config agrees (prepare.ts).
  const { prepareInputs, runEarly } = await import('../pipeline/prepare.ts');
  const early = await runEarly(file);
  const { loadConfigFile } = await import('../config/load.ts');
  let cfg;
  try {
    cfg = loadConfigFile(file);
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    return 2;
  }
  // From here on every log line masks the credentials this config holds.
  const { rememberConfigSecrets } = await import('../telemetry/scrub.ts');
  rememberConfigSecrets(cfg);
  const { createLogger } = await import('../telemetry/logger.ts');
  const log = createLogger(cfg.service.log_level, 2, cfg.service.log_format);
  // Files first: every audit file the paths match is opened and held before
  // the spool, the outputs and the telemetry server load, so a backup that is
  // deleted during start-up is still read through its descriptor.
  let prepared;
  try {
    prepared = await prepareInputs(cfg, log, early);
  } catch (err) {
    log.fatal({ err: errorMessage(err), code: (err as KtrailError).code }, 'ktrail failed');
    return 1;
  }
  const { Agent } = await import('../pipeline/agent.ts');
  const { createMetrics, enableProcessMetrics } = await import('../telemetry/metrics.ts');
  const { TelemetryServer } = await import('../telemetry/server.ts');
  const { startProgress } = await import('./progress.ts');
  const metrics = createMetrics();
  enableProcessMetrics(metrics);
  metrics.buildInfo.set({ version: VERSION, nodejs: process.version }, 1);
  const agent = new Agent(cfg, { log, metrics, prepared });

  let server: InstanceType<typeof TelemetryServer> | undefined;
  let progress: { stop(): Promise<void> } | undefined;
  try {
    await agent.start();
    if (cfg.service.metrics.enabled) {
      server = new TelemetryServer({ listen: cfg.service.metrics.listen, registry: metrics.registry, readiness: () => agent.readiness() });
      const addr = await server.listen();
      log.info({ address: `${addr.address}:${addr.port}` }, 'metrics and health endpoints listening');
    }
    if (cfg.service.progress) progress = startProgress(metrics, agent);
    const sig = await stopped;
    log.info({ signal: sig, shutdownTimeoutMs: cfg.service.shutdown_timeout }, 'stopping');
    // Last resort if something does not stop in time; the spool keeps what is undelivered.
    setTimeout(() => {
      log.error('shutdown exceeded shutdown_timeout + 5 s; exiting');
      process.exit(1);
    }, cfg.service.shutdown_timeout + 5000).unref();
    await progress?.stop();
    await agent.stop();
    await server?.close();
    return 0;
  } catch (err) {
    log.fatal({ err: errorMessage(err), code: (err as KtrailError).code }, 'ktrail failed');
    await progress?.stop();
    await agent.stop().catch(() => undefined);
    await server?.close();
    return 1;
  }
}
