//! A realistic synthetic job mix for benchmarks and property tests: every kind, every latency
//! tier, origins across the demand cities, data of kind-typical sizes. Deterministic from a
//! seed (`SplitMix64`), so a benchmark run can be repeated exactly.

use suanwang_core::job::{Classification, Input, Job, JobKind, Resources, Throughput, Variant, Work};
use suanwang_core::network::Arch;
use suanwang_core::{Family, LatencyTier, Network, Precision, Ts};

/// `SplitMix64`: tiny, fast, good enough for workload generation; not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Log-uniform in `[lo, hi]`.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }
}

/// `n` jobs arriving over `span_s` seconds from `start`, in arrival order.
pub fn mix(net: &Network, seed: u64, n: usize, start: Ts, span_s: i64) -> Vec<(Ts, Job)> {
    let mut rng = Rng::new(seed);
    let cities: Vec<&str> = net.cities.iter().map(|c| c.id.as_str()).collect();
    let accels: Vec<&str> = net.accelerators.iter().map(|a| a.id.as_str()).collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let at = Ts(start.0 + (span_s.max(1) * 1000 * i as i64) / n.max(1) as i64);
        let kind = *rng.pick(&JobKind::ALL);
        let origin = (*rng.pick(&cities)).to_string();
        let (family, count, run_s, tier) = match kind {
            JobKind::Inference => (
                Family::Intelligent,
                [1, 2, 4, 8][rng.below(4) as usize],
                rng.log_uniform(600.0, 86_400.0),
                *rng.pick(&[Some(LatencyTier::City), Some(LatencyTier::Regional), Some(LatencyTier::CrossHub)]),
            ),
            JobKind::Training => {
                (Family::Intelligent, [8, 16, 64, 256][rng.below(4) as usize], rng.log_uniform(3600.0, 172_800.0), None)
            }
            JobKind::FineTuning => {
                (Family::Intelligent, [1, 4, 8, 16][rng.below(4) as usize], rng.log_uniform(1800.0, 43_200.0), None)
            }
            JobKind::Rendering => {
                (Family::General, rng.log_uniform(64.0, 8192.0) as u32, rng.log_uniform(1800.0, 28_800.0), None)
            }
            JobKind::Analytics => (
                Family::General,
                rng.log_uniform(16.0, 4096.0) as u32,
                rng.log_uniform(600.0, 14_400.0),
                *rng.pick(&[None, None, Some(LatencyTier::CrossHub)]),
            ),
            JobKind::Backup => (Family::General, 16, rng.log_uniform(1800.0, 21_600.0), None),
            JobKind::Hpc => (
                Family::Super,
                rng.log_uniform(4.0, 512.0) as u32,
                rng.log_uniform(1800.0, 43_200.0),
                *rng.pick(&[None, Some(LatencyTier::CrossHub)]),
            ),
            JobKind::Batch => (
                Family::General,
                rng.log_uniform(8.0, 2048.0) as u32,
                rng.log_uniform(300.0, 7200.0),
                *rng.pick(&[None, Some(LatencyTier::Regional), Some(LatencyTier::CrossHub)]),
            ),
        };
        let size_gb = match kind {
            JobKind::Inference => rng.log_uniform(1.0, 200.0),
            JobKind::Training => rng.log_uniform(100.0, 50_000.0),
            JobKind::FineTuning => rng.log_uniform(10.0, 2000.0),
            JobKind::Rendering => rng.log_uniform(50.0, 5000.0),
            JobKind::Analytics => rng.log_uniform(10.0, 20_000.0),
            JobKind::Backup => rng.log_uniform(1000.0, 200_000.0),
            JobKind::Hpc => rng.log_uniform(10.0, 5000.0),
            JobKind::Batch => rng.log_uniform(1.0, 500.0),
        };
        let classification = match rng.below(20) {
            0 => Classification::Restricted,
            1..=6 => Classification::Internal,
            _ => Classification::Public,
        };
        let mut resources = Resources {
            family,
            count: count.max(1),
            accelerator: None,
            min_throughput: None,
            memory_gib: 0,
            variants: vec![],
        };
        if family == Family::Intelligent {
            match rng.below(3) {
                0 => resources.accelerator = Some((*rng.pick(&accels)).to_string()),
                1 => {
                    resources.min_throughput =
                        Some(Throughput { precision: Precision::Fp16, tflops: rng.log_uniform(100.0, 400.0) });
                }
                _ => {
                    resources.variants = vec![
                        Variant { arch: Arch::X86_64, accelerator_kind: Some("cuda".into()) },
                        Variant { arch: Arch::Aarch64, accelerator_kind: Some("cann".into()) },
                    ];
                }
            }
        }
        let slack_s = if kind.is_delay_tolerant() {
            rng.log_uniform(7200.0, 172_800.0)
        } else {
            rng.log_uniform(1800.0, 43_200.0)
        };
        let deadline = (rng.below(3) != 0).then(|| Ts(at.0 + ((run_s + slack_s) * 1000.0) as i64));
        let min_green_share = if rng.below(5) == 0 { (rng.unit() * 0.6 * 100.0).round() / 100.0 } else { 0.0 };
        out.push((
            at,
            Job {
                name: format!("{}-{i}", kind.as_str()),
                tenant: format!("tenant-{}", rng.below(50)),
                kind,
                resources,
                work: Work::RunTime { run_time_s: run_s as u32 },
                input: Some(Input {
                    size_gb: (size_gb * 10.0).round() / 10.0,
                    location: origin.clone(),
                    classification,
                    dataset: None,
                }),
                origin,
                latency_tier: tier,
                deadline,
                start_within_s: None,
                budget_fen: None,
                min_green_share,
                allowed_regions: vec![],
                allowed_sites: vec![],
                priority: rng.below(10) as u8,
                preemptible: rng.below(2) == 0,
                checkpoint_s: None,
                run: None,
                contract: None,
                max_price: None,
            },
        ));
    }
    out
}
