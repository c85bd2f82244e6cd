import type { AgentConfig, ComponentConfig } from '../config/load.ts';
import { matches } from '../config/load.ts';
import { errorMessage } from '../errors.ts';
import { senderConfigOf } from '../delivery/config.ts';
import { OutputRunner, type SenderConfig } from '../delivery/runner.ts';
import type {
  ComponentContext,
  EmitBatch,
  EmitResult,
  Input,
  InputContext,
  InputPlugin,
  Output,
  OutputPlugin,
  Processor,
  ProcessorPlugin,
  StateAccess,
} from '../plugin.ts';
import { sha256Hex, type DeadLetterEntry } from '../spool/dead-letter.ts';
import { Spool } from '../spool/spool.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Gauge } from 'prom-client';
import { ComponentTelemetry, onCollect, type ComponentKind, type Metrics } from '../telemetry/metrics.ts';
import { DeadLetterLog } from './dead-letter-log.ts';
import { Manifests } from '../manifest/manifest.ts';
import type { LogRecord, SpooledRecord } from './record.ts';

/**
 * The pipeline: inputs → processors → spool → one runner per output.
 *
 * Start order: spool, outputs, processors, inputs (so nothing is read before
 * it can be stored). Stop order: outputs stop waiting for flush_interval,
 * inputs stop (their last emit commits), processors, outputs drain until the
 * deadline, spool closes. Whatever is not delivered by
 * the deadline stays in the spool for the next start.
 */


interface RunningInput {
  name: string;
  input: Input;
  abort: AbortController;
}

interface RunningProcessor {
  name: string;
  match: string[];
  processor: Processor;
  telemetry: ComponentTelemetry;
}

interface RunningOutput {
  name: string;
  output: Output;
  runner: OutputRunner;
}

export interface AgentOptions {
  log: Logger;
  metrics: Metrics;
  /** Per input name: what its plugin's `prepare` returned (see prepare.ts). */
  prepared?: ReadonlyMap<string, unknown>;
}

export class Agent {
  readonly config: AgentConfig;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  #spool: Spool | undefined;
  /** The completeness chain, when manifest.enabled. */
  #manifests: Manifests | undefined;
  #inputs: RunningInput[] = [];
  #processors: RunningProcessor[] = [];
  #outputs: RunningOutput[] = [];
  #started = false;
  #stopping: Promise<void> | undefined;
  readonly #deadLetterLog: DeadLetterLog;
  readonly #prepared: ReadonlyMap<string, unknown>;

  constructor(config: AgentConfig, opts: AgentOptions) {
    this.config = config;
    this.#prepared = opts.prepared ?? new Map();
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#deadLetterLog = new DeadLetterLog(opts.log);
  }

  get spool(): Spool {
    if (!this.#spool) throw new Error('agent not started');
    return this.#spool;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const { config } = this;
    const spool = new Spool({
      stateDir: config.service.state_dir,
      maxBytes: config.spool.max_bytes,
      deadLetterMaxBytes: config.spool.dead_letter_max_bytes,
    });
    this.#spool = spool;
    this.#registerSpoolMetrics(spool);
    this.#handleOrphans(spool, config.spool.release_removed_outputs);
    const state: StateAccess = { db: spool.db, migrate: (owner, steps) => spool.migrate(owner, steps) };
    if (config.manifest.enabled) {
      this.#manifests = new Manifests(spool, config.manifest, this.#log.child({ component_kind: 'manifest' }), this.#metrics);
      this.#manifests.notePolicy();
    }

    for (const oc of config.outputs) {
      const ctx = { ...this.#context('output', oc), state, manifest: this.#manifests?.itemSink(oc.name) };
      const output = oc.plugin.create(oc.config, ctx);
      await output.start?.();
      const runner = new OutputRunner({
        name: oc.name,
        output,
        spool,
        config: senderConfig(oc),
        metrics: this.#metrics,
        telemetry: ctx.telemetry,
        log: ctx.log,
      });
      this.#outputs.push({ name: oc.name, output, runner });
    }
    for (const pc of config.processors) {
      const ctx = this.#context('processor', pc);
      const processor = pc.plugin.create(pc.config, ctx);
      await processor.start?.();
      this.#processors.push({ name: pc.name, match: pc.match, processor, telemetry: ctx.telemetry });
    }
    for (const o of this.#outputs) o.runner.start();
    const headroomBytes = spoolHeadroomBytes(config);
    this.#manifests?.startSealing(
      spool,
      config.outputs.map((o) => ({ output: o.name, takes: (input: string) => matches(o.match, input) })),
      config.service.node_name,
    );
    for (const ic of config.inputs) {
      const abort = new AbortController();
      const base = this.#context('input', ic);
      const routes = config.outputs.filter((o) => matches(o.match, ic.name)).map((o) => o.name);
      const processors = this.#processors.filter((p) => matches(p.match, ic.name));
      const ctx: InputContext = {
        ...base,
        state,
        signal: abort.signal,
        prepared: this.#prepared.get(ic.name),
        // An input with a reserve of its own may use the whole spool; the others leave the reserves free.
        emit: (batch) => this.#emit(ic.name, routes, processors, base, batch, abort.signal, ic.plugin.spoolHeadroom ? spoolHeadroomBytes(config, ic.name) : headroomBytes),
      };
      const input = ic.plugin.create(ic.config, ctx);
      this.#inputs.push({ name: ic.name, input, abort });
      await input.start();
    }
    this.#log.info(
      { inputs: this.#inputs.map((i) => i.name), processors: this.#processors.map((p) => p.name), outputs: this.#outputs.map((o) => o.name) },
      'ktrail started',
    );
  }

  async #emit(
    input: string,
    routes: string[],
    processors: RunningProcessor[],
    ctx: ComponentContext,
    batch: EmitBatch,
    signal: AbortSignal,
    headroomBytes: number,
  ): Promise<EmitResult> {
    const spool = this.spool;
    let records: LogRecord[] = batch.records;
    let filtered = 0;
    const deadLetters: DeadLetterEntry[] = [];
    for (const d of batch.deadLetters ?? []) {
      deadLetters.push(this.#deadLetter({ component: input, input, recordId: d.recordId, code: d.code, reason: d.reason, source: d.source }, d.data, d.partial === true, processors));
    }
    for (const p of processors) {
      if (records.length === 0) break;
      const before = records.length;
      try {
        p.telemetry.received(before);
        records = await p.processor.process(records);
        p.telemetry.sent(records.length);
        filtered += Math.max(0, before - records.length);
      } catch (err) {
        // A processor must not throw; if one does, the records are kept in the
        // dead-letter table (not shipped half-processed, e.g. unredacted).
        // Half-processed records may be unredacted: the chain's own pre-check decides whether their bytes are kept.
        const reason = `processor ${p.name} failed: ${errorMessage(err)}`;
        p.telemetry.error('exception');
        this.#log.error({ processor: p.name, err: errorMessage(err), records: records.length }, 'processor failed; records dead-lettered');
        for (const r of records) {
          deadLetters.push(this.#deadLetter({ component: p.name, input, recordId: r.id, code: 'processor_error', reason }, r.encode(), false, processors));
        }
        records = [];
      }
    }
    const encoded: SpooledRecord[] = [];
    let bytes = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const json = r.encode();
      bytes += json.length + r.id.length + 16;
      encoded.push({ id: r.id, timeMs: r.timeMs, input, json });
    }
    // Checked and appended in the same synchronous turn: no other emit can take the space in between.
    if (batch.refuseWhenFull === true && encoded.length > 0 && spool.isFull(bytes, headroomBytes)) {
      return { committed: 0, droppedFull: 0, refusedFull: true };
    }
    // A batch whose sender resends it on refusal is never dropped after the check above: the
    // spool's own check (UTF-8 bytes, a little more than the estimate here) must not turn a
    // "fits" into a silent drop that is answered as stored.
    const dropWhenFull = this.config.spool.when_full === 'drop_newest' && batch.refuseWhenFull !== true;
    if (!dropWhenFull && encoded.length > 0 && spool.isFull(bytes, headroomBytes)) {
      this.#metrics.spoolFullWaits.inc({ input });
      const t0 = performance.now();
      // On shutdown the wait ends early and the batch is stored anyway: going
      // one batch over the limit is better than re-reading or losing it.
      await spool.waitForSpace(bytes, signal, headroomBytes);
      this.#metrics.spoolBlockedSeconds.inc({ input }, (performance.now() - t0) / 1000);
    }
    const t0 = performance.now();
    const manifest = this.#manifests?.entryWriter(input, batch.manifest, encoded, { filtered, deadLetters, routed: routes.length > 0 });
    const result = spool.append({ input, records: encoded, routes, deadLetters, checkpoint: batch.checkpoint, dropWhenFull, headroomBytes, manifest });
    this.#metrics.spoolCommitSeconds.observe((performance.now() - t0) / 1000);
    this.#metrics.spoolCommits.inc({ input });
    const committed = result.batchId !== undefined ? encoded.length : 0;
    ctx.telemetry.sent(committed, result.bytes);
    if (result.dropped > 0) {
      ctx.telemetry.discarded('spool_full', result.dropped);
      this.#log.warn({ input, dropped: result.dropped, sampleId: encoded[0]?.id }, 'spool full: newest records dropped (when_full: drop_newest)');
    }
    if (deadLetters.length > 0) {
      for (const d of deadLetters) {
        this.#metrics.deadLetters.inc({ component_id: d.component, reason: d.code });
        if (d.withheld) this.#metrics.deadLettersWithheld.inc({ component_id: d.component, reason: d.code });
      }
      this.#deadLetterLog.note(deadLetters);
    }
    return { committed, droppedFull: result.dropped };
  }

  /**
   * A dead letter for content the pipeline could not process. Its bytes are
   * kept only if no processor on the way could have changed them (redact's
   * pre-check), or if the operator opted in to storing them anyway: content
   * that redaction could not prove clean is not stored.
   */
  #deadLetter(entry: Omit<DeadLetterEntry, 'data'>, content: Buffer | string, partial: boolean, processors: readonly RunningProcessor[]): DeadLetterEntry {
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    let withheld = false;
    if (!this.config.spool.dead_letter_store_unredactable && processors.some((p) => p.processor.mayChange !== undefined)) {
      const text = bytes.toString('utf8');
      withheld = processors.some((p) => p.processor.mayChange?.(text, partial) === true);
    }
    return { ...entry, data: withheld ? undefined : bytes, length: bytes.length, sha256: sha256Hex(bytes), withheld };
  }

  /**
   * Batches owed to outputs that are no longer configured (renamed, removed,
   * or a different config pointed at this state dir) are kept — a rename must
   * not drop data — unless the operator released them explicitly.
   */
  #handleOrphans(spool: Spool, release: boolean): void {
    const orphans = spool.orphanedOutputs(this.config.outputs.map((o) => o.name));
    for (const [output, t] of orphans) {
      if (release) {
        spool.releaseOutput(output);
        this.#metrics.discardedEvents.inc({ component_kind: 'output', component_id: output, component_type: 'removed', reason: 'output_removed' }, t.records);
        this.#log.warn({ output, batches: t.batches, records: t.records }, 'output no longer configured; its undelivered records were released (spool.release_removed_outputs)');
      } else {
        this.#log.warn(
          { output, batches: t.batches, records: t.records, bytes: t.bytes },
          'output no longer configured; its undelivered records stay in the spool until it returns (set spool.release_removed_outputs: true to release them)',
        );
      }
    }
    const m = this.#metrics.spoolOrphanedBatches;
    onCollect(m as Gauge<string>, () => {
      m.reset();
      try {
        for (const [output, t] of spool.orphanedOutputs(this.config.outputs.map((o) => o.name))) m.set({ output }, t.batches);
      } catch {
        /* spool closed */
      }
    });
  }

  #context(kind: ComponentKind, c: ComponentConfig<InputPlugin | ProcessorPlugin | OutputPlugin>): ComponentContext {
    // The plugin's own series exist from its start (a scrape shows them before the first event).
    c.plugin.metrics?.(this.#metrics);
    return {
      name: c.name,
      log: this.#log.child({ component_kind: kind, component_id: c.name, component_type: c.plugin.type }),
      telemetry: new ComponentTelemetry(this.#metrics, kind, c.name, c.plugin.type),
      metrics: this.#metrics,
      nodeName: this.config.service.node_name,
      stateDir: this.config.service.state_dir,
    };
  }

  #registerSpoolMetrics(spool: Spool): void {
    const m = this.#metrics;
    m.spoolMaxBytes.set(spool.maxBytes);
    // Gauges read the spool when scraped: no second copy of the numbers to keep in sync.
    onCollect(m.spoolBytes, () => m.spoolBytes.set(spool.bytes));
    onCollect(m.spoolBatches, () => m.spoolBatches.set(spool.batches));
    onCollect(m.spoolRecords, () => m.spoolRecords.set(spool.records));
    onCollect(m.deadLetterRows, () => m.deadLetterRows.set(spool.deadLetterRows));
    onCollect(m.deadLetterBytes, () => m.deadLetterBytes.set(spool.deadLetterBytes));
    spool.onDeadLetterPrune((rows) => {
      m.deadLettersPruned.inc(rows);
      this.#log.warn({ rows, maxBytes: this.config.spool.dead_letter_max_bytes }, 'dead-letter table full: oldest rows pruned');
    });
    const outputs = this.config.outputs.map((o) => o.name);
    const refresh = () => {
      for (const output of outputs) {
        try {
          const b = spool.backlog(output);
          m.outputLagRecords.set({ output }, b.pendingRecords);
          m.outputLagBytes.set({ output }, b.pendingBytes);
          m.outputOldestPendingSeconds.set({ output }, b.oldestCreatedMs ? (Date.now() - b.oldestCreatedMs) / 1000 : 0);
        } catch {
          /* spool closed during shutdown */
        }
      }
    };
    onCollect(m.outputLagRecords as Gauge<string>, refresh);
  }

  /** Liveness: the process and its event loop are alive (the HTTP server answers). */
  live(): boolean {
    return true;
  }

  /** Readiness: inputs healthy, spool writable, no output stalled beyond the threshold. */
  readiness(): { ready: boolean; checks: Record<string, { ok: boolean; detail?: string }> } {
    const checks: Record<string, { ok: boolean; detail?: string }> = {};
    if (!this.#spool || this.#stopping) {
      checks.agent = { ok: false, detail: this.#stopping ? 'stopping' : 'starting' };
      return { ready: false, checks };
    }
    try {
      this.#spool.db.prepare('SELECT 1').get();
      checks.spool = { ok: true };
    } catch (err) {
      checks.spool = { ok: false, detail: errorMessage(err) };
    }
    for (const i of this.#inputs) {
      const h = i.input.health?.() ?? { ok: true };
      checks[`input:${i.name}`] = h;
    }
    for (const o of this.#outputs) {
      const stalled = o.runner.stalledForMs();
      const limit = this.config.service.output_stall_timeout;
      checks[`output:${o.name}`] =
        stalled > limit ? { ok: false, detail: `no progress for ${Math.round(stalled / 1000)} s with data pending` } : { ok: true };
    }
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  }

  /** Graceful stop; idempotent, safe before start. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stopInOrder();
    return this.#stopping;
  }

  async #stopInOrder(): Promise<void> {
    const deadline = Date.now() + this.config.service.shutdown_timeout;
    // Partial batches leave now: an input may wait for its acks before it stops.
    for (const o of this.#outputs) o.runner.hurry();
    for (const i of this.#inputs) i.abort.abort();
    await Promise.allSettled(
      this.#inputs.map(async (i) => {
        try {
          await i.input.stop();
        } catch (err) {
          this.#log.error({ input: i.name, err: errorMessage(err) }, 'input stop failed');
        }
      }),
    );
    this.#deadLetterLog.stop();
    for (const p of this.#processors) {
      try {
        await p.processor.stop?.();
      } catch (err) {
        this.#log.error({ processor: p.name, err: errorMessage(err) }, 'processor stop failed');
      }
    }
    // A drain that takes long is said out loud (at warn, the default level
    // shows it): what is pending where, until when, and how to cut it short.
    const slow = setTimeout(() => this.#logDrainWait(deadline), DRAIN_WARN_AFTER_MS);
    slow.unref();
    if (this.#manifests) {
      // Seal what the outputs acknowledged by now, then deliver the manifests with the rest.
      this.#manifests.stopSealing();
      await Promise.all(this.#outputs.map((o) => o.runner.settle(deadline)));
      this.#manifests.seal();
    }
    const drained = await Promise.all(this.#outputs.map((o) => o.runner.drain(deadline))).finally(() => clearTimeout(slow));
    for (const o of this.#outputs) {
      try {
        await o.output.close?.();
      } catch (err) {
        this.#log.error({ output: o.name, err: errorMessage(err) }, 'output close failed');
      }
    }
    const undelivered = this.#outputs.filter((_, i) => !drained[i]).map((o) => o.name);
    if (undelivered.length > 0) this.#log.warn({ outputs: undelivered }, 'shutdown deadline reached; undelivered records stay in the spool');
    this.#spool?.close();
    this.#log.info('ktrail stopped');
  }

  #logDrainWait(deadlineMs: number): void {
    const waitingFor = this.#outputs
      .map((o) => {
        const b = this.#spool?.backlog(o.name);
        return { output: o.name, pendingBatches: b?.pendingBatches ?? 0, pendingRecords: b?.pendingRecords ?? 0 };
      })
      .filter((o) => o.pendingBatches > 0);
    if (waitingFor.length === 0) return;
    this.#log.warn(
      { waitingFor, deadline: new Date(deadlineMs).toISOString(), remainingMs: Math.max(0, deadlineMs - Date.now()) },
      `stopping: waiting for ${waitingFor.map((o) => `${o.output} (${o.pendingBatches} pending batches)`).join(', ')} ` +
        `until ${new Date(deadlineMs).toISOString()}; press Ctrl-C again (or send a second SIGTERM) to exit now, the spool keeps what is undelivered`,
    );
  }
}

/** The largest share of spool.max_bytes all inputs' reserves may take together. */
const MAX_HEADROOM_SHARE = 0.9;

/** Bytes of spool.max_bytes the inputs with a reserve (audit_webhook) keep from the others. */
export function spoolHeadroomBytes(config: Pick<AgentConfig, 'inputs' | 'spool'>, except?: string): number {
  let share = 0;
  // An input with a reserve may use its own, never another's (`except`: that input).
  for (const ic of config.inputs) if (ic.name !== except) share += ic.plugin.spoolHeadroom?.(ic.config) ?? 0;
  return Math.floor(config.spool.max_bytes * Math.min(MAX_HEADROOM_SHARE, share));
}

/** After this long draining, shutdown logs what it waits for. */
const DRAIN_WARN_AFTER_MS = 1000;

export function senderConfig(oc: ComponentConfig<OutputPlugin>): SenderConfig {
  return senderConfigOf(oc.plugin, oc.config);
}
