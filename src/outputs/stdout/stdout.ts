import { z } from 'zod';
import type { OutboundRequest, Output, OutputPlugin, SendOutcome } from '../../plugin.ts';

/** Writes records as NDJSON to standard output, for local runs and debugging. */
const schema = z.strictObject({});

class StdoutOutput implements Output {
  async send(request: OutboundRequest, signal: AbortSignal): Promise<SendOutcome> {
    let text = '';
    for (const r of request.records) text += `${r.json}\n`;
    if (signal.aborted) return { kind: 'retryable', code: 'aborted', detail: 'aborted' };
    await new Promise<void>((resolve, reject) => {
      process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
    });
    return { kind: 'ok' };
  }
}

export const stdoutOutput: OutputPlugin<typeof schema> = {
  kind: 'output',
  type: 'stdout',
  description: 'NDJSON on standard output.',
  schema,
  delivery: { batch: { flush_interval: 200, max_bytes: 256 * 1024 } },
  create: () => new StdoutOutput(),
  probe: async () => [{ target: 'standard output', ok: true, detail: 'no connection needed' }],
};
