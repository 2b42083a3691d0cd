//! Prometheus metrics: requests and latency by matched route (low cardinality: the route
//! pattern, never the raw path), written in the text format by hand.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct RouteStats {
    by_status: Mutex<BTreeMap<u16, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Stats by route pattern, then by method: looked up with borrowed keys, so recording a
/// request allocates nothing once its route has been seen.
#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<String, ByMethod>>,
}

type ByMethod = Vec<(Method, Arc<RouteStats>)>;

impl Metrics {
    fn stats(&self, method: &Method, route: &str) -> Arc<RouteStats> {
        let find = |methods: &ByMethod| methods.iter().find(|(m, _)| m == method).map(|(_, s)| s.clone());
        if let Some(s) = self.routes.read().unwrap_or_else(|e| e.into_inner()).get(route).and_then(find) {
            return s;
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let methods = routes.entry(route.to_string()).or_default();
        match find(methods) {
            Some(s) => s,
            None => {
                let s = Arc::new(RouteStats::default());
                methods.push((method.clone(), s.clone()));
                s
            }
        }
    }

    pub fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let stats = self.stats(method, route);
        *stats.by_status.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            stats.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        stats.count.fetch_add(1, Ordering::Relaxed);
        stats.sum_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The text exposition format, with the gauges the caller adds.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(&str, &Method, &RouteStats)> = routes
            .iter()
            .flat_map(|(route, methods)| methods.iter().map(move |(m, s)| (route.as_str(), m, s.as_ref())))
            .collect();
        all.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        out.push_str("# HELP drydock_http_requests_total HTTP requests by method, matched route and status.\n");
        out.push_str("# TYPE drydock_http_requests_total counter\n");
        for (route, method, s) in &all {
            for (status, n) in s.by_status.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = writeln!(
                    out,
                    "drydock_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP drydock_http_request_duration_seconds HTTP request latency by method and matched route.\n",
        );
        out.push_str("# TYPE drydock_http_request_duration_seconds histogram\n");
        for (route, method, s) in &all {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "drydock_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "drydock_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "drydock_http_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "drydock_http_request_duration_seconds_count{{{labels}}} {count}");
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

/// Records every request, and logs it: health checks at debug, the rest at debug too unless
/// they failed (a busy server must not log a line per request by default).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    // Server time, for browsers' developer tools and the benchmarks.
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("app;dur={:.3}", seconds * 1e3)) {
        response.headers_mut().insert("server-timing", v);
    }
    let status = response.status().as_u16();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.metrics.observe(&method, route, status, seconds);
    if status >= 500 {
        tracing::warn!(%method, route, status, ms = seconds * 1e3, "request");
    } else {
        tracing::debug!(%method, route, status, ms = seconds * 1e3, "request");
    }
    response
}
