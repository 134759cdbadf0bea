//! Stored state that never lies, over HTTP: the matching index follows the database under
//! concurrent admins, imports say what they did, refusals are JSON a client can read, storage
//! faults are 503 and heal without a restart, and imports are admitted within a memory budget.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{metric, sample, Server};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ADMIN: &str = "admin-key-0123456789abcdef";
const SCORER: &str = "score-key-0123456789abcdef";

fn key_file(dir: &std::path::Path) -> String {
    let f = dir.join("keys");
    std::fs::write(&f, format!("admin:{ADMIN}\n{SCORER}\n")).unwrap();
    f.to_str().unwrap().to_string()
}

async fn import(s: &Server, list: &str, body: String) -> (u16, Value) {
    let r = s.client.post(s.url(&format!("/v1/hashlists/{list}"))).header("x-api-key", ADMIN).body(body).send().await;
    let r = r.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn sha_line(id: &str, bytes: &[u8]) -> String {
    json!({"kind": "sha256", "hash": hex::encode(Sha256::digest(bytes)), "id": id}).to_string() + "\n"
}

async fn matched_ids(s: &Server, upload: Vec<u8>) -> Vec<String> {
    let r = s
        .client
        .post(s.url("/v1/detect?mode=whole&model=meso4_df"))
        .header("x-api-key", SCORER)
        .body(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["results"][0]["matches"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

/// The index's count for `list` on `s`, and the database's (the export).
async fn counts(s: &Server, list: &str) -> (u64, usize) {
    common::list_counts(s, list, SCORER).await
}

/// Rounds of 16 imports and 16 deletes sent at once on a 5,000-entry list: after each, the
/// index (`GET /v1/hashlists`) and the database (the export) agree, a deleted upload no longer
/// matches and an imported one does.
#[tokio::test]
async fn concurrent_admins_leave_the_index_equal_to_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--api-key-file", &key_file(dir.path())]).await;
    let base: String = (0..5000).map(|i| sha_line(&format!("base-{i}"), format!("item {i}").as_bytes())).collect();
    assert_eq!(import(&s, "l", base).await.0, 200);
    let upload = sample("mesonet/df/df00204.jpg");
    for round in 0..6 {
        // This round's upload is listed first, then deleted among the others' changes.
        assert_eq!(import(&s, "l", sha_line(&format!("upload-{round}"), &upload)).await.0, 200);
        let mut tasks = Vec::new();
        for t in 0..32 {
            let (client, base) = (s.client.clone(), s.base.clone());
            tasks.push(tokio::spawn(async move {
                let req = if t == 0 {
                    client.delete(format!("{base}/v1/hashlists/l/entries/upload-{round}"))
                } else if t % 2 == 0 {
                    client.delete(format!("{base}/v1/hashlists/l/entries/base-{}", round * 32 + t))
                } else {
                    let line = sha_line(&format!("r{round}-{t}"), format!("new {round} {t}").as_bytes());
                    client.post(format!("{base}/v1/hashlists/l")).body(line)
                };
                req.header("x-api-key", ADMIN).send().await.unwrap().status().as_u16()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        let (indexed, stored) = counts(&s, "l").await;
        assert_eq!(indexed as usize, stored, "round {round}");
        assert!(matched_ids(&s, upload.clone()).await.is_empty(), "round {round}: a deleted entry still matches");
    }
    let (indexed, stored) = counts(&s, "l").await;
    assert_eq!((indexed as usize, stored), (5000 - 6 * 15 + 6 * 16, 5000 - 6 * 15 + 6 * 16));
}

#[tokio::test]
async fn imports_report_what_they_did_and_refuse_what_is_not_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--api-key-file", &key_file(dir.path())]).await;
    let two = sha_line("a", b"1") + &sha_line("a", b"2") + &sha_line("b", b"3");
    let (status, body) = import(&s, "l", two).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["added"].as_u64(), body["duplicates"].as_u64(), body["entries"].as_u64()),
        (Some(2), Some(1), Some(2))
    );
    let (_, body) = import(&s, "l", format!("\u{feff}{}", sha_line("b", b"4"))).await;
    assert_eq!(
        (body["added"].as_u64(), body["replaced"].as_u64(), body["entries"].as_u64()),
        (Some(0), Some(1), Some(2))
    );
    let hash = hex::encode(Sha256::digest(b"x"));
    for (bad, why) in [
        (String::new(), "no entries"),
        ("\n\n".into(), "no entries"),
        (format!("sha256,{hash},x\n"), "no header"),
        (
            json!({"kind": "sha256", "hash": hash, "id": "x", "label": "l".repeat(4 << 20)}).to_string(),
            "over 1000 characters",
        ),
    ] {
        let (status, body) = import(&s, "l", bad).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    }
    assert_eq!(counts(&s, "l").await, (2, 2));
}

/// Writes a whole request (headers and `body_len` bytes) before reading anything, as Python's
/// urllib does, and returns the status line and body of the answer. A server that closed the
/// connection early makes the write fail (broken pipe / reset) instead.
fn send_all_then_read(addr: &str, head: &str, body_len: usize) -> Result<(String, String), std::io::Error> {
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    c.write_all(head.as_bytes())?;
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0;
    while sent < body_len {
        let n = chunk.len().min(body_len - sent);
        c.write_all(&chunk[..n])?;
        sent += n;
    }
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

#[tokio::test]
async fn early_refusals_are_json_and_reach_clients_that_write_the_whole_body_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--api-key-file", &key_file(dir.path()), "--max-body-bytes", "1000000"]).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // One byte over the limit: 413 as JSON, on the dfserve API and on KServe's (whose error
    // body is KServe's `{"error"}`).
    for (path, key, content_type, code) in [
        ("/v1/detect", SCORER, "image/jpeg", Some("payload_too_large")),
        ("/v1/hashlists/l", ADMIN, "text/csv", Some("payload_too_large")),
        ("/v2/models/meso4_df/infer", SCORER, "application/json", None),
    ] {
        let r = s
            .client
            .post(s.url(path))
            .header("x-api-key", key)
            .header("content-type", content_type)
            .body(vec![b' '; 1_000_001])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"].as_str(), code, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("--max-body-bytes"), "{path}: {body}");
    }
    // 4 MB written whole before reading: over the limit, without a key, and from a scoring key
    // on an admin route. Each client reads its refusal.
    let cases = [
        ("/v1/detect", SCORER, "413", "payload_too_large"),
        ("/v1/hashlists/l", SCORER, "403", "forbidden"),
        ("/v1/detect", "no-such-key-000000000000", "401", "unauthenticated"),
    ];
    for (path, key, status, code) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\ncontent-type: image/jpeg\r\ncontent-length: 4000000\r\nconnection: close\r\n\r\n"
        );
        let addr = addr.clone();
        let got = tokio::task::spawn_blocking(move || send_all_then_read(&addr, &head, 4_000_000)).await.unwrap();
        let (line, body) = got.unwrap_or_else(|e| panic!("{path} with key {key}: the client could not send: {e}"));
        assert!(line.contains(status), "{path}: {line}");
        assert!(body.contains(&format!("\"code\":\"{code}\"")), "{path}: {body}");
    }
    // An unknown method on a known route: JSON too.
    let r = s.client.put(s.url("/v1/detect")).header("x-api-key", SCORER).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "method_not_allowed");
}

/// Two imports at once under a budget that fits one: the second is refused with 429 before
/// its body is read, and admitted once the first is done.
#[tokio::test]
async fn imports_are_admitted_within_their_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--api-key-file", &key_file(dir.path()), "--max-import-memory-bytes", "10000000"]).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // The first declares 1.5 MB (10.5 MB at 7x: all of the budget) and sends it slowly.
    let body: String = (0..20_000).map(|i| sha_line(&format!("e{i}"), format!("{i}").as_bytes())).collect();
    let body = body.into_bytes()[..1_500_000].to_vec();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /v1/hashlists/big HTTP/1.1\r\nhost: x\r\nx-api-key: {ADMIN}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&body[..1000]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = import(&s, "other", sha_line("x", b"x").repeat(30_000)[..1_200_000].to_string()).await;
    assert_eq!((status, answer["code"].as_str()), (429, Some("busy")), "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("--max-import-memory-bytes"), "{answer}");
    // The first finishes (its last line is cut, so it is refused as a whole: nothing is added).
    slow.write_all(&body[1000..]).unwrap();
    let mut out = String::new();
    slow.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(counts(&s, "big").await, (0, 0));
    let (status, answer) = import(&s, "other", sha_line("x", b"x")).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn decisions_cannot_be_forged_from_another_site() {
    let s = Server::start(&[]).await;
    let sha = hex::encode(Sha256::digest(b"x"));
    let decision = json!({"sha256": sha, "decision": "authentic"}).to_string();
    // A form can send multipart or text/plain, not JSON; without keys neither is taken.
    let form = reqwest::multipart::Form::new().text("decision", decision.clone());
    let r = s.client.post(s.url("/v1/decisions")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = s.client.post(s.url("/v1/decisions")).header("content-type", "text/plain").body(decision.clone());
    assert_eq!(r.send().await.unwrap().status(), 400);
    let r = s
        .client
        .post(s.url("/v1/decisions"))
        .header("content-type", "application/json")
        .header("sec-fetch-site", "cross-site")
        .body(decision.clone());
    assert_eq!(r.send().await.unwrap().status(), 403);
    let r = s.client.post(s.url("/v1/decisions")).header("content-type", "application/json").body(decision);
    assert_eq!(r.send().await.unwrap().status(), 200);
    let summary: Value = s.client.get(s.url("/v1/decisions/summary")).send().await.unwrap().json().await.unwrap();
    assert_eq!(summary["total"], 1);
}

/// The database file made immutable (`chattr +i`, which binds root too): list changes and
/// decisions answer 503 `storage_unavailable` with Retry-After, readiness and the metric say
/// writes fail, detection keeps answering; made writable again, the server recovers by itself.
#[tokio::test]
async fn a_storage_fault_is_503_and_heals_without_a_restart() {
    if !nix_root() {
        eprintln!("skipped: chattr +i needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&["--api-key-file", &key_file(dir.path()), "--data-dir", data.to_str().unwrap()]).await;
    let upload = sample("mesonet/df/df00204.jpg");
    assert_eq!(import(&s, "l", sha_line("kept", &upload)).await.0, 200);
    let db = data.join("dfserve.redb");
    let chattr = |flag: &str| std::process::Command::new("chattr").arg(flag).arg(&db).status().unwrap().success();
    assert!(chattr("+i"), "chattr +i failed on {}", db.display());
    let refused = import(&s, "l", sha_line("new", b"new")).await;
    let ready = |s: &Server| {
        let r = s.client.get(s.url("/health/ready")).send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let during = ready(&s).await;
    let metrics = s.client.get(s.url("/metrics")).header("x-api-key", SCORER).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let matched = matched_ids(&s, upload.clone()).await;
    let decision = json!({"sha256": hex::encode(Sha256::digest(&upload)), "decision": "authentic"});
    let r = s.client.post(s.url("/v1/decisions")).header("x-api-key", SCORER).json(&decision).send().await.unwrap();
    let decision_status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").is_some();
    assert!(chattr("-i"));
    let (status, body) = refused;
    assert_eq!((status, body["code"].as_str()), (503, Some("storage_unavailable")), "{body}");
    assert_eq!((decision_status, retry_after), (503, true));
    assert_eq!(during.0, 200, "detection stays ready: {}", during.1);
    assert_eq!(during.1["storage"]["writable"], false, "{}", during.1);
    assert_eq!(metric(&metrics, "dfserve_storage_writable"), Some(0.0));
    assert_eq!(matched, vec!["kept".to_string()]);
    // Writable again: within a few probes readiness says so, and writes work, with no restart.
    let mut healed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if ready(&s).await.1["storage"]["writable"] == true {
            healed = true;
            break;
        }
    }
    assert!(healed, "storage still failing after the file became writable");
    let (status, body) = import(&s, "l", sha_line("new", b"new")).await;
    assert_eq!((status, body["entries"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(counts(&s, "l").await, (2, 2));
}

fn nix_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
