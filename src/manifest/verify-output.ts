import { checkEntry, formatGap, type GapReport } from './verify-local.ts';
import { hmacHex, RECORD_HASH_BYTES } from './digest.ts';
import type { StoredEntry } from './chain.ts';
import { manifestHash, type ManifestEntryJson, type ManifestJson } from './seal.ts';

/**
 * `ktrail verify -c FILE --output NAME`: the manifests and the records read
 * back from a destination, checked against each other.
 *
 * What it proves for the interval: (1) the manifests found form one
 * unbroken chain (seq 1, 2, …, each linked to the one before, hashes and
 * HMACs recomputed); (2) per stream, the entries they seal are consecutive
 * and linked; (3) every record those entries name is at the destination
 * with the SHA-256 the entry recorded, unless the output dead-lettered it
 * (a known gap). What is missing or differs is named by entry, source range
 * and record ids.
 */

/** What a destination says about one record the manifest names. */
export type Lookup = { state: 'present' } | { state: 'missing' } | { state: 'altered'; where: string };

export interface Destination {
  /** Every manifest found at the destination (duplicates from replays included). */
  manifests: ManifestJson[];
  /** Where manifests were found, for messages. */
  describe: string;
  /** Prepares lookups for these entries (a destination that fetches by id does it here). */
  prepare?(entries: readonly StoredEntry[]): Promise<void>;
  find(entry: StoredEntry, index: number, id: string, hash: Buffer): Lookup;
  /** What the destination found wrong on its own (an object gone, an ETag that differs), after `prepare`. */
  problems?(): string[];
}

export interface RangeProblem {
  stream: string;
  seq: number;
  kind: 'missing' | 'altered';
  source: StoredEntry['source'];
  batchId: number | null;
  /** Record indexes inside the entry, inclusive. */
  from: number;
  to: number;
  firstId: string;
  lastId: string;
  where?: string;
}

export interface OutputReport {
  ok: boolean;
  output: string;
  manifests: number;
  streams: Array<{ stream: string; fromSeq: number; toSeq: number; entries: number; records: number; verified: number }>;
  problems: string[];
  ranges: RangeProblem[];
  gaps: GapReport[];
  deadLettered: number;
  notes: string[];
}

export interface VerifyWindow {
  fromMs?: number;
  toMs?: number;
}

export function entryOf(j: ManifestEntryJson): StoredEntry {
  // A manifest is input from the destination: a wrong shape is a finding, never a crash.
  if (typeof j !== 'object' || j === null || typeof j.ids !== 'string' || typeof j.stream !== 'string' || typeof j.seq !== 'number' || (j.hashes !== null && typeof j.hashes !== 'string')) {
    throw new TypeError('an entry of the wrong shape');
  }
  return { ...j, ids: j.ids === '' ? [] : j.ids.split('\n'), hashes: j.hashes === null ? null : Buffer.from(j.hashes, 'base64') };
}

export async function verifyDestination(output: string, dest: Destination, opts: VerifyWindow & { hmacKey?: Buffer }): Promise<OutputReport> {
  const r: OutputReport = { ok: false, output, manifests: 0, streams: [], problems: [], ranges: [], gaps: [], deadLettered: 0, notes: [] };
  // Replays may have written a manifest twice: the same seq and hash is one manifest.
  const bySeq = new Map<number, ManifestJson>();
  for (const m of dest.manifests) {
    if (!wellFormed(m)) {
      r.problems.push(`a manifest in ${dest.describe} is malformed (seq ${String((m as { seq?: unknown } | null)?.seq)})`);
      continue;
    }
    if (m.output !== output) continue;
    const seen = bySeq.get(m.seq);
    if (seen && seen.hash !== m.hash) r.problems.push(`manifest #${m.seq}: two different manifests with this number`);
    else bySeq.set(m.seq, m);
  }
  const manifests = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  r.manifests = manifests.length;
  if (manifests.length === 0) {
    r.problems.push(`no manifests of output ${output} found in ${dest.describe}`);
    return r;
  }
  let prev: ManifestJson | undefined;
  if (manifests[0]!.seq !== 1) r.problems.push(`manifests #1..#${manifests[0]!.seq - 1} are missing (the manifest chain does not start at #1)`);
  for (const m of manifests) {
    const { hash, hmac, ...body } = m;
    if (manifestHash(body) !== hash) r.problems.push(`manifest #${m.seq}: hash mismatch (the manifest was altered)`);
    if (opts.hmacKey !== undefined && (hmac === null || hmacHex(opts.hmacKey, hash) !== hmac)) r.problems.push(`manifest #${m.seq}: HMAC missing or wrong`);
    if (prev !== undefined) {
      if (m.seq !== prev.seq + 1) r.problems.push(`manifests #${prev.seq + 1}..#${m.seq - 1} are missing (the manifest chain is broken)`);
      else if (m.prev !== prev.hash) r.problems.push(`manifest #${m.seq}: does not link to manifest #${prev.seq}`);
    }
    prev = m;
  }

  // Per stream, the entries in order, checked for links and hashes.
  const streams = new Map<string, { last: StoredEntry | undefined; report: OutputReport['streams'][number] }>();
  const inWindow: StoredEntry[] = [];
  const deadIds = new Set<string>();
  for (const m of manifests) {
    for (const d of m.dead_lettered) deadIds.add(d.id);
    for (const s of m.streams) {
      let st = streams.get(s.stream);
      if (!st) {
        st = { last: undefined, report: { stream: s.stream, fromSeq: s.from_seq, toSeq: s.from_seq - 1, entries: 0, records: 0, verified: 0 } };
        streams.set(s.stream, st);
        if (s.from_seq > 1) r.notes.push(`${s.stream}: the first manifest found starts at entry #${s.from_seq}; earlier entries were sealed before this output's first manifest`);
      }
      if (st.last !== undefined && s.from_seq !== st.last.seq + 1) {
        r.problems.push(`${s.stream}: entries #${st.last.seq + 1}..#${s.from_seq - 1} are in no manifest found (the chain is broken before manifest #${m.seq})`);
      }
      for (const j of s.entries) {
        let e: StoredEntry;
        try {
          e = entryOf(j);
        } catch (err) {
          r.problems.push(`manifest #${m.seq}: malformed entry of ${s.stream} (${(err as Error).message})`);
          continue;
        }
        if (e.stream !== s.stream) r.problems.push(`manifest #${m.seq}: an entry of ${e.stream} listed under ${s.stream}`);
        for (const p of checkEntry(e, opts.hmacKey)) r.problems.push(`manifest #${m.seq}: ${p}`);
        if (st.last !== undefined && e.seq === st.last.seq + 1 && e.prev !== st.last.hash) r.problems.push(`${s.stream}: entry #${e.seq} does not link to entry #${st.last.seq}`);
        st.last = e;
        st.report.toSeq = e.seq;
        st.report.entries++;
        if ((opts.fromMs === undefined || e.timeMs >= opts.fromMs) && (opts.toMs === undefined || e.timeMs <= opts.toMs)) inWindow.push(e);
      }
    }
  }
  r.streams = [...streams.values()].map((s) => s.report);

  await dest.prepare?.(inWindow);
  r.problems.push(...(dest.problems?.() ?? []));
  for (const e of inWindow) {
    const st = streams.get(e.stream)!.report;
    if (e.gap !== null) r.gaps.push({ stream: e.stream, seq: e.seq, timeMs: e.timeMs, gap: e.gap, source: e.source });
    if (e.kind !== 'records' || e.hashes === null) continue;
    st.records += e.records;
    let run: RangeProblem | undefined;
    const flush = () => {
      if (run) r.ranges.push(run);
      run = undefined;
    };
    for (let i = 0; i < e.records; i++) {
      const id = e.ids[i]!;
      const found = dest.find(e, i, id, e.hashes.subarray(i * RECORD_HASH_BYTES, (i + 1) * RECORD_HASH_BYTES));
      if (found.state === 'present') {
        st.verified++;
        flush();
        continue;
      }
      if (deadIds.has(id)) {
        r.deadLettered++;
        flush();
        continue;
      }
      const kind = found.state;
      const where = found.state === 'altered' ? found.where : undefined;
      if (run && run.kind === kind && run.to === i - 1 && kind === 'missing') {
        run.to = i;
        run.lastId = id;
      } else {
        flush();
        run = { stream: e.stream, seq: e.seq, kind, source: e.source, batchId: e.batchId, from: i, to: i, firstId: id, lastId: id, where };
      }
    }
    flush();
  }
  if (r.deadLettered > 0) r.notes.push(`${r.deadLettered} record(s) the output dead-lettered are not at the destination (known, see ktrail status)`);
  r.ok = r.problems.length === 0 && r.ranges.length === 0;
  return r;
}

/** The shape the checks rely on; anything else is reported, not trusted. */
function wellFormed(m: unknown): m is ManifestJson {
  if (typeof m !== 'object' || m === null) return false;
  const x = m as Record<string, unknown>;
  return (
    typeof x.seq === 'number' &&
    typeof x.hash === 'string' &&
    typeof x.prev === 'string' &&
    typeof x.output === 'string' &&
    Array.isArray(x.streams) &&
    Array.isArray(x.dead_lettered) &&
    Array.isArray(x.items) &&
    (x.streams as unknown[]).every((s) => typeof s === 'object' && s !== null && Array.isArray((s as { entries?: unknown }).entries))
  );
}

function sourceText(s: StoredEntry['source']): string {
  if (s?.file) return `${s.file.path} bytes ${s.file.from}..${s.file.to} (fingerprint ${s.file.fingerprint ?? 'unknown'})`;
  if (s?.resourceVersion) return `resourceVersion ${s.resourceVersion.min ?? '?'}..${s.resourceVersion.max ?? '?'} (cursor ${s.resourceVersion.cursorFrom ?? '-'} → ${s.resourceVersion.cursorTo ?? '-'})`;
  return 'source not recorded';
}

export function formatOutput(r: OutputReport, window: VerifyWindow): string {
  const span = window.fromMs !== undefined || window.toMs !== undefined
    ? ` from ${window.fromMs !== undefined ? new Date(window.fromMs).toISOString() : 'the start'} to ${window.toMs !== undefined ? new Date(window.toMs).toISOString() : 'now'}`
    : '';
  const lines = [`output ${r.output}: ${r.manifests} manifest(s)${span}`];
  for (const s of r.streams) lines.push(`  ${s.stream}: entries #${s.fromSeq}..#${s.toSeq}, ${s.verified} of ${s.records} record(s) present and unchanged`);
  for (const p of r.problems) lines.push(`  FAIL ${p}`);
  for (const x of r.ranges) {
    const what = x.kind === 'missing' ? 'missing' : `altered (SHA-256 differs from the manifest${x.where ? `; at ${x.where}` : ''})`;
    const ids = x.from === x.to ? `record ${x.from + 1} (${x.firstId})` : `records ${x.from + 1}..${x.to + 1} (${x.firstId} … ${x.lastId})`;
    lines.push(`  FAIL ${x.stream} entry #${x.seq}, ${sourceText(x.source)}, batch ${x.batchId ?? '-'}: ${ids} ${what}`);
  }
  for (const n of r.notes) lines.push(`  note: ${n}`);
  lines.push(r.gaps.length === 0 ? 'gaps: none' : `gaps (${r.gaps.length}):`);
  for (const g of r.gaps) lines.push(formatGap(g));
  lines.push(r.ok ? 'result: OK — every record sealed in the interval is present and unchanged, except the gaps listed' : 'result: FAILED');
  return lines.join('\n');
}

