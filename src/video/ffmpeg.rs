//! FFmpeg and ffprobe as confined child processes.
//!
//! A hostile file can crash or hang a decoder, so FFmpeg is never linked in: each run is a
//! child process with an address-space limit, no core dumps, a small file-descriptor limit, an
//! empty environment (no proxy or library variables), no standard input, and, where the kernel
//! allows it, its own empty network namespace (no interfaces, so no network at all). It is
//! killed when its run is dropped (the request went away) or when its deadline passes. What
//! FFmpeg prints is kept for the log and never sent to a client: it names server paths.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout};
use tokio::sync::mpsc;

/// How every FFmpeg child is confined.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// Address-space limit, bytes.
    pub memory: u64,
    /// Run the child in a new, empty network namespace.
    pub isolate_network: bool,
}

/// Why a run did not produce what was asked.
#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (not installed, or the sandbox failed).
    Spawn(String),
    /// The deadline passed; the child was killed.
    TimedOut,
    /// The child exited with an error (the file is not decodable) or was killed by a signal
    /// (`signal` is set), e.g. after hitting its memory limit. `log` is its last output lines.
    Failed { signal: Option<i32>, log: String },
    /// The child wrote more than the caller accepts.
    TooMuchOutput,
}

/// Lines of FFmpeg output kept for the log.
const LOG_LINES: usize = 12;

fn command(program: &str, args: &[String], conf: &Confinement) -> tokio::process::Command {
    tracing::debug!(program, args = %args.join(" "), isolate_network = conf.isolate_network, "running");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (memory, isolate) = (conf.memory, conf.isolate_network);
    // SAFETY: between fork and exec only async-signal-safe system calls run (setrlimit,
    // unshare); nothing allocates or takes a lock.
    unsafe {
        cmd.pre_exec(move || {
            let limit = |resource, value: u64| {
                let lim = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: value as libc::rlim_t };
                libc::setrlimit(resource, &lim)
            };
            limit(libc::RLIMIT_AS, memory);
            limit(libc::RLIMIT_CORE, 0);
            limit(libc::RLIMIT_NOFILE, 64);
            if isolate && libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Whether children can get their own network namespace here (root or CAP_SYS_ADMIN in a
/// namespace that allows it). Checked once at start-up with a harmless run.
pub async fn network_isolation_works(program: &str) -> bool {
    let conf = Confinement { memory: 1 << 30, isolate_network: true };
    match command(program, &["-version".to_string()], &conf).output().await {
        Ok(out) => out.status.success(),
        Err(_) => false,
    }
}

fn exit_error(status: std::process::ExitStatus, log: String) -> RunError {
    use std::os::unix::process::ExitStatusExt;
    RunError::Failed { signal: status.signal(), log }
}

/// Keeps the last lines of a child's stderr; sends the `pts_time` of every frame that FFmpeg's
/// `showinfo` filter reports, in order.
async fn read_stderr(stderr: tokio::process::ChildStderr, pts: Option<mpsc::UnboundedSender<f64>>) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail = VecDeque::with_capacity(LOG_LINES);
    while let Ok(Some(line)) = lines.next_line().await {
        if let (Some(tx), true) = (&pts, line.contains("Parsed_showinfo")) {
            if let Some(t) = line.split("pts_time:").nth(1).and_then(|r| r.split_whitespace().next()) {
                if let Ok(t) = t.parse::<f64>() {
                    let _ = tx.send(t);
                }
                continue;
            }
        }
        if tail.len() == LOG_LINES {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(300).collect::<String>());
    }
    Vec::from(tail).join("\n")
}

/// Runs `program` to completion and returns its standard output (at most `max_output` bytes).
pub async fn run(
    program: &str,
    args: &[String],
    conf: &Confinement,
    deadline: Instant,
    max_output: usize,
) -> Result<Vec<u8>, RunError> {
    let mut child = command(program, args, conf).spawn().map_err(|e| RunError::Spawn(format!("{program}: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = tokio::spawn(read_stderr(child.stderr.take().expect("stderr is piped"), None));
    let work = async {
        let mut out = Vec::new();
        let n = stdout
            .take(max_output as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| RunError::Failed { signal: None, log: format!("reading output: {e}") })?;
        if n > max_output {
            return Err(RunError::TooMuchOutput);
        }
        let status = child.wait().await.map_err(|e| RunError::Spawn(e.to_string()))?;
        let log = stderr.await.unwrap_or_default();
        if status.success() {
            Ok(out)
        } else {
            Err(exit_error(status, log))
        }
    };
    tokio::time::timeout_at(deadline.into(), work).await.unwrap_or(Err(RunError::TimedOut))
}

/// A running FFmpeg that writes raw RGB frames of a known size to its standard output, each
/// announced on stderr by `showinfo` with its presentation time.
pub struct FrameRun {
    child: Child,
    stdout: ChildStdout,
    pts: mpsc::UnboundedReceiver<f64>,
    stderr: tokio::task::JoinHandle<String>,
    frame_len: usize,
    deadline: Instant,
}

impl FrameRun {
    pub fn spawn(
        program: &str,
        args: &[String],
        conf: &Confinement,
        frame_len: usize,
        deadline: Instant,
    ) -> Result<FrameRun, RunError> {
        let mut child = command(program, args, conf).spawn().map_err(|e| RunError::Spawn(format!("{program}: {e}")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, pts) = mpsc::unbounded_channel();
        let stderr = tokio::spawn(read_stderr(child.stderr.take().expect("stderr is piped"), Some(tx)));
        Ok(FrameRun { child, stdout, pts, stderr, frame_len, deadline })
    }

    /// The next frame's pixels and presentation time, or `None` once FFmpeg has finished
    /// cleanly. One buffer of exactly one frame is allocated per call.
    pub async fn next(&mut self) -> Result<Option<(Vec<u8>, f64)>, RunError> {
        let deadline = self.deadline;
        let work = async {
            let mut buf = vec![0u8; self.frame_len];
            let mut filled = 0;
            while filled < buf.len() {
                let n = self
                    .stdout
                    .read(&mut buf[filled..])
                    .await
                    .map_err(|e| RunError::Failed { signal: None, log: format!("reading frames: {e}") })?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                // End of output: FFmpeg is done; its exit status says how it went.
                let status = self.child.wait().await.map_err(|e| RunError::Spawn(e.to_string()))?;
                let log = (&mut self.stderr).await.unwrap_or_default();
                return if status.success() { Ok(None) } else { Err(exit_error(status, log)) };
            }
            if filled < buf.len() {
                let status = self.child.wait().await.map_err(|e| RunError::Spawn(e.to_string()))?;
                let log = (&mut self.stderr).await.unwrap_or_default();
                return Err(exit_error(status, format!("output ended inside a frame\n{log}")));
            }
            // showinfo logs a frame before FFmpeg writes it, so its time is there or coming.
            let t = self.pts.recv().await.unwrap_or(f64::NAN);
            Ok(Some((buf, t)))
        };
        tokio::time::timeout_at(deadline.into(), work).await.unwrap_or(Err(RunError::TimedOut))
    }
}
