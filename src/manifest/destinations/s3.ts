import zlib from 'node:zlib';
import { errorMessage } from '../../errors.ts';
import { clientFor, manifestPrefix, type S3OutputConfig } from '../../outputs/s3/s3.ts';
import { S3Error, type S3Client } from '../../outputs/s3/s3-client.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { StoredEntry } from '../chain.ts';
import type { ItemJson, ManifestJson } from '../seal.ts';
import type { Destination } from '../verify-output.ts';
import { LineIndex } from './lines.ts';

/**
 * An s3 output read back with the output's own client (`clientFor`): the same
 * endpoint, path-style addressing, TLS settings (ca_file, client certificate,
 * server_name, insecure_skip_verify) and credential chain as the uploads, so
 * verify reaches every bucket the output can. Every `manifests/…` object
 * under the key format's fixed prefix, then the data objects the manifests
 * name (for the entries in the interval), each checked against its recorded
 * ETag and indexed line by line.
 */

export async function s3Destination(cfg: S3OutputConfig, log: Logger, client?: S3Client): Promise<Destination> {
  const c = client ?? (await clientFor(cfg, log));
  const signal = new AbortController().signal;
  const prefix = manifestPrefix(cfg.key_format);
  const manifests: ManifestJson[] = [];
  const problems: string[] = [];
  try {
    let token: string | undefined;
    do {
      const page = await c.listObjects(prefix, token, signal);
      for (const key of page.keys) {
        const body = await c.getObject(key, signal);
        try {
          manifests.push((JSON.parse(body.bytes.toString('utf8')) as { ktrail_manifest: ManifestJson }).ktrail_manifest);
        } catch {
          problems.push(`${key}: not a manifest (does not parse)`);
        }
      }
      token = page.nextToken;
    } while (token);
  } catch (err) {
    await c.close();
    throw new Error(`cannot list ${c.bucketUrl} prefix ${prefix}: ${errorMessage(err)}`, { cause: err });
  }
  const index = new LineIndex();
  return {
    manifests,
    describe: `s3://${cfg.bucket}/${prefix}`,
    problems: () => problems,
    prepare: async (entries: readonly StoredEntry[]) => {
      const batches = new Set(entries.filter((e) => e.batchId !== null).map((e) => e.batchId!));
      const items = new Map<string, ItemJson>();
      for (const m of manifests) for (const it of m.items) items.set(it.key, it);
      try {
        for (const it of items.values()) {
          let covers = false;
          for (let b = it.first_batch; b <= it.last_batch && !covers; b++) covers = batches.has(b);
          if (!covers) continue;
          let got: { bytes: Buffer; etag: string | undefined };
          try {
            got = await c.getObject(it.key, signal);
          } catch (err) {
            if (err instanceof S3Error && (err.code === 'NoSuchKey' || err.status === 404)) {
              problems.push(`object s3://${cfg.bucket}/${it.key} (batches ${it.first_batch}..${it.last_batch}, ${it.records} records) is missing`);
              continue;
            }
            throw err;
          }
          if (it.etag && got.etag !== it.etag) problems.push(`object s3://${cfg.bucket}/${it.key}: ETag ${got.etag ?? 'none'} differs from the manifest's ${it.etag} (the object was replaced)`);
          const text = (got.bytes[0] === 0x1f && got.bytes[1] === 0x8b ? zlib.gunzipSync(got.bytes) : got.bytes).toString('utf8');
          index.add(text, (n) => `s3://${cfg.bucket}/${it.key} line ${n}`);
        }
      } finally {
        await c.close();
      }
      index.prepare(entries);
    },
    find: (_e, _i, id, hash) => index.find(id, hash),
  };
}
