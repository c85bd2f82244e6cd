import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/**
 * `/metrics` (Prometheus text format), `/healthz` (liveness: the process
 * answers) and `/readyz` (readiness: inputs, spool and outputs are healthy;
 * 503 with the failing checks otherwise).
 */
export interface TelemetryServerOptions {
  listen: string;
  registry: Registry;
  readiness: () => { ready: boolean; checks: Record<string, { ok: boolean; detail?: string }> };
}

export class TelemetryServer {
  readonly #server: http.Server;
  readonly #opts: TelemetryServerOptions;

  constructor(opts: TelemetryServerOptions) {
    this.#opts = opts;
    this.#server = http.createServer((req, res) => {
      void this.#handle(req, res);
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (url === '/metrics') {
        const body = await this.#opts.registry.metrics();
        res.writeHead(200, { 'content-type': this.#opts.registry.contentType }).end(body);
      } else if (url === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (url === '/readyz') {
        const r = this.#opts.readiness();
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(r)}\n`);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
      }
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
    }
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(): Promise<AddressInfo> {
    const idx = this.#opts.listen.lastIndexOf(':');
    const host = this.#opts.listen.slice(0, idx).replace(/^\[|\]$/g, '');
    const port = Number(this.#opts.listen.slice(idx + 1));
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve(this.#server.address() as AddressInfo));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}
