use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use dfserve::config::{Cli, Command, LogFormat, ServeArgs};
use dfserve::core::InferCore;
use dfserve::metrics::Metrics;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(a) if a.log_format == LogFormat::Json);
    // The server logs its lifecycle; the CLI tools only speak up about problems.
    let default_filter = if matches!(cli.command, Command::Serve(_)) { "info,ort=warn" } else { "warn" };
    init_tracing(json_logs, default_filter);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Models(args) => list_models(&args),
        Command::BenchModel(args) => bench_model(&args),
        Command::BenchPipeline(args) => bench_pipeline(&args),
        Command::Score(args) => score(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfserve: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool, default_filter: &str) {
    let filter = EnvFilter::try_from_env("DFSERVE_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
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
        let settings = args.engine.core_settings();
        let core = tokio::task::spawn_blocking(move || InferCore::load(settings, metrics)).await??;
        let core = Arc::new(core);

        let http_addr = socket_addr(&args.host, args.http_port)?;
        let grpc_addr = socket_addr(&args.host, args.grpc_port)?;
        let http_listener =
            tokio::net::TcpListener::bind(http_addr).await.with_context(|| format!("binding HTTP on {http_addr}"))?;
        let grpc_listener =
            tokio::net::TcpListener::bind(grpc_addr).await.with_context(|| format!("binding gRPC on {grpc_addr}"))?;
        let (http_local, grpc_local) = (http_listener.local_addr()?, grpc_listener.local_addr()?);
        tracing::info!(http = %http_local, grpc = %grpc_local, "listening");
        // Plain lines on stdout for scripts and tests that start dfserve on port 0.
        println!("dfserve: listening on http://{http_local}");
        println!("dfserve: grpc on {grpc_local}");

        let warm = core.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.warm_up().await {
                tracing::error!(error = %format!("{e:#}"), "warm-up failed; staying not-ready");
            }
        });

        // One signal stops both front ends; each finishes its in-flight requests.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shutdown_core = core.clone();
        let grace = args.shutdown_grace;
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutdown signal: refusing new work, draining in-flight requests"
            );
            shutdown_core.start_draining();
            tokio::time::sleep(grace).await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let keys = match &args.api_key_file {
            Some(path) => {
                let store = Arc::new(dfserve::auth::KeyStore::load(path)?);
                dfserve::auth::reload_on_sighup(store.clone());
                tracing::info!(file = %path.display(), "API keys required");
                Some(store)
            }
            None => None,
        };
        let app = dfserve::api::http::router(
            core.clone(),
            dfserve::api::http::HttpOptions {
                max_body_bytes: args.max_body_bytes,
                keys: keys.clone(),
                public_metrics: args.public_metrics,
            },
        );
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let read =
                    |p: &std::path::PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
                Some((read(cert)?, read(key)?))
            }
            _ => None,
        };
        let http = async {
            match &tls {
                None => {
                    let listener = http_listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone())).await?;
                }
                Some((cert, key)) => {
                    let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert.clone(), key.clone())
                        .await
                        .context("loading --tls-cert / --tls-key")?;
                    let handle = axum_server::Handle::new();
                    let stop = stopped(stop_rx.clone());
                    let h = handle.clone();
                    tokio::spawn(async move {
                        stop.await;
                        h.graceful_shutdown(None);
                    });
                    let server = axum_server::from_tcp_rustls(http_listener.into_std()?, config)?.handle(handle);
                    server.serve(app.into_make_service()).await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        let grpc = dfserve::api::grpc::serve(
            core.clone(),
            grpc_listener,
            args.grpc_max_message_bytes,
            keys,
            tls.as_ref(),
            stopped(stop_rx.clone()),
        );
        let (h, g) = tokio::join!(http, grpc);
        h?;
        g?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn socket_addr(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    format!("{host}:{port}").parse().with_context(|| format!("bad --host '{host}' or port {port}"))
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

fn score(args: dfserve::config::ScoreArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(dfserve::score::run(args))
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
        println!(
            "{:<20} {:>9} {:>6} {:>8} {:>10} {:>10} {:>10}",
            "model", "sessions", "batch", "runs", "images/s", "p50 ms", "p99 ms"
        );
        for r in rows {
            println!(
                "{:<20} {:>9} {:>6} {:>8} {:>10.1} {:>10.3} {:>10.3}",
                r.model,
                format!("{}x{}", r.instances, r.intra_threads),
                r.batch_size,
                r.runs,
                r.images_per_s,
                r.p50_ms_per_batch,
                r.p99_ms_per_batch
            );
        }
    }
    Ok(())
}

fn bench_pipeline(args: &dfserve::config::BenchPipelineArgs) -> anyhow::Result<()> {
    let row = dfserve::bench::run_pipeline(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{} mode, {} ({} images, {:.2} faces each): {:.1} images/s, p50 {:.3} ms, p99 {:.3} ms",
            row.mode, row.model, row.images, row.faces_per_image, row.images_per_s, row.p50_ms, row.p99_ms
        );
        for stage in ["decode", "detect", "crop", "classify"] {
            if let Some(ms) = row.stages_ms.get(stage) {
                println!("  {stage:<10} {ms:>8.3} ms (median)");
            }
        }
    }
    Ok(())
}
