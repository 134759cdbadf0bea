//! The `dfserve` command: parses the command line, sets up logging, and hands each subcommand
//! to the module that implements it.

use clap::Parser;

use dfserve::config::{Cli, Command, LogFormat};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(a) if a.log_format == LogFormat::Json);
    // The server logs its lifecycle; the CLI tools only speak up about problems.
    let default_filter = if matches!(cli.command, Command::Serve(_)) { "info,ort=warn" } else { "warn" };
    let otlp = match &cli.command {
        Command::Serve(a) => a.otlp_endpoint.clone(),
        _ => None,
    };
    let _telemetry = match dfserve::telemetry::init(json_logs, default_filter, otlp.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dfserve: error: setting up tracing: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        // A CLI piped into `head` should end quietly when the pipe closes, as other tools do,
        // not panic on the failed print (Rust ignores SIGPIPE by default). Sockets are
        // unaffected: they write with MSG_NOSIGNAL.
        // SAFETY: setting a signal's disposition to its default, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Serve(args) => block_on(dfserve::server::run(args, dfserve::server::shutdown_signal())),
        Command::Score(args) => block_on(dfserve::score::run(args)),
        Command::Models(args) => dfserve::models::list(&args.model_dir),
        Command::Health(args) => dfserve::healthcheck::run(&args),
        Command::Embed(args) => block_on(dfserve::score::embed::run(args)),
        Command::Calibrate(args) => dfserve::score::calibrate_file(&args),
        Command::Hash(args) => dfserve::hashing::run(
            &args.files,
            args.engine.video_settings(),
            args.engine.max_image_pixels,
            args.dihedral,
        ),
        Command::Hashes(args) => dfserve::hashlists::cli::run(&args),
        Command::Store(args) => dfserve::store::store(&args),
        Command::Providers(args) => providers(&args),
        Command::BenchModel(args) => dfserve::bench::bench_model(&args),
        Command::BenchPipeline(args) => dfserve::bench::bench_pipeline(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfserve: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `dfserve providers`: one JSON line per provider. A provider that cannot load the model is
/// reported with its error, not as a failure: without a GPU, CUDA never loads.
fn providers(args: &dfserve::config::ProvidersArgs) -> anyhow::Result<()> {
    let rows = dfserve::runtime::providers::check(
        &args.runtime.ort_lib,
        &args.runtime.model_dir,
        &args.model,
        &args.runtime.session(),
    )?;
    for r in &rows {
        println!("{}", serde_json::to_string(r)?);
    }
    Ok(())
}

fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(work)
}
