//! `suanwang up`, `serve` and `token create`: the control plane on SQLite or PostgreSQL.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use suanwang_core::Network;
use suanwang_server::auth::Role;
use suanwang_server::listen::{Limits, ListenOptions, serve_with, tls_config};
use suanwang_server::throttle::AuthLimit;
use suanwang_server::{ServerConfig, build, build_from, create_token};
use suanwang_store::AnyStore;

/// The store for `--data DIR` (SQLite in DIR) or `--db URL`.
pub async fn open_store(data: Option<&Path>, db: Option<&str>) -> Result<AnyStore> {
    match (data, db) {
        (Some(_), Some(_)) => bail!("give --data DIR or --db URL, not both"),
        (None, Some(url)) => AnyStore::open(url).await.with_context(|| format!("opening {url}")),
        (dir, None) => {
            let dir = dir.unwrap_or(Path::new("suanwang-data"));
            own_data_dir(dir)?;
            AnyStore::open(&dir.display().to_string())
                .await
                .with_context(|| format!("opening the database in {}", dir.display()))
        }
    }
}

/// The mode a secret file must not exceed, and the data directory's.
const SECRET_MODE: u32 = 0o600;
const DATA_DIR_MODE: u32 = 0o700;

/// Makes the control plane's data directory its owner's alone (R7): the directory 0700, the
/// database, its ledger's index and its snapshots (each with its WAL and shared memory), and the
/// credentials 0600. Looser modes left by an
/// earlier version (or a umask) are tightened, with a warning naming the file.
pub fn own_data_dir(dir: &Path) -> Result<()> {
    create_private_dir(dir)?;
    tighten(dir, DATA_DIR_MODE)?;
    let files = ["suanwang.db", "suanwang.db-wal", "suanwang.db-shm", "credentials.json"];
    let index = ["suanwang-ledger.db", "suanwang-ledger.db-wal", "suanwang-ledger.db-shm"];
    let snapshots = ["suanwang-snapshots.db", "suanwang-snapshots.db-wal", "suanwang-snapshots.db-shm"];
    for f in files.into_iter().chain(index).chain(snapshots) {
        let path = dir.join(f);
        if path.exists() {
            tighten(&path, SECRET_MODE)?;
        }
    }
    Ok(())
}

/// Creates `dir` (and its missing parents) with mode 0700 when it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Sets `path`'s mode to `mode` when it grants more; warns when it did.
fn tighten(path: &Path, mode: u32) -> Result<()> {
    let now =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode() & 0o777;
    if now & !mode != 0 {
        eprintln!("warning: {} had mode {now:o}; tightened to {mode:o} (it holds secrets)", path.display());
        tracing::warn!(path = %path.display(), from = format!("{now:o}"), to = format!("{mode:o}"), "tightened");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

pub async fn token_create(
    data: Option<&Path>,
    db: Option<&str>,
    role: &str,
    name: &str,
    expires_in: Option<&str>,
) -> Result<()> {
    let role = Role::parse(role).with_context(|| {
        format!("--role: unknown {role:?}; one of operator, provider, carrier, tenant, regulator, funder")
    })?;
    if suanwang_core::ident::id_problem(name).is_some() {
        bail!("--name: {name:?} must be a lowercase id (letters, digits, '-', '_')");
    }
    let expires_at_ms = match expires_in {
        None => None,
        Some(text) => {
            let s = suanwang_core::time::parse_duration_s(text).map_err(|e| anyhow::anyhow!("--expires-in: {e}"))?;
            if s <= 0 {
                bail!("--expires-in: {text:?} must be longer than 0 (omit it for a token that never expires)");
            }
            let ms = s.checked_mul(1000).and_then(|ms| ms.checked_add(suanwang_server::actor::wall_now().0));
            Some(ms.with_context(|| format!("--expires-in: {text:?} is too long"))?)
        }
    };
    let store = open_store(data, db).await?;
    suanwang_store::Store::migrate(&store).await?;
    println!("{}", suanwang_server::create_token_expiring(&store, role, name, expires_at_ms).await?);
    Ok(())
}

pub struct ServeArgs<'a> {
    pub data: Option<&'a Path>,
    pub db: Option<&'a str>,
    pub listen: &'a str,
    pub time_scale: f64,
    /// Seconds without a poll after which an agent's site is lost.
    pub agent_timeout: u64,
    /// What one provider's sites may declare in total.
    pub caps: suanwang_server::ProviderCaps,
    /// `up`: write credentials.json and print next steps.
    pub bootstrap: bool,
    /// `up`: connect this machine as site `local` at this city, with a process agent.
    pub local_agent: Option<String>,
    /// `up`: whom the local agent's runs execute as, and how they are confined.
    pub runs: crate::agent_cmd::RunOptions,
    /// HTTPS with this certificate chain and key (PEM); `--client-ca` for mutual TLS.
    pub tls_cert: Option<&'a Path>,
    pub tls_key: Option<&'a Path>,
    pub client_ca: Option<&'a Path>,
    pub max_connections: usize,
    pub max_connections_per_addr: usize,
    /// Seconds.
    pub header_timeout: u64,
    pub body_timeout: u64,
    pub tls_handshake_timeout: u64,
    pub auth_limit: AuthLimit,
    /// How `up`'s local agent trusts this server and identifies itself.
    pub client_tls: crate::http::ClientTls,
    /// A new tenant wallet's credit limit, fen.
    pub credit_limit_fen: u64,
    /// `false`: meter only (`--no-billing`).
    pub billing: bool,
    /// The price book's economy terms (default: the shipped file).
    pub prices: Option<&'a Path>,
    /// The evidence log's signing key file (created when absent); `None`: kept in the store.
    pub evidence_key: Option<PathBuf>,
    /// Witnesses' verifier keys (or files holding them).
    pub witnesses: Vec<String>,
    /// The dataset registry's identifier prefix.
    pub id_prefix: String,
    /// Early-warning rules (default: the built-in file).
    pub alert_rules: Option<&'a Path>,
    /// Where alerts go: webhooks, a user's Alertmanager.
    pub webhooks: Vec<String>,
    pub alertmanager: Option<String>,
    /// The console map's borders: an approved map's GeoJSON file and its approval number.
    pub map_borders: Option<(&'a Path, &'a str)>,
    /// Where the twin's reports are.
    pub twin_reports: Option<PathBuf>,
    /// `serve --instance`: one of several instances over one PostgreSQL.
    pub ha: Option<HaArgs>,
}

/// `serve --instance NAME [--lease-ms MS] [--advertise URL]` (issue 17).
#[derive(Debug, Clone)]
pub struct HaArgs {
    pub name: String,
    pub lease_ms: u64,
    pub advertise: Option<String>,
}

/// The environment variable a stepping-down instance hands its registration token to the
/// process it re-executes as, so that the new process is not taken for a second instance of
/// the same name.
const INSTANCE_TOKEN_ENV: &str = "SUANWANG_INSTANCE_TOKEN";

/// How often a follower applies the commands the leader appended since its last step.
const REPLICA_STEP: std::time::Duration = std::time::Duration::from_millis(200);

/// One instance of several (issue 17): it registers its name, serves at once (following:
/// forwarding to the leader), waits for the lease, then loads the state and leads — renewing the
/// lease beside its writes — until it is deposed or loses the database for a whole lease, when
/// it re-executes itself and follows again. Every write of a deposed leader is refused by the
/// database (`PgStore::set_fence`), so two leaders never write.
async fn instance(
    net: Network,
    args: &ServeArgs<'_>,
    ha: &HaArgs,
    mut cfg: ServerConfig,
    options: ListenOptions,
) -> Result<()> {
    use std::time::{Duration, Instant};
    use suanwang_store::{Fence, PgStore, StoreError};
    let Some(url) = args.db.filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://")) else {
        bail!("--instance needs --db postgres://…: the instances share one PostgreSQL");
    };
    if let Some(why) = suanwang_core::ident::id_problem(&ha.name) {
        bail!("--instance {:?} {why}", ha.name);
    }
    if ha.lease_ms < 500 || ha.lease_ms > 600_000 {
        bail!("--lease-ms {}: between 500 and 600000", ha.lease_ms);
    }
    let lease = Duration::from_millis(ha.lease_ms);
    let lease_ms = i64::try_from(ha.lease_ms).unwrap_or(i64::MAX);
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let advertise = ha.advertise.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    // a database that refuses connections: wait for it (as a follower would), saying so
    let pg = loop {
        match PgStore::connect(url).await {
            Ok(pg) => break pg,
            Err(e) => {
                eprintln!("instance {}: waiting for the database ({e})", ha.name);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    pg.migrate_beside(Some(&ha.name)).await.context("migrating the database")?;
    // a lease the database cannot renew in time would depose every leader
    let started = Instant::now();
    for _ in 0..3 {
        pg.lease().await.context("reading the lease")?;
    }
    let round_trip = started.elapsed() / 3;
    if round_trip * 5 > lease {
        bail!(
            "--lease-ms {}: the database's round trip is {} ms; a lease must be at least 5× that",
            ha.lease_ms,
            round_trip.as_millis()
        );
    }
    let token = std::env::var(INSTANCE_TOKEN_ENV).unwrap_or_else(|_| {
        let mut b = [0u8; 16];
        let _ = getrandom::fill(&mut b);
        format!("{:032x}", u128::from_le_bytes(b))
    });
    let stale = lease_ms.saturating_mul(3);
    // a second live process of this name is refused; one that died lately (a restart after a
    // crash) is replaced once its heartbeat is stale
    let deadline = Instant::now() + Duration::from_millis(ha.lease_ms.saturating_mul(4));
    loop {
        match pg.register_instance(&ha.name, &advertise, &token, stale).await {
            Ok(()) => break,
            Err(StoreError::Config(why)) if Instant::now() < deadline => {
                eprintln!("{why}; waiting for its heartbeat to stop");
                tokio::time::sleep(lease / 2).await;
            }
            Err(e) => bail!("{e}"),
        }
    }
    // shared by the instances of this database: a follower forwards each request with it and
    // the client's address (and certificate), which the leader believes from instances only
    let secret = {
        let fresh = suanwang_server::auth::new_token()
            .map_err(|e| anyhow::anyhow!("no randomness for the instances' secret: {e}"))?;
        suanwang_store::Store::setting_or_insert(&pg, "instance_secret", &fresh)
            .await
            .context("reading the instances' secret")?
    };
    let state = suanwang_server::ha::Ha::new(
        &ha.name,
        &advertise,
        lease,
        &secret,
        Some(AnyStore::Postgres(pg.clone())),
        Some(cfg.price_book.clone()),
    );
    let options = ListenOptions { instance_secret: Some(secret.into()), ..options };
    let served = tokio::spawn(serve_with(listener, suanwang_server::ha::router(Arc::clone(&state)), options));
    println!("Suanwang control plane instance {} on {advertise} (postgres store): following", ha.name);
    // alive: the registration's heartbeat
    {
        let (pg, name, advertise, token) = (pg.clone(), ha.name.clone(), advertise.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Err(e) = pg.register_instance(&name, &advertise, &token, stale).await {
                    tracing::warn!(error = %e, "instance heartbeat");
                }
            }
        });
    }
    // the engine kept current while following: the newest snapshot, then the commands the
    // leader appends, a page at a time — taking the lease replays only what it has not applied
    let net = Arc::new(net);
    let tailer = {
        let (store, net, cfg, state) =
            (AnyStore::Postgres(pg.clone()), Arc::clone(&net), cfg.clone(), Arc::clone(&state));
        tokio::spawn(async move {
            loop {
                {
                    let mut slot = state.replica.lock().await;
                    // a copy loaded (at start, or after a failed step) takes its first step at once
                    if slot.is_none() {
                        match suanwang_server::replica(Arc::clone(&net), &store, &cfg).await {
                            Ok(r) => *slot = Some(r),
                            Err(e) => {
                                tracing::warn!(error = %e, "the follower's copy of the engine could not be loaded");
                            }
                        }
                    }
                    let step = match slot.as_mut() {
                        Some(r) => r.tail(&store, false, 1).await.map(drop),
                        None => Ok(()),
                    };
                    if let Err(e) = step {
                        // loaded afresh at the next step; taking the lease replays the log instead meanwhile
                        tracing::warn!(error = %e, "the follower's copy of the engine could not be brought up to date");
                        *slot = None;
                    }
                    let seq = slot.as_ref().map_or(0, suanwang_server::actor::Replica::last_seq);
                    state.replica_seq.store(seq, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(REPLICA_STEP).await;
            }
        })
    };
    // follow until the lease is free; a database lost for two leases (its primary failed
    // over) is connected to afresh: the process re-executes and finds the new primary
    let mut answered = Instant::now();
    let epoch = loop {
        // the next try: a third of a lease later, or just after the lease expires if sooner
        let mut next = lease / 3;
        match pg.try_acquire(&ha.name, &advertise, lease_ms).await {
            Ok(Some(epoch)) => break epoch,
            Ok(None) => {
                answered = Instant::now();
                if let Ok(l) = pg.lease().await {
                    state.saw_lease(&l.holder, &l.url, l.epoch);
                    let expires = Duration::from_millis(u64::try_from(l.remaining_ms).unwrap_or(0) + 20);
                    next = next.min(expires);
                }
            }
            Err(e) if answered.elapsed() > lease * 2 => {
                eprintln!(
                    "instance {}: the database has not answered for {:?} ({e}); reconnecting",
                    ha.name,
                    answered.elapsed()
                );
                reexec(&[(INSTANCE_TOKEN_ENV, &token)])?;
            }
            Err(e) => tracing::warn!(error = %e, "reading the lease"),
        }
        tokio::time::sleep(next).await;
    };
    let took = Instant::now();
    pg.set_fence(Some(Fence { instance: ha.name.clone(), epoch, lease_ms }));
    let restart = Arc::clone(&cfg.restart);
    // the lease renewed beside the writes; lost (another epoch) or unrenewable for a whole
    // lease: step down
    {
        let (pg, restart) = (pg.clone(), Arc::clone(&restart));
        tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(lease / 3).await;
                match pg.renew().await {
                    Ok(()) => renewed = Instant::now(),
                    Err(e @ StoreError::Fenced { .. }) => {
                        tracing::error!(error = %e, "deposed: stepping down");
                        restart.notify_one();
                        return;
                    }
                    Err(e) if renewed.elapsed() >= lease => {
                        tracing::error!(error = %e, "the lease could not be renewed for a whole lease: stepping down");
                        restart.notify_one();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing the lease"),
                }
            }
        });
    }
    cfg.ha = Some(Arc::clone(&state));
    // the follower's engine, as far as it got (its step ends first); none: the log is replayed
    let replica = state.replica.lock().await.take();
    tailer.abort();
    let from = match &replica {
        Some(r) => format!("its copy, current to command {}", r.last_seq()),
        None => "the snapshot and the log".into(),
    };
    let (routes, _actor) = match Box::pin(build_from(net, AnyStore::Postgres(pg), cfg, replica)).await {
        Ok(built) => built,
        // the lease was lost while the state loaded (another instance leads now): follow again
        Err(suanwang_server::ServerError::Store(e @ StoreError::Fenced { .. })) => {
            tracing::error!(error = %e, "deposed while loading the state: stepping down");
            return reexec(&[(INSTANCE_TOKEN_ENV, &token)]);
        }
        Err(e) => return Err(e.into()),
    };
    state.lead(epoch, routes);
    println!(
        "instance {} leads at epoch {epoch} (state loaded from {from} in {} ms)",
        ha.name,
        took.elapsed().as_millis()
    );
    tracing::warn!(instance = %ha.name, epoch, "took the leader's lease");
    tokio::select! {
        done = served => { done??; }
        () = restart.notified() => {
            tokio::time::sleep(Duration::from_millis(250)).await;
            reexec(&[(INSTANCE_TOKEN_ENV, &token)])?;
        }
    }
    Ok(())
}

/// The listener's options from the flags; every bad value is an error naming its flag.
fn listen_options(args: &ServeArgs<'_>) -> Result<ListenOptions> {
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if args.max_connections_per_addr == 0 {
        bail!("--max-connections-per-addr must be at least 1");
    }
    for (flag, secs) in [
        ("--header-timeout", args.header_timeout),
        ("--body-timeout", args.body_timeout),
        ("--tls-handshake-timeout", args.tls_handshake_timeout),
    ] {
        if secs == 0 {
            bail!("{flag} must be at least 1 second");
        }
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (None, None) => {
            if args.client_ca.is_some() {
                bail!("--client-ca needs --tls-cert FILE and --tls-key FILE (client certificates need TLS)");
            }
            None
        }
        (Some(_), None) => bail!("--tls-cert needs --tls-key FILE (the certificate's private key)"),
        (None, Some(_)) => bail!("--tls-key needs --tls-cert FILE"),
        (Some(cert), Some(key)) => {
            // the private key is the operator's file: said, not changed (its group may be meant
            // to read it, as Debian's ssl-cert)
            if let Ok(m) = std::fs::metadata(key)
                && m.permissions().mode() & 0o077 != 0
            {
                eprintln!(
                    "warning: --tls-key {} has mode {:o}: other users may read the server's private key (chmod 600)",
                    key.display(),
                    m.permissions().mode() & 0o777
                );
            }
            Some(Arc::new(tls_config(cert, key, args.client_ca)?))
        }
    };
    Ok(ListenOptions {
        tls,
        agents_need_client_cert: args.client_ca.is_some(),
        limits: Limits {
            max_connections: args.max_connections,
            max_connections_per_addr: args.max_connections_per_addr,
            header_timeout: std::time::Duration::from_secs(args.header_timeout),
            body_timeout: std::time::Duration::from_secs(args.body_timeout),
            handshake_timeout: std::time::Duration::from_secs(args.tls_handshake_timeout),
        },
        instance_secret: None,
    })
}

/// The smallest and largest `--time-scale`.
pub const MIN_TIME_SCALE: f64 = 1e-4;
pub const MAX_TIME_SCALE: f64 = 1e3;

pub async fn run(net: Network, args: ServeArgs<'_>) -> Result<()> {
    // run times are scaled, and a scale beyond these bounds ends jobs centuries from now (or
    // in less than a millisecond): refused, naming the range
    if !(args.time_scale.is_finite() && (MIN_TIME_SCALE..=MAX_TIME_SCALE).contains(&args.time_scale)) {
        bail!(
            "--time-scale {} is out of range: it must be between {MIN_TIME_SCALE} and {MAX_TIME_SCALE} \
             (simulated sites run jobs for their declared time × this factor)",
            args.time_scale
        );
    }
    // agents poll about every second (a 1 s long-poll, then their runs): less would lose live sites
    if args.agent_timeout < 3 {
        bail!(
            "--agent-timeout must be at least 3 seconds (agents poll about once a second), got {}",
            args.agent_timeout
        );
    }
    // TLS files and limits are checked before the store is opened or the port taken
    let options = listen_options(&args)?;
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let price_book = match args.prices {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading --prices {}", f.display()))?;
            suanwang_economy::PriceBook::parse(&text).map_err(|e| anyhow::anyhow!("--prices {}: {e}", f.display()))?
        }
        None => suanwang_economy::PriceBook::reference(),
    };
    // rules and receivers are checked before the store is opened or the port taken
    let (alert_rules, _) = crate::alerts_cmd::load_rules(args.alert_rules)?;
    for (flag, url) in
        args.webhooks.iter().map(|u| ("--webhook", u)).chain(args.alertmanager.iter().map(|u| ("--alertmanager", u)))
    {
        let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("{flag} {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("{flag} {url:?}: an http:// or https:// URL with a host");
        }
    }
    let map = match args.map_borders {
        None => suanwang_api::console::MapLayer::default(),
        Some((file, approval)) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading --map-borders {}", file.display()))?;
            let name =
                file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
            suanwang_server::geo::parse(&text, approval, &name)
                .map_err(|e| anyhow::anyhow!("--map-borders {}: {e}", file.display()))?
        }
    };
    if let Some(dir) = &args.twin_reports
        && !dir.is_dir()
    {
        bail!(
            "--twin-reports {}: not a directory (suanwang twin … --report DIR/NAME writes reports there)",
            dir.display()
        );
    }
    let cfg = ServerConfig {
        map: Arc::new(map),
        twin_reports: args.twin_reports.clone(),
        alert_rules,
        delivery: suanwang_server::alerting::Delivery {
            webhooks: args.webhooks.clone(),
            alertmanager: args.alertmanager.clone(),
            external_url: format!("{scheme}://{}", args.listen),
        },
        price_book,
        credit_limit_fen: args.credit_limit_fen,
        billing: args.billing,
        time_scale: args.time_scale,
        agent_timeout: std::time::Duration::from_secs(args.agent_timeout),
        provider_caps: args.caps,
        auth_limit: args.auth_limit,
        evidence_key_file: args.evidence_key.clone(),
        witnesses: crate::evidence_cmd::witness_keys(&args.witnesses)?,
        id_prefix: args.id_prefix.clone(),
        ..ServerConfig::default()
    };
    if let Some(ha) = &args.ha {
        return instance(net, &args, ha, cfg, options).await;
    }
    let store = open_store(args.data, args.db).await?;
    let restart = std::sync::Arc::clone(&cfg.restart);
    let (router, _actor) = build(Arc::new(net), store.clone(), cfg).await?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if args.bootstrap {
        let dir = args.data.unwrap_or(Path::new("suanwang-data"));
        let creds = dir.join("credentials.json");
        let (operator, tenant) = if creds.is_file() {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&creds)?)?;
            (
                v["operator"].as_str().unwrap_or_default().to_string(),
                v["tenant"].as_str().unwrap_or_default().to_string(),
            )
        } else {
            let operator = create_token(&store, Role::Operator, "operator").await?;
            let tenant = create_token(&store, Role::Tenant, "acme-ai").await?;
            // created 0600: never readable by others, not even for a moment
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(SECRET_MODE)
                .open(&creds)
                .with_context(|| format!("creating {}", creds.display()))?;
            std::io::Write::write_all(
                &mut f,
                serde_json::to_string_pretty(
                    &serde_json::json!({"operator": operator, "tenant": tenant, "tenant_name": "acme-ai"}),
                )?
                .as_bytes(),
            )?;
            (operator, tenant)
        };
        println!("Suanwang control plane on {scheme}://{addr} ({} store in {})", store.kind(), dir.display());
        println!("operator token: {operator}");
        println!("tenant token (tenant \"acme-ai\"): {tenant}");
        println!("(both saved in {}, mode 0600)\n", creds.display());
        println!("Next, in another terminal:");
        println!("  export SUANWANG_SERVER={scheme}://{addr} SUANWANG_TOKEN={tenant}");
        println!("  suanwang submit examples/inference.toml");
        println!("  suanwang jobs");
        println!("  curl -s {scheme}://{addr}/metrics | head");
        if let Some(city) = &args.local_agent {
            let agent = crate::agent_cmd::AgentArgs {
                server: format!("{scheme}://{addr}"),
                token: operator.clone(),
                site: "local".into(),
                city: city.clone(),
                executor: "process".into(),
                data: dir.join("agent"),
                pools: None,
                lost_after: std::time::Duration::from_mins(1),
                run: args.runs.clone(),
                tls: args.client_tls.clone(),
            };
            println!(
                "\nThis machine is site `local` (at {city}); jobs with [run] and allowed_sites = [\"local\"] run here for real:"
            );
            println!("  suanwang submit examples/agent/local-hello.toml && suanwang jobs && suanwang logs <ID>");
            tokio::spawn(async move {
                if let Err(e) = crate::agent_cmd::run(agent).await {
                    eprintln!("local agent stopped: {e:#}");
                }
            });
        }
    } else {
        println!("Suanwang control plane on {scheme}://{addr} ({} store)", store.kind());
    }
    tokio::select! {
        served = serve_with(listener, router, options) => served?,
        () = restart.notified() => {
            // let the 202 that asked for it reach its client first (answers in flight are
            // durable already; their clients retry with their idempotency keys)
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            reexec(&[])?;
        }
    }
    Ok(())
}

/// Replaces this process with a fresh run of the same command line (`POST /v1/admin/restart`):
/// every acknowledged request is durable already, and the new process rebuilds its state from
/// the newest snapshot and the log after it. Returns only when the exec fails.
fn reexec(env: &[(&str, &str)]) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("finding this executable to restart")?;
    tracing::warn!(exe = %exe.display(), "restarting in place");
    let err = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).envs(env.iter().copied()).exec();
    Err(anyhow::anyhow!("restarting {}: {err}", exe.display()))
}
