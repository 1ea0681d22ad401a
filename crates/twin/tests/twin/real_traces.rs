//! The real traces in ../shared/traces (never committed): every reader reads its trace with
//! no malformed line, and a slice of each replays with no constraint violated. Skipped, with a
//! message, when the folder is absent.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use suanwang_core::Network;
use suanwang_sched::Policy;
use suanwang_twin::run::RunConfig;
use suanwang_twin::{Item, Reader, Scenario, TraceKind, run_policy};

fn traces() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/traces"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: {} is absent; the real-trace tests need it", dir.display());
        None
    }
}

#[test]
fn every_real_trace_reads_cleanly_and_replays_without_violations() {
    let Some(dir) = traces() else { return };
    let cases = [
        (TraceKind::Alibaba2017, "alibaba-v2017-batch-task/batch_task.csv", 50_000),
        (TraceKind::OpenB, "alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv", 7_000),
        (TraceKind::Philly, "philly-derived-rfold/philly_trace.csv", 100_000),
        (TraceKind::AzureLlm, "azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv", 8_000),
        (TraceKind::Swf, "pwa-nasa-ipsc-1993-swf/NASA-iPSC-1993-3.1-cln.swf", 15_000),
    ];
    let net = Arc::new(Network::reference().expect("reference"));
    for (kind, file, min_records) in cases {
        let path = dir.join(file);
        let open = || Ok(Reader::new(BufReader::new(File::open(&path).expect("trace opens")), kind.clone(), file));
        let (mut records, mut bad) = (0u64, vec![]);
        for item in open().expect("opens") {
            match item {
                Item::Record(_) => records += 1,
                Item::Bad(b) => bad.push(b),
                Item::Skipped { .. } => {}
            }
        }
        assert!(bad.is_empty(), "{file}: {:?}", &bad[..bad.len().min(3)]);
        assert!(records >= min_records, "{file}: only {records} records");
        let cfg = RunConfig {
            policy: Policy::named("balanced", &net.policy).expect("policy"),
            scenario: Scenario::default(),
            limit: Some(3000),
            repeat: 1,
            strict: true,
        };
        let k = run_policy(&net, &kind, open, &cfg, &mut |_| {}).expect("replays");
        assert!(k.jobs > 0, "{file}");
        assert_eq!((k.latency_violations, k.residency_violations), (0, 0), "{file}");
        assert_eq!(k.placed + k.rejected, k.jobs, "{file}");
    }
}
