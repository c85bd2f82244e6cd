import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/**
 * The OTLP logs messages, from the official definitions vendored in
 * `proto/` (see its README: opentelemetry-proto v1.11.0, unmodified), loaded
 * with protobuf.js. protobuf.js builds an encoder and decoder per message type
 * from the definitions; nothing here writes wire format by hand.
 *
 * Encoding takes plain objects whose keys are the proto3 JSON (lowerCamelCase)
 * field names: the same object is both the input of `encode` and, through
 * JSON.stringify, an OTLP/JSON body (64-bit integers are decimal strings,
 * enums integers). Loaded once, on first use, so `ktrail check` does not pay
 * for it.
 */
export interface OtlpTypes {
  request: protobuf.Type;
  response: protobuf.Type;
  /** google.rpc.Status, the body of an OTLP/HTTP error answer (code and message; details are not read). */
  status: protobuf.Type;
}

const PROTO_DIR = fileURLToPath(new URL('./proto/', import.meta.url));

// google.rpc.Status is not part of opentelemetry-proto; its first two fields
// are what an error answer's message needs (googleapis google/rpc/status.proto).
const STATUS_PROTO = 'syntax = "proto3"; package google.rpc; message Status { int32 code = 1; string message = 2; }';

let types: OtlpTypes | undefined;

export function otlpTypes(): OtlpTypes {
  if (types) return types;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => `${PROTO_DIR}${target}`;
  root.loadSync('opentelemetry/proto/collector/logs/v1/logs_service.proto');
  protobuf.parse(STATUS_PROTO, root);
  root.resolveAll();
  types = {
    request: root.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest'),
    response: root.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse'),
    status: root.lookupType('google.rpc.Status'),
  };
  return types;
}
