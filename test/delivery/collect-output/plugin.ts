import { z } from 'zod';
import { destinationCode } from '../../../src/delivery/outcome.ts';
import type { OutboundRequest, Output, OutputPlugin, SendOutcome } from '../../../src/plugin.ts';

/**
 * A whole output in one folder, written against the public contract only
 * (src/plugin.ts): it encodes nothing and keeps what it is sent. Its
 * behaviour is scripted by the test: the first `fail_first` sends fail
 * retryably, and records whose id is in `reject` are refused for good.
 */
const schema = z.strictObject({
  fail_first: z.number().int().min(0).default(0).describe('Sends that fail (retryable) before any succeeds.'),
  reject: z.array(z.string()).default([]).describe('Record ids refused for good.'),
});

export interface Collected {
  requests: Array<{ key: string; attempt: number; ids: string[] }>;
  delivered: string[];
}

export function collectOutput(into: Collected): OutputPlugin<typeof schema> {
  return {
    kind: 'output',
    type: 'test_collect',
    description: 'Keeps what it is sent (tests only).',
    schema,
    create: (cfg): Output => {
      let sends = 0;
      return {
        send: async (request: OutboundRequest): Promise<SendOutcome> => {
          sends++;
          into.requests.push({ key: request.key, attempt: request.attempt, ids: request.records.map((r) => r.id) });
          if (sends <= cfg.fail_first) return { kind: 'retryable', code: 'http_503', detail: 'HTTP 503: scripted outage' };
          const failures = request.records.flatMap((r, index) => (cfg.reject.includes(r.id) ? [{ index, kind: 'permanent' as const, code: destinationCode('rejected'), detail: 'rejected: scripted refusal' }] : []));
          for (const [i, r] of request.records.entries()) if (!failures.some((f) => f.index === i)) into.delivered.push(r.id);
          return failures.length > 0 ? { kind: 'partial', failures } : { kind: 'ok' };
        },
      };
    },
  };
}
