import { recordHash } from '../digest.ts';
import type { StoredEntry } from '../chain.ts';
import type { ManifestJson } from '../seal.ts';
import type { Lookup } from '../verify-output.ts';

/**
 * An index of NDJSON lines read back from a destination (file output lines,
 * S3 objects): manifests apart, data lines by their SHA-256. A record the
 * manifest names is present when a line with its hash exists. A line whose
 * hash matches nothing but whose own id (audit `auditID:stage`, event
 * `uid:resourceVersion`) is that of a missing record is reported as that
 * record, altered — the id only names it; what proves anything is the hash.
 */
export class LineIndex {
  readonly manifests: ManifestJson[] = [];
  readonly #byHash = new Set<string>();
  readonly #unmatched = new Map<string, string>();
  #lines: Array<{ hash: string; id: string | undefined; where: string }> = [];

  add(text: string, where: (lineNo: number) => string): void {
    let start = 0;
    let lineNo = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end === -1) end = text.length;
      lineNo++;
      const line = text.slice(start, end);
      start = end + 1;
      if (line.length === 0) continue;
      if (line.startsWith('{"ktrail_manifest":')) {
        try {
          this.manifests.push((JSON.parse(line) as { ktrail_manifest: ManifestJson }).ktrail_manifest);
        } catch {
          // A manifest that does not parse is as good as absent: the chain check names the gap.
        }
        continue;
      }
      const hash = recordHash(line).toString('base64');
      this.#byHash.add(hash);
      this.#lines.push({ hash, id: idOf(line), where: where(lineNo) });
    }
  }

  /** After the last `add`: lines whose hash no entry names, by their id. */
  prepare(entries: readonly StoredEntry[]): void {
    const expected = new Set<string>();
    for (const e of entries) if (e.hashes) for (let o = 0; o < e.hashes.length; o += 32) expected.add(e.hashes.subarray(o, o + 32).toString('base64'));
    for (const l of this.#lines) if (!expected.has(l.hash) && l.id !== undefined) this.#unmatched.set(l.id, l.where);
    this.#lines = [];
  }

  find(id: string, hash: Buffer): Lookup {
    if (this.#byHash.has(hash.toString('base64'))) return { state: 'present' };
    const where = this.#unmatched.get(id);
    return where !== undefined ? { state: 'altered', where } : { state: 'missing' };
  }
}

function idOf(line: string): string | undefined {
  try {
    const d = JSON.parse(line) as { auditID?: unknown; stage?: unknown; metadata?: { uid?: unknown; resourceVersion?: unknown } };
    if (typeof d.auditID === 'string' && typeof d.stage === 'string') return `${d.auditID}:${d.stage}`;
    if (typeof d.metadata?.uid === 'string' && typeof d.metadata.resourceVersion === 'string') return `${d.metadata.uid}:${d.metadata.resourceVersion}`;
  } catch {
    // Not JSON (an edited line, say): it can only be told apart by its hash.
  }
  return undefined;
}
