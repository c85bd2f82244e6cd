// One watch stream: newline-delimited JSON watch events over a chunked 200 response.
// Start semantics follow the apiserver:
// - resourceVersion unset or "0": synthetic ADDED for every current object, then changes;
// - resourceVersion=X: every change after X, exactly once and in order; X older than the kept
//   history gives one ERROR event carrying a 410 Expired Status, then the stream ends;
// - sendInitialEvents=true (watch-list): ADDED for the current objects, then a BOOKMARK
//   annotated k8s.io/initial-events-end, then changes.
// Selectors are applied to both sides of a change, so an object leaving the selection is
// reported as DELETED and one entering it as ADDED, like the watch cache does.
import type { ServerResponse } from 'node:http';
import type { Matcher } from './api.ts';
import { contentTypeFor, type Representation, toPartialObjectMetadata } from './content.ts';
import { apiVersionOf, type ResourceView } from './resources.ts';
import { failureStatus } from './status.ts';
import type { Change, ObjectStore } from './store.ts';
import type { KubeObject, StoredObject, WatchEvent, WatchEventType } from './types.ts';

export interface WatchParams {
  view: ResourceView;
  matcher: Matcher;
  representation: Representation;
  /** Parsed resourceVersion; undefined when unset or "0". */
  fromRv: number | undefined;
  sendInitialEvents: boolean | undefined;
  allowBookmarks: boolean;
  timeoutMs: number;
  bookmarkIntervalMs: number;
}

function withRv(obj: StoredObject, rv: number): StoredObject {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
}

export class WatchStream {
  readonly #res: ServerResponse;
  readonly #store: ObjectStore;
  readonly #params: WatchParams;
  readonly #onClose: (stream: WatchStream) => void;
  readonly #timers: NodeJS.Timeout[] = [];
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  constructor(res: ServerResponse, store: ObjectStore, params: WatchParams, onClose: (stream: WatchStream) => void) {
    this.#res = res;
    this.#store = store;
    this.#params = params;
    this.#onClose = onClose;
    res.on('close', () => this.#cleanup());
  }

  start(): void {
    const { view, matcher, fromRv, sendInitialEvents, allowBookmarks } = this.#params;
    this.#res.writeHead(200, {
      'Content-Type': contentTypeFor(this.#params.representation, 'PartialObjectMetadata'),
      'Cache-Control': 'no-cache, private',
    });
    this.#res.flushHeaders();

    const store = this.#store;
    if (fromRv !== undefined && sendInitialEvents !== true) {
      if (fromRv < store.compactedRv) {
        this.#sendEvent('ERROR', failureStatus(410, 'Expired', `too old resource version: ${fromRv} (${store.compactedRv + 1})`));
        this.end();
        return;
      }
      for (const change of store.changesAfter(fromRv)) this.#onChange(change);
    } else if (sendInitialEvents !== false) {
      for (const obj of store.current(view.resource)) {
        if (matcher(obj)) this.#sendEvent('ADDED', this.#toWire(obj));
      }
      if (sendInitialEvents === true) this.#sendBookmark({ 'k8s.io/initial-events-end': 'true' });
    }
    // Subscribing in the same tick as the replay leaves no gap: writes are synchronous.
    this.#unsubscribe = store.subscribe((change) => this.#onChange(change));

    this.#timers.push(
      setTimeout(() => {
        // The apiserver sends a last bookmark before closing on timeout, so the client can resume.
        if (allowBookmarks) this.#sendBookmark();
        this.end();
      }, this.#params.timeoutMs),
    );
    if (allowBookmarks) {
      this.#timers.push(setInterval(() => this.#sendBookmark(), this.#params.bookmarkIntervalMs));
    }
  }

  /** Ends the stream cleanly, as a server-side timeout does. */
  end(): void {
    if (!this.#res.writableEnded) this.#res.end();
    this.#cleanup();
  }

  /** Drops the connection without a proper end, as an apiserver that dies does. */
  destroy(): void {
    this.#res.socket?.destroy();
    this.#cleanup();
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#unsubscribe?.();
    this.#onClose(this);
  }

  #onChange(change: Change): void {
    const { view, matcher } = this.#params;
    if (this.#closed || change.resource !== view.resource) return;
    const curPasses = change.type !== 'DELETED' && matcher(change.object);
    const prevPasses = change.prev !== undefined && matcher(change.prev);
    if (change.type === 'DELETED') {
      if (prevPasses) this.#sendEvent('DELETED', this.#toWire(change.object));
    } else if (curPasses && prevPasses) {
      this.#sendEvent('MODIFIED', this.#toWire(change.object));
    } else if (curPasses) {
      this.#sendEvent('ADDED', this.#toWire(change.object));
    } else if (prevPasses && change.prev !== undefined) {
      this.#sendEvent('DELETED', this.#toWire(withRv(change.prev, change.rv)));
    }
  }

  #toWire(obj: StoredObject): KubeObject {
    const rep = this.#params.representation;
    return rep.kind === 'metadata' ? toPartialObjectMetadata(obj, rep.version) : this.#params.view.toApi(obj);
  }

  #sendBookmark(annotations?: Record<string, string>): void {
    const rep = this.#params.representation;
    const metadata: Record<string, unknown> = { resourceVersion: String(this.#store.currentRv) };
    if (annotations) metadata.annotations = annotations;
    const typeMeta =
      rep.kind === 'metadata'
        ? { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${rep.version}` }
        : { kind: this.#params.view.kind, apiVersion: apiVersionOf(this.#params.view) };
    this.#sendEvent('BOOKMARK', { ...typeMeta, metadata });
  }

  #sendEvent(type: WatchEventType, object: KubeObject): void {
    if (this.#closed || this.#res.writableEnded || this.#res.destroyed) return;
    const event: WatchEvent = { type, object };
    this.#res.write(`${JSON.stringify(event)}\n`);
  }
}
