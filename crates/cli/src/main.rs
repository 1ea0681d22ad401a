//! `suanwang` — the one binary: thin, it parses arguments, calls the library crates, prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// jemalloc, tuned in `.cargo/config.toml` to return freed memory within a second: the
/// server's resident memory then follows what it holds live, not how many jobs it has served
/// (glibc's arenas kept growing; ARCHITECTURE.md, "Memory").
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod agent_cmd;
mod alerts_cmd;
mod bench_cmd;
mod dataset_cmd;
mod evidence_bench;
mod evidence_cmd;
mod http;
mod ledger_bench;
mod market_bench;
mod market_cmd;
mod money_cmd;
mod network_cmd;
mod plan_cmd;
mod preempt_bench;
mod remote;
mod serve_cmd;
mod soak_cmd;
mod twin_cmd;

use suanwang_core::network::{DATA_FILES, DataFiles};
use suanwang_core::{Network, Ts};

#[derive(Debug, Parser)]
#[command(
    name = "suanwang",
    version,
    about = "Suanwang (算网): a national computing power network — schedule, meter and settle compute across hubs"
)]
struct Cli {
    /// Read the network from this data directory instead of the built-in reference network.
    #[arg(long, global = true, env = "SUANWANG_NETWORK_DATA", value_name = "DIR")]
    network_data: Option<PathBuf>,
    /// The control plane's URL, for client commands.
    #[arg(long, global = true, env = "SUANWANG_SERVER", value_name = "URL")]
    server: Option<String>,
    /// A bearer token, for client commands.
    #[arg(long, global = true, env = "SUANWANG_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// For an https:// server: trust only this CA (PEM) instead of the system's roots.
    #[arg(long, global = true, env = "SUANWANG_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Present this client certificate (PEM) to the server (mutual TLS; agents, when the
    /// server has --client-ca).
    #[arg(long, global = true, env = "SUANWANG_CLIENT_CERT", value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "SUANWANG_CLIENT_KEY", value_name = "FILE")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// What `up` and `serve` share: where to listen and how the control plane keeps time.
#[derive(Debug, clap::Args)]
struct ServeFlags {
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: String,
    /// Simulated sites run jobs for their declared time × this factor (0.0001 to 1000).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// A site whose agent has not polled for this long is lost (its jobs move).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    agent_timeout: u64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: the agent routes (/v1/agents/…) need a client certificate that chains to
    /// this CA (PEM); other routes take bearer tokens alone. Needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Connections served at once; more wait in the kernel's queue.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Connections served at once from one address (an IPv6 /64); more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_connections_per_addr: usize,
    /// A request's headers must arrive within this; idle keep-alive connections close after it.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    header_timeout: u64,
    /// A request's body must arrive within this of its headers.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    body_timeout: u64,
    /// A TLS handshake must finish within this.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    tls_handshake_timeout: u64,
    /// Failed authentications an address (or a token, or a client certificate) may have at
    /// once before it gets 429 with Retry-After (answered after up to a second); 0 turns the
    /// limit off.
    #[arg(long, value_name = "N", default_value_t = 20)]
    auth_fail_burst: u32,
    /// … and how many more per minute after the burst.
    #[arg(long, value_name = "N", default_value_t = 60)]
    auth_fail_per_min: u32,
    /// A new tenant wallet's credit limit in fen (R4): 0 is prepaid — a tenant is topped up
    /// (`suanwang topup`) before its jobs are admitted; `unlimited` never refuses for balance
    /// (bills still post, and wallets may go negative).
    #[arg(long, value_name = "FEN|unlimited", default_value = "0", value_parser = parse_credit)]
    credit_limit_fen: u64,
    /// Meter jobs without charging anyone: no holds at admission, no settlement at the end
    /// (a network that bills nobody, or the baseline `scripts/bench-billing.sh` measures
    /// billing's cost against). Wallets, top-ups, vouchers and the market still work.
    #[arg(long)]
    no_billing: bool,
    /// The price book's economy terms (default: the shipped data/economy/prices.toml).
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// The evidence log's signing key (a C2SP signed-note key file, mode 0600), created when
    /// absent. Default: `up` keeps it in DATA/evidence.key; `serve` in its database.
    #[arg(long, value_name = "FILE")]
    evidence_key: Option<PathBuf>,
    /// A witness whose cosignatures of checkpoints the log accepts (its verifier key, or a file
    /// holding it; `suanwang evidence witness-key` makes one). Repeatable.
    #[arg(long, value_name = "KEY")]
    witness: Vec<String>,
    /// The prefix the dataset registry issues identifiers under (decimal arcs: the issuing
    /// authority, e.g. a province's node 88.156.51).
    #[arg(long, value_name = "PREFIX", default_value = "88.156.1")]
    id_prefix: String,
    /// Early-warning rules (R7) from this file instead of the built-in data/alerts/rules.toml
    /// (`suanwang alerts rules` prints them); a malformed file is refused naming the line.
    #[arg(long, value_name = "FILE")]
    alert_rules: Option<PathBuf>,
    /// POST each alert that fires or resolves to this URL (Alertmanager's webhook payload,
    /// version 4), retried with backoff. Repeatable.
    #[arg(long, value_name = "URL")]
    webhook: Vec<String>,
    /// Push alerts to your Alertmanager (its base URL; POST /api/v2/alerts), so its routes,
    /// silences and receivers take over.
    #[arg(long, value_name = "URL")]
    alertmanager: Option<String>,
    /// Draw administrative borders on the console's map from this GeoJSON file — an approved
    /// map (审图号) only: publishing a map of China with borders needs one. Needs
    /// --map-approval. Without it the map is a schematic (sites at their coordinates).
    #[arg(long, value_name = "FILE", requires = "map_approval")]
    map_borders: Option<PathBuf>,
    /// The approval number of the --map-borders map (e.g. "GS(2024)0650号"), shown under it.
    #[arg(long, value_name = "NUMBER", requires = "map_borders")]
    map_approval: Option<String>,
    /// Show the digital twin's reports in the console: each directory under DIR that
    /// `suanwang twin --report DIR/NAME` wrote.
    #[arg(long, value_name = "DIR")]
    twin_reports: Option<PathBuf>,
}

/// `--credit-limit-fen`: fen, or `unlimited`.
fn parse_credit(s: &str) -> Result<u64, String> {
    if s == "unlimited" {
        return Ok(suanwang_server::billing::UNLIMITED);
    }
    s.parse::<u64>().ok().filter(|v| *v <= suanwang_server::billing::UNLIMITED).ok_or_else(|| {
        format!("{s:?} is neither a number of fen (0 to {}) nor `unlimited`", suanwang_server::billing::UNLIMITED)
    })
}

impl ServeFlags {
    fn args<'a>(&'a self, data: Option<&'a Path>, db: Option<&'a str>) -> serve_cmd::ServeArgs<'a> {
        serve_cmd::ServeArgs {
            data,
            db,
            listen: &self.listen,
            time_scale: self.time_scale,
            agent_timeout: self.agent_timeout,
            bootstrap: false,
            local_agent: None,
            tls_cert: self.tls_cert.as_deref(),
            tls_key: self.tls_key.as_deref(),
            client_ca: self.client_ca.as_deref(),
            max_connections: self.max_connections,
            max_connections_per_addr: self.max_connections_per_addr,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            auth_limit: suanwang_server::throttle::AuthLimit {
                burst: self.auth_fail_burst,
                per_minute: self.auth_fail_per_min,
                ..suanwang_server::throttle::AuthLimit::default()
            },
            client_tls: http::ClientTls::default(),
            caps: suanwang_server::ProviderCaps::default(),
            runs: agent_cmd::RunOptions::default(),
            credit_limit_fen: self.credit_limit_fen,
            billing: !self.no_billing,
            prices: self.prices.as_deref(),
            evidence_key: self.evidence_key.clone().or_else(|| data.map(|d| d.join("evidence.key"))),
            witnesses: self.witness.clone(),
            id_prefix: self.id_prefix.clone(),
            alert_rules: self.alert_rules.as_deref(),
            webhooks: self.webhook.clone(),
            alertmanager: self.alertmanager.clone(),
            map_borders: self.map_borders.as_deref().zip(self.map_approval.as_deref()),
            twin_reports: self.twin_reports.clone(),
            ha: None,
        }
    }
}

/// Whom an agent's runs execute as and how they are confined (`agent` and `up`'s local agent).
#[derive(Debug, clap::Args)]
struct RunFlags {
    /// Run jobs as this user (when the agent is root). Default: the dedicated system user
    /// `suanwang-run`, created when missing.
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Map tenants to users of this machine: a TOML file with `[users]` and `tenant = "user"`
    /// lines; unmapped tenants run as --run-as.
    #[arg(long, value_name = "FILE")]
    run_as_map: Option<PathBuf>,
    /// Allow jobs to run as root (a single-user laptop only: any tenant would own the machine).
    #[arg(long)]
    allow_root_runs: bool,
    /// The network policy of this site's runs: allowed, or none (no interface but loopback).
    #[arg(long, value_name = "POLICY", default_value = "allowed", value_parser = ["allowed", "none"])]
    run_network: String,
}

impl RunFlags {
    fn options(self) -> agent_cmd::RunOptions {
        agent_cmd::RunOptions {
            run_as: self.run_as,
            run_as_map: self.run_as_map,
            allow_root_runs: self.allow_root_runs,
            network: self.run_network != "none",
        }
    }
}

/// What one provider's agent sites may declare in total (its pending and approved sites; the
/// operator's own machines are not capped).
#[derive(Debug, clap::Args)]
#[allow(clippy::struct_field_names)] // the flags are named after the fields
struct CapFlags {
    #[arg(long, value_name = "N", default_value_t = suanwang_server::ProviderCaps::default().max_cores)]
    max_cores_per_provider: u64,
    #[arg(long, value_name = "N", default_value_t = suanwang_server::ProviderCaps::default().max_accelerators)]
    max_accelerators_per_provider: u64,
    #[arg(long, value_name = "GIB", default_value_t = suanwang_server::ProviderCaps::default().max_memory_gib)]
    max_memory_gib_per_provider: u64,
    /// Approve a provider's new site only after a probe job on it (run by its agent as any job)
    /// found the cores, memory and accelerator cards it declared.
    #[arg(long)]
    require_probe: bool,
}

impl CapFlags {
    fn caps(&self) -> suanwang_server::ProviderCaps {
        suanwang_server::ProviderCaps {
            max_cores: self.max_cores_per_provider,
            max_accelerators: self.max_accelerators_per_provider,
            max_memory_gib: self.max_memory_gib_per_provider,
            require_probe: self.require_probe,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the national network: hubs, clusters, sites, pools, capacity, green share.
    Network {
        #[command(subcommand)]
        sub: Option<NetworkSub>,
        /// Print JSON (top-level arrays hubs, clusters, regions, cities, sites, links).
        #[arg(long)]
        json: bool,
    },
    /// Plan a job on the empty reference network (with --server: on the control plane's live
    /// load): where, when, how data moves, and why.
    Plan {
        file: PathBuf,
        /// balanced, cheapest, greenest, fastest or nearest.
        #[arg(long, default_value = "balanced")]
        policy: String,
        /// A TOML file overriding the policy's weights (`[weights] money = 1.0 …`).
        #[arg(long, value_name = "FILE")]
        weights: Option<PathBuf>,
        /// Plan as of this instant (RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Replay a real workload trace through the engine under each policy (the digital twin).
    Twin(#[command(flatten)] twin_cmd::TwinArgs),
    /// Benchmarks that print JSON figures.
    Bench {
        #[command(subcommand)]
        sub: BenchSub,
    },
    /// Start the control plane on embedded defaults: SQLite in DIR, the reference network,
    /// simulated sites, an operator and a tenant token.
    Up {
        #[arg(long, value_name = "DIR", default_value = "suanwang-data")]
        data: PathBuf,
        /// The demand city this machine's own site (`local`) stands in.
        #[arg(long, default_value = "beijing")]
        city: String,
        /// Do not connect this machine as site `local`.
        #[arg(long)]
        no_local_agent: bool,
        #[command(flatten)]
        serve: ServeFlags,
        #[command(flatten)]
        runs: RunFlags,
        #[command(flatten)]
        caps: CapFlags,
    },
    /// Run the control plane against a database (`--db postgres://…` or a SQLite path).
    Serve {
        #[arg(long, value_name = "URL")]
        db: String,
        /// Run as one of several instances over the same PostgreSQL (issue 17): one leads,
        /// holding the database's lease; the others forward to it and take over when it is
        /// gone. Each instance has its own name.
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
        /// The leader's lease, ms: a leader gone this long is replaced. At least 500 and 5× the
        /// database's round trip.
        #[arg(long, value_name = "MS", default_value_t = 3000, requires = "instance")]
        lease_ms: u64,
        /// Where the other instances reach this one (default: http(s)://the --listen address).
        #[arg(long, value_name = "URL", requires = "instance")]
        advertise: Option<String>,
        #[command(flatten)]
        serve: ServeFlags,
        #[command(flatten)]
        caps: CapFlags,
    },
    /// Connect this machine as a site and run the work assigned to it.
    Agent {
        /// The site's id (a provider's sites are named `<provider>-…`).
        #[arg(long)]
        site: String,
        /// The demand city the machine stands in.
        #[arg(long, default_value = "beijing")]
        city: String,
        /// process or slurm.
        #[arg(long, default_value = "process")]
        executor: String,
        /// Where runs keep their files.
        #[arg(long, value_name = "DIR", default_value = "suanwang-agent")]
        data: PathBuf,
        /// Declare pools from a TOML file (`[[pools]]`) instead of detecting them.
        #[arg(long, value_name = "FILE")]
        pools: Option<PathBuf>,
        /// Report a run failed once its executor has not answered for it for this long
        /// (Slurm controller down); the agent stops it when the executor answers again.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        lost_after: u64,
        /// Read the agent's token from this file (mode 0600 or stricter). The token may also
        /// come from SUANWANG_TOKEN; `--token` on the command line works but every local user
        /// can see it in `ps`.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        runs: RunFlags,
    },
    /// The output of a job run by an agent.
    Logs { id: String },
    /// Manage tokens.
    Token {
        #[command(subcommand)]
        sub: TokenSub,
    },
    /// Submit a job spec (TOML or JSON) to the control plane.
    Submit {
        file: PathBuf,
        /// Resubmitting with the same key returns the same job.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List jobs visible to the token.
    Jobs {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job.
    Cancel { id: String },
    /// The sites of the control plane's network (agents' sites show their approval and owner).
    Sites {
        #[arg(long)]
        json: bool,
    },
    /// Operator actions on a site.
    Site {
        #[command(subcommand)]
        sub: SiteSub,
    },
    /// A party's accounts: a tenant's wallet (balance, held, available) and vouchers; a
    /// provider's or carrier's receivable; a funder's budget (`--party`: operator, regulator).
    Balance {
        #[arg(long)]
        party: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A job's bill: line items, vouchers, what the tenant pays, and the split; without JOB,
    /// one line per job the token sees.
    Bill {
        job: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A party's statement over a period: opening and closing balances and every posted
    /// transfer (`--from`/`--to`: RFC 3339 or epoch ms).
    Statement {
        #[arg(long)]
        party: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// CSV instead of text.
        #[arg(long)]
        csv: bool,
        #[arg(long)]
        json: bool,
    },
    /// Money paid in (operator): `topup TENANT AMOUNT` (yuan, e.g. 1000 or 12.34, or 1234fen).
    Topup {
        party: String,
        amount: String,
        /// Pay into a voucher funder's budget instead of a tenant's wallet.
        #[arg(long)]
        funder: bool,
        /// The transfer's id (32 hex digits): a retry with the same id pays once. Default: new.
        #[arg(long, value_name = "HEX")]
        transfer_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Compute (算力券) and transport (运力券) vouchers.
    Voucher {
        #[command(subcommand)]
        sub: VoucherSub,
    },
    /// The market (R4): asks and bids for capacity blocks, cleared by periodic call auctions
    /// (a uniform-price double auction per product) into contracts.
    Market {
        #[command(subcommand)]
        sub: MarketSub,
    },
    /// Carbon-sink credits (R5, 碳汇): the lots on offer, and offsetting an ended job's carbon.
    Carbon {
        #[command(subcommand)]
        sub: CarbonSub,
    },
    /// Tenants' quotas (R3): the most units of a family a tenant's live jobs may hold, in a
    /// region or everywhere.
    Quota {
        #[command(subcommand)]
        sub: QuotaSub,
    },
    /// Contracts the market made: a tenant's purchases, a provider's sales.
    Contract {
        #[command(subcommand)]
        sub: ContractSub,
    },
    /// The dataset registry (R6): unified identifiers, records, replicas, lineage.
    Dataset {
        #[command(subcommand)]
        sub: DatasetSub,
    },
    /// Early warning (R7): the alerts now (`--watch`: then each change, live), the rules
    /// (`alerts rules --prometheus` for your own Prometheus), the indicators they read.
    #[command(args_conflicts_with_subcommands = true)]
    Alerts {
        #[command(subcommand)]
        sub: Option<AlertsSub>,
        /// Only alerts in this state: pending, firing or resolved.
        #[arg(long)]
        state: Option<String>,
        /// Keep printing alerts as they change (server-sent events from /v1/events).
        #[arg(long)]
        watch: bool,
        #[arg(long)]
        json: bool,
    },
    /// The evidence log (R6/R7): keys, checkpoints, offline verification, audit, witnesses.
    Evidence {
        #[command(subcommand)]
        sub: EvidenceSub,
    },
    /// `job ID` shows a job on the control plane (as JSON; each instant also in RFC 3339, UTC:
    /// `start_at_utc`); `job check FILE` checks a spec locally.
    #[command(args_conflicts_with_subcommands = true)]
    Job {
        #[command(subcommand)]
        sub: Option<JobSub>,
        id: Option<String>,
    },
}

/// A product: family, model, place, window.
#[derive(Debug, clap::Args)]
struct ProductArgs {
    /// A whole product id `family/model/place/YYYY-MM-DDTHHZ/Nh` (instead of the parts).
    #[arg(long, conflicts_with_all = ["family", "model", "place", "start", "hours"])]
    product: Option<String>,
    /// general, intelligent or super (HPC).
    #[arg(long, default_value = "general")]
    family: String,
    /// A device model of the catalogue, or `any`.
    #[arg(long, default_value = "any")]
    model: String,
    /// A site, cluster, hub or green region.
    #[arg(long)]
    place: Option<String>,
    /// The window's first hour, UTC (`2026-12-07T08Z`); default: the next hour.
    #[arg(long)]
    start: Option<String>,
    /// The window's length in hours.
    #[arg(long, default_value_t = 1)]
    hours: u32,
}

impl ProductArgs {
    fn id(&self) -> Result<String> {
        match (&self.product, &self.place) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(place)) => {
                market_cmd::product(&self.family, &self.model, place, self.start.as_deref(), self.hours)
            }
            (None, None) => {
                anyhow::bail!("name the product: --place PLACE [--family --model --start --hours], or --product ID")
            }
        }
    }
}

/// An order's terms.
#[derive(Debug, clap::Args)]
struct OrderArgs {
    #[command(flatten)]
    product: ProductArgs,
    #[arg(long)]
    units: u64,
    /// Price per unit·hour (an ask's floor, a bid's maximum): yuan (1.25) or fen (125fen).
    #[arg(long)]
    price: String,
    /// Whose order (the operator, for a provider or a tenant).
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum MarketSub {
    /// Offer capacity (a provider's own; the operator with --owner) at a floor price.
    Ask(OrderArgs),
    /// Bid for capacity up to a maximum price (held in the wallet until the clearing).
    Bid(OrderArgs),
    /// The token's orders (all for the operator and the regulator).
    Orders {
        /// open, filled, cancelled or expired.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Take an open order out of the book.
    Cancel {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Clearing prices: each product's latest, or one product's history.
    Prices {
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Clear every product now (operator), besides the periodic clearings.
    Clear {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum QuotaSub {
    /// Set a tenant's quota (operator).
    Set {
        tenant: String,
        /// general, intelligent or super.
        #[arg(long)]
        family: String,
        /// A hub or green region (default: everywhere).
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        max_units: u64,
        #[arg(long)]
        json: bool,
    },
    /// The quotas the token sees, with what the live jobs hold.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CarbonSub {
    /// The credit lots (holder, place, issuer, vintage, price, what is left) and the offsets
    /// the token sees.
    Credits {
        #[arg(long)]
        json: bool,
    },
    /// Retire credits against an ended job's market-based carbon; the lot's holder is paid.
    Offset {
        job: u64,
        /// A lot id (default: the first with enough left).
        #[arg(long)]
        lot: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ContractSub {
    /// The token's contracts (a tenant's purchases, a provider's sales; all for the operator).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Buy capacity at the reserved price for a whole window (包年包月, at least 720 h), paid at
    /// once; the contract reserves its units in the scheduler.
    Buy {
        #[command(flatten)]
        product: ProductArgs,
        #[arg(long)]
        units: u64,
        /// The provider (default: the only one with the product's capacity at its place).
        #[arg(long)]
        seller: Option<String>,
        /// The tenant it is for (the operator on a tenant's behalf).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum VoucherSub {
    /// Voucher programmes.
    Programme {
        #[command(subcommand)]
        sub: ProgrammeSub,
    },
    /// Grant vouchers of a programme to a tenant (funder or operator).
    Grant {
        #[arg(long)]
        programme: String,
        #[arg(long)]
        tenant: String,
        /// Yuan (e.g. 5000) or fen (500000fen).
        #[arg(long)]
        amount: String,
        #[arg(long)]
        json: bool,
    },
    /// The programmes, grants and redemptions the token sees.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ProgrammeSub {
    /// File a programme from a TOML or JSON file (see data/economy/programme-example.toml).
    Create {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum NetworkSub {
    /// One-way latency and tier between two places (any city, cluster, region, site or hub id).
    Latency {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SiteSub {
    /// Approve an agent's site: it takes placements from now on (`POST /v1/sites/SITE/approve`).
    Approve {
        site: String,
        /// Hand the site to this provider (default: whoever registered it keeps it).
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenSub {
    /// Create a token and print it (only its hash is stored).
    Create {
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// operator, provider, carrier, tenant, regulator or funder.
        #[arg(long)]
        role: String,
        /// The principal's name (for tenants: the tenant id of their jobs).
        #[arg(long)]
        name: String,
        /// Accept it for this long only (`90d`, `12h`, `30m`; whole seconds): after that every
        /// request with it gets 401 naming when it expired. Default: it never expires.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchSub {
    /// Online placements and the batch optimiser on the reference network.
    Sched {
        /// Jobs placed online, one by one.
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Jobs in the batch window.
        #[arg(long, default_value_t = 10_000)]
        batch_jobs: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "balanced")]
        policy: String,
        /// Run on N sites: the reference network's first N, or it plus synthetic city data
        /// centres placed and linked by the same rule (default: the reference network).
        #[arg(long, value_name = "N")]
        sites: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// The ledger's speed: transfers per second in memory (batches of 8,190) and durable
    /// through the store's group commit on SQLite, with the p99 of a durable batch.
    Ledger {
        /// Transfers in memory.
        #[arg(long, default_value_t = 1_048_320)]
        transfers: usize,
        /// Transfers through SQLite.
        #[arg(long, default_value_t = 262_080)]
        durable: usize,
        /// Wallets the transfers move money between.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        #[arg(long)]
        json: bool,
    },
    /// The evidence log: durable appends per second with a checkpoint every second, inclusion
    /// and consistency proofs at 10 M entries (made from SQLite-stored tiles, as the server
    /// does), and audit speed (issue 14).
    Evidence {
        /// Entries appended through SQLite's group commit.
        #[arg(long, default_value_t = 200_000)]
        appends: usize,
        /// The tree size proofs are timed at.
        #[arg(long, default_value_t = 10_000_000)]
        proof_size: u64,
        /// Entries audited.
        #[arg(long, default_value_t = 1_000_000)]
        audit: u64,
        #[arg(long)]
        json: bool,
    },
    /// The market (issue 16): orders accepted per second (checks, a bid's hold in the ledger,
    /// the book), one clearing round of every product with its settlement in the ledger, and
    /// the engine's preemption decisions (`preemption`: a preempting submission against a plain
    /// one, with preemptible work in flight everywhere).
    Market {
        #[arg(long, default_value_t = 100_000)]
        orders: usize,
        #[arg(long, default_value_t = 1_000)]
        products: usize,
        /// Preempting submissions timed (and as many plain ones).
        #[arg(long, default_value_t = 1_000)]
        preemptions: usize,
        /// Preemptible jobs in flight across the reference network meanwhile.
        #[arg(long, default_value_t = 20_000)]
        background: usize,
        #[arg(long)]
        json: bool,
    },
    /// Durable submissions per second through the API (`--server`, `--token`).
    Submit {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Tenant of the submitted jobs (must match a tenant token).
        #[arg(long, default_value = "acme-ai")]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// The long run (`--server`, an operator `--token`): submissions at a fixed rate for some
    /// minutes while lists and single jobs are read, then a restart in place; prints accepted,
    /// errors, p99_ms, rss_mib_start, rss_mib_end and restart_s.
    Soak {
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        /// Submissions per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Tenant of the submitted jobs (an operator may submit for any).
        #[arg(long, default_value = "acme-ai")]
        tenant: String,
        /// Do not restart the server at the end.
        #[arg(long)]
        no_restart: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DatasetSub {
    /// Register a dataset; the registry issues its identifier (prefix/suffix).
    Register {
        #[arg(long)]
        name: String,
        /// A local copy: its SHA-256 and size are computed here.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        #[arg(long, value_name = "GB")]
        size_gb: Option<f64>,
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// public, internal, or restricted (may not leave the region of --location).
        #[arg(long, default_value = "internal")]
        classification: String,
        #[arg(long, default_value = "proprietary")]
        licence: String,
        /// The city or site id of its first copy.
        #[arg(long)]
        location: String,
        /// The owner (operator only; default: the token's tenant).
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A dataset's record (its type/value pairs, replicas).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// The datasets the token may see.
    List {
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Report a copy at a site with the SHA-256 found there.
    Replicate {
        id: String,
        #[arg(long)]
        site: String,
        #[arg(long, value_name = "HEX")]
        sha256: String,
        #[arg(long)]
        json: bool,
    },
    /// Every record about a dataset — registration, copies, jobs that read it — proved against
    /// the signed checkpoint; `--json`: the bundle `evidence verify` takes.
    Trace {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AlertsSub {
    /// The early-warning rules: as text, or as a Prometheus rules file over /metrics.
    Rules {
        /// A rules file (default: the built-in data/alerts/rules.toml).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print a Prometheus rules file (`promtool check rules` accepts it).
        #[arg(long)]
        prometheus: bool,
        /// The rule group's evaluation interval in the Prometheus file.
        #[arg(long, default_value = "15s")]
        interval: String,
    },
    /// The indicators rules can read (each a gauge on /metrics).
    Indicators,
}

#[derive(Debug, Subcommand)]
enum EvidenceSub {
    /// The log's verifier key (one line, for `--key`); `--json`: origin, key, witnesses, size.
    Key {
        #[arg(long)]
        json: bool,
    },
    /// The newest signed checkpoint (a C2SP signed note).
    Checkpoint,
    /// Offline: a job's records (BUNDLE, from `job trace ID --json`) against their checkpoint,
    /// or an entry (`--checkpoint --entry --proof`), or two checkpoints (`--checkpoint --old
    /// --proof`). Exit 0 verified, 1 not.
    Verify {
        bundle: Option<PathBuf>,
        /// The log's verifier key, or a file holding it (`suanwang evidence key > log.vkey`).
        #[arg(long, value_name = "KEY")]
        key: String,
        /// A witness's verifier key (or file); repeatable.
        #[arg(long, value_name = "KEY")]
        witness: Vec<String>,
        /// Cosignatures required from the --witness keys.
        #[arg(long, value_name = "N", default_value_t = 0)]
        quorum: usize,
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// An entry (`GET /v1/evidence/entries/{index}`) to check with --proof.
        #[arg(long, value_name = "FILE")]
        entry: Option<PathBuf>,
        /// An older checkpoint to check against --checkpoint with --proof.
        #[arg(long, value_name = "FILE")]
        old: Option<PathBuf>,
        /// The proof (`GET /v1/evidence/proof/inclusion` or `…/consistency`).
        #[arg(long, value_name = "FILE")]
        proof: Option<PathBuf>,
    },
    /// Replay the whole log from its tiles (the --server URL, or a DIR from `evidence mirror`):
    /// every entry hashed, every tile and root recomputed, every checkpoint's signature checked.
    Audit {
        /// The server's URL (as --server) or a directory.
        target: String,
        /// The log's verifier key (or file); default: the one the log serves (said so).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        #[arg(long, value_name = "KEY")]
        witness: Vec<String>,
        #[arg(long, value_name = "N", default_value_t = 0)]
        quorum: usize,
        #[arg(long)]
        json: bool,
    },
    /// Copy the log as static files (checkpoint, tiles, history, key) into DIR.
    Mirror { dir: PathBuf },
    /// Cosign the newest checkpoint as a witness, after checking it extends the one cosigned
    /// before (kept in --state).
    Witness {
        /// The witness's signing key file (`evidence witness-key`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The last checkpoint this witness cosigned.
        #[arg(long, value_name = "FILE", default_value = "witness-state.note")]
        state: PathBuf,
        /// The log's verifier key (or file); default: the one the log serves.
        #[arg(long, value_name = "KEY")]
        log_key: Option<String>,
    },
    /// Make a witness's signing key (written to --out, mode 0600); prints its verifier key.
    WitnessKey {
        /// The witness's name (a schema-less URL, e.g. witness.example.org/w1).
        name: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Replace the log's signing key file with a new key of the same name (the old one kept
    /// beside it); the server signs with it from its next start.
    RotateKey {
        #[arg(value_name = "FILE", default_value = "suanwang-data/evidence.key")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum JobSub {
    /// A job's records in the evidence log — placement, moves, meter, bill, vouchers — each
    /// proved against the signed checkpoint; `--json`: the bundle `evidence verify` takes.
    Trace {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Check a job spec file: exit 0 when valid, 1 listing every problem.
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // inside a run's fresh namespaces, started by the agent's sandbox: build the root and
    // execute the run (returns only on failure), before anything else is set up
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == suanwang_agent::sandbox::HELPER_ARG) {
        let rest: Vec<std::ffi::OsString> = args.collect();
        eprintln!("{}", suanwang_agent::sandbox::helper_main(&rest));
        return ExitCode::from(127);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SUANWANG_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    quiet_on_closed_pipe();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let token_on_command_line = matches!(
        matches.subcommand().and_then(|(_, m)| m.value_source("token")).or(matches.value_source("token")),
        Some(clap::parser::ValueSource::CommandLine)
    );
    match run(cli, token_on_command_line) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A reader that stops reading (`suanwang sites | head`) ends the command quietly with status
/// 141, as a shell reports SIGPIPE, instead of a panic from `println!`. (Rust ignores SIGPIPE, so
/// writing to a closed pipe is an error, and the print macros panic on errors; restoring the
/// signal would need `unsafe`, which this workspace forbids.)
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.starts_with("failed printing to std") && m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(cli: Cli, token_on_command_line: bool) -> Result<ExitCode> {
    let net = load_network(cli.network_data.as_deref())?;
    let tls = http::ClientTls {
        ca: cli.ca.clone(),
        client_cert: cli.client_cert.clone(),
        client_key: cli.client_key.clone(),
    };
    let client = || remote::Client::new(cli.server.clone(), cli.token.clone(), &tls);
    match cli.command {
        Command::Up { data, city, no_local_agent, serve, runs, caps } => {
            let local_agent = (!no_local_agent).then_some(city);
            // the local agent trusts --ca and presents --client-cert like any other client
            let args = serve_cmd::ServeArgs {
                bootstrap: true,
                local_agent,
                client_tls: tls.clone(),
                caps: caps.caps(),
                runs: runs.options(),
                ..serve.args(Some(&data), None)
            };
            runtime()?.block_on(serve_cmd::run(net, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent { site, city, executor, data, pools, lost_after, token_file, runs } => {
            let token = match &token_file {
                Some(f) => Some(agent_cmd::read_token_file(f)?),
                None => {
                    if token_on_command_line {
                        eprintln!(
                            "warning: --token on the command line is visible to every user of this machine (ps); \
                             use SUANWANG_TOKEN or --token-file FILE"
                        );
                    }
                    cli.token.clone()
                }
            };
            let c = remote::Client::new(cli.server.clone(), token, &tls)?;
            let lost_after = std::time::Duration::from_secs(lost_after);
            let args = agent_cmd::AgentArgs {
                server: c.servers.join(","),
                token: c.token,
                site,
                city,
                executor,
                data,
                pools,
                lost_after,
                run: runs.options(),
                tls: tls.clone(),
            };
            runtime()?.block_on(agent_cmd::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { id } => {
            let c = client()?;
            runtime()?.block_on(remote::logs(&c, &id))
        }
        Command::Serve { db, instance, lease_ms, advertise, serve, caps } => {
            let ha = instance.map(|name| serve_cmd::HaArgs { name, lease_ms, advertise });
            let args = serve_cmd::ServeArgs { caps: caps.caps(), ha, ..serve.args(None, Some(&db)) };
            runtime()?.block_on(serve_cmd::run(net, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { sub: TokenSub::Create { data, db, role, name, expires_in } } => {
            runtime()?.block_on(serve_cmd::token_create(
                data.as_deref(),
                db.as_deref(),
                &role,
                &name,
                expires_in.as_deref(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit { file, idempotency_key, json } => {
            let c = client()?;
            runtime()?.block_on(remote::submit(&c, &file, idempotency_key.as_deref(), json))
        }
        Command::Jobs { state, json } => {
            let c = client()?;
            runtime()?.block_on(remote::jobs(&c, state.as_deref(), json))
        }
        Command::Cancel { id } => {
            let c = client()?;
            runtime()?.block_on(remote::job(&c, &id, true))
        }
        Command::Balance { party, json } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::balance(&c, party.as_deref(), json))
        }
        Command::Bill { job: Some(job), json } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::bill(&c, &job, json))
        }
        Command::Bill { job: None, json } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::bills(&c, json))
        }
        Command::Statement { party, from, to, csv, json } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::statement(&c, party.as_deref(), from.as_deref(), to.as_deref(), csv, json))
        }
        Command::Topup { party, amount, funder, transfer_id, json } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::topup(&c, &party, &amount, funder, transfer_id.as_deref(), json))
        }
        Command::Voucher { sub: VoucherSub::Programme { sub: ProgrammeSub::Create { file, json } } } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::programme_create(&c, &file, json))
        }
        Command::Voucher { sub: VoucherSub::Grant { programme, tenant, amount, json } } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::grant(&c, &programme, &tenant, &amount, json))
        }
        Command::Market { sub } => {
            let c = client()?;
            let rt = runtime()?;
            match sub {
                MarketSub::Ask(o) => rt.block_on(market_cmd::place(
                    &c,
                    suanwang_api::market::OrderSide::Ask,
                    o.product.id()?,
                    o.units,
                    &o.price,
                    o.owner,
                    o.json,
                )),
                MarketSub::Bid(o) => rt.block_on(market_cmd::place(
                    &c,
                    suanwang_api::market::OrderSide::Bid,
                    o.product.id()?,
                    o.units,
                    &o.price,
                    o.owner,
                    o.json,
                )),
                MarketSub::Orders { state, json } => rt.block_on(market_cmd::orders(&c, state.as_deref(), json)),
                MarketSub::Cancel { id, json } => rt.block_on(market_cmd::cancel(&c, id, json)),
                MarketSub::Prices { product, json } => rt.block_on(market_cmd::prices(&c, product.as_deref(), json)),
                MarketSub::Clear { json } => rt.block_on(market_cmd::clear(&c, json)),
            }
        }
        Command::Quota { sub } => {
            let c = client()?;
            match sub {
                QuotaSub::Set { tenant, family, region, max_units, json } => {
                    runtime()?.block_on(market_cmd::quota_set(
                        &c,
                        suanwang_api::market::QuotaRequest { tenant, family, region, max_units },
                        json,
                    ))
                }
                QuotaSub::List { json } => runtime()?.block_on(market_cmd::quota_list(&c, json)),
            }
        }
        Command::Carbon { sub } => {
            let c = client()?;
            match sub {
                CarbonSub::Credits { json } => runtime()?.block_on(market_cmd::credits(&c, json)),
                CarbonSub::Offset { job, lot, json } => runtime()?.block_on(market_cmd::offset(&c, job, lot, json)),
            }
        }
        Command::Contract { sub: ContractSub::List { json } } => {
            let c = client()?;
            runtime()?.block_on(market_cmd::contracts(&c, json))
        }
        Command::Contract { sub: ContractSub::Buy { product, units, seller, tenant, json } } => {
            let c = client()?;
            let req = suanwang_api::market::ReserveRequest { product: product.id()?, units, seller, tenant };
            runtime()?.block_on(market_cmd::buy(&c, &req, json))
        }
        Command::Voucher { sub: VoucherSub::List { json } } => {
            let c = client()?;
            runtime()?.block_on(money_cmd::voucher_list(&c, json))
        }
        Command::Sites { json } => {
            let c = client()?;
            runtime()?.block_on(remote::sites(&c, json))
        }
        Command::Site { sub: SiteSub::Approve { site, owner, json } } => {
            let c = client()?;
            runtime()?.block_on(remote::approve_site(&c, &site, owner.as_deref(), json))
        }
        Command::Job { sub: None, id: Some(id) } => {
            let c = client()?;
            runtime()?.block_on(remote::job(&c, &id, false))
        }
        Command::Job { sub: None, id: None } => {
            anyhow::bail!("give a job id (`suanwang job 42`) or `suanwang job check FILE`")
        }
        Command::Bench { sub: BenchSub::Submit { clients, jobs, tenant, json } } => {
            let c = client()?;
            runtime()?.block_on(remote::bench_submit(c, clients, jobs, &tenant, json))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { sub: BenchSub::Evidence { appends, proof_size, audit, json } } => {
            evidence_bench::evidence(&evidence_bench::EvidenceArgs { appends, proof_size, audit, json })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { sub: BenchSub::Market { orders, products, preemptions, background, json } } => {
            market_bench::market(&market_bench::MarketArgs { orders, products, preemptions, background, json })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { sub: BenchSub::Ledger { transfers, durable, accounts, json } } => {
            ledger_bench::ledger(&ledger_bench::LedgerArgs { transfers, durable, accounts, json })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { sub: BenchSub::Soak { minutes, rate, clients, tenant, no_restart, json } } => {
            let c = client()?;
            let args = soak_cmd::SoakArgs { minutes, rate, clients, tenant, no_restart, json };
            runtime()?.block_on(soak_cmd::soak(c, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Network { sub: None, json } => network_cmd::show(&net, json),
        Command::Network { sub: Some(NetworkSub::Latency { from, to, json }), json: json_outer } => {
            network_cmd::latency(&net, &from, &to, json || json_outer)
        }
        Command::Job { sub: Some(JobSub::Check { file, json }), .. } => job_check(&net, &file, json),
        Command::Job { sub: Some(JobSub::Trace { id, json }), .. } => {
            let c = client()?;
            runtime()?.block_on(evidence_cmd::job_trace(&c, &id, json))
        }
        Command::Dataset { sub } => {
            let c = client()?;
            let rt = runtime()?;
            match sub {
                DatasetSub::Register {
                    name,
                    file,
                    size_gb,
                    sha256,
                    classification,
                    licence,
                    location,
                    owner,
                    json,
                } => rt.block_on(dataset_cmd::register(
                    &c,
                    &dataset_cmd::RegisterArgs {
                        name: &name,
                        file: file.as_deref(),
                        size_gb,
                        sha256: sha256.as_deref(),
                        classification: &classification,
                        licence: &licence,
                        location: &location,
                        owner: owner.as_deref(),
                        json,
                    },
                )),
                DatasetSub::Show { id, json } => rt.block_on(dataset_cmd::show(&c, &id, json)),
                DatasetSub::List { owner, json } => rt.block_on(dataset_cmd::list(&c, owner.as_deref(), json)),
                DatasetSub::Replicate { id, site, sha256, json } => {
                    rt.block_on(dataset_cmd::replicate(&c, &id, &site, &sha256, json))
                }
                DatasetSub::Trace { id, json } => rt.block_on(dataset_cmd::trace(&c, &id, json)),
            }
        }
        Command::Alerts { sub, state, watch, json } => match sub {
            Some(AlertsSub::Rules { file, prometheus, interval }) => {
                alerts_cmd::rules(file.as_deref(), prometheus, &interval)
            }
            Some(AlertsSub::Indicators) => Ok(alerts_cmd::indicators()),
            None => runtime()?.block_on(alerts_cmd::alerts(&client()?, state.as_deref(), watch, json)),
        },
        Command::Evidence { sub } => match sub {
            EvidenceSub::Key { json } => runtime()?.block_on(evidence_cmd::key(&client()?, json)),
            EvidenceSub::Checkpoint => runtime()?.block_on(evidence_cmd::checkpoint(&client()?)),
            EvidenceSub::Verify { bundle, key, witness, quorum, checkpoint, entry, old, proof } => {
                evidence_cmd::verify(&evidence_cmd::VerifyArgs {
                    key,
                    witnesses: witness,
                    quorum,
                    bundle,
                    checkpoint,
                    entry,
                    old,
                    proof,
                })
            }
            EvidenceSub::Audit { target, key, witness, quorum, json } => {
                let c = if Path::new(&target).is_dir() { None } else { Some(client()?) };
                runtime()?.block_on(evidence_cmd::audit(c.as_ref(), &target, key.as_deref(), &witness, quorum, json))
            }
            EvidenceSub::Mirror { dir } => runtime()?.block_on(evidence_cmd::mirror(&client()?, &dir)),
            EvidenceSub::Witness { key, state, log_key } => {
                runtime()?.block_on(evidence_cmd::witness(&client()?, &key, &state, log_key.as_deref()))
            }
            EvidenceSub::WitnessKey { name, out } => evidence_cmd::witness_key(&name, &out),
            EvidenceSub::RotateKey { file } => evidence_cmd::rotate_key(&file),
        },
        Command::Bench { sub: BenchSub::Sched { jobs, batch_jobs, seed, policy, sites, json } } => {
            let net = match sites {
                None => net,
                Some(n) if (1..=100_000).contains(&n) => {
                    net.with_site_count(n).context("--sites: the network has no city data centre to copy")?
                }
                Some(n) => anyhow::bail!("--sites: {n} is not in 1..=100000"),
            };
            let policy = plan_cmd::policy(&net, &policy, None)?;
            bench_cmd::sched(net, &bench_cmd::SchedArgs { jobs, batch_jobs, seed, policy, json })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Twin(args) => {
            twin_cmd::run(&net, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { file, policy, weights, at, json } if cli.server.is_some() => {
            if policy != "balanced" || weights.is_some() || at.is_some() {
                eprintln!(
                    "note: with --server the control plane plans with its own policy, now, on its live load \
                     (--policy, --weights and --at apply to a local plan)"
                );
            }
            let c = client()?;
            runtime()?.block_on(remote::plan(&c, &file, json))
        }
        Command::Plan { file, policy, weights, at, json } => {
            let policy = plan_cmd::policy(&net, &policy, weights.as_deref())?;
            let now = match at {
                Some(t) => Ts::parse(&t).map_err(|e| anyhow::anyhow!("--at: {e}"))?,
                None => now(),
            };
            plan_cmd::run(net, &file, &policy, now, json)
        }
    }
}

/// The built-in reference network, or the one in `dir` (same layout as the repository's `data/`).
fn load_network(dir: Option<&Path>) -> Result<Network> {
    let files = match dir {
        None => DataFiles::reference(),
        Some(dir) => {
            let mut files = DataFiles { files: std::collections::BTreeMap::new() };
            for name in DATA_FILES {
                let path = dir.join(name);
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                files.files.insert(name, text);
            }
            files
        }
    };
    Network::from_files(&files).map_err(|e| {
        let list: Vec<String> = e.0.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!("the network data is invalid:\n{}", list.join("\n"))
    })
}

fn now() -> Ts {
    Ts(jiff::Timestamp::now().as_millisecond())
}

fn job_check(net: &Network, file: &Path, json: bool) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let result = if file.extension().is_some_and(|e| e == "json") {
        suanwang_core::job::parse_json(&bytes, net, now())
    } else {
        suanwang_core::job::parse_toml(&bytes, net, now())
    };
    match result {
        Ok(job) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"valid": true, "job": job}))?);
            } else {
                println!(
                    "{}: valid {} job \"{}\" for tenant {}",
                    file.display(),
                    job.kind.as_str(),
                    job.name,
                    job.tenant
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"valid": false, "problems": problems}))?
                );
            } else {
                eprintln!("{}: {} problem(s)", file.display(), problems.len());
                for p in &problems {
                    eprintln!("  {p}");
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}
