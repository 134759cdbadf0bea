//! Test harness: starts the real `dfserve` binary with the real ONNX Runtime library and the
//! real models (placed by scripts/setup.sh), on an ephemeral port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn samples() -> PathBuf {
    std::env::var_os("DFSERVE_SAMPLES").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/samples"))
}

pub fn sample(rel: &str) -> Vec<u8> {
    let p = samples().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub struct Server {
    child: Child,
    /// Where the server's stderr goes when started with `start_logged`.
    pub log_file: Option<PathBuf>,
    pub base: String,
    /// `http://host:port` of the gRPC listener.
    pub grpc: String,
    pub client: reqwest::Client,
    /// The server's own --data-dir (unless the test gave one), removed with the server.
    pub data_dir: Option<tempfile::TempDir>,
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfserve"));
    cmd.current_dir(root()).args(args).env("DFSERVE_LOG", "warn");
    cmd
}

impl Server {
    /// Starts `dfserve serve` on 127.0.0.1 and an ephemeral port, and waits until ready.
    pub async fn start(extra: &[&str]) -> Server {
        Self::start_inner(extra, None, None).await
    }

    /// Like `start`, with the server's log (at info level, JSON lines) kept for `log()`.
    pub async fn start_logged(extra: &[&str]) -> Server {
        let path = std::env::temp_dir().join(format!(
            "dfserve-test-log-{}-{}.jsonl",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        let mut args = vec!["--log-format", "json"];
        args.extend_from_slice(extra);
        Self::start_inner(&args, None, Some(path)).await
    }

    /// The server's log lines so far, parsed (only for servers from `start_logged`).
    pub fn log(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.log_file.as_ref().expect("started with start_logged")).unwrap();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Like `start` for a server with --tls-cert/--tls-key: URLs are https and the client
    /// trusts `ca_pem`.
    pub async fn start_tls(extra: &[&str], ca_pem: &[u8]) -> Server {
        Self::start_inner(extra, Some(ca_pem), None).await
    }

    async fn start_inner(extra: &[&str], ca_pem: Option<&[u8]>, log: Option<PathBuf>) -> Server {
        let mut args = vec!["serve", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"];
        args.extend_from_slice(extra);
        // Each server gets its own data directory (the hash-list database is one per process).
        let data_dir = (!extra.contains(&"--data-dir")).then(|| tempfile::tempdir().unwrap());
        let data_path = data_dir.as_ref().map(|d| d.path().to_str().unwrap().to_string());
        if let Some(p) = &data_path {
            args.extend_from_slice(&["--data-dir", p.as_str()]);
        }
        let mut cmd = command(&args);
        let stderr = match &log {
            Some(path) => {
                cmd.env("DFSERVE_LOG", "info,ort=warn");
                Stdio::from(std::fs::File::create(path).unwrap())
            }
            None if std::env::var_os("DFSERVE_TEST_LOGS").is_some() => Stdio::inherit(),
            None => Stdio::null(),
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().expect("starting dfserve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("dfserve: listening on ") {
                    let _ = tx.send(url.to_string());
                } else if let Some(addr) = line.strip_prefix("dfserve: grpc on ") {
                    let _ = tx.send(format!("http://{addr}"));
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(60)).expect("dfserve did not report its address in 60 s");
        let grpc = rx.recv_timeout(Duration::from_secs(10)).expect("dfserve did not report its gRPC address");
        let mut builder = reqwest::Client::builder().pool_max_idle_per_host(64);
        let (base, grpc) = match ca_pem {
            Some(pem) => {
                builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
                (
                    base.replace("http://127.0.0.1", "https://localhost"),
                    grpc.replace("http://127.0.0.1", "https://localhost"),
                )
            }
            None => (base, grpc),
        };
        let client = builder.build().unwrap();
        let server = Server { child, log_file: log, base, grpc, client, data_dir };
        let started = Instant::now();
        loop {
            if let Ok(r) = server.client.get(server.url("/health/ready")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(60), "dfserve not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The server's resident memory now, in MiB.
    pub fn rss_mib(&self) -> u64 {
        proc_status_mib(self.pid(), "VmRSS")
    }

    /// The server's peak resident memory so far (the kernel's high-water mark), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        proc_status_mib(self.pid(), "VmHWM")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn detect(&self, query: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(&format!("/v1/detect{query}")))
            .header("content-type", "image/jpeg")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Waits for the process to exit on its own (after a signal), returning its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Server {
    /// Kills the server with SIGKILL (no shutdown, no flushing) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dfserve ARGS` expecting it to fail at start-up; returns (exit code, stderr).
pub fn run_to_failure(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = command(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("running dfserve");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Value of one Prometheus sample line `name{labels} value`.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Encodes an RGB image in the given format.
pub fn encode(img: &image::RgbImage, fmt: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

/// Builds (once) the test clips and returns their directory.
pub fn clips() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dfserve-video-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let samples = samples().join("mesonet");
        let moving = |face: &str, codec: &[&str], out: &str, secs: u32| {
            let status = Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
                .arg(format!("color=c=gray:s=640x360:d={secs}:r=25"))
                .args(["-loop", "1", "-i"])
                .arg(samples.join(face))
                .args(["-filter_complex", "[1:v]scale=160:160[f];[0:v][f]overlay=x='40+100*t':y=80:shortest=1"])
                .args(codec)
                .args(["-pix_fmt", "yuv420p", "-t", &secs.to_string()])
                .arg(dir.join(out))
                .status()
                .expect("ffmpeg must be installed (scripts/setup.sh installs it)");
            assert!(status.success(), "ffmpeg failed building {out}");
        };
        moving("df/df01254.jpg", &["-c:v", "libx264"], "fake.mp4", 3);
        moving("real/real00240.jpg", &["-c:v", "libvpx-vp9", "-b:v", "1M", "-deadline", "realtime"], "real.webm", 3);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac"])
            .arg(dir.join("audio.m4a"))
            .status()
            .unwrap();
        assert!(status.success());
        dir
    })
}

pub fn clip(name: &str) -> Vec<u8> {
    std::fs::read(clips().join(name)).unwrap()
}

fn proc_status_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kib / 1024
}

/// What `s` says of hash list `list`, read with `key`: the index's entry count (`GET
/// /v1/hashlists`) and the database's (the export's lines; 0 when there is no such list). The
/// two must always be equal.
pub async fn list_counts(s: &Server, list: &str, key: &str) -> (u64, usize) {
    let get = |p: String| s.client.get(s.url(&p)).header("x-api-key", key).send();
    let lists: serde_json::Value = get("/v1/hashlists".into()).await.unwrap().json().await.unwrap();
    let indexed = lists["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == list)
        .map_or(0, |l| l["entries"].as_u64().unwrap());
    let export = get(format!("/v1/hashlists/{list}")).await.unwrap();
    let stored = match export.status().as_u16() {
        404 => 0,
        _ => export.text().await.unwrap().lines().count(),
    };
    (indexed, stored)
}
