// Accept negotiation for JSON and the metadata-only transform. A client asks for metadata with
// `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` on lists and
// `as=PartialObjectMetadata` on get and watch, usually followed by a plain `application/json`
// fallback. Ranges this server cannot produce (protobuf, YAML, Table) are skipped; when none is
// left the answer is 406, as from the real apiserver.
import { failureStatus, KubeApiError } from './status.ts';
import type { KubeObject, StoredObject } from './types.ts';

export type Representation = { kind: 'full' } | { kind: 'metadata'; version: string };

interface MediaRange {
  type: string;
  params: Map<string, string>;
  q: number;
}

function parseAccept(header: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const part of header.split(',')) {
    const [typePart, ...paramParts] = part.split(';');
    const type = (typePart ?? '').trim().toLowerCase();
    if (type === '') continue;
    const params = new Map<string, string>();
    let q = 1;
    for (const p of paramParts) {
      const eq = p.indexOf('=');
      if (eq < 0) continue;
      const key = p.slice(0, eq).trim().toLowerCase();
      const value = p.slice(eq + 1).trim().replace(/^"|"$/g, '');
      if (key === 'q') q = Number(value);
      else params.set(key, value);
    }
    if (q > 0) ranges.push({ type, params, q });
  }
  // Stable sort: equal q keeps the client's order.
  return ranges.map((r, i) => ({ r, i })).sort((a, b) => b.r.q - a.r.q || a.i - b.i).map(({ r }) => r);
}

const jsonTypes = new Set(['application/json', 'application/*', '*/*']);

/**
 * @param metadataKind `PartialObjectMetadataList` for list requests, `PartialObjectMetadata`
 *   for get and watch.
 */
export function negotiate(acceptHeader: string | undefined, metadataKind: 'PartialObjectMetadata' | 'PartialObjectMetadataList'): Representation {
  if (acceptHeader === undefined || acceptHeader.trim() === '') return { kind: 'full' };
  for (const range of parseAccept(acceptHeader)) {
    if (!jsonTypes.has(range.type)) continue;
    const as = range.params.get('as');
    if (as === undefined) return { kind: 'full' };
    const group = range.params.get('g');
    const version = range.params.get('v') ?? '';
    if (as === metadataKind && group === 'meta.k8s.io' && (version === 'v1' || version === 'v1beta1')) {
      return { kind: 'metadata', version };
    }
  }
  throw new KubeApiError(
    failureStatus(406, 'NotAcceptable', 'only the following media types are accepted: application/json, application/json;stream=watch'),
  );
}

export function contentTypeFor(rep: Representation, kind: 'PartialObjectMetadata' | 'PartialObjectMetadataList'): string {
  return rep.kind === 'full' ? 'application/json' : `application/json;as=${kind};g=meta.k8s.io;v=${rep.version}`;
}

export function toPartialObjectMetadata(obj: StoredObject | KubeObject, version: string): KubeObject {
  return { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${version}`, metadata: obj.metadata ?? {} };
}
