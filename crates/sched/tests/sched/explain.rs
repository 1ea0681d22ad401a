//! Placements explain themselves; refusals name the filter per site; deferral and transfer
//! modes behave as the policy says.

use std::sync::Arc;

use suanwang_core::job::{self, Job};
use suanwang_core::{Network, Ts};
use suanwang_sched::slots::{beijing_slot_of_day, slot_of};
use suanwang_sched::{Config, Filter, Policy, Scheduler, Scorer, TransferMode};

use super::{reference, start};

fn spec(net: &Network, text: &str) -> Job {
    job::parse_toml(text.as_bytes(), net, start()).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn plan(
    net: &Arc<Network>,
    job: &Job,
    at: Ts,
    policy: &str,
) -> Result<suanwang_sched::Placement, suanwang_sched::Refusal> {
    let mut s = Scheduler::new(Arc::clone(net), at, Config::default());
    s.plan(job, at, &Policy::named(policy, &net.policy).expect("policy"))
}

const BASE: &str = "name = \"j\"\ntenant = \"t\"\n";

#[test]
fn every_placement_explains_its_choice_and_runners_up() {
    let net = reference();
    let job = spec(
        &net,
        &format!(
            "{BASE}kind = \"training\"\norigin = \"beijing\"\n[resources]\nfamily = \"intelligent\"\ncount = 8\n[work]\nrun_time_s = 7200\n[input]\nsize_gb = 100\nlocation = \"beijing\"\n"
        ),
    );
    let p = plan(&net, &job, start(), "balanced").expect("placed");
    assert_eq!(p.chosen.scores.len(), Scorer::ALL.len());
    for line in &p.chosen.scores {
        assert!((line.weighted - line.weight * line.normalised).abs() < 1e-12);
    }
    let total: f64 = p.chosen.scores.iter().map(|l| l.weighted).sum();
    assert!((total - p.chosen.score).abs() < 1e-9);
    assert!(!p.runners_up.is_empty());
    for r in &p.runners_up {
        assert!(r.score >= p.chosen.score, "runner-up {} scores {} < chosen {}", r.site, r.score, p.chosen.score);
        assert_ne!(r.site, p.chosen.site, "runners-up are other sites");
    }
    // the delay-tolerant job leaves its origin's crowded hub, for a greener hub (hubs first)
    let site = net.site(&p.chosen.site).expect("site");
    assert!(site.in_hub() && site.region != "jingjinji", "training went to {}", site.id);
    // and emits less than half what the same energy would at Beijing's own cluster, on average
    let home = net.site("zhangjiakou-huailai").expect("home");
    let green = net.green_profile(&home.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean);
    let home_kg = p.chosen.energy_kwh * home.grid_factor_kg_per_kwh * (1.0 - green);
    assert!(p.chosen.carbon_kg < 0.5 * home_kg, "{} kg vs {home_kg} kg at home", p.chosen.carbon_kg);
}

#[test]
fn a_city_tier_job_is_kept_near_and_far_sites_are_refused_by_latency() {
    let net = reference();
    let job = spec(
        &net,
        &format!(
            "{BASE}kind = \"inference\"\norigin = \"shanghai\"\nlatency_tier = \"city\"\n[resources]\nfamily = \"intelligent\"\ncount = 2\n[work]\nrun_time_s = 3600\n"
        ),
    );
    let p = plan(&net, &job, start(), "cheapest").expect("placed");
    assert!(net.latency("shanghai", &p.chosen.site).expect("known").one_way_ms <= 1.0);
    let far = p.rejections.iter().find(|r| r.site == "zhongwei-xibuyun").expect("zhongwei refused");
    assert_eq!(far.filter, Filter::Latency);
    assert!(far.detail().contains("ms"), "{}", far.detail());
    assert!(far.value.is_some_and(|ms| ms > 1.0) && far.limit == Some(1.0));
}

#[test]
fn an_impossible_job_is_refused_with_a_reason_per_site() {
    let net = reference();
    // 64 H800 within 1 ms of Harbin: only Harbin's own data centre is that close, without H800
    let job = spec(
        &net,
        &format!(
            "{BASE}kind = \"inference\"\norigin = \"harbin\"\nlatency_tier = \"city\"\n[resources]\nfamily = \"intelligent\"\naccelerator = \"h800\"\ncount = 64\n[work]\nrun_time_s = 3600\n"
        ),
    );
    let refusal = plan(&net, &job, start(), "balanced").expect_err("refused");
    assert_eq!(refusal.rejections.len(), net.sites.len(), "one reason per site");
    for r in &refusal.rejections {
        let want = if r.site == "harbin-dc" { Filter::Accelerator } else { Filter::Latency };
        assert_eq!(r.filter, want, "{}", r.site);
    }
    assert!(refusal.to_string().contains("latency"));
    // a gang larger than any pool: refused by pool size at every site that has the model
    let job = spec(
        &net,
        &format!(
            "{BASE}kind = \"training\"\norigin = \"beijing\"\n[resources]\nfamily = \"intelligent\"\naccelerator = \"h800\"\ncount = 100000\n[work]\nrun_time_s = 3600\n"
        ),
    );
    let refusal = plan(&net, &job, start(), "balanced").expect_err("refused");
    assert!(refusal.rejections.iter().any(|r| r.filter == Filter::PoolSize));
    assert!(refusal.rejections.iter().any(|r| r.filter == Filter::Accelerator));
}

#[test]
fn restricted_data_brings_the_compute_to_it() {
    let net = reference();
    let job = spec(
        &net,
        &format!(
            "{BASE}kind = \"fine-tuning\"\norigin = \"shanghai\"\n[resources]\nfamily = \"intelligent\"\ncount = 8\n[work]\nrun_time_s = 3600\n[input]\nsize_gb = 500\nlocation = \"qingyang-xifeng\"\nclassification = \"restricted\"\n"
        ),
    );
    let p = plan(&net, &job, start(), "nearest").expect("placed");
    assert_eq!(net.site(&p.chosen.site).expect("site").region, "gansu");
    assert_eq!(p.chosen.transfer.mode, TransferMode::None, "the data does not move");
    assert!(p.rejections.iter().any(|r| r.filter == Filter::Residency));
}

#[test]
fn deferrable_work_shifts_to_green_and_cheap_hours() {
    let net = reference();
    // 18:00 Beijing (10:00 UTC): evening peak tariff, no sun
    let at = Ts::parse("2026-11-26T10:00:00Z").expect("ts");
    let render = |start_within: &str| {
        spec(
            &net,
            &format!(
                "{BASE}kind = \"rendering\"\norigin = \"beijing\"\nallowed_sites = [\"zhongwei-xibuyun\"]\n{start_within}[resources]\nfamily = \"general\"\ncount = 20000\n[work]\nrun_time_s = 3600\n"
            ),
        )
    };
    // the user allows a day: the sun is within reach
    let job = render("start_within = \"24h\"\n");
    let hour = |p: &suanwang_sched::Placement| beijing_slot_of_day(slot_of(p.chosen.start_at)) / 4;
    // greenest waits for the sun
    let p = plan(&net, &job, at, "greenest").expect("placed");
    assert!((10..16).contains(&hour(&p)), "greenest started at Beijing hour {}", hour(&p));
    assert!(p.deferred_s > 0);
    // cheapest leaves the evening peak (18:00–23:00 in Ningxia's schedule)
    let p = plan(&net, &job, at, "cheapest").expect("placed");
    assert!(!(18..23).contains(&hour(&p)), "cheapest started at Beijing hour {}", hour(&p));
    assert!(p.deferred_s > 0);
    // start_within bounds every deferral: the operator's default for rendering (8 h), or the
    // user's own, down to none at all
    for (text, limit_s) in [("", 8 * 3600), ("start_within = \"2h\"\n", 2 * 3600), ("start_within = 0\n", 0)] {
        let job = render(text);
        for policy in ["greenest", "cheapest", "balanced"] {
            let p = plan(&net, &job, at, policy).expect("placed");
            assert!(p.deferred_s <= limit_s, "{policy} {text:?}: deferred {} s", p.deferred_s);
        }
    }
    let p = plan(&net, &render(""), at, "cheapest").expect("placed");
    assert!(p.deferred_s > 0, "within the default 8 h, cheapest still leaves the evening peak");
    // the same job as latency-critical inference is not shifted
    let job = spec(
        &net,
        &format!(
            "{BASE}kind = \"inference\"\norigin = \"beijing\"\nallowed_sites = [\"zhongwei-xibuyun\"]\n[resources]\nfamily = \"general\"\ncount = 20000\n[work]\nrun_time_s = 3600\n"
        ),
    );
    let p = plan(&net, &job, at, "greenest").expect("placed");
    assert_eq!(p.deferred_s, 0);
}

#[test]
fn transfer_mode_follows_data_size() {
    let net = reference();
    let mk = |gb: u64| {
        spec(
            &net,
            &format!(
                "{BASE}kind = \"backup\"\norigin = \"shenzhen\"\nallowed_sites = [\"guian-dianzi\"]\n[resources]\nfamily = \"general\"\ncount = 16\n[work]\nrun_time_s = 3600\n[input]\nsize_gb = {gb}\nlocation = \"shenzhen\"\n"
            ),
        )
    };
    let small = plan(&net, &mk(5), start(), "fastest").expect("placed");
    assert_eq!(small.chosen.transfer.mode, TransferMode::Network);
    let huge = plan(&net, &mk(1_500_000), start(), "cheapest").expect("placed");
    assert_eq!(huge.chosen.transfer.mode, TransferMode::Express, "1.5 PB ships on disks");
    assert!(huge.chosen.start_at.0 - start().0 >= 24 * 3600 * 1000, "and waits for them");
}

#[test]
fn policies_pull_in_their_direction() {
    let net = reference();
    let job = spec(
        &net,
        &format!(
            "{BASE}kind = \"analytics\"\norigin = \"guangzhou\"\n[resources]\nfamily = \"general\"\ncount = 512\n[work]\nrun_time_s = 7200\n[input]\nsize_gb = 50\nlocation = \"guangzhou\"\n"
        ),
    );
    let by = |policy: &str| plan(&net, &job, start(), policy).expect("placed").chosen;
    let (cheap, green, near) = (by("cheapest"), by("greenest"), by("nearest"));
    assert!(cheap.cost.total_fen <= green.cost.total_fen && cheap.cost.total_fen <= near.cost.total_fen);
    assert!(green.carbon_kg <= cheap.carbon_kg && green.carbon_kg <= near.carbon_kg);
    assert!(near.latency_ms <= cheap.latency_ms && near.latency_ms <= green.latency_ms);
}

/// A job that runs a command goes only where an agent runs commands: on the reference network
/// (simulated sites) it is refused by the `agent` filter at every site, with the reason; the
/// same job without its command is placed; once a site's agent runs commands, it goes there.
#[test]
fn a_job_with_a_command_is_placed_only_where_an_agent_runs_commands() {
    let net = reference();
    let text = format!(
        "{BASE}kind = \"batch\"\norigin = \"beijing\"\n[resources]\nfamily = \"general\"\ncount = 2\nmemory_gib = 1\n[work]\nrun_time_s = 60\n"
    );
    let with_run = format!("{text}[run]\ncommand = \"true\"\n");
    let refusal = plan(&net, &spec(&net, &with_run), start(), "balanced").expect_err("no agent site");
    assert_eq!(refusal.rejections.len(), net.sites.len(), "{refusal}");
    assert!(refusal.rejections.iter().all(|r| r.filter == Filter::Agent), "{refusal}");
    assert!(refusal.rejections[0].detail().contains("only on sites with a live agent"), "{refusal}");
    assert!(plan(&net, &spec(&net, &text), start(), "balanced").is_ok(), "without a command it is simulated");

    let site = suanwang_core::network::AgentSite {
        id: "box".into(),
        city: "beijing".into(),
        pue: 1.3,
        pools: vec![suanwang_core::network::AgentPool {
            name: "cpu".into(),
            model: "generic-x86_64".into(),
            count: 4,
            memory_gib_per_unit: 2,
            power_w_per_unit: 10.0,
            price_fen_per_unit_hour: 30,
        }],
    };
    let with_box = Arc::new(net.with_agent_site(&site).expect("extends"));
    let job = spec(&with_box, &with_run);
    let mut s = Scheduler::new(Arc::clone(&with_box), start(), Config::default());
    let policy = Policy::named("balanced", &net.policy).expect("policy");
    assert!(s.plan(&job, start(), &policy).is_err(), "a site is not an agent's until marked");
    assert!(s.set_site_runs_commands("box", true).is_some());
    assert_eq!(s.plan(&job, start(), &policy).expect("placed").chosen.site, "box");
    // and the mark carries over when the network grows again
    let more = suanwang_core::network::AgentSite { id: "box2".into(), ..site };
    let grown = Arc::new(with_box.with_agent_site(&more).expect("extends"));
    let s2 = s.extended(Arc::clone(&grown)).expect("extends");
    let box_index = grown.sites.iter().position(|x| x.id == "box").expect("box");
    assert!(s2.site_runs_commands(box_index) && !s2.site_runs_commands(box_index + 1));
    // an agent site that is lost takes nothing: the job is refused, not simulated elsewhere
    s.set_site_available("box", false);
    let refusal = s.plan(&job, start(), &policy).expect_err("no live agent");
    let at_box = refusal.rejections.iter().find(|r| r.site == "box").expect("box judged");
    assert_eq!(at_box.filter, Filter::Unavailable);
    assert!(refusal.rejections.iter().filter(|r| r.site != "box").all(|r| r.filter == Filter::Agent));
}
