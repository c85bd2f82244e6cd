import { Secret } from '../config/secret.ts';

const SECRET_KEY = /(pass(word)?|secret|token|api_?key|credential|authorization|private_?key|session)/i;

/** A deep copy of a validated config that is safe to print: secrets become "***". */
export function maskSecrets(value: unknown, key = ''): unknown {
  if (value instanceof Secret) return value.toJSON();
  if (Array.isArray(value)) return value.map((v) => maskSecrets(v, key));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = maskSecrets(v, k);
    return out;
  }
  if (typeof value === 'string' && SECRET_KEY.test(key) && !/_file$|_path$/.test(key) && value !== '') return '***';
  return value;
}
