import fs from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KubeApiError, KubeClient } from '../../src/kube/client.ts';
import { kubeconfigWarnings, loadKubeConnection } from '../../src/kube/config.ts';
import { KubeApiServer } from '../helpers/kube-api-server.ts';
import { writeKubeconfig } from '../helpers/kubeconfig.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function dir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ktrail-kubeconfig-'));
  cleanups.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function kubeconfig(d: string, server: string, user: string[], cluster: string[] = []): string {
  return writeKubeconfig(d, server, { user, cluster, fileName: 'config' });
}

async function emulation(token: string): Promise<KubeApiServer> {
  const kube = await KubeApiServer.start({ token });
  cleanups.push(() => kube.close());
  kube.addNamespace('shop');
  return kube;
}

async function listPods(file: string): Promise<number> {
  const client = new KubeClient(loadKubeConnection({ kubeconfig: file }), { requestTimeoutMs: 5000 });
  cleanups.push(() => client.close());
  try {
    await client.request({ path: '/api/v1/namespaces/shop/pods' });
    return 200;
  } catch (err) {
    if (err instanceof KubeApiError) return err.statusCode;
    throw err;
  }
}

describe('kubeconfig spellings kubectl accepts', () => {
  it("kubectl's tokenFile sends the token (a relative path is relative to the kubeconfig), and so does client-node's token-file", async () => {
    const kube = await emulation('file-token');
    const d = dir();
    fs.writeFileSync(path.join(d, 'token'), 'file-token\n');
    expect(await listPods(kubeconfig(d, kube.url, ['tokenFile: token']))).toBe(200);
    expect(await listPods(kubeconfig(d, kube.url, [`token-file: ${path.join(d, 'token')}`]))).toBe(200);
    // Without a token the emulation answers 401: the 200s above came from the file.
    expect(await listPods(kubeconfig(d, kube.url, []))).toBe(401);
    expect(loadKubeConnection({ kubeconfig: path.join(d, 'config') }).warnings).toEqual([]);
  });

  it('tokenFile is re-read when the file changes (rotated tokens)', async () => {
    const kube = await emulation('first');
    const d = dir();
    fs.writeFileSync(path.join(d, 'token'), 'first');
    const client = new KubeClient(loadKubeConnection({ kubeconfig: kubeconfig(d, kube.url, [`tokenFile: ${path.join(d, 'token')}`]) }));
    cleanups.push(() => client.close());
    await client.request({ path: '/api/v1/namespaces/shop/pods' });
    fs.writeFileSync(path.join(d, 'token'), 'second-but-longer');
    kube.setToken('second-but-longer');
    await expect(client.request({ path: '/api/v1/namespaces/shop/pods' })).resolves.toBeDefined();
  });

  it('as, as-uid, as-groups and as-user-extra become Impersonate-* headers', async () => {
    const seen: http.IncomingHttpHeaders[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers);
      res.setHeader('content-type', 'application/json');
      res.end('{"major":"1","minor":"31"}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const file = kubeconfig(dir(), url, [
      'token: t',
      'as: jane',
      'as-uid: "42"',
      'as-groups: [devs, ops]',
      'as-user-extra: { scopes: [view, edit], "example.com/team": [payments] }',
    ]);
    const client = new KubeClient(loadKubeConnection({ kubeconfig: file }));
    cleanups.push(() => client.close());
    await client.request({ path: '/version' });
    expect(seen[0]).toMatchObject({
      authorization: 'Bearer t',
      'impersonate-user': 'jane',
      'impersonate-uid': '42',
      'impersonate-group': 'devs, ops',
      'impersonate-extra-scopes': 'view, edit',
      'impersonate-extra-example.com%2fteam': 'payments',
    });
  });

  it('proxy-url: requests go through the proxy, with the token', async () => {
    const kube = await emulation('via-proxy');
    const tunnels: string[] = [];
    // A forward proxy: absolute-form requests (plain http targets) are forwarded, CONNECT is tunnelled.
    const proxy = http.createServer((req, res) => {
      tunnels.push(`${req.method} ${req.url}`);
      const up = http.request(req.url ?? '', { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      req.pipe(up);
    });
    proxy.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      tunnels.push(`CONNECT ${req.url}`);
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      proxy.closeAllConnections();
      return new Promise((r) => proxy.close(r));
    });
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const file = kubeconfig(dir(), kube.url, ['token: via-proxy'], [`proxy-url: ${proxyUrl}`]);
    expect(await listPods(file)).toBe(200);
    expect(tunnels).toEqual([`GET ${kube.url}/api/v1/namespaces/shop/pods`]);
  });

  it('every key kubectl knows is accepted silently; unknown keys and missing files are warnings with their path', () => {
    const d = dir();
    fs.writeFileSync(path.join(d, 'ca.crt'), '');
    const quiet = kubeconfig(
      d,
      'https://api.example:6443',
      [
        'token: t',
        'tokenFile: /dev/null',
        'as: a',
        'as-uid: u',
        'as-groups: [g]',
        'as-user-extra: { k: [v] }',
        'extensions: [{ name: x, extension: {} }]',
      ],
      ['tls-server-name: api', 'insecure-skip-tls-verify: false', 'certificate-authority: ca.crt', 'proxy-url: http://proxy:3128', 'disable-compression: true'],
    );
    expect(loadKubeConnection({ kubeconfig: quiet }).warnings).toEqual([]);

    const noisy = kubeconfig(d, 'https://api.example:6443', ['tokn: t', 'tokenFile: missing-token', 'client-certificate: nope.crt', 'client-key-data: a2V5'], ['certificate-authority: missing-ca.crt', 'servr: x']);
    expect(kubeconfigWarnings({ kubeconfig: noisy })).toEqual([
      `kubeconfig ${noisy}: clusters[0].cluster.servr: unknown key "servr" (of "emu"), ignored; did you mean "server"?`,
      `kubeconfig ${noisy}: users[0].user.tokn: unknown key "tokn" (of "collector"), ignored; did you mean "token"?`,
      `kubeconfig ${noisy}: clusters[0].cluster.certificate-authority: file ${path.join(d, 'missing-ca.crt')} does not exist`,
      `kubeconfig ${noisy}: users[0].user.client-certificate: file ${path.join(d, 'nope.crt')} does not exist`,
      `kubeconfig ${noisy}: users[0].user.tokenFile: token file ${path.join(d, 'missing-token')} does not exist`,
    ]);
    // At start the missing CA stops the connection, with the key that names it.
    expect(() => loadKubeConnection({ kubeconfig: noisy })).toThrow(/certificate-authority file .*missing-ca\.crt/);
  });
});
