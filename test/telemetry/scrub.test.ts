import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Secret } from '../../src/config/secret.ts';
import { forgetSecrets, isSecretName, maskUrl, maskValue, rememberConfigSecrets, scrubText } from '../../src/telemetry/scrub.ts';

afterEach(() => forgetSecrets());

describe('scrub: what ktrail prints masks credentials', () => {
  it('masks URL userinfo and credential-like query parameters, keeps the rest', () => {
    expect(maskUrl('https://user:pa55@es.example:9200/x?a=1')).toBe('https://***@es.example:9200/x?a=1');
    expect(maskUrl('https://h/p?token=t1&tenant=a&X-Amz-Signature=abc&api_key=k&sig=s&password=p#frag')).toBe(
      'https://h/p?token=***&tenant=a&X-Amz-Signature=***&api_key=***&sig=***&password=***#frag',
    );
    expect(maskUrl('https://h/p?X-Amz-Credential=AKIA%2F&page=2')).toBe('https://h/p?X-Amz-Credential=***&page=2');
    expect(scrubText('connect failed: http://u:secretpw@10.0.0.1:80/a?signature=zz')).toBe('connect failed: http://***@10.0.0.1:80/a?signature=***');
  });

  it('recognises secret header and key names in any case, with hyphens or underscores', () => {
    for (const n of ['X-Api-Key', 'x_api_key', 'Authorization', 'PROXY-AUTHORIZATION', 'X-Auth-Token', 'Cookie', 'Set-Cookie', 'client_secret', 'password', 'hash_key'])
      expect(isSecretName(n), n).toBe(true);
    for (const n of ['Content-Type', 'url', 'username', 'token_file', 'key_prefix', 'idempotency_key', 'index']) expect(isSecretName(n), n).toBe(false);
  });

  it('maskValue masks secret-named values, Secret objects and URLs inside a config', () => {
    const cfg = {
      url: 'http://collector:pw-in-url@127.0.0.1:1/ingest?token=qt&tenant=a',
      headers: { 'X-Api-Key': 'hk-value', 'Content-Type': 'application/json' },
      auth: { username: 'elastic', password: new Secret({ value: 'inline-pw' }), bearer_token: new Secret({ file: '/run/token' }) },
    };
    expect(maskValue(cfg)).toEqual({
      url: 'http://***@127.0.0.1:1/ingest?token=***&tenant=a',
      headers: { 'X-Api-Key': '***', 'Content-Type': 'application/json' },
      auth: { username: 'elastic', password: '***', bearer_token: { file: '/run/token' } },
    });
  });

  it('every secret value read (inline, from a file, in a header or URL) is masked wherever it appears later', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-scrub-'));
    const file = path.join(dir, 'token');
    fs.writeFileSync(file, 'file-token-value\n');
    rememberConfigSecrets({ auth: { bearer_token: new Secret({ file }) }, headers: { 'X-Api-Key': 'header-value' }, url: 'http://u:url-password@h/?token=query-value' });
    const line = 'error: server said file-token-value header-value url-password query-value and plain words';
    expect(scrubText(line)).toBe('error: server said *** *** *** *** and plain words');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an inline secret is remembered when it is created; values shorter than 4 characters are not', () => {
    new Secret({ value: 'abc' });
    new Secret({ value: 'longer-secret' });
    expect(scrubText('abc longer-secret')).toBe('abc ***');
  });
});
