//! `GET /metrics`: the Prometheus text exposition (version 0.0.4), on the
//! API socket and, with `metrics_listen` in netd.toml, on a TCP address.
//! Names, units and types follow Prometheus's conventions: counters end in
//! `_total`, durations are seconds, gauges say what they count.
//!
//! The rendering is pure (`Exposition`); `Service::scrape_metrics` reads the service's
//! state, the dataplane's figures and the daemon's own telemetry.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::Arc,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Extension,
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::events::Bus;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the API duration histogram, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What the daemon counts about itself (no lock of the service needed):
/// shared by the API layer, the repair loop and the scrape.
#[derive(Default)]
pub struct Telemetry {
    pub events: Bus,
    /// By (method, route): bucket counts, sum of seconds, count.
    api: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Passes that found the kernel differing from what was programmed.
    pub drift_found: AtomicU64,
    pub drift_repairs: AtomicU64,
    pub started_at: AtomicU64,
}

#[derive(Clone, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Telemetry {
    /// For a daemon that started at `now` (Unix seconds).
    pub fn started(now: u64) -> Arc<Telemetry> {
        let telemetry = Telemetry::default();
        telemetry.started_at.store(now, Ordering::Relaxed);
        Arc::new(telemetry)
    }

    pub fn observe_request(&self, method: &str, route: &str, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut api = self.api.lock().unwrap_or_else(|e| e.into_inner());
        let h = api
            .entry((method.to_owned(), route.to_owned()))
            .or_insert_with(|| Histogram {
                buckets: vec![0; DURATION_BUCKETS.len()],
                ..Histogram::default()
            });
        for (bound, count) in DURATION_BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn render_own(&self, out: &mut Exposition) {
        out.family(
            "netd_api_request_duration_seconds",
            "Time from a request reaching the daemon to its answer.",
            "histogram",
        );
        let api = self.api.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for ((method, route), h) in &api {
            let labels = [("method", method.as_str()), ("route", route.as_str())];
            for (bound, count) in DURATION_BUCKETS.iter().zip(&h.buckets) {
                let le = bound.to_string();
                out.sample_with_le(
                    "netd_api_request_duration_seconds_bucket",
                    &labels,
                    &le,
                    *count as f64,
                );
            }
            out.sample_with_le(
                "netd_api_request_duration_seconds_bucket",
                &labels,
                "+Inf",
                h.count as f64,
            );
            out.sample("netd_api_request_duration_seconds_sum", &labels, h.sum);
            out.sample(
                "netd_api_request_duration_seconds_count",
                &labels,
                h.count as f64,
            );
        }
        out.family(
            "netd_drift_found_total",
            "Repair passes that found the kernel differing from what netd programmed (the dataplane, its host side included).",
            "counter",
        );
        out.sample(
            "netd_drift_found_total",
            &[],
            self.drift_found.load(Ordering::Relaxed) as f64,
        );
        out.family(
            "netd_drift_repairs_total",
            "Repairs of drifted kernel state made by the daemon.",
            "counter",
        );
        out.sample(
            "netd_drift_repairs_total",
            &[],
            self.drift_repairs.load(Ordering::Relaxed) as f64,
        );
        out.family(
            "netd_start_time_seconds",
            "When the daemon started, in Unix seconds.",
            "gauge",
        );
        out.sample(
            "netd_start_time_seconds",
            &[],
            self.started_at.load(Ordering::Relaxed) as f64,
        );
    }
}

/// The text format, built family by family.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, help: &str, kind: &str) {
        writeln!(self.text, "# HELP {name} {}", escape_help(help)).unwrap();
        writeln!(self.text, "# TYPE {name} {kind}").unwrap();
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        write_labels(&mut self.text, labels, None);
        writeln!(self.text, " {}", format_value(value)).unwrap();
    }

    fn sample_with_le(&mut self, name: &str, labels: &[(&str, &str)], le: &str, value: f64) {
        self.text.push_str(name);
        write_labels(&mut self.text, labels, Some(le));
        writeln!(self.text, " {}", format_value(value)).unwrap();
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (key, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        write!(out, "{key}=\"{}\"", escape_label(value)).unwrap();
    }
    out.push('}');
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// `GET /metrics`.
pub async fn scrape(
    State(svc): State<super::service::Shared>,
    Extension(telemetry): Extension<Arc<Telemetry>>,
) -> Response {
    let text = svc.lock().await.scrape_metrics();
    let _ = &telemetry;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Serves `GET /metrics` alone on a TCP address (`metrics_listen`).
pub async fn serve_tcp(
    addr: std::net::SocketAddr,
    service: super::service::Shared,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context as _;
    let telemetry = service.lock().await.telemetry();
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("binding metrics_listen {addr}: is the address taken or not local?")
    })?;
    tracing::info!(%addr, "serving metrics");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .layer(Extension(telemetry))
        .with_state(service);
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!("metrics listener: {err}");
        }
    }))
}

/// Times every routed request into `netd_api_request_duration_seconds`.
pub async fn time_requests(
    Extension(telemetry): Extension<Arc<Telemetry>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    telemetry.observe_request(&method, &route, started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_render_in_the_text_format() {
        let mut out = Exposition::default();
        out.family("netd_guests", "Guests of each network.", "gauge");
        out.sample("netd_guests", &[("network", "we\"b\\1\n")], 3.0);
        out.sample("netd_x", &[], 0.25);
        assert_eq!(
            out.finish(),
            "# HELP netd_guests Guests of each network.\n# TYPE netd_guests gauge\n\
             netd_guests{network=\"we\\\"b\\\\1\\n\"} 3\nnetd_x 0.25\n"
        );
    }

    #[test]
    fn request_durations_fill_cumulative_buckets() {
        let t = Telemetry::default();
        t.observe_request("GET", "/v1/networks", Duration::from_micros(700));
        t.observe_request("GET", "/v1/networks", Duration::from_millis(30));
        t.drift_found.fetch_add(1, Ordering::Relaxed);
        let mut out = Exposition::default();
        t.render_own(&mut out);
        let text = out.finish();
        let line = |le: &str| {
            format!(
                "netd_api_request_duration_seconds_bucket{{method=\"GET\",route=\"/v1/networks\",le=\"{le}\"}}"
            )
        };
        assert!(text.contains(&format!("{} 0\n", line("0.0005"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", line("0.001"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", line("0.05"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", line("+Inf"))), "{text}");
        assert!(text.contains(
            "netd_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/networks\"} 2\n"
        ));
        assert!(text.contains("netd_drift_found_total 1\n"), "{text}");
        assert!(text.contains("netd_drift_repairs_total 0\n"), "{text}");
    }
}
