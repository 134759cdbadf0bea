//! A fleet on one PostgreSQL: three dfserve processes share hash lists through the change feed.
//! A change made on any replica reaches every other one. Interleaved writers on different
//! replicas leave each index equal to the database. A replica killed during a large import
//! leaves the list all or nothing. PostgreSQL restarted under detect load costs no failed
//! detects, and afterwards writes recover and every replica catches up.
//!
//! The cluster is the test's own (scripts/pg.sh, on 127.0.0.1 and a free port), so the test
//! can stop and start it. Without PostgreSQL installed the test is skipped, unless
//! `DFSERVE_REQUIRE_POSTGRES=1` (set by scripts/test.sh), which makes that a failure.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{encode, root, Server};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ADMIN: &str = "admin-key-0123456789abcdef";
const SCORER: &str = "score-key-0123456789abcdef";

/// A throwaway cluster, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    base: String,
}

fn pg(args: &[&str]) -> Result<String, String> {
    let out = Command::new(root().join("scripts/pg.sh")).args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let dir = tempfile::Builder::new().prefix("dfserve-fleet-pg").tempdir_in("/tmp").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        match pg(&["start", dir.path().to_str().unwrap(), &port.to_string()]) {
            Ok(base) => Some(Cluster { dir, port, base }),
            Err(e) if std::env::var("DFSERVE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                panic!("DFSERVE_REQUIRE_POSTGRES=1 but no PostgreSQL could be started: {e}")
            }
            Err(e) => {
                eprintln!("fleet: skipped, no PostgreSQL ({e})");
                None
            }
        }
    }
    fn stop(&self) {
        pg(&["stop", self.dir.path().to_str().unwrap()]).unwrap();
    }
    fn restart(&self) {
        pg(&["start", self.dir.path().to_str().unwrap(), &self.port.to_string()]).unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg(&["stop", self.dir.path().to_str().unwrap()]);
    }
}

fn key_file(dir: &std::path::Path) -> PathBuf {
    let f = dir.join("keys");
    std::fs::write(&f, format!("admin:{ADMIN}\n{SCORER}\n")).unwrap();
    f
}

/// A small PNG unique to `i` (so its SHA-256 is too).
fn upload(i: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([(i & 0xff) as u8, (i >> 8) as u8, (x * 8 + y) as u8]));
    encode(&img, image::ImageFormat::Png)
}

fn line(id: &str, bytes: &[u8]) -> String {
    json!({"kind": "sha256", "hash": hex::encode(Sha256::digest(bytes)), "id": id}).to_string() + "\n"
}

async fn import(s: &Server, list: &str, body: String) -> reqwest::Response {
    s.client.post(s.url(&format!("/v1/hashlists/{list}"))).header("x-api-key", ADMIN).body(body).send().await.unwrap()
}

async fn delete(s: &Server, list: &str, id: &str) -> u16 {
    let url = s.url(&format!("/v1/hashlists/{list}/entries/{id}"));
    s.client.delete(url).header("x-api-key", ADMIN).send().await.unwrap().status().as_u16()
}

/// Whether `bytes` matches anything on `s`; a detect that fails is a test failure.
async fn matches(s: &Server, bytes: &[u8]) -> bool {
    matched_at(s, bytes).await.0
}

/// Whether `s` matches `bytes`, and the index position its answer gives.
async fn matched_at(s: &Server, bytes: &[u8]) -> (bool, i64) {
    let r = s
        .client
        .post(s.url("/v1/detect?mode=whole&model=meso4_df"))
        .header("x-api-key", SCORER)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let position = v["results"][0]["hashlist_position"].as_i64();
    assert!(position.is_some_and(|p| p > 0), "a fleet's result names its index position: {v}");
    (!v["results"][0]["matches"].as_array().is_none_or(|m| m.is_empty()), position.unwrap())
}

/// Time until `s` sees `bytes` as `listed` (polled every 2 ms), at most 10 s.
async fn until(s: &Server, bytes: &[u8], listed: bool, from: Instant) -> Duration {
    while matches(s, bytes).await != listed {
        assert!(from.elapsed() < Duration::from_secs(10), "a change did not reach a replica in 10 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    from.elapsed()
}

/// The index's count for `list` on `s`, and the database's (the export).
async fn counts(s: &Server, list: &str) -> (u64, usize) {
    common::list_counts(s, list, SCORER).await
}

async fn position(s: &Server) -> i64 {
    let v: Value = s.client.get(s.url("/health/ready")).send().await.unwrap().json().await.unwrap();
    v["hashlists"]["position"].as_i64().unwrap()
}

fn quantile(mut v: Vec<Duration>, q: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_on_one_database_agrees() {
    let Some(cluster) = Cluster::start() else { return };
    let url = tokio::task::block_in_place(|| common_database(&cluster));
    let keys = tempfile::tempdir().unwrap();
    let keys = key_file(keys.path());
    let args = ["--api-key-file", keys.to_str().unwrap(), "--database-url", &url, "--default-model", "meso4_df"];
    // A one-machine data dir's list, copied into the fleet's database before it starts.
    let one = tempfile::tempdir().unwrap();
    let csv = one.path().join("copied.csv");
    std::fs::write(&csv, format!("kind,hash,id\nsha256,{},c1\n", hex::encode(Sha256::digest(upload(60_000))))).unwrap();
    let dfserve = |a: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dfserve")).args(a).output().unwrap();
        assert!(out.status.success(), "dfserve {a:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let data = one.path().join("data");
    dfserve(&["hashes", "import", "--data-dir", data.to_str().unwrap(), "--list", "copied", csv.to_str().unwrap()]);
    // And a reviewer's decision from that machine.
    let reviewed = "c".repeat(64);
    {
        let local = dfserve::datastore::DataStore::open(&data).unwrap();
        let d: dfserve::decisions::Decision = serde_json::from_value(json!({
            "sha256": reviewed, "decision": "manipulated", "reviewer": "0badcafe",
            "decided_at": "2026-01-01T00:00:00.000Z", "shown": {"score": 0.9}}))
        .unwrap();
        dfserve::decisions::Decisions::from_db(local, u64::MAX).unwrap().record(&d).unwrap();
    }
    dfserve(&["store", "migrate", "--database-url", &url]);
    dfserve(&["store", "copy", "--data-dir", data.to_str().unwrap(), "--database-url", &url]);
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(Server::start(&args).await);
    }
    for s in &fleet {
        let (matched, at) = matched_at(s, &upload(60_000)).await;
        assert!(matched, "the copied list is matched on every replica");
        assert_eq!(at, position(s).await, "results and readiness agree on the index's position");
    }

    // 0. Decisions: the copied one, and one recorded through each replica, are in every
    //    replica's answers at once (they are read from the database, not held per pod).
    let calls = ["authentic", "unsure", "manipulated"];
    for (i, w) in fleet.iter().enumerate() {
        let body = json!({"sha256": reviewed, "decision": calls[i], "shown": {"score": 0.5}});
        let key = if i == 0 { ADMIN } else { SCORER };
        let r = w.client.post(w.url("/v1/decisions")).header("x-api-key", key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        for s in &fleet {
            let r = s
                .client
                .get(s.url(&format!("/v1/decisions/{reviewed}")))
                .header("x-api-key", ADMIN)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            let seen: Vec<&str> =
                v["decisions"].as_array().unwrap().iter().map(|d| d["decision"].as_str().unwrap()).collect();
            // The copied decision, the admin's, and the scorer's latest (which replaces its earlier one).
            assert_eq!(seen.len(), 1 + (i + 1).min(2), "{v}");
            assert!(seen.contains(&calls[i]), "{v}");
        }
    }

    // 1. Propagation: 100 adds then their 100 deletes, each through one replica in turn, timed
    //    until both other replicas see it.
    let mut add_ms = Vec::new();
    let mut del_ms = Vec::new();
    for i in 0..100u32 {
        let (w, bytes) = (&fleet[i as usize % 3], upload(i));
        let t = Instant::now();
        assert_eq!(import(w, "p", line(&format!("p{i}"), &bytes)).await.status(), 200);
        assert!(matches(w, &bytes).await, "the writing replica matches its own change at once");
        for r in fleet.iter().filter(|r| !std::ptr::eq(*r, w)) {
            add_ms.push(until(r, &bytes, true, t).await);
        }
    }
    for i in 0..100u32 {
        let (w, bytes) = (&fleet[(i as usize + 1) % 3], upload(i));
        let t = Instant::now();
        assert_eq!(delete(w, "p", &format!("p{i}")).await, 200);
        assert!(!matches(w, &bytes).await);
        for r in fleet.iter().filter(|r| !std::ptr::eq(*r, w)) {
            del_ms.push(until(r, &bytes, false, t).await);
        }
    }
    println!(
        "fleet: propagation over 200 changes to 2 other replicas: adds p50 {:.1} ms p99 {:.1} ms, deletes p50 {:.1} ms p99 {:.1} ms",
        quantile(add_ms.clone(), 0.5),
        quantile(add_ms, 0.99),
        quantile(del_ms.clone(), 0.5),
        quantile(del_ms, 0.99)
    );

    // 2. Interleaved writers on every replica at once: imports and deletes on one list.
    let base: String = (0..3000).map(|i| line(&format!("b{i}"), &upload(10_000 + i))).collect();
    assert_eq!(import(&fleet[0], "l", base).await.status(), 200);
    let mut tasks = Vec::new();
    for t in 0..96u32 {
        let (client, base) = (fleet[t as usize % 3].client.clone(), fleet[t as usize % 3].base.clone());
        tasks.push(tokio::spawn(async move {
            let req = if t % 2 == 0 {
                client.delete(format!("{base}/v1/hashlists/l/entries/b{}", t * 7))
            } else {
                let body: String = (0..20).map(|k| line(&format!("n{t}-{k}"), &upload(20_000 + t * 20 + k))).collect();
                client.post(format!("{base}/v1/hashlists/l")).body(body)
            };
            req.header("x-api-key", ADMIN).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let want = 3000 - 48 + 48 * 20;
    let settle = Instant::now();
    for s in &fleet {
        loop {
            let (indexed, stored) = counts(s, "l").await;
            if indexed as usize == want {
                assert_eq!(stored, want);
                break;
            }
            assert!(
                settle.elapsed() < Duration::from_secs(10),
                "a replica's index holds {indexed}, the database {stored}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let positions = [position(&fleet[0]).await, position(&fleet[1]).await, position(&fleet[2]).await];
    assert!(positions.iter().all(|p| *p == positions[0]), "every replica at the same change: {positions:?}");
    for s in &fleet {
        assert!(!matches(s, &upload(10_000 + 14)).await, "a deleted entry still matches");
        assert!(matches(s, &upload(10_000 + 15)).await, "a kept entry matches");
        assert!(matches(s, &upload(20_000 + 95 * 20 + 19)).await, "an added entry matches");
    }

    // 2b. The log pruned while a replica is paused (SIGSTOP) and changes go on without it: on
    //     waking it is behind the pruned log, loads every list afresh, and ends at the others'
    //     position with the database's contents.
    let paused = fleet[2].pid() as i32;
    unsafe { libc::kill(paused, libc::SIGSTOP) };
    assert_eq!(import(&fleet[0], "l", line("late", &upload(30_000))).await.status(), 200);
    assert_eq!(delete(&fleet[1], "l", "b15").await, 200);
    let out = Command::new(env!("CARGO_BIN_EXE_dfserve"))
        .args(["store", "prune", "--older-than", "0s", "--database-url", &url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("pruned"), "{said}");
    unsafe { libc::kill(paused, libc::SIGCONT) };
    let target = position(&fleet[0]).await;
    let t = Instant::now();
    while position(&fleet[2]).await != target {
        assert!(t.elapsed() < Duration::from_secs(20), "the paused replica did not catch up after the prune");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = fleet[2].client.get(fleet[2].url("/metrics")).header("x-api-key", ADMIN).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let reloaded = common::metric(&metrics, "dfserve_hashlist_feed_reloads_total");
    let feed_lines: Vec<&str> = metrics.lines().filter(|l| l.contains("hashlist_feed")).collect();
    assert_eq!(reloaded, Some(1.0), "the paused replica loaded the lists afresh: {feed_lines:?}");
    assert_eq!(counts(&fleet[2], "l").await, (want as u64, want));
    assert!(matches(&fleet[2], &upload(30_000)).await && !matches(&fleet[2], &upload(10_000 + 15)).await);
    println!(
        "fleet: log pruned while a replica was paused ({}); it reloaded and caught up in {:.2} s",
        said.trim(),
        t.elapsed().as_secs_f64()
    );

    // 3. A replica killed in the middle of a 300,000-entry import: the list is all or nothing.
    let big: String = (0..300_000).map(|i| line(&format!("k{i}"), format!("kill {i}").as_bytes())).collect();
    let (victim_client, victim_base) = (fleet[2].client.clone(), fleet[2].base.clone());
    let sent = tokio::spawn(async move {
        victim_client
            .post(format!("{victim_base}/v1/hashlists/killed"))
            .header("x-api-key", ADMIN)
            .body(big)
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet[2].kill();
    let _ = sent.await;
    let (indexed, stored) = counts(&fleet[0], "killed").await;
    assert!(
        indexed == stored as u64 && (stored == 0 || stored == 300_000),
        "all or nothing: index {indexed}, database {stored}"
    );
    println!("fleet: replica killed 1.5 s into a 300,000-entry import: the list holds {stored}");
    fleet.pop();
    fleet.push(Server::start(&args).await);

    // 4. PostgreSQL restarted under detect load.
    let listed = upload(7);
    assert_eq!(import(&fleet[0], "r", line("r7", &listed)).await.status(), 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for s in &fleet {
        let (client, base, stop, listed) = (s.client.clone(), s.base.clone(), stop.clone(), listed.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = client
                    .post(format!("{base}/v1/detect?mode=whole&model=meso4_df"))
                    .header("x-api-key", SCORER)
                    .body(listed.clone())
                    .send()
                    .await
                    .unwrap();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["results"][0]["matches"].as_array().is_some_and(|m| m.len() == 1) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop();
    let r = import(&fleet[1], "r", line("r8", &upload(8))).await;
    assert_eq!(r.status(), 503, "a write while the database is down");
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "storage_unavailable", "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v: Value = fleet[0].client.get(fleet[0].url("/health/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["hashlists"]["connected"], false, "{v}");
    cluster.restart();
    let t = Instant::now();
    loop {
        let r = import(&fleet[1], "r", line("r8", &upload(8))).await;
        if r.status() == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "writes did not recover: {}", r.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = t.elapsed();
    for s in &fleet {
        until(s, &upload(8), true, Instant::now()).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for l in load {
        let (o, f) = l.await.unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "detects that failed or lost their match while PostgreSQL was down");
    println!(
        "fleet: PostgreSQL stopped and restarted under detect load: {ok} detects, none failed; writes back {:.1} s after the restart",
        recovered.as_secs_f64()
    );
}

/// A database of the test's own on `cluster`.
fn common_database(cluster: &Cluster) -> String {
    let base = &cluster.base;
    let mut c = postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls).unwrap();
    c.batch_execute("CREATE DATABASE fleet").unwrap();
    format!("{base} dbname=fleet")
}
