import type { Metrics } from '../../telemetry/metrics.ts';
import type { TrackedFile } from './tracker.ts';
import { auditFileMetrics } from './telemetry.ts';

/**
 * The input's per-file gauges: lag (size minus offset) labelled by the file's
 * current path, which changes on rotation, so the series of the old name is
 * removed when the file moves or leaves.
 */
export class FileGauges {
  readonly #m: ReturnType<typeof auditFileMetrics>;
  readonly #input: string;
  /** File id → the path its lag series is labelled with. */
  readonly #lagLabels = new Map<string, string>();

  constructor(metrics: Metrics, input: string) {
    this.#m = auditFileMetrics(metrics);
    this.#input = input;
  }

  /** After a rescan: every attached file's lag, and how many are tracked. */
  update(files: Iterable<TrackedFile>): void {
    let tracked = 0;
    for (const f of files) {
      if (!f.attached) continue;
      tracked++;
      this.setLag(f);
    }
    this.#m.filesTracked.set({ input: this.#input }, tracked);
  }

  setLag(f: TrackedFile): void {
    const prev = this.#lagLabels.get(f.id);
    if (prev !== undefined && prev !== f.path) this.#m.lagBytes.remove({ input: this.#input, file: prev });
    this.#lagLabels.set(f.id, f.path);
    this.#m.lagBytes.set({ input: this.#input, file: f.path }, f.size >= 0 ? Math.max(0, f.size - f.offset) : 0);
  }

  dropLag(f: TrackedFile): void {
    const prev = this.#lagLabels.get(f.id);
    if (prev === undefined) return;
    this.#lagLabels.delete(f.id);
    this.#m.lagBytes.remove({ input: this.#input, file: prev });
  }

  openFiles(n: number): void {
    this.#m.openFiles.set({ input: this.#input }, n);
  }
}
