//! OpenTelemetry for durably: traces and metrics of runs, steps and model calls, exported over
//! OTLP (HTTP/protobuf), built on the `tracing` spans the engine and the agents already open.
//!
//! - **One trace per run**, continued by every execution: the trace id is derived from the app
//!   and the run id ([`run_trace_id`]), so a run resumed after a crash, or recovered by another
//!   worker, adds its `durably.run` span to the same trace.
//! - **A span per step** (`durably.step`), with `durably.replayed = true` on a step answered
//!   from the history, and **a span per model request** (`gen_ai.chat`) with the GenAI
//!   semantic-convention attributes: `gen_ai.provider.name` (and the older `gen_ai.system`),
//!   `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens`,
//!   `gen_ai.usage.output_tokens`, `gen_ai.response.finish_reasons`.
//! - **Metrics**: finished runs by status, step latency, retries, replayed steps, tokens, and a
//!   queue-depth gauge (see [Metrics](#metrics)).
//!
//! ```no_run
//! # fn main() -> Result<(), durably_otel::Error> {
//! // OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318) and OTEL_SERVICE_NAME are read
//! // from the environment; RUST_LOG filters what is logged and traced (default `info`).
//! let telemetry = durably_otel::init(durably_otel::OtelConfig::default())?;
//! // ... run workflows ...
//! telemetry.shutdown()?; // exports what is still buffered
//! # Ok(()) }
//! ```
//!
//! To add the layers to a subscriber of your own, build a [`Telemetry`] and take its
//! [`layer`](Telemetry::layer):
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = durably_otel::Telemetry::new(
//!     durably_otel::OtelConfig::default().endpoint("http://collector:4318").service_name("shop"),
//! )?;
//! tracing_subscriber::registry().with(telemetry.layer()).try_init()?;
//! # Ok(()) }
//! ```
//!
//! # Metrics
#![doc = include_str!("metrics.md")]

mod metrics;
mod run_trace;

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

pub use run_trace::{RunTraces, run_span_context, run_trace_id};

/// The instrumentation scope of durably's spans and metrics.
const SCOPE: &str = "durably";

/// Errors of setting up or flushing the exporters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An OTLP exporter could not be built: a bad endpoint, or a bad `OTEL_EXPORTER_OTLP_*`
    /// variable.
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The exporter's error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// [`init`] found a global `tracing` subscriber installed already.
    #[error("cannot install the tracing subscriber (one is installed already?): {0}")]
    Install(#[source] tracing_subscriber::util::TryInitError),
    /// Exporting what was buffered, or stopping the exporters, failed.
    #[error("OpenTelemetry {signal} {action} failed: {source}")]
    Export {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// `flush` or `shutdown`.
        action: &'static str,
        /// The SDK's error.
        #[source]
        source: opentelemetry_sdk::error::OTelSdkError,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and how to export. Every unset option falls back to the standard OpenTelemetry
/// environment variables, then to the OTLP defaults.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OtelConfig {
    /// The OTLP/HTTP base URL (`http://localhost:4318`); `/v1/traces` and `/v1/metrics` are
    /// appended. Unset: `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), then
    /// `http://localhost:4318`.
    pub endpoint: Option<String>,
    /// `service.name` of the exported resource. Unset: `OTEL_SERVICE_NAME`, then `durably`.
    pub service_name: Option<String>,
    /// How often metrics are exported. Unset: `OTEL_METRIC_EXPORT_INTERVAL`, then 60 s.
    pub metrics_interval: Option<Duration>,
}

impl OtelConfig {
    /// Exports to the OTLP/HTTP collector at base URL `url` (`http://collector:4318`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Names the service (`service.name`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Exports metrics every `interval`.
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics_interval = Some(interval);
        self
    }
}

/// The exporters of traces and metrics, and the `tracing` layer that feeds them. Dropping it
/// shuts them down as [`shutdown`](Self::shutdown) does (errors ignored).
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    metrics: metrics::RunMetrics,
}

fn signal_url(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

impl Telemetry {
    /// Builds the OTLP exporters (nothing is sent before the first span or metric). Does not
    /// install anything: add [`layer`](Self::layer) to a subscriber, or use [`init`].
    pub fn new(config: OtelConfig) -> Result<Telemetry> {
        let mut resource = Resource::builder();
        match &config.service_name {
            Some(name) => resource = resource.with_service_name(name.clone()),
            None if std::env::var_os("OTEL_SERVICE_NAME").is_none() => {
                resource = resource.with_service_name(SCOPE);
            }
            None => {}
        }
        let resource = resource.build();

        let mut spans = SpanExporter::builder().with_http();
        if let Some(base) = &config.endpoint {
            spans = spans.with_endpoint(signal_url(base, "v1/traces"));
        }
        let spans = spans.build().map_err(|source| Error::Exporter { signal: "traces", source })?;
        let tracer_provider =
            SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();

        let mut metric_exporter = MetricExporter::builder().with_http();
        if let Some(base) = &config.endpoint {
            metric_exporter = metric_exporter.with_endpoint(signal_url(base, "v1/metrics"));
        }
        let metric_exporter =
            metric_exporter.build().map_err(|source| Error::Exporter { signal: "metrics", source })?;
        let mut reader = PeriodicReader::builder(metric_exporter);
        if let Some(interval) = config.metrics_interval {
            reader = reader.with_interval(interval);
        }
        let meter_provider =
            SdkMeterProvider::builder().with_reader(reader.build()).with_resource(resource).build();
        let metrics = metrics::RunMetrics::new(&meter_provider.meter(SCOPE));
        Ok(Telemetry { tracer_provider, meter_provider, metrics })
    }

    /// The `tracing` layer: spans to OpenTelemetry (each run in its own trace, see
    /// [`RunTraces`]) and the metrics read from them.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let traces = tracing_opentelemetry::layer()
            .with_tracer(self.tracer_provider.tracer(SCOPE))
            // `RunTraces` hands a run span its parent through the current context.
            .with_context_activation(true);
        RunTraces::new(traces).and_then(self.metrics.clone())
    }

    /// Exports every finished span and the current metrics now.
    pub fn force_flush(&self) -> Result<()> {
        self.tracer_provider.force_flush().map_err(|source| Error::Export {
            signal: "traces",
            action: "flush",
            source,
        })?;
        self.meter_provider.force_flush().map_err(|source| Error::Export {
            signal: "metrics",
            action: "flush",
            source,
        })
    }

    /// Exports what is buffered and stops the exporters; spans and metrics after it are
    /// dropped. Call it before the process exits. It blocks until the exports end (at most
    /// their timeout, `OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default): from async code, call it
    /// in `tokio::task::spawn_blocking`.
    pub fn shutdown(&self) -> Result<()> {
        let traces = self.tracer_provider.shutdown().map_err(|source| Error::Export {
            signal: "traces",
            action: "shutdown",
            source,
        });
        let metrics = self.meter_provider.shutdown().map_err(|source| Error::Export {
            signal: "metrics",
            action: "shutdown",
            source,
        });
        traces.and(metrics)
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Already shut down, or nothing to reach: nothing more to do on the way out.
        let _ = self.shutdown();
    }
}

/// Builds the exporters and installs the global `tracing` subscriber: a log printer on stderr
/// filtered by `RUST_LOG` (default `info`), and the OpenTelemetry layer, which sees `info`
/// and above, and durably's `debug` events too (step replayed, executed; queue depths). Keep
/// the returned [`Telemetry`] until the end of `main`, and [`shutdown`](Telemetry::shutdown)
/// it there.
pub fn init(config: OtelConfig) -> Result<Telemetry> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let telemetry = Telemetry::new(config)?;
    let logs = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let exported = tracing_subscriber::EnvFilter::new("info,durably=debug");
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(logs))
        .with(telemetry.layer().with_filter(exported))
        .try_init()
        .map_err(Error::Install)?;
    Ok(telemetry)
}
