import { z } from 'zod';
import { duration } from '../config/units.ts';

/** The `manifest` section: the completeness chain and its seals (docs/verify.md). */
export const manifestSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe('Keep the completeness chain (one entry per spool batch and per gap, in the state database) and seal it into every output, so that `ktrail verify` can prove what reached each destination.'),
    seal_interval: duration({ minMs: 1000 })
      .default(300_000)
      .describe('How often the chain is sealed into the outputs (also at shutdown): one manifest per output covering the entries whose batches it acknowledged.'),
    hmac_key_file: z
      .string()
      .min(1)
      .optional()
      .describe('File holding a secret key: every entry and manifest then also carries an HMAC-SHA256, which `ktrail verify --hmac-key-file` checks. The key is never logged or printed.'),
    audit_policy_file: z
      .string()
      .min(1)
      .optional()
      .describe("The kube-apiserver's --audit-policy-file, when readable here: its SHA-256 is recorded in the chain at start and whenever it changes."),
    retain_sealed: duration()
      .default(86_400_000)
      .describe('Entries sealed into every output are pruned from the state database after this long (the last pruned hash is kept, so the rest still verifies).'),
  })
  .prefault({});

export type ManifestConfig = z.output<typeof manifestSchema>;
