import type { AuthConfig } from '../../delivery/http/auth.ts';
import { Authorizer, urlBasicAuth } from '../../delivery/http/auth.ts';
import { HttpPool } from '../../delivery/http/pool.ts';
import type { TlsConfig } from '../../delivery/http/tls.ts';
import { errorMessage } from '../../errors.ts';
import { createLogger } from '../../telemetry/logger.ts';
import type { StoredEntry } from '../chain.ts';
import { recordHash } from '../digest.ts';
import { MANIFEST_ID_PREFIX } from '../record.ts';
import type { ItemJson, ManifestJson } from '../seal.ts';
import type { Destination, Lookup } from '../verify-output.ts';

/**
 * An elasticsearch output read back by id: the manifests are documents
 * `ktrail-manifest:<output>:<seq>` in the manifest index, fetched with `_mget`
 * in order until a whole page is absent; each record is fetched from the
 * indices the manifests name for its batch (`_id` = record id) and its
 * `_source` hashed as the cluster returns it — the raw bytes, not a re-encoding.
 * The output may have added `@timestamp` in front; the record's hash is
 * checked with and without that member.
 */

interface EsOutputKeys {
  url: string;
  manifest_index: string;
  auth?: AuthConfig;
  tls?: TlsConfig;
}

const PAGE = 200;
const ID_PAGE = 1000;

export async function elasticsearchDestination(cfg: EsOutputKeys, output: string): Promise<Destination> {
  const url = new URL(cfg.url);
  const base = url.pathname.replace(/\/+$/, '');
  const log = createLogger('silent');
  const pool = new HttpPool(url.origin, { connections: 4, tls: cfg.tls, log });
  const auth = new Authorizer(cfg.auth, log);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const h = auth.header().value ?? urlBasicAuth(url);
  if (h !== undefined) headers.authorization = h;

  const mget = async (docs: Array<{ _index: string; _id: string }>): Promise<MgetDoc[]> => {
    const res = await pool.get().request({ path: `${base}/_mget`, method: 'POST', headers, body: JSON.stringify({ docs }) });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`_mget answered HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
    return parseMget(text);
  };

  const manifests: ManifestJson[] = [];
  const problems: string[] = [];
  try {
    for (let from = 1; ; from += PAGE) {
      const docs = await mget(Array.from({ length: PAGE }, (_, i) => ({ _index: cfg.manifest_index, _id: `${MANIFEST_ID_PREFIX}${output}:${from + i}` })));
      let found = 0;
      for (const d of docs) {
        if (d.raw === undefined) continue;
        found++;
        try {
          const doc = JSON.parse(d.raw) as { manifest: string };
          manifests.push((JSON.parse(doc.manifest) as { ktrail_manifest: ManifestJson }).ktrail_manifest);
        } catch {
          problems.push(`${cfg.manifest_index}/${d.id}: not a manifest document (does not parse)`);
        }
      }
      if (found === 0) break;
    }
  } catch (err) {
    await pool.close();
    throw new Error(`cannot read manifests from ${url.origin}${base}/${cfg.manifest_index}: ${errorMessage(err)}`, { cause: err });
  }

  /** record id → the raw sources found for it, with where. */
  const found = new Map<string, Array<{ raw: string; where: string }>>();
  return {
    manifests,
    describe: `${url.origin}${base}/${cfg.manifest_index}`,
    problems: () => problems,
    prepare: async (entries: readonly StoredEntry[]) => {
      const items: ItemJson[] = [];
      for (const m of manifests) for (const it of m.items) if (it.index !== undefined) items.push(it);
      const wanted: Array<{ _index: string; _id: string }> = [];
      for (const e of entries) {
        if (e.kind !== 'records' || e.batchId === null) continue;
        const indices = new Set(items.filter((it) => it.first_batch <= e.batchId! && e.batchId! <= it.last_batch).map((it) => it.index!));
        if (indices.size === 0) problems.push(`${e.stream} entry #${e.seq} (batch ${e.batchId}): no manifest names the index of its records`);
        for (const index of indices) for (const id of e.ids) wanted.push({ _index: index, _id: id });
      }
      try {
        for (let i = 0; i < wanted.length; i += ID_PAGE) {
          for (const d of await mget(wanted.slice(i, i + ID_PAGE))) {
            if (d.raw === undefined) continue;
            const list = found.get(d.id) ?? [];
            list.push({ raw: d.raw, where: `${d.index}/${d.id}` });
            found.set(d.id, list);
          }
        }
      } finally {
        await pool.close();
      }
    },
    find: (_e, _i, id, hash): Lookup => {
      const docs = found.get(id);
      if (!docs) return { state: 'missing' };
      for (const d of docs) if (recordHash(d.raw).equals(hash) || recordHash(withoutTimestamp(d.raw)).equals(hash)) return { state: 'present' };
      return { state: 'altered', where: docs[0]!.where };
    },
  };
}

/** The document without a leading `"@timestamp":"…",` member (what the output splices in). */
function withoutTimestamp(raw: string): string {
  const m = /^\{"@timestamp":"[^"\\]*",?/.exec(raw);
  return m ? `{${raw.slice(m[0].length)}` : raw;
}

interface MgetDoc {
  index: string;
  id: string;
  /** The `_source` exactly as the response holds it; undefined when not found. */
  raw: string | undefined;
}

/**
 * `_mget` answers in request order. The structure comes from JSON.parse; the
 * `_source` texts are cut out of the response as they are, in the same
 * order, so a document's hash is over the bytes the cluster returned.
 */
export function parseMget(text: string): MgetDoc[] {
  const parsed = JSON.parse(text) as { docs: Array<{ _index: string; _id: string; found?: boolean; _source?: unknown }> };
  const raws = rawSources(text);
  let k = 0;
  return parsed.docs.map((d) => ({ index: d._index, id: d._id, raw: d.found === true && d._source !== undefined ? raws[k++] : undefined }));
}

/** Every top-level `"_source":{…}` value of an `_mget` response, raw, in order. */
function rawSources(text: string): string[] {
  const out: string[] = [];
  const key = '"_source":';
  let at = text.indexOf(key);
  while (at !== -1) {
    const start = at + key.length;
    const end = endOfValue(text, start);
    out.push(text.slice(start, end));
    at = text.indexOf(key, end);
  }
  return out;
}

/** The index after the JSON object or array starting at `start` (strings and nesting respected). */
function endOfValue(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return text.length;
}
