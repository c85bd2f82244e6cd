import zlib from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { Secret } from '../../config/secret.ts';
import { errorMessage } from '../../errors.ts';
import { manifestPrefix } from '../../outputs/s3/s3.ts';
import type { StoredEntry } from '../chain.ts';
import type { ItemJson, ManifestJson } from '../seal.ts';
import type { Destination } from '../verify-output.ts';
import { LineIndex } from './lines.ts';

/**
 * An s3 output read back with the AWS SDK: every `manifests/…` object under
 * the key format's fixed prefix, then the data objects the manifests name
 * (for the entries in the interval), each checked against its recorded ETag
 * and indexed line by line.
 */

interface S3OutputKeys {
  bucket: string;
  region?: string;
  endpoint?: string;
  force_path_style: boolean;
  key_format: string;
  access_key_id?: Secret;
  secret_access_key?: Secret;
  session_token?: Secret;
}

export async function s3Destination(cfg: S3OutputKeys): Promise<Destination> {
  const conf: S3ClientConfig = {
    region: cfg.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1'),
    forcePathStyle: cfg.force_path_style,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  if (cfg.endpoint) conf.endpoint = cfg.endpoint;
  if (cfg.access_key_id && cfg.secret_access_key) {
    conf.credentials = { accessKeyId: cfg.access_key_id.get(), secretAccessKey: cfg.secret_access_key.get(), sessionToken: cfg.session_token?.get() };
  }
  const client = new S3Client(conf);
  const prefix = manifestPrefix(cfg.key_format);
  const manifests: ManifestJson[] = [];
  const problems: string[] = [];
  try {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: cfg.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        const body = await getBody(client, cfg.bucket, o.Key);
        try {
          manifests.push((JSON.parse(body.bytes.toString('utf8')) as { ktrail_manifest: ManifestJson }).ktrail_manifest);
        } catch {
          problems.push(`${o.Key}: not a manifest (does not parse)`);
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } catch (err) {
    client.destroy();
    throw new Error(`cannot list s3://${cfg.bucket}/${prefix}: ${errorMessage(err)}`, { cause: err });
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
            got = await getBody(client, cfg.bucket, it.key);
          } catch (err) {
            if ((err as { name?: string }).name === 'NoSuchKey') {
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
        client.destroy();
      }
      index.prepare(entries);
    },
    find: (_e, _i, id, hash) => index.find(id, hash),
  };
}

async function getBody(client: S3Client, bucket: string, key: string): Promise<{ bytes: Buffer; etag: string | undefined }> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await res.Body!.transformToByteArray());
  return { bytes, etag: res.ETag };
}
