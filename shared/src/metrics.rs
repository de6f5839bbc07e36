//! A small Prometheus text-format registry: request counts by status, latency sum, and named
//! counters the services bump (logins, refreshes, revocations...).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Metrics {
    service: &'static str,
    started: Instant,
    requests_by_status: Mutex<BTreeMap<u16, u64>>,
    latency_micros_sum: AtomicU64,
    counters: Mutex<BTreeMap<&'static str, u64>>,
    /// Counters bumped on hot paths without a lock (see [`Metrics::handle`]).
    handles: Mutex<Vec<(&'static str, std::sync::Arc<AtomicU64>)>>,
}

impl Metrics {
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            started: Instant::now(),
            requests_by_status: Mutex::default(),
            latency_micros_sum: AtomicU64::new(0),
            counters: Mutex::default(),
            handles: Mutex::default(),
        }
    }

    pub fn observe_request(&self, status: u16, elapsed: Duration) {
        *self
            .requests_by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        self.latency_micros_sum
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Bumps a counter; `name` is a full series name, labels included, e.g.
    /// `auth_logins_total{result="success"}`.
    pub fn inc(&self, name: &'static str) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
    }

    /// A counter for a path too hot for [`Metrics::inc`]'s lock: bumped with one atomic add,
    /// rendered with the others. `name` as for `inc`.
    pub fn handle(&self, name: &'static str) -> std::sync::Arc<AtomicU64> {
        let handle = std::sync::Arc::new(AtomicU64::new(0));
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, handle.clone()));
        handle
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.all_counters().get(name).copied().unwrap_or(0)
    }

    fn all_counters(&self) -> BTreeMap<&'static str, u64> {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (name, handle) in self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            *counters.entry(name).or_default() += handle.load(Ordering::Relaxed);
        }
        counters
    }

    /// The whole registry in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let service = self.service;
        let requests = self
            .requests_by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let total: u64 = requests.values().sum();
        let _ = writeln!(out, "# TYPE http_requests_total counter");
        for (status, count) in &requests {
            let _ = writeln!(
                out,
                "http_requests_total{{service=\"{service}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# TYPE http_request_duration_seconds summary");
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{service=\"{service}\"}} {}",
            self.latency_micros_sum.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{service=\"{service}\"}} {total}"
        );
        let _ = writeln!(out, "# TYPE process_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "process_uptime_seconds{{service=\"{service}\"}} {}",
            self.started.elapsed().as_secs()
        );
        let counters = self.all_counters();
        let mut typed = std::collections::BTreeSet::new();
        for (name, value) in counters {
            let family = name.split('{').next().unwrap_or(name);
            if typed.insert(family) {
                let _ = writeln!(out, "# TYPE {family} counter");
            }
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_counters() {
        let metrics = Metrics::new("test");
        metrics.observe_request(200, Duration::from_millis(2));
        metrics.observe_request(200, Duration::from_millis(2));
        metrics.observe_request(401, Duration::from_millis(1));
        metrics.inc("auth_logins_total{result=\"success\"}");
        let text = metrics.render();
        assert!(text.contains("http_requests_total{service=\"test\",status=\"200\"} 2"));
        assert!(text.contains("http_requests_total{service=\"test\",status=\"401\"} 1"));
        assert!(text.contains("# TYPE auth_logins_total counter"));
        assert!(text.contains("auth_logins_total{result=\"success\"} 1"));
    }

    #[test]
    fn handles_render_with_the_counters() {
        let metrics = Metrics::new("test");
        let hits = metrics.handle("cache_reads_total{result=\"hit\"}");
        hits.fetch_add(3, Ordering::Relaxed);
        metrics.inc("cache_reads_total{result=\"miss\"}");
        let text = metrics.render();
        assert_eq!(text.matches("# TYPE cache_reads_total counter").count(), 1);
        assert!(text.contains("cache_reads_total{result=\"hit\"} 3"));
        assert_eq!(metrics.counter("cache_reads_total{result=\"hit\"}"), 3);
    }
}
