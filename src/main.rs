use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use dfserve::config::{Cli, Command, LogFormat, ServeArgs};
use dfserve::core::InferCore;
use dfserve::metrics::Metrics;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(a) if a.log_format == LogFormat::Json);
    init_tracing(json_logs);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Models(args) => list_models(&args),
        Command::BenchModel(args) => bench_model(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfserve: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_env("DFSERVE_LOG").unwrap_or_else(|_| EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let settings = args.core_settings();
        let core = tokio::task::spawn_blocking(move || InferCore::load(settings, metrics)).await??;
        let core = Arc::new(core);

        let addr: SocketAddr = format!("{}:{}", args.host, args.http_port)
            .parse()
            .with_context(|| format!("bad --host/--http-port '{}:{}'", args.host, args.http_port))?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(%local, "HTTP listening");
        // A plain line on stdout for scripts and tests that start dfserve on port 0.
        println!("dfserve: listening on http://{local}");

        let warm = core.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.warm_up().await {
                tracing::error!(error = %format!("{e:#}"), "warm-up failed; staying not-ready");
            }
        });

        let app = dfserve::api::http::router(core.clone(), args.max_body_bytes);
        let shutdown_core = core.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::info!("shutdown signal: draining in-flight requests");
                shutdown_core.start_draining();
            })
            .await?;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn list_models(args: &dfserve::config::RuntimeArgs) -> anyhow::Result<()> {
    let configs = dfserve::models::load_dir(&args.model_dir)?;
    for (name, cfg) in configs {
        let path = args.model_dir.join(&cfg.file);
        let state = if !path.is_file() {
            "missing (run scripts/setup.sh)".to_string()
        } else if dfserve::models::sha256_file(&path)? == cfg.sha256 {
            "ok".to_string()
        } else {
            "CHECKSUM MISMATCH".to_string()
        };
        println!("{name:<22} v{:<3} {:<10?} {:<28} {state}", cfg.version, cfg.kind, cfg.file);
    }
    Ok(())
}

fn bench_model(args: &dfserve::config::BenchModelArgs) -> anyhow::Result<()> {
    let rows = dfserve::bench::run(args)?;
    if args.json {
        for r in rows {
            println!("{}", serde_json::to_string(&r)?);
        }
    } else {
        println!("{:<20} {:>6} {:>8} {:>10} {:>10} {:>10}", "model", "batch", "runs", "images/s", "p50 ms", "p99 ms");
        for r in rows {
            println!(
                "{:<20} {:>6} {:>8} {:>10.1} {:>10.3} {:>10.3}",
                r.model, r.batch_size, r.runs, r.images_per_s, r.p50_ms_per_batch, r.p99_ms_per_batch
            );
        }
    }
    Ok(())
}
