//! The unified metric (统一度量): native peaks per precision → one reporting unit.

use serde::{Deserialize, Serialize};

/// Numeric precisions a pool declares peaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp64,
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 4] = [Precision::Fp64, Precision::Fp32, Precision::Fp16, Precision::Int8];

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp64 => "fp64",
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The three families of compute (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// CPU (通用算力).
    General,
    /// GPU/NPU for AI (智能算力).
    Intelligent,
    /// HPC, FP64 (超算算力).
    Super,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::General, Family::Intelligent, Family::Super];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::General => "general",
            Family::Intelligent => "intelligent",
            Family::Super => "super",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// Peak rates of one unit (a core, an accelerator, a node) per precision, TFLOPS (TOPS for
/// INT8). `None` = not rated at that precision.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Peaks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp64: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp32: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp16: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8: Option<f64>,
}

impl Peaks {
    pub fn get(&self, p: Precision) -> Option<f64> {
        match p {
            Precision::Fp64 => self.fp64,
            Precision::Fp32 => self.fp32,
            Precision::Fp16 => self.fp16,
            Precision::Int8 => self.int8,
        }
    }

    /// CPU peaks from the device formula: cores × clock × FLOPs per cycle (FP64), FP32 = 2 × FP64.
    pub fn cpu(cores: u32, clock_ghz: f64, fp64_flops_per_cycle: u32) -> Peaks {
        let fp64 = f64::from(cores) * clock_ghz * f64::from(fp64_flops_per_cycle) / 1000.0;
        Peaks { fp64: Some(fp64), fp32: Some(fp64 * 2.0), fp16: None, int8: None }
    }
}

/// A versioned conversion table from native peaks to the unified unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionTable {
    pub version: String,
    pub unit: String,
    pub unit_description: String,
    /// Factor per precision, indexed by `Precision as usize`.
    factors: [f64; 4],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversionFile {
    version: String,
    unit: String,
    unit_description: String,
    factors: FactorsFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FactorsFile {
    fp64: f64,
    fp32: f64,
    fp16: f64,
    int8: f64,
}

impl ConversionTable {
    /// Parses `data/metric.toml`; factors must be finite and positive.
    pub fn from_toml(text: &str) -> Result<ConversionTable, String> {
        let f: ConversionFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let factors = [f.factors.fp64, f.factors.fp32, f.factors.fp16, f.factors.int8];
        for (p, v) in Precision::ALL.iter().zip(factors) {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("factors.{}: must be a finite positive number, got {v}", p.as_str()));
            }
        }
        if f.version.trim().is_empty() {
            return Err("version: must not be empty".into());
        }
        Ok(ConversionTable { version: f.version, unit: f.unit, unit_description: f.unit_description, factors })
    }

    pub fn factor(&self, p: Precision) -> f64 {
        self.factors[p.index()]
    }

    /// The unified value of one unit: the best of its declared precisions, each × its factor.
    pub fn unified(&self, peaks: &Peaks) -> f64 {
        Precision::ALL.into_iter().filter_map(|p| peaks.get(p).map(|v| v * self.factor(p))).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ConversionTable {
        ConversionTable::from_toml(include_str!("../../../data/metric.toml")).expect("reference table")
    }

    #[test]
    fn cpu_formula_matches_worked_example() {
        // Xeon 6240R: 24 cores × 2.4 GHz × 32 DP FLOPs = 1843.2 GFLOPS FP64 (facts §1.2).
        let p = Peaks::cpu(24, 2.4, 32);
        assert!((p.fp64.expect("fp64") - 1.8432).abs() < 1e-9);
        assert!((p.fp32.expect("fp32") - 3.6864).abs() < 1e-9);
    }

    #[test]
    fn reference_table_converts_each_precision() {
        let t = table();
        assert_eq!(t.version, "ucu-1");
        // (peaks, expected unified value)
        let cases = [
            (Peaks { fp64: Some(10.0), ..Peaks::default() }, 20.0),
            (Peaks { fp32: Some(10.0), ..Peaks::default() }, 10.0),
            (Peaks { fp16: Some(10.0), ..Peaks::default() }, 5.0),
            (Peaks { int8: Some(10.0), ..Peaks::default() }, 2.5),
            // the best precision counts, not the sum: A800 → FP16 312 × 0.5 = 156
            (Peaks { fp64: Some(9.7), fp32: Some(19.5), fp16: Some(312.0), int8: Some(624.0) }, 156.0),
            (Peaks::default(), 0.0),
        ];
        for (peaks, want) in cases {
            assert!((t.unified(&peaks) - want).abs() < 1e-9, "{peaks:?}");
        }
        // CPUs read the same at FP64 and FP32: the factors are consistent with the formula.
        let cpu = Peaks::cpu(64, 2.6, 8);
        let via64 = cpu.fp64.expect("fp64") * t.factor(Precision::Fp64);
        let via32 = cpu.fp32.expect("fp32") * t.factor(Precision::Fp32);
        assert!((via64 - via32).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_tables() {
        for bad in [
            "version='x'\nunit='u'\nunit_description=''\n[factors]\nfp64=2.0\nfp32=1.0\nfp16=0.5\nint8=-1.0",
            "version='x'\nunit='u'\nunit_description=''\n[factors]\nfp64=2.0\nfp32=1.0\nfp16=0.5",
            "version=''\nunit='u'\nunit_description=''\n[factors]\nfp64=2.0\nfp32=1.0\nfp16=0.5\nint8=1.0",
            "version='x'\nunit='u'\nunit_description=''\n[factors]\nfp64=nan\nfp32=1.0\nfp16=0.5\nint8=1.0",
        ] {
            assert!(ConversionTable::from_toml(bad).is_err(), "{bad}");
        }
    }
}
