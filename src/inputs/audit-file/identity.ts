import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';

/**
 * File identity. A file is tracked by `(dev, inode)` plus a fingerprint of its
 * first bytes, never by path: lumberjack renames the active file, compression
 * makes a new inode with the same content, and inodes are reused after delete.
 *
 * The fingerprint covers bytes that can no longer change in an append-only
 * file: the first line (through its newline) capped at FINGERPRINT_MAX_BYTES.
 * Until the file holds a complete first line or that many bytes, it has no
 * fingerprint yet ("pending") — and nothing could have been read from it, so
 * nothing depends on it. Once known, a fingerprint never changes while the
 * content is the same, so it also works for a file that was shorter than the
 * cap when first seen and grew later, and for the decompressed stream of a
 * `.gz` backup.
 */
export const FINGERPRINT_MAX_BYTES = 256;

export interface Fingerprint {
  /** Hex SHA-256 (first 32 hex digits) of the first `length` bytes. */
  hash: string;
  length: number;
}

/** The fingerprint of a file whose first bytes are `head`, or undefined while pending. */
export function fingerprintOf(head: Buffer): Fingerprint | undefined {
  const nl = head.indexOf(0x0a);
  let length: number;
  if (nl !== -1 && nl < FINGERPRINT_MAX_BYTES) length = nl + 1;
  else if (head.length >= FINGERPRINT_MAX_BYTES) length = FINGERPRINT_MAX_BYTES;
  else return undefined;
  const hash = createHash('sha256').update(head.subarray(0, length)).digest('hex').slice(0, 32);
  return { hash, length };
}

/** True when `head` (the file's current first bytes) still carries `fp`. */
export function headMatches(head: Buffer, fp: Fingerprint): boolean {
  if (head.length < fp.length) return false;
  return createHash('sha256').update(head.subarray(0, fp.length)).digest('hex').slice(0, 32) === fp.hash;
}

/** Short stable id of a file's content, for record ids of lines without an auditID. */
export function contentId(fp: Fingerprint): string {
  return fp.hash.slice(0, 16);
}

/** Reads up to `bytes` from the start of an open file. */
export async function readHead(fh: fsp.FileHandle, bytes = FINGERPRINT_MAX_BYTES): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(bytes);
  let filled = 0;
  while (filled < bytes) {
    const { bytesRead } = await fh.read(buf, filled, bytes - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buf.subarray(0, filled);
}

/**
 * The first decompressed bytes of a gzip file. Works on a file that is still
 * being written (a partial stream decompresses as far as it goes), so a `.gz`
 * that lumberjack is producing is recognised as soon as its head is there.
 */
export async function readGzipHead(fh: fsp.FileHandle, bytes = FINGERPRINT_MAX_BYTES): Promise<Buffer> {
  // JSON compresses about 10:1; 16 KiB of input nearly always covers the head.
  for (let inputBytes = 16 * 1024; ; inputBytes *= 4) {
    const raw = await readHead(fh, inputBytes);
    if (raw.length < 2) return Buffer.alloc(0);
    if (raw[0] !== 0x1f || raw[1] !== 0x8b) throw new Error('not a gzip file (bad magic bytes)');
    let out: Buffer;
    try {
      out = zlib.gunzipSync(raw, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch {
      // The header itself is not complete yet.
      out = Buffer.alloc(0);
    }
    if (out.length >= bytes || out.indexOf(0x0a) !== -1 || raw.length < inputBytes || inputBytes >= 4 * 1024 * 1024) {
      return out.subarray(0, bytes);
    }
  }
}

/**
 * The decompressed size recorded in a gzip trailer (ISIZE, modulo 2^32) of a
 * file of `size` bytes. Lumberjack writes one gzip member per backup, so this
 * is the size of the original file for backups under 4 GiB.
 */
export async function readGzipSize(fh: fsp.FileHandle, size: number): Promise<number | undefined> {
  if (size < 18) return undefined;
  const buf = Buffer.alloc(4);
  const { bytesRead } = await fh.read(buf, 0, 4, size - 4);
  return bytesRead === 4 ? buf.readUInt32LE(0) : undefined;
}

export function isCompressedName(file: string): boolean {
  return file.endsWith('.gz');
}

/** `2006-01-02T15-04-05.000`, the layout lumberjack names backups with (UTC). */
const BACKUP_RE = /^(.+)-(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{3})(\.[^.]*)?$/;

export interface StreamPlace {
  /** Files of one stream share this key: the active file's path. */
  streamKey: string;
  /** Position inside the stream: the backup time (ms) for backups, +Infinity for the active file. */
  orderKey: number;
  /** True for a lumberjack backup name (plain or `.gz`). */
  isBackup: boolean;
}

/**
 * Where a file belongs: `audit-2024-05-01T10-00-00.000.log[.gz]` is a backup
 * of `audit.log` rotated at that time; any other name is an active file of
 * its own stream.
 */
export function streamPlace(file: string): StreamPlace {
  const dir = path.dirname(file);
  const base = path.basename(file);
  const plain = isCompressedName(base) ? base.slice(0, -3) : base;
  const m = BACKUP_RE.exec(plain);
  if (m) {
    const [, prefix, y, mo, d, h, mi, s, ms, ext] = m;
    const t = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), Number(ms));
    if (Number.isFinite(t)) return { streamKey: path.join(dir, `${prefix}${ext ?? ''}`), orderKey: t, isBackup: true };
  }
  return { streamKey: file, orderKey: Number.POSITIVE_INFINITY, isBackup: false };
}
