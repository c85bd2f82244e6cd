import { z } from 'zod';

/**
 * TLS settings shared by the HTTP-based outputs (`tls:` in their config).
 * `HttpPool` (pool.ts) builds its connections from them.
 */
export const tlsSchema = z
  .strictObject({
    ca_file: z.string().min(1).optional().describe('PEM bundle of CAs to trust instead of the system ones; re-read when it changes.'),
    cert_file: z.string().min(1).optional().describe('PEM client certificate for mutual TLS (with key_file); re-read when it changes.'),
    key_file: z.string().min(1).optional().describe('PEM private key of cert_file.'),
    server_name: z.string().min(1).optional().describe("Name for SNI and the certificate check, when it differs from the URL's host."),
    insecure_skip_verify: z.boolean().default(false).describe('Do not verify the server certificate. For tests only; logged as a warning at start.'),
  })
  .refine((t) => (t.cert_file === undefined) === (t.key_file === undefined), {
    message: 'cert_file and key_file go together: set both (mutual TLS) or neither',
  })
  .describe('TLS settings for https:// URLs.');

export type TlsConfig = z.output<typeof tlsSchema>;
