//! An OTLP/HTTP receiver for the tests: an axum server decoding the protobuf export requests
//! with opentelemetry-proto, and readers of what it received.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the receiver decoded.
#[derive(Clone, Default)]
pub struct Received {
    pub traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

async fn traces(State(got): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("a protobuf ExportTraceServiceRequest");
    got.traces.lock().unwrap().push(request);
    Vec::new() // an empty ExportTraceServiceResponse
}

async fn metrics(State(got): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportMetricsServiceRequest::decode(body).expect("a protobuf ExportMetricsServiceRequest");
    got.metrics.lock().unwrap().push(request);
    Vec::new()
}

/// The OTLP/HTTP receiver, on a thread and runtime of its own: the exporters send from their
/// own threads and block on the answer, whatever the test's runtime is doing.
pub fn start_receiver() -> (String, Received) {
    let got = Received::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(got.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (url, got)
}

pub fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

pub fn attrs(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

pub fn spans(got: &Received) -> Vec<Span> {
    let traces = got.traces.lock().unwrap();
    traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

/// The last exported value of each data point of metric `name`, by its attributes.
pub fn points(got: &Received, name: &str) -> Vec<(HashMap<String, String>, f64)> {
    let metrics = got.metrics.lock().unwrap();
    let Some(last) = metrics
        .iter()
        .rev()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
    else {
        return Vec::new();
    };
    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => f64::NAN,
    };
    match &last.data {
        Some(Data::Sum(sum)) => sum.data_points.iter().map(|p| (attrs(&p.attributes), number(p))).collect(),
        Some(Data::Gauge(gauge)) => {
            gauge.data_points.iter().map(|p| (attrs(&p.attributes), number(p))).collect()
        }
        // A histogram's value here is its count.
        Some(Data::Histogram(h)) => {
            h.data_points.iter().map(|p| (attrs(&p.attributes), p.count as f64)).collect()
        }
        other => panic!("metric {name}: unexpected data {other:?}"),
    }
}

pub fn point(got: &Received, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    points(got, name)
        .into_iter()
        .find(|(a, _)| with.iter().all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
}
