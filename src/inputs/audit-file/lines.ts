import { LogRecord } from '../../pipeline/record.ts';
import type { InputDeadLetter } from '../../plugin.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { AuditFileConfig } from './config.ts';
import { contentId, fingerprintOf, FINGERPRINT_MAX_BYTES } from './identity.ts';
import { isBlank, parseAuditLine, sniffOversize } from './parse.ts';
import type { LineHandler, OversizeLine } from './reader.ts';
import type { TrackedFile } from './tracker.ts';
import { auditFileEvent } from './telemetry.ts';

/**
 * What one read chunk of a file became: every complete line is a record, a
 * dead letter, or (blank lines only) skipped. The counts feed the input's
 * metrics once the chunk is committed.
 */
export interface Batch {
  records: LogRecord[];
  deadLetters: InputDeadLetter[];
  lines: number;
  invalid: number;
  oversize: number;
}

export function newBatch(): Batch {
  return { records: [], deadLetters: [], lines: 0, invalid: 0, oversize: 0 };
}

type LineConfig = Pick<AuditFileConfig, 'on_parse_error' | 'on_oversize' | 'max_line_bytes'>;

/**
 * Turns the lines the splitter finds in `f` into `batch`. A line that is not
 * an audit event gets an id from the file's content identity and its offset,
 * the same on every replay; it is passed on marked unparsed (`pass_raw`, for
 * redact to judge) or dead-lettered with its bytes as read.
 */
export function lineHandler(f: TrackedFile, batch: Batch, input: string, cfg: LineConfig, log: Logger): LineHandler {
  const nowMs = Date.now();
  const fileRef = () => (f.fp ? contentId(f.fp) : f.id);
  return {
    line: (buf, start, end, offset) => {
      batch.lines++;
      if (offset === 0 && f.fp === undefined) {
        f.fp = fingerprintOf(buf.subarray(start, Math.min(end + 1, buf.length, start + FINGERPRINT_MAX_BYTES)));
      }
      let e = end;
      if (e > start && buf[e - 1] === 0x0d) e--;
      const text = buf.toString('utf8', start, e);
      if (isBlank(text)) return;
      const p = parseAuditLine(text, nowMs);
      if (p.ok) {
        batch.records.push(new LogRecord({ id: p.id, timeMs: p.timeMs, input, raw: text, doc: p.doc }));
        return;
      }
      batch.invalid++;
      const id = `${fileRef()}:${offset}`;
      if (cfg.on_parse_error === 'pass_raw') {
        // Marked unparsed: redact decides whether it may leave as it is.
        const doc = { message: text, ktrail_parse_error: p.error };
        batch.records.push(new LogRecord({ id, timeMs: nowMs, input, raw: JSON.stringify(doc), doc, unparsed: { text, partial: false } }));
      } else {
        // The bytes as read (binary junk included), not the decoded text.
        batch.deadLetters.push({
          code: 'parse_error',
          reason: `parse_error: ${p.error} (${f.path} offset ${offset})`,
          data: Buffer.from(buf.subarray(start, e)),
          recordId: id,
          source: { file: f.path, offset, length: end - start },
        });
      }
    },
    oversize: (o: OversizeLine) => {
      batch.lines++;
      batch.oversize++;
      if (o.offset === 0 && f.fp === undefined) f.fp = fingerprintOf(o.head);
      const head = o.head.toString('utf8');
      const sniffed = sniffOversize(head, o.tail.toString('utf8'));
      const id = sniffed.id ?? `${fileRef()}:${o.offset}`;
      const reason = `oversize: line of ${o.bytes} bytes exceeds max_line_bytes ${cfg.max_line_bytes} (${f.path} offset ${o.offset}); data holds its first ${o.head.length} bytes`;
      if (cfg.on_oversize === 'truncate') {
        const doc = {
          message: head,
          ktrail_truncated: { original_bytes: o.bytes, kept_bytes: o.head.length, max_line_bytes: cfg.max_line_bytes },
          ...(sniffed.id !== undefined ? { auditID: sniffed.id.slice(0, sniffed.id.lastIndexOf(':')), stage: sniffed.id.slice(sniffed.id.lastIndexOf(':') + 1) } : {}),
        };
        batch.records.push(new LogRecord({ id, timeMs: sniffed.timeMs ?? nowMs, input, raw: JSON.stringify(doc), doc, unparsed: { text: head, partial: true } }));
        log.warn({ event: auditFileEvent.oversize_truncated, file: f.path, offset: o.offset, bytes: o.bytes, maxLineBytes: cfg.max_line_bytes, action: cfg.on_oversize, id }, 'oversize audit line');
      } else {
        // Logged (rate-limited) with every other dead letter by the pipeline.
        batch.deadLetters.push({ code: 'oversize', reason, data: o.head, partial: true, recordId: id, source: { file: f.path, offset: o.offset, length: o.bytes } });
      }
    },
  };
}
