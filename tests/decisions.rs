//! Reviewer decisions over HTTP: stored under the presenting key's id, refused when malformed,
//! kept across a killed process (in the same database as the hash lists), and able to add an
//! item to a hash list only with an admin key and the very bytes that were reviewed.

mod common;

use common::{sample, Server};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ADMIN: &str = "admin-key-0123456789abcdef";
const REVIEWER: &str = "review-key-0123456789abcdef";

fn key_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..4])
}

async fn post(s: &Server, key: &str, body: &Value) -> (u16, Value) {
    let r = s.client.post(s.url("/v1/decisions")).header("x-api-key", key).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post_with_media(s: &Server, key: &str, body: &Value, media: Vec<u8>) -> (u16, Value) {
    let form = Form::new()
        .part("decision", Part::bytes(body.to_string().into_bytes()).mime_str("application/json").unwrap())
        .part("media", Part::bytes(media).file_name("upload.jpg"));
    let r = s.client.post(s.url("/v1/decisions")).header("x-api-key", key).multipart(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(s: &Server, path: &str) -> (u16, String) {
    let r = s.client.get(s.url(path)).header("x-api-key", REVIEWER).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn decisions_are_kept_per_reviewer_across_a_kill_and_feed_hash_lists_only_for_admins() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("admin:{ADMIN}\n{REVIEWER}\n")).unwrap();
    let data = dir.path().join("data");
    // A data dir from before decisions: its hash lists move into dfserve.redb with it.
    {
        let lists = dfserve::hashlists::HashLists::open(&data, Default::default()).unwrap();
        let e = dfserve::hashlists::parse_entries(&format!(
            "{{\"kind\":\"md5\",\"hash\":\"{}\",\"id\":\"old\"}}",
            "a".repeat(32)
        ))
        .unwrap();
        lists.import("legacy", e).unwrap();
    }
    std::fs::rename(data.join("dfserve.redb"), data.join("hashlists.redb")).unwrap();
    let args = ["--api-key-file", keys.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
    let mut s = Server::start(&args).await;
    assert!(data.join("dfserve.redb").is_file() && !data.join("hashlists.redb").exists());

    let upload = sample("mesonet/df/df00204.jpg");
    let sha = hex::encode(Sha256::digest(&upload));
    let decision = |call: &str| {
        json!({"sha256": sha, "decision": call, "filename": "upload.jpg", "kind": "image",
               "shown": {"model": "meso4_ensemble@1", "score": 0.72, "verdict": "uncertain",
                         "faces": [{"score": 0.72, "members": {"meso4_df": 0.98, "meso4_f2f": 0.47}}]}})
    };
    // Who is asking: the page offers list changes to admins only.
    let (_, who) = get(&s, "/v1/whoami").await;
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!((who["key_id"].as_str(), who["admin"].as_bool()), (Some(key_id(REVIEWER).as_str()), Some(false)));

    let (status, body) = post(&s, REVIEWER, &decision("unsure")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"]["reviewer"], key_id(REVIEWER));
    // Deciding again replaces that reviewer's decision; another reviewer's stands beside it.
    assert_eq!(post(&s, REVIEWER, &decision("authentic")).await.0, 200);
    assert_eq!(post(&s, ADMIN, &decision("manipulated")).await.0, 200);

    // Malformed decisions are refused with a reason, and nothing is stored.
    for (bad, why) in [
        (json!({"sha256": "abc", "decision": "manipulated"}), "64 hex digits"),
        (json!({"sha256": sha, "decision": "maybe"}), "unknown variant"),
        (json!({"sha256": sha, "decision": "unsure", "shown": {"score": 7.0}}), "between 0 and 1"),
        (json!({"sha256": sha, "decision": "unsure", "extra": 1}), "unknown field"),
    ] {
        let (status, body) = post(&s, REVIEWER, &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    }
    // A decision part past 256 KiB is refused as it arrives.
    let mut huge = decision("unsure");
    huge["note"] = json!("x".repeat(300_000));
    let (status, body) = post_with_media(&s, ADMIN, &huge, Vec::new()).await;
    assert!(status == 400 && body["error"].as_str().unwrap().contains("over 262144 bytes"), "{body}");
    // Multipart (media for a hash list) from a scoring key is refused before its body is read.
    let (status, body) = post_with_media(&s, REVIEWER, &decision("unsure"), vec![0u8; 8 << 20]).await;
    assert!(status == 403 && body["error"].as_str().unwrap().contains("admin key"), "{body}");
    // Adding to a hash list: admins only, with the media, and only the reviewed bytes.
    let mut add = decision("manipulated");
    add["add_to_list"] = json!("reviewed");
    let (status, body) = post_with_media(&s, REVIEWER, &add, upload.clone()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = post(&s, ADMIN, &add).await;
    assert!(status == 400 && body["error"].as_str().unwrap().contains("`media` part"), "{body}");
    let other = sample("mesonet/real/real00240.jpg");
    let (status, body) = post_with_media(&s, ADMIN, &add, other).await;
    assert!(status == 400 && body["error"].as_str().unwrap().contains("send the file that was reviewed"), "{body}");
    let (status, body) = post_with_media(&s, ADMIN, &add, upload.clone()).await;
    assert_eq!((status, body["decision"]["added_to_list"].as_str()), (200, Some("reviewed")), "{body}");
    let r = s.client.post(s.url("/v1/detect")).header("x-api-key", REVIEWER).body(upload.clone()).send().await.unwrap();
    let matched: Value = r.json().await.unwrap();
    let lists: Vec<&str> =
        matched["results"][0]["matches"].as_array().unwrap().iter().map(|m| m["list"].as_str().unwrap()).collect();
    assert_eq!(lists, ["reviewed", "reviewed"], "{matched}");

    // Acknowledged, then killed: all of it is still there, beside the old hash list.
    s.kill();
    let s = Server::start(&args).await;
    let (status, text) = get(&s, &format!("/v1/decisions/{sha}")).await;
    assert_eq!(status, 200);
    let mut calls: Vec<(String, String)> = serde_json::from_str::<Value>(&text).unwrap()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["reviewer"].as_str().unwrap().to_string(), d["decision"].as_str().unwrap().to_string()))
        .collect();
    calls.sort();
    let mut expect = vec![(key_id(REVIEWER), "authentic".to_string()), (key_id(ADMIN), "manipulated".to_string())];
    expect.sort();
    assert_eq!(calls, expect);
    let (_, summaries) = get(&s, "/v1/hashlists").await;
    assert!(summaries.contains("\"legacy\"") && summaries.contains("\"reviewed\""), "{summaries}");
    // The CSV export: the latest decision of each reviewer, `path,label` first.
    let (status, csv) = get(&s, "/v1/decisions?format=csv").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with(r#""path","label","sha256","decision","reviewer","decided_at""#), "{csv}");
    assert!(lines[1..].iter().all(|l| l.starts_with(r#""upload.jpg","#)), "{csv}");
    // JSON pages: one at a time, then the next, then none.
    let s = &s;
    let page = |q: String| async move { serde_json::from_str::<Value>(&get(s, &q).await.1).unwrap() };
    let first = page("/v1/decisions?limit=1".into()).await;
    assert_eq!(first["decisions"].as_array().unwrap().len(), 1, "{first}");
    let next = first["next"].as_str().unwrap().to_string();
    let second = page(format!("/v1/decisions?limit=1&after={next}")).await;
    assert_eq!(second["decisions"].as_array().unwrap().len(), 1, "{second}");
    assert_ne!(first["decisions"][0], second["decisions"][0]);
    let all = page("/v1/decisions".into()).await;
    assert!(all["next"].is_null() && all["decisions"].as_array().unwrap().len() == 2, "{all}");
    assert_eq!(get(s, "/v1/decisions?limit=0").await.0, 400);
    assert_eq!(get(s, "/v1/decisions?after=nothex").await.0, 400);
    assert_eq!(get(s, "/v1/decisions?format=xml").await.0, 400);
    // Without a key: refused like the rest of the API; the page's files are served to anyone.
    assert_eq!(s.client.get(s.url("/v1/decisions")).send().await.unwrap().status(), 401);
    let page = s.client.get(s.url("/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("connect-src 'self'"));
    assert_eq!(s.client.get(s.url("/ui/app.js")).send().await.unwrap().status(), 200);
    assert_eq!(s.client.get(s.url("/ui/nope.js")).send().await.unwrap().status(), 404);
}
