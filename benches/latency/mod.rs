//! Latency samples from a hand-rolled loop, summarised as percentiles (criterion reports means and their spread).

use std::time::Duration;

#[derive(Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn with_capacity(capacity: usize) -> Self {
        Samples(Vec::with_capacity(capacity))
    }

    pub fn push(&mut self, sample: Duration) {
        self.0.push(sample);
    }

    /// The `q`-quantile (0.0..=1.0), nearest rank.
    ///
    /// # Panics
    /// When there are no samples.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// `p50 … µs, p99 … µs, max … µs (n samples)`.
    pub fn summary(&self) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} samples)",
            us(self.quantile(0.50)),
            us(self.quantile(0.99)),
            us(self.quantile(1.0)),
            self.0.len()
        )
    }
}
