//! Job specs: every example is valid; every bad spec names the field at fault.

use suanwang_core::job::{self, Classification, JobKind, Work};
use suanwang_core::{LatencyTier, Network, Ts};

fn now() -> Ts {
    Ts::parse("2026-11-26T00:00:00Z").expect("valid")
}

const VALID: &str = r#"
name = "ok"
tenant = "acme"
kind = "training"
origin = "beijing"
[resources]
family = "intelligent"
count = 8
[work]
run_time_s = 3600
"#;

/// The valid spec plus `edit`: top-level lines go before the first table, tables at the end.
fn spec(edit: &str) -> String {
    match edit.split_once("\n[") {
        Some((top, tables)) => VALID.replacen("[resources]", &format!("{top}\n[resources]"), 1) + "[" + tables + "\n",
        None if edit.starts_with('[') => format!("{VALID}{edit}\n"),
        None => VALID.replacen("[resources]", &format!("{edit}\n[resources]"), 1),
    }
}

/// Checks that `text` is refused with a problem at exactly `field`.
fn check_bad(text: &[u8], field: &str) {
    let net = Network::reference().expect("net");
    let problems = job::parse_toml(text, &net, now()).expect_err("must be refused");
    assert!(
        problems.iter().any(|p| p.field == field && !p.reason.is_empty()),
        "expected a problem at {field:?}; got {problems:#?}\nspec:\n{}",
        String::from_utf8_lossy(&text[..text.len().min(400)])
    );
}

#[test]
fn bad_specs_name_their_field() {
    let without = |key: &str| VALID.lines().filter(|l| !l.starts_with(key)).collect::<Vec<_>>().join("\n");
    let replace = |from: &str, to: &str| VALID.replacen(from, to, 1);
    let cases: Vec<(String, &str)> = vec![
        (without("name"), "name"),
        (without("tenant"), "tenant"),
        (without("kind"), "kind"),
        (without("origin"), "origin"),
        (without("family"), "resources.family"),
        (without("count"), "resources.count"),
        (without("run_time_s"), "work.run_time_s"),
        (replace("count = 8", "count = -4"), "resources.count"),
        (replace("count = 8", "count = 0"), "resources.count"),
        (replace("count = 8", "count = 4294967297"), "resources.count"),
        (replace("count = 8", "count = 2.5"), "resources.count"),
        (replace("count = 8", "count = \"eight\""), "resources.count"),
        (replace("run_time_s = 3600", "run_time_s = -1"), "work.run_time_s"),
        (replace("run_time_s = 3600", "run_time_s = 9223372036854775807"), "work.run_time_s"),
        (replace("run_time_s = 3600", "amount_pflop = nan"), "work.amount_pflop"),
        (replace("run_time_s = 3600", "amount_pflop = inf"), "work.amount_pflop"),
        (replace("run_time_s = 3600", "run_time_s = 3600\namount_pflop = 5.0"), "work"),
        (replace("origin = \"beijing\"", "origin = \"atlantis\""), "origin"),
        (replace("origin = \"beijing\"", "origin = \"zhongwei\""), "origin"),
        (replace("kind = \"training\"", "kind = \"mining\""), "kind"),
        (replace("family = \"intelligent\"", "family = \"quantum\""), "resources.family"),
        (replace("tenant = \"acme\"", "tenant = \"ACME Corp\""), "tenant"),
        (replace("name = \"ok\"", "name = \"\""), "name"),
        (spec("deadline = \"2020-01-01T00:00:00Z\""), "deadline"),
        (spec("deadline = \"next tuesday\""), "deadline"),
        (spec("deadline = 2020-01-01T00:00:00Z"), "deadline"),
        (spec("deadline = \"9999-12-31T00:00:00Z\""), "deadline"),
        (spec("deadline = \"2999-01-01T00:00:00Z\""), "deadline"),
        (spec("start_within = \"6 hours\""), "start_within"),
        (spec("start_within = -60"), "start_within"),
        (spec("start_within = \"30m2h\""), "start_within"),
        (spec("start_within = \"400d\""), "start_within"),
        (spec("start_within = 1.5"), "start_within"),
        (spec("budget_fen = -100"), "budget_fen"),
        (spec("budget_fen = 12.5"), "budget_fen"),
        (spec("min_green_share = 1.5"), "min_green_share"),
        (spec("min_green_share = -0.1"), "min_green_share"),
        (spec("priority = 10"), "priority"),
        (spec("preemptible = \"yes\""), "preemptible"),
        (spec("latency_tier = \"planet\""), "latency_tier"),
        (spec("allowed_regions = [\"gansu\", \"mars\"]"), "allowed_regions[1]"),
        (spec("allowed_sites = [\"qingyang-xifeng\", 7]"), "allowed_sites[1]"),
        (spec("allowed_sites = [\"nowhere-dc\"]"), "allowed_sites[0]"),
        (spec("colour = \"blue\""), "colour"),
        (
            replace("[resources]", "[resources]\nmin_throughput = { precision = \"fp12\", tflops = 10.0 }"),
            "resources.min_throughput.precision",
        ),
        (
            replace("[resources]", "[resources]\nmin_throughput = { precision = \"fp16\", tflops = -10.0 }"),
            "resources.min_throughput.tflops",
        ),
        (replace("[resources]", "[resources]\naccelerator = \"tpu-v5\""), "resources.accelerator"),
        (replace("[resources]", "[resources]\nmemory_gib = -1"), "resources.memory_gib"),
        (replace("[resources]", "[resources]\nvariants = [{ arch = \"sparc\" }]"), "resources.variants[0].arch"),
        (
            replace("[resources]", "[resources]\nvariants = [{ arch = \"x86_64\", accelerator_kind = \"rocm\" }]"),
            "resources.variants[0].accelerator_kind",
        ),
        (spec("[input]\nsize_gb = -5\nlocation = \"beijing\""), "input.size_gb"),
        (spec("[input]\nsize_gb = 1e300\nlocation = \"beijing\""), "input.size_gb"),
        (spec("[input]\nsize_gb = 5\nlocation = \"gansu\""), "input.location"),
        (spec("[input]\nsize_gb = 5\nlocation = \"beijing\"\nclassification = \"top-secret\""), "input.classification"),
        (spec("[input]\nlocation = \"beijing\""), "input.size_gb"),
        (replace("[work]\nrun_time_s = 3600", "work = 5"), "work"),
        (replace("family = \"intelligent\"", "family = \"general\"\naccelerator = \"a800\""), "resources.accelerator"),
        (spec("[run]\nargs = [\"x\"]"), "run.command"),
        (spec("[run]\ncommand = \"\""), "run.command"),
        (spec("[run]\ncommand = \"sh\"\nargs = [\"-c\", 3]"), "run.args[1]"),
        (spec("[run]\ncommand = \"sh\"\nenv = { \"1BAD\" = \"x\" }"), "run.env.1BAD"),
        (spec("[run]\ncommand = \"sh\"\nenv = { GOOD = 5 }"), "run.env.GOOD"),
        (spec("[run]\ncommand = \"sh\"\nshell = true"), "run.shell"),
        ("name = \"ok\"\nname = \"twice\"".to_string(), "$"),
        ("= broken toml".to_string(), "$"),
    ];
    assert!(cases.len() >= 20);
    for (text, field) in &cases {
        check_bad(text.as_bytes(), field);
    }
}

#[test]
fn non_utf8_and_huge_files_are_refused_without_reading_on() {
    let mut bytes = VALID.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n# \xff\xfe\n");
    check_bad(&bytes, "$");
    let huge = vec![b'#'; 10 * 1024 * 1024];
    check_bad(&huge, "$");
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "name = \"x\"\ntenant = \"BAD\"\nkind = \"mining\"\norigin = \"atlantis\"\n[resources]\nfamily = \"quantum\"\ncount = 0\n[work]\nrun_time_s = -1\n";
    let net = Network::reference().expect("net");
    let problems = job::parse_toml(text.as_bytes(), &net, now()).expect_err("bad");
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for want in ["tenant", "kind", "origin", "resources.family", "resources.count", "work.run_time_s"] {
        assert!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    assert!(problems.iter().all(|p| !p.hint.is_empty()), "every problem has a hint: {problems:#?}");
}

#[test]
fn typos_get_a_suggestion() {
    let net = Network::reference().expect("net");
    let problems = job::parse_toml(spec("min_green_shar = 0.5").as_bytes(), &net, now()).expect_err("bad");
    assert!(
        problems.iter().any(|p| p.field == "min_green_shar" && p.hint.contains("min_green_share")),
        "{problems:#?}"
    );
}

#[test]
fn a_full_spec_round_trips_through_json() {
    let net = Network::reference().expect("net");
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/training.toml")).expect("example");
    let job = job::parse_toml(&text, &net, now()).expect("valid");
    assert_eq!(job.kind, JobKind::Training);
    assert_eq!(job.latency_tier, None);
    assert_eq!(job.resources.variants.len(), 2);
    assert!(matches!(job.work, Work::Amount { amount_pflop } if (amount_pflop - 5.0e7).abs() < 1.0));
    let json = serde_json::to_vec(&job).expect("serialises");
    let again = job::parse_json(&json, &net, now()).expect("the JSON shape is the TOML shape");
    assert_eq!(job, again);
}

#[test]
fn every_example_is_valid_and_every_kind_has_one() {
    let net = Network::reference().expect("net");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let bytes = std::fs::read(&path).expect("readable");
            let job = job::parse_toml(&bytes, &net, now()).unwrap_or_else(|p| panic!("{}: {p:#?}", path.display()));
            kinds.insert(job.kind);
        }
    }
    for kind in JobKind::ALL {
        assert!(kinds.contains(&kind), "no example of kind {}", kind.as_str());
    }
}

#[test]
fn a_run_section_round_trips() {
    let net = Network::reference().expect("net");
    let job = job::parse_toml(
        spec("[run]\ncommand = \"python3\"\nargs = [\"-c\", \"print(1)\"]\nenv = { SEED = \"7\" }").as_bytes(),
        &net,
        now(),
    )
    .expect("valid");
    let run = job.run.clone().expect("run");
    assert_eq!(
        (run.command.as_str(), run.args.len(), run.env.get("SEED").map(String::as_str)),
        ("python3", 2, Some("7"))
    );
    let again = job::parse_json(&serde_json::to_vec(&job).expect("json"), &net, now()).expect("valid");
    assert_eq!(job, again);
}

#[test]
fn defaults_and_fields() {
    let net = Network::reference().expect("net");
    let job = job::parse_toml(
        spec("latency_tier = \"city\"\n[input]\nsize_gb = 10\nlocation = \"yrd-qingpu\"\nclassification = \"restricted\"").as_bytes(),
        &net,
        now(),
    )
    .expect("valid");
    assert_eq!(job.priority, 5);
    assert!(!job.preemptible);
    assert_eq!(job.start_within_s, None, "the operator's default applies");
    for (text, s) in [("\"1h30m\"", 5_400), ("600", 600), ("\"0s\"", 0)] {
        let j = job::parse_toml(spec(&format!("start_within = {text}")).as_bytes(), &net, now()).expect(text);
        assert_eq!(j.start_within_s, Some(s), "{text}");
        let again = job::parse_json(&serde_json::to_vec(&j).expect("json"), &net, now()).expect("json back");
        assert_eq!(again.start_within_s, Some(s), "{text} through JSON");
    }
    assert_eq!(job.latency_tier, Some(LatencyTier::City));
    let input = job.input.expect("input");
    assert_eq!(input.classification, Classification::Restricted);
    assert_eq!(input.location, "yrd-qingpu");
}

mod never_panics {
    use proptest::prelude::*;
    use suanwang_core::job;
    use suanwang_core::{Network, Ts};

    fn field_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| if f.is_finite() { format!("{f:e}") } else { "nan".into() }),
            "[a-z_-]{0,12}".prop_map(|s| format!("{s:?}")),
            Just("true".to_string()),
            Just("[1, \"x\"]".to_string()),
            Just("{ a = 1 }".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes are refused or accepted, never a panic.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let net = Network::reference().expect("net");
            let _ = job::parse_toml(&bytes, &net, Ts(0));
            let _ = job::parse_json(&bytes, &net, Ts(0));
        }

        /// Any value in any field of a valid spec gives a job or a list of problems naming fields.
        #[test]
        fn any_value_in_any_field(
            key in prop::sample::select(vec!["name", "tenant", "kind", "origin", "latency_tier", "deadline",
                "start_within", "budget_fen", "min_green_share", "priority", "preemptible", "allowed_sites"]),
            rkey in prop::sample::select(vec!["count", "memory_gib", "family", "accelerator"]),
            value in field_value(),
            rvalue in field_value(),
        ) {
            let net = Network::reference().expect("net");
            let text = format!(
                "name = \"n\"\ntenant = \"t\"\nkind = \"batch\"\norigin = \"beijing\"\n{key} = {value}\n\
                 [resources]\nfamily = \"general\"\ncount = 1\n{rkey} = {rvalue}\n[work]\nrun_time_s = 60\n"
            );
            match job::parse_toml(text.as_bytes(), &net, Ts(0)) {
                Ok(_) => {}
                Err(problems) => prop_assert!(!problems.is_empty() && problems.iter().all(|p| !p.field.is_empty())),
            }
        }
    }
}
