import type { AuditFileConfig } from './config.ts';
import { HeldFiles } from './held.ts';
import { compilePaths, Scanner, type ScanResult } from './scan.ts';

/**
 * What `prepare` (run before anything else starts) hands to the input: the
 * scanner whose first scan already opened, and holds, every matching file.
 */
export interface PreparedFiles {
  scanner: Scanner;
  held: HeldFiles;
  /** That first scan: the input's first look at the files (a file deleted since is read through its descriptor). */
  scan?: ScanResult;
}

/** The first thing `ktrail run` does: open every file the paths match, and hold it. */
export async function openAuditFiles(cfg: Pick<AuditFileConfig, 'paths' | 'exclude' | 'max_open_files'>): Promise<PreparedFiles & { scan: ScanResult }> {
  const held = new HeldFiles(cfg.max_open_files);
  const scanner = new Scanner(compilePaths(cfg.paths, cfg.exclude), { wantLineEnd: () => false, held });
  const scan = await scanner.scan();
  return { scanner, held, scan };
}

/**
 * The audit files a config names, opened while the config is still being
 * validated (the validator's libraries take a few tens of milliseconds to
 * load; the opens run meanwhile). Works on the raw, unvalidated mapping of one
 * input and never throws: anything unusual (environment references, values
 * of the wrong type) is left to the normal path after validation.
 */
export type EarlyFiles = Awaited<ReturnType<typeof openAuditFiles>> & {
  /** The settings the files were opened for; used only if the validated config says the same. */
  key: string;
  /** performance.now() when every file was open. */
  openAtMs: number;
};

export const DEFAULT_MAX_OPEN_FILES = 256;

export function earlyKey(paths: readonly string[], exclude: readonly string[], maxOpenFiles: number): string {
  return JSON.stringify([paths, exclude, maxOpenFiles]);
}

export async function openEarly(raw: unknown): Promise<EarlyFiles | undefined> {
  if (!raw || typeof raw !== 'object') return undefined;
  const r = raw as { paths?: unknown; exclude?: unknown; max_open_files?: unknown };
  const strings = (v: unknown): string[] | undefined =>
    Array.isArray(v) && v.every((x) => typeof x === 'string' && x !== '' && !x.includes('${')) ? (v as string[]) : undefined;
  const paths = strings(r.paths);
  const exclude = r.exclude === undefined ? [] : strings(r.exclude);
  const max = r.max_open_files === undefined ? DEFAULT_MAX_OPEN_FILES : r.max_open_files;
  if (!paths || paths.length === 0 || !exclude || typeof max !== 'number' || !Number.isInteger(max) || max < 4) return undefined;
  try {
    const prepared = await openAuditFiles({ paths, exclude, max_open_files: max });
    return { ...prepared, key: earlyKey(paths, exclude, max), openAtMs: performance.now() };
  } catch {
    return undefined;
  }
}
