// OpenTelemetry for the sidecar: a trace per request with a span per step, and
// metrics served in Prometheus format on the admin port (OTEL_METRICS_EXPORTER
// and OTEL_LOGS_EXPORTER are not used). Trace exporters and sampling come from
// the standard OTEL_* variables; traces go nowhere unless OTEL_TRACES_EXPORTER
// names an exporter (and OTEL_SDK_DISABLED is not true).
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type Attributes,
  type Counter,
  type Histogram,
  metrics,
  type ObservableResult,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import {
  defaultResource,
  detectResources,
  envDetector,
  type Resource,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { MaskingAction } from '@veil/core';
import type { PolicyStore } from './policy/store.ts';

export type LabelledSample = { value: number; attributes: Attributes };

export interface Telemetry {
  span<T>(name: string, work: () => T): T;
  requestDone(
    api: string,
    outcome: string,
    masking: readonly MaskingAction[],
    upstreamMs: number | undefined,
  ): void;
  /** The time one request spent being put on record, its answer held until the record was safe. */
  recordingDone(ms: number): void;
  /**
   * Registers a gauge read at scrape time (spool depth and the like). The meter is
   * shared by every sidecar of the process: a sidecar that closes stops its reading
   * with the function returned. The exporter still shows the last value read until
   * another sidecar registers the same gauge.
   */
  gauge(name: string, description: string, read: () => number): () => void;
  /** Like `gauge`, with a sample for each set of attributes `read` gives. */
  labelledGauge(name: string, description: string, read: () => readonly LabelledSample[]): () => void;
  serveMetrics(request: IncomingMessage, response: ServerResponse): void;
}

type Providers = {
  exporter: PrometheusExporter;
  tracing: boolean;
  /** The Node SDK when traces are exported: shut down last, so the spans it still holds go out. */
  nodeSdk?: { shutdown(): Promise<void> };
};

let sdk: Providers | undefined;

/** Metrics are served here only; an OTLP metrics exporter asked for would be silently missing. */
const servedMetricsExporters = new Set(['', 'prometheus', 'none']);

/**
 * The service's resource below what the environment says: the SDK's defaults,
 * then veil-sidecar as the service name, so OTEL_SERVICE_NAME and
 * OTEL_RESOURCE_ATTRIBUTES name it with traces on or off alike.
 */
function baseResource(): Resource {
  return defaultResource().merge(resourceFromAttributes({ 'service.name': 'veil-sidecar' }));
}

// The providers are process-global: start them once, however many sidecars a
// process (a test, `veil dev`) runs. The full Node SDK, with its exporters, is
// loaded only when traces are exported: it costs tens of MiB that a sidecar
// serving only Prometheus metrics does not need.
async function startSdk(log: (message: string) => void): Promise<Providers> {
  if (sdk) return sdk;
  warnUnusedMetricsExporter(log);
  const traces = process.env.OTEL_TRACES_EXPORTER;
  // The Node SDK, disabled, registers no metric reader either: /metrics would be empty.
  const disabled = process.env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';
  const tracing = !disabled && traces !== undefined && traces !== '' && traces !== 'none';
  const exporter = new PrometheusExporter({ preventServerStart: true });
  if (tracing) {
    process.env.OTEL_LOGS_EXPORTER ??= 'none';
    process.env.OTEL_METRICS_EXPORTER ??= 'none';
    const { NodeSDK } = await import('@opentelemetry/sdk-node');
    // No serviceName: the SDK would put it above OTEL_RESOURCE_ATTRIBUTES.
    const nodeSdk = new NodeSDK({ resource: baseResource(), metricReaders: [exporter] });
    nodeSdk.start();
    sdk = { exporter, tracing, nodeSdk };
  } else {
    // As the Node SDK names its resource: the environment's attributes over the base.
    const resource = baseResource().merge(detectResources({ detectors: [envDetector] }));
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter], resource }));
    sdk = { exporter, tracing };
  }
  return sdk;
}

function warnUnusedMetricsExporter(log: (message: string) => void): void {
  const asked = process.env.OTEL_METRICS_EXPORTER?.trim().toLowerCase() ?? '';
  if (servedMetricsExporters.has(asked)) return;
  log(
    'OTEL_METRICS_EXPORTER is ignored: metrics are served in Prometheus format at /metrics on the admin port',
  );
}

/**
 * Shuts the telemetry of the process down, exporting the spans still held,
 * within `timeoutMs`: a collector that does not answer must not hold the exit.
 * For a process that is done: its providers are global and stay shut down.
 */
export async function shutdownTelemetry(timeoutMs = 2_000): Promise<void> {
  const nodeSdk = sdk?.nodeSdk;
  if (nodeSdk === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  try {
    await Promise.race([nodeSdk.shutdown().catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** `log` hears once of OTEL_* settings the sidecar does not honour. */
export async function createTelemetry(log: (message: string) => void): Promise<Telemetry> {
  const { exporter, tracing } = await startSdk(log);
  const tracer = trace.getTracer('veil-sidecar');
  const meter = metrics.getMeter('veil-sidecar');
  const requests: Counter = meter.createCounter('veil_requests', {
    description: 'Requests by API and outcome',
  });
  const masked: Counter = meter.createCounter('veil_masked_values', {
    description: 'Values masked, by detector',
  });
  const upstream: Histogram = meter.createHistogram('veil_upstream_latency', {
    description: 'Model latency seen by the proxy',
    unit: 'ms',
  });
  const recording: Histogram = meter.createHistogram('veil_record_duration', {
    description:
      'Time a request spent being put on record (encoding, appending, waiting for fsync): the latency durable recording adds',
    unit: 'ms',
    // Fine below a few milliseconds, where the cost of durability is judged.
    advice: { explicitBucketBoundaries: [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 25, 50, 100, 250, 1000] },
  });

  return {
    span<T>(name: string, work: () => T): T {
      // Spans nobody exports cost about half a millisecond a request.
      if (!tracing) return work();
      return tracer.startActiveSpan(`veil.${name}`, (span) => {
        try {
          const result = work();
          if (result instanceof Promise) {
            return result.then(
              (value) => {
                span.end();
                return value;
              },
              (error: unknown) => {
                span.setStatus({ code: SpanStatusCode.ERROR });
                span.end();
                throw error;
              },
            ) as T;
          }
          span.end();
          return result;
        } catch (error) {
          span.setStatus({ code: SpanStatusCode.ERROR });
          span.end();
          throw error;
        }
      });
    },
    requestDone(api, outcome, masking, upstreamMs) {
      requests.add(1, { api, outcome });
      for (const action of masking)
        masked.add(action.count, { detector: action.detector, scope: action.scope });
      if (upstreamMs !== undefined) upstream.record(upstreamMs, { api });
    },
    recordingDone(ms) {
      recording.record(ms);
    },
    gauge(name, description, read) {
      const gauge = meter.createObservableGauge(name, { description });
      const observe = (result: ObservableResult) => result.observe(read());
      gauge.addCallback(observe);
      return () => gauge.removeCallback(observe);
    },
    labelledGauge(name, description, read) {
      const gauge = meter.createObservableGauge(name, { description });
      const observe = (result: ObservableResult) => {
        for (const sample of read()) result.observe(sample.value, sample.attributes);
      };
      gauge.addCallback(observe);
      return () => gauge.removeCallback(observe);
    },
    serveMetrics(request, response) {
      exporter.getMetricsRequestHandler(request, response);
    },
  };
}

/**
 * The policy in force and when it last changed, so an operator can alert on a
 * sidecar left on an old version (compare the hash with the EmbeddingPolicy's
 * status). The exporter keeps serving every series it once served, at its last
 * value: each version enforced before is therefore observed as 0, and only the
 * one in force as 1. An apply is timed as it happens; a revocation, which the
 * store announces to no listener, when the gauges are next read. Start-up
 * counts as a change: the policy loaded then came into force then.
 */
export function registerPolicyGauges(
  telemetry: Telemetry,
  store: PolicyStore,
  now: () => number = Date.now,
): () => void {
  let revision = store.revision();
  let changedAtMs = now();
  const changedAt = (): number => {
    if (store.revision() !== revision) {
      revision = store.revision();
      changedAtMs = now();
    }
    return changedAtMs / 1000;
  };
  store.onChange(changedAt);
  const served = new Map<string, Attributes>();
  const versions = (): LabelledSample[] => {
    const policy = store.current();
    const inForce = policy && `${policy.name} ${policy.hash}`;
    if (policy && inForce) served.set(inForce, { name: policy.name, hash: policy.hash });
    return [...served].map(([key, attributes]) => ({ value: key === inForce ? 1 : 0, attributes }));
  };
  const drops = [
    telemetry.labelledGauge(
      'veil_policy_info',
      'The policy in force (1), by name and hash; versions enforced before read 0, and none reads 1 while no policy is in force',
      versions,
    ),
    telemetry.gauge(
      'veil_policy_last_change_timestamp_seconds',
      'When the policy in force last changed (applied, replaced or revoked), in seconds since the epoch',
      changedAt,
    ),
  ];
  return () => {
    for (const drop of drops) drop();
  };
}
