//! What this machine is: its cores, memory and GPUs, and the registration that declares them.

use std::path::Path;

use suanwang_api::agent::{Detected, PoolDeclaration, RegisterRequest, SiteDeclaration};
use suanwang_core::network::AgentPool;

use crate::AgentError;

/// Cores and memory (MiB) of this machine.
pub fn detect() -> (u64, u64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(1024 * 1024);
    (cores, mem_kb / 1024)
}

fn default_pools(cores: u64, memory_mib: u64) -> Vec<AgentPool> {
    let model = if cfg!(target_arch = "aarch64") { "generic-aarch64" } else { "generic-x86_64" };
    vec![AgentPool {
        name: "cpu".into(),
        model: model.into(),
        count: cores,
        memory_gib_per_unit: u32::try_from((memory_mib / 1024 / cores.max(1)).max(1)).unwrap_or(1),
        power_w_per_unit: 10.0,
        price_fen_per_unit_hour: 30,
    }]
}

/// GPU pools from `nvidia-smi --query-gpu=name,memory.total,power.limit
/// --format=csv,noheader,nounits` output: one pool per model in the device catalogue; models
/// the catalogue does not know are skipped with a warning (a pool must name a known device).
pub fn gpu_pools(nvidia_smi_csv: &str) -> Vec<AgentPool> {
    let known = [("H800", "h800"), ("A800", "a800"), ("H20", "h20"), ("L40S", "l40s")];
    let mut pools: Vec<AgentPool> = vec![];
    for line in nvidia_smi_csv.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let (name, mem_mib, watts) = match f[..] {
            [n, m, w, ..] => (n, m.parse::<f64>().unwrap_or(0.0), w.parse::<f64>().unwrap_or(0.0)),
            _ => continue,
        };
        let Some((_, model)) = known.iter().find(|(k, _)| name.to_ascii_uppercase().contains(k)) else {
            tracing::warn!(gpu = name, "GPU model not in the device catalogue; not declared");
            continue;
        };
        if let Some(p) = pools.iter_mut().find(|p| p.model == *model) {
            p.count += 1;
            continue;
        }
        pools.push(AgentPool {
            name: format!("gpu-{model}"),
            model: (*model).to_string(),
            count: 1,
            memory_gib_per_unit: u32::try_from((mem_mib / 1024.0).round() as u64).unwrap_or(1).max(1),
            power_w_per_unit: if watts > 0.0 { watts } else { 400.0 },
            price_fen_per_unit_hour: 1500,
        });
    }
    pools
}

/// This machine's GPUs, when `nvidia-smi` is installed and answers.
fn detect_gpus() -> Vec<AgentPool> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total,power.limit", "--format=csv,noheader,nounits"])
        .output();
    match out {
        Ok(o) if o.status.success() => gpu_pools(&String::from_utf8_lossy(&o.stdout)),
        _ => vec![],
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolsFile {
    pools: Vec<AgentPool>,
}

/// The registration of this machine as site `site` at `city`: the pools of `pools_file`
/// (`[[pools]]` entries), else a CPU pool of all its cores and one pool per catalogued GPU
/// model, with what was detected.
pub fn registration(site: &str, city: &str, pools_file: Option<&Path>) -> Result<RegisterRequest, AgentError> {
    let (cores, memory_mib) = detect();
    let gpus = detect_gpus();
    let gpu_count: u64 = gpus.iter().map(|p| p.count).sum();
    let pools = match pools_file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| AgentError::Setup(format!("--pools {}: cannot read it: {e}", f.display())))?;
            toml::from_str::<PoolsFile>(&text)
                .map_err(|e| {
                    AgentError::Setup(format!(
                        "--pools {}: expected [[pools]] name, model, count, memory_gib_per_unit, power_w_per_unit, \
                         price_fen_per_unit_hour: {e}",
                        f.display()
                    ))
                })?
                .pools
        }
        None => {
            let mut pools = default_pools(cores, memory_mib);
            pools.extend(gpus);
            pools
        }
    };
    let pools = pools
        .into_iter()
        .map(|p| PoolDeclaration {
            name: p.name,
            model: p.model,
            count: p.count,
            memory_gib_per_unit: p.memory_gib_per_unit,
            power_w_per_unit: p.power_w_per_unit,
            price_fen_per_unit_hour: p.price_fen_per_unit_hour,
        })
        .collect();
    Ok(RegisterRequest {
        site: SiteDeclaration { id: site.to_string(), city: city.to_string(), pue: 1.3, pools },
        detected: Detected { cores, memory_mib, gpus: gpu_count },
    })
}

#[cfg(test)]
mod tests {
    use super::gpu_pools;

    #[test]
    fn nvidia_smi_output_becomes_one_pool_per_known_model() {
        let csv = "NVIDIA H800, 81559, 700.00\nNVIDIA H800, 81559, 700.00\nNVIDIA L40S, 46068, [N/A]\n\
                   Tesla T4, 15360, 70.00\ngarbage\n";
        let pools = gpu_pools(csv);
        let got: Vec<(&str, u64, u32, f64)> =
            pools.iter().map(|p| (p.model.as_str(), p.count, p.memory_gib_per_unit, p.power_w_per_unit)).collect();
        assert_eq!(got, vec![("h800", 2, 80, 700.0), ("l40s", 1, 45, 400.0)]);
    }
}
