import { describe, expect, it } from 'vitest';
import { msToNanos, recordTimeMs, recordTimestamp, unixNanos } from '../../src/delivery/record-time.ts';

const r = (doc: object, timeMs = 5000) => ({ id: 'x', timeMs, input: 'i', json: JSON.stringify(doc) });

describe('record-time: the event time outputs with a time field use (splunk_hec, otlp_http)', () => {
  it('audit: stageTimestamp, else requestReceivedTimestamp — never a timestamp inside the request object', () => {
    const requestObject = { kind: 'Event', lastTimestamp: '2020-01-01T00:00:00Z', metadata: { creationTimestamp: '2020-01-01T00:00:00Z' } };
    expect(recordTimestamp(r({ auditID: 'a', requestObject, requestReceivedTimestamp: '2026-01-01T00:00:00.1Z', stageTimestamp: '2026-01-01T00:00:00.2Z' }))).toBe('2026-01-01T00:00:00.2Z');
    expect(recordTimestamp(r({ auditID: 'a', requestObject, requestReceivedTimestamp: '2026-01-01T00:00:00.1Z' }))).toBe('2026-01-01T00:00:00.1Z');
  });

  it('audit: a custom resource with its own stageTimestamp field (before the event\'s, as the apiserver writes it) does not set the time', () => {
    const forged = { apiVersion: 'x.io/v1', kind: 'Thing', stageTimestamp: '2001-01-01T00:00:00Z', requestReceivedTimestamp: '2001-01-01T00:00:00Z' };
    const doc = { auditID: 'a', requestObject: forged, responseObject: forged, requestReceivedTimestamp: '2026-01-01T00:00:00.1Z', stageTimestamp: '2026-01-01T00:00:00.2Z', annotations: { 'x/stageTimestamp': '2001-01-01T00:00:00Z' } };
    expect(recordTimestamp(r(doc))).toBe('2026-01-01T00:00:00.2Z');
  });

  it('Events: lastTimestamp, else eventTime (a null one falls through), else metadata.creationTimestamp, else the record time', () => {
    expect(recordTimestamp(r({ metadata: { creationTimestamp: '2026-01-01T00:00:01Z' }, lastTimestamp: '2026-01-01T00:00:03Z', eventTime: null }))).toBe('2026-01-01T00:00:03Z');
    expect(recordTimestamp(r({ metadata: { creationTimestamp: '2026-01-01T00:00:01Z' }, eventTime: '2026-01-01T00:00:02.000001Z' }))).toBe('2026-01-01T00:00:02.000001Z');
    expect(recordTimestamp(r({ metadata: { creationTimestamp: '2026-01-01T00:00:01Z' }, lastTimestamp: null, eventTime: null }))).toBe('2026-01-01T00:00:01Z');
    expect(recordTimestamp(r({ lastTimestamp: 'not a time' }))).toBeUndefined();
    expect(recordTimeMs(r({ other: 1 }, 7000))).toBe(7000);
    expect(recordTimeMs(r({ lastTimestamp: '2026-01-01T00:00:03Z' }))).toBe(Date.parse('2026-01-01T00:00:03Z'));
  });

  it('unix nanoseconds are exact to the digits given, with offsets; ms convert by appending zeros', () => {
    expect(unixNanos('2026-12-07T10:00:00.123456789Z')).toBe('1796637600123456789');
    expect(unixNanos('2026-12-07T10:00:00.000001Z')).toBe('1796637600000001000');
    expect(unixNanos('2026-12-07T12:00:00.5+02:00')).toBe('1796637600500000000');
    expect(unixNanos('2026-12-07T10:00:00Z')).toBe('1796637600000000000');
    expect(unixNanos('2026-12-07 10:00:00')).toBeUndefined();
    expect(unixNanos('1969-12-31T23:59:59Z')).toBeUndefined();
    expect(msToNanos(1796637600123)).toBe('1796637600123000000');
    expect(msToNanos(0)).toBe('0');
  });
});
