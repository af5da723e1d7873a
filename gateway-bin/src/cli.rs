//! The command line: `run`, `proxy`, `check`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use toml::Spanned;

use crate::config::{Config, RouteConfig, ServiceConfig};
use crate::{admin, config, gateway, registry, server};

/// Portcullis: an HTTP edge gateway for microservices.
#[derive(Parser, Debug)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway from a config file, or from the embedded default (proxy on
    /// 127.0.0.1:8080, admin on 127.0.0.1:9090, state in ./portcullis-state).
    Run {
        /// TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// A zero-config reverse proxy with the default edge stack.
    Proxy {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream URL (http://host:port); repeat for round robin.
        #[arg(long, required = true)]
        upstream: Vec<String>,
        /// Upper bound on the wait for the upstream's response headers (504 past it).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Peer allowed to set X-Forwarded-* (CIDR or address); repeatable.
        #[arg(long = "trusted-proxy")]
        trusted_proxy: Vec<String>,
    },
    /// Validate a config file: prints each mistake with its line and reason.
    Check {
        /// TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    portcullis_proxy::duration_str::parse(s)
}

/// Runs a command until it finishes or `shutdown` resolves. Returns the exit code.
pub async fn run_command(
    command: Command,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<i32> {
    match command {
        Command::Check { config } => Ok(check(&config)),
        Command::Run { config } => {
            let cfg = match &config {
                Some(path) => match config::load(path)? {
                    Ok(c) => c,
                    Err(mistakes) => {
                        report(path, &mistakes);
                        return Ok(1);
                    }
                },
                None => Config::default(),
            };
            run(cfg, config, true, shutdown).await?;
            Ok(0)
        }
        Command::Proxy {
            listen,
            upstream,
            timeout,
            trusted_proxy,
        } => {
            let mut cfg = Config::default();
            cfg.server.listen = Spanned::new(0..0, listen.to_string());
            cfg.server.trusted_proxies = trusted_proxy
                .into_iter()
                .map(|c| Spanned::new(0..0, c))
                .collect();
            if let Some(t) = timeout {
                cfg.proxy.response_header_timeout = t;
            }
            cfg.services.push(ServiceConfig {
                name: Spanned::new(0..0, "upstream".to_owned()),
                endpoints: upstream
                    .into_iter()
                    .map(|u| Spanned::new(0..0, u))
                    .collect(),
                balancer: portcullis_registry::Balancer::default(),
                health: None,
                passive_health: None,
            });
            cfg.routes.push(RouteConfig {
                name: Some(Spanned::new(0..0, "default".to_owned())),
                host: None,
                path: Spanned::new(0..0, "/".to_owned()),
                methods: None,
                headers: Vec::new(),
                service: Spanned::new(0..0, "upstream".to_owned()),
                strip_prefix: None,
                rewrite: None,
                length_required: false,
                max_body: None,
                filters: Vec::new(),
            });
            // No admin listener to scrape them from.
            cfg.metrics.enabled = false;
            let mistakes = cfg.validate("");
            if !mistakes.is_empty() {
                for m in &mistakes {
                    eprintln!("error: {m}");
                }
                return Ok(2);
            }
            run(cfg, None, false, shutdown).await?;
            Ok(0)
        }
    }
}

fn check(path: &Path) -> i32 {
    match config::load(path) {
        Err(e) => {
            eprintln!("{}: {e:#}", path.display());
            1
        }
        Ok(Err(mistakes)) => {
            report(path, &mistakes);
            1
        }
        Ok(Ok(_)) => {
            eprintln!("{}: ok", path.display());
            0
        }
    }
}

fn report(path: &Path, mistakes: &[config::Mistake]) {
    for m in mistakes {
        match (m.line, m.column) {
            (Some(l), Some(c)) => eprintln!("{}:{l}:{c}: {}", path.display(), m.reason),
            _ => eprintln!("{}: {}", path.display(), m.reason),
        }
    }
    eprintln!("{}: {} mistake(s)", path.display(), mistakes.len());
}

/// The process's metrics exporter: the recorder is global, so it is installed
/// once and shared by every gateway the process runs.
fn exporter() -> anyhow::Result<portcullis_metrics::Exporter> {
    static EXPORTER: std::sync::OnceLock<portcullis_metrics::Exporter> = std::sync::OnceLock::new();
    if let Some(e) = EXPORTER.get() {
        return Ok(e.clone());
    }
    let e = portcullis_metrics::Exporter::install().context("installing the metrics recorder")?;
    // The help text of the metrics other crates emit.
    portcullis_registry::describe_metrics();
    portcullis_health::describe_metrics();
    portcullis_ratelimit::describe_metrics();
    Ok(EXPORTER.get_or_init(|| e).clone())
}

/// SIGHUP, caught from the start so that it never ends the process (its default
/// action): each one reloads the config file once a reloader is given, and is
/// logged and ignored otherwise.
struct Hangups {
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn catch() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(s) => Self { signal: Some(s) },
            Err(error) => {
                tracing::warn!(%error, "cannot catch SIGHUP");
                Self { signal: None }
            }
        }
    }

    async fn serve(self, reloader: Option<crate::reload::Reloader>) {
        let Some(mut signal) = self.signal else {
            return;
        };
        while signal.recv().await.is_some() {
            match &reloader {
                Some(r) => {
                    let _ = r.reload().await;
                }
                None => tracing::warn!(
                    "SIGHUP ignored: this gateway runs without a config file to re-read"
                ),
            }
        }
    }
}

async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    with_admin: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut hangups = Some(Hangups::catch());
    let resolved = registry::resolve_urls(registry::static_urls(&cfg)).await;
    let routes = gateway::Routes::with_resolved(&cfg, &resolved)?;
    let stack = gateway::build_with(&cfg, &routes)?;
    let limits = gateway::limits(&cfg);
    let addr: SocketAddr = cfg
        .server
        .listen
        .get_ref()
        .parse()
        .context("server.listen")?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the proxy listener on {addr}"))?;
    let proxy_addr = listener.local_addr().unwrap_or(addr);
    let frontend = Arc::new(server::Frontend::new());
    let admin_server = Arc::new(admin::AdminServer::new());
    let admin_task = if with_admin {
        let admin_addr: SocketAddr = cfg
            .server
            .admin_listen
            .get_ref()
            .parse()
            .context("server.admin_listen")?;
        // Port 0 means "any free port" for both: only a fixed port can clash.
        if admin_addr == addr && addr.port() != 0 {
            bail!("server.admin_listen must differ from server.listen");
        }
        if let Some(path) = admin::ensure_token(Path::new(&cfg.server.state_dir))? {
            tracing::info!(path = %path.display(), "admin token file");
        }
        let admin = TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("binding the admin listener on {admin_addr}"))?;
        let admin_addr = admin.local_addr().unwrap_or(admin_addr);
        let registry = registry::start(&cfg, &routes, vec![proxy_addr, admin_addr]).await?;
        let metrics = if cfg.metrics.enabled {
            let exporter = exporter()?;
            // Histogram samples wait in memory until upkeep folds them in.
            let upkeep = exporter.spawn_upkeep(Duration::from_secs(5));
            let render: admin::RenderMetrics = Arc::new(move || exporter.render());
            Some((render, upkeep))
        } else {
            None
        };
        let (render, upkeep) = metrics.unzip();
        let store_health: Arc<dyn Fn() -> bool + Send + Sync> = {
            let redis = registry.redis.clone();
            Arc::new(move || redis.as_ref().is_none_or(|r| r.is_healthy()))
        };
        let listeners = crate::reload::Listeners {
            proxy: frontend.clone(),
            admin: admin_server.clone(),
            addrs: Arc::new(std::sync::Mutex::new((proxy_addr, admin_addr))),
        };
        let (api, reloader) = registry.api(&cfg, &routes, config_path.as_deref(), listeners)?;
        let app = admin::router(render, Some(api), Some(store_health));
        let sighup = hangups.take().map(|h| tokio::spawn(h.serve(reloader)));
        tracing::info!(addr = %admin_addr, "admin listening");
        admin_server.start(admin, app);
        Some((upkeep, registry, sighup))
    } else {
        None
    };
    let ignored_hangups = hangups.take().map(|h| tokio::spawn(h.serve(None)));
    tracing::info!(addr = %proxy_addr, routes = cfg.routes.len(), "proxy listening");
    frontend.start(Arc::new(listener), stack, limits);
    shutdown.await;
    frontend.shutdown().await;
    if let Some(t) = ignored_hangups {
        t.abort();
    }
    admin_server.stop();
    if let Some((upkeep, registry, sighup)) = admin_task {
        if let Some(u) = upkeep {
            u.abort();
        }
        if let Some(s) = sighup {
            s.abort();
        }
        registry.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}
