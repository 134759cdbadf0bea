//! `dfserve serve`: load the models, then serve HTTP and gRPC until a shutdown signal.
//!
//! [`run`] owns the whole server lifecycle: both listeners, TLS, API keys, the warm-up that
//! flips readiness, and the drain on shutdown (readiness goes false, new work gets 503 for
//! `--shutdown-grace`, then the listeners close and in-flight requests finish). It takes the
//! shutdown trigger as a future, so tests and embedders can stop it without signals.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::auth::KeyStore;
use crate::config::ServeArgs;
use crate::core::InferCore;
use crate::detect::Detector;
use crate::metrics::Metrics;
use crate::provenance::{ProvenanceReader, READ_TIMEOUT};
use crate::video::VideoDecoder;

/// PEM certificate chain and key for `--tls-cert` / `--tls-key`.
type TlsPem = (Vec<u8>, Vec<u8>);

/// Serves until `shutdown` resolves and the drain is over.
pub async fn run(args: ServeArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let settings = args.engine.core_settings();
    let core = Arc::new(tokio::task::spawn_blocking(move || InferCore::load(settings, metrics)).await??);
    let video = VideoDecoder::start(args.engine.video_settings()).await;
    let rules = crate::hashlists::MatchRules {
        pdq_max_distance: args.pdq_max_distance,
        pdq_min_quality: args.pdq_min_quality,
        vpdq_query_pct: args.vpdq_query_match,
        vpdq_list_pct: args.vpdq_list_match,
        pdq_dihedral: args.pdq_dihedral,
    };
    let dir = args.data_dir.clone();
    let (import_budget, decision_quota) = (args.max_import_memory_bytes, args.max_decision_bytes_per_key);
    let database_url = args.database_url.clone();
    let log_retention = args.hashlist_log_retention.0;
    // With --database-url, lists and decisions both live in PostgreSQL and the data dir's
    // database is not opened: nothing in it would be shared by the fleet.
    let (storage, lists, decisions) = tokio::task::spawn_blocking(move || {
        let (storage, lists, decisions) = match &database_url {
            Some(url) => {
                let db = crate::pgstore::Db::connect(url).context("--database-url: connecting to PostgreSQL")?;
                let lists = crate::hashlists::HashLists::from_postgres(db.clone(), rules, log_retention)
                    .context("--database-url: loading the hash lists from PostgreSQL")?;
                (None, lists, crate::decisions::Decisions::from_postgres(db, decision_quota))
            }
            None => {
                let db = crate::datastore::DataStore::open(&dir)?;
                let lists = crate::hashlists::HashLists::from_db(db.clone(), rules)?;
                let decisions = crate::decisions::Decisions::from_db(db.clone(), decision_quota)?;
                (Some(db), lists, decisions)
            }
        };
        anyhow::Ok((storage, lists.with_import_budget(import_budget), decisions))
    })
    .await??;
    if let Some(storage) = &storage {
        storage.register(&core.metrics.registry)?;
    }
    lists.register(&core.metrics.registry)?;
    let store = if args.database_url.is_some() { "postgres" } else { "data dir" };
    tracing::info!(data_dir = %args.data_dir.display(), store, lists = lists.summaries().len(), "hash lists loaded");
    let provenance = ProvenanceReader::from_file(args.c2pa_trust_anchors.as_deref(), READ_TIMEOUT)?;
    let detector = Arc::new(
        Detector::new(core.clone(), video).with_hashlists(Arc::new(lists)).with_provenance(Arc::new(provenance)),
    );
    let keys = load_keys(args.api_key_file.as_ref())?;
    crate::auth::handle_sighup(keys.clone());
    let tls = load_tls(&args)?;

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
    let (stop_tx, stop_rx) = watch::channel(false);
    let (draining, grace) = (core.clone(), args.shutdown_grace);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutdown signal: refusing new work, draining in-flight requests"
        );
        draining.start_draining();
        tokio::time::sleep(grace).await;
        let _ = stop_tx.send(true);
    });
    // Once the listeners close, in-flight work has --shutdown-timeout to finish.
    let deadline_rx = stop_rx.clone();
    let shutdown_timeout = args.shutdown_timeout;
    let forced = async move {
        stopped(deadline_rx).await;
        tokio::time::sleep(shutdown_timeout).await;
    };

    // One budget for request bodies on both ports.
    let bodies = crate::api::body::BodyBudget::new(
        args.max_inflight_body_bytes,
        args.max_body_bytes.max(args.grpc_max_message_bytes),
        args.body_timeout,
    );
    let app = crate::api::http::router(
        detector.clone(),
        crate::api::http::HttpOptions {
            max_body_bytes: args.max_body_bytes,
            body_idle_timeout: args.http_body_idle_timeout,
            keys: keys.clone(),
            public_metrics: args.public_metrics,
            bodies: bodies.clone(),
            decisions: Some(Arc::new(decisions)),
            storage: storage.clone(),
        },
    );
    let http = serve_http(http_listener, app, tls.as_ref(), args.http_header_timeout, stopped(stop_rx.clone()));
    let limits = crate::api::grpc::GrpcLimits {
        max_message_bytes: args.grpc_max_message_bytes,
        max_concurrent_streams: args.grpc_max_concurrent_streams,
        stream_idle_timeout: args.grpc_stream_idle_timeout,
        bodies,
    };
    let grpc = crate::api::grpc::serve(detector, grpc_listener, limits, keys, tls.as_ref(), stopped(stop_rx));
    tokio::select! {
        (h, g) = async { tokio::join!(http, grpc) } => {
            h?;
            g?;
            tracing::info!("stopped");
        }
        _ = forced => {
            tracing::warn!(
                timeout_ms = shutdown_timeout.as_millis() as u64,
                "shutdown timeout: requests still in flight were cancelled"
            );
        }
    }
    Ok(())
}

/// Resolves once the stop flag is set.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn load_keys(file: Option<&PathBuf>) -> anyhow::Result<Option<Arc<KeyStore>>> {
    let Some(path) = file else { return Ok(None) };
    let store = Arc::new(KeyStore::load(path)?);
    tracing::info!(file = %path.display(), "API keys required");
    Ok(Some(store))
}

fn load_tls(args: &ServeArgs) -> anyhow::Result<Option<TlsPem>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else { return Ok(None) };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    Ok(Some((read(cert)?, read(key)?)))
}

/// Serves the HTTP router, over TLS when configured, until `stop` resolves; then stops
/// accepting and waits for the open connections to finish their requests.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<&TlsPem>,
    header_timeout: std::time::Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    match tls {
        None => {
            // hyper's own connection loop rather than `axum::serve`, which sets no timer, so
            // no header read timeout: a client that never finishes its headers would hold its
            // connection forever.
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
            builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(std::time::Duration::from_secs(30)));
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            tokio::pin!(stop);
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accepting an HTTP connection failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = &mut stop => break,
                };
                let _ = tcp.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            drop(listener);
            graceful.shutdown().await;
        }
        Some((cert, key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert.clone(), key.clone())
                .await
                .context("loading --tls-cert / --tls-key")?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                stop.await;
                h.graceful_shutdown(None);
            });
            let mut server = axum_server::from_tcp_rustls(listener.into_std()?, config)?.handle(handle);
            server.http_builder().http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
            server.serve(app.into_make_service()).await?;
        }
    }
    Ok(())
}

fn socket_addr(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    format!("{host}:{port}").parse().with_context(|| format!("bad --host '{host}' or port {port}"))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
