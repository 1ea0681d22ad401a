//! Anomaly scores against a series' own recent history: an exponentially weighted moving
//! average and variance (West 1979's incremental form), with the weight of a sample set by the
//! time since the last one, so irregular evaluation intervals weigh correctly.
//!
//! Why EWMA and not a seasonal z-score: it needs O(1) memory per series and no stored history,
//! so a site that joined an hour ago is judged against that hour; it follows slow drift (a site
//! that fills up over weeks is not an anomaly); a seasonal score needs weeks of hourly history
//! per series that the control plane does not keep in memory. The cost: a daily ramp is scored
//! against the recent past, so rules on these scores use a high threshold and a hold time.

/// One series' weighted mean and variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    half_life_ms: f64,
    /// The standard deviation is at least this (a flat history scores a small change as small).
    floor: f64,
    warmup: u32,
    mean: f64,
    var: f64,
    n: u32,
    last_ms: i64,
}

impl Ewma {
    /// A series whose samples lose half their weight every `half_life_ms`; scores are 0 until
    /// `warmup` samples were seen.
    pub fn new(half_life_ms: i64, floor: f64, warmup: u32) -> Ewma {
        Ewma { half_life_ms: half_life_ms.max(1) as f64, floor, warmup, mean: 0.0, var: 0.0, n: 0, last_ms: 0 }
    }

    /// Scores `x` at `at_ms` against the history before it, then adds it to the history.
    /// A non-finite `x` scores 0 and is not added.
    pub fn update(&mut self, x: f64, at_ms: i64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
            self.n = 1;
            self.last_ms = at_ms;
            return 0.0;
        }
        let sd = self.var.sqrt().max(self.floor);
        let z = if self.n >= self.warmup && sd > 0.0 { (x - self.mean) / sd } else { 0.0 };
        let dt = at_ms.saturating_sub(self.last_ms).max(0) as f64;
        let alpha = 1.0 - 0.5f64.powf(dt / self.half_life_ms);
        let d = x - self.mean;
        self.mean += alpha * d;
        self.var = (1.0 - alpha) * (self.var + alpha * d * d);
        self.n = self.n.saturating_add(1);
        self.last_ms = at_ms.max(self.last_ms);
        z
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    pub fn samples(&self) -> u32 {
        self.n
    }
}
