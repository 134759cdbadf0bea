//! The lists' tests: persistence, matching, import formats, and the index against the
//! database under concurrent writers.

use super::*;
use crate::hashing::pdq::Pdq;
use crate::hashing::vpdq;
use sha2::{Digest, Sha256};

/// Where a conformance test's lists are stored: every such test runs against each store.
enum Fixture {
    Embedded(tempfile::TempDir),
    Postgres(String),
}

impl Fixture {
    /// The data dir's store, and PostgreSQL when the test scripts started one.
    fn all(test: &str) -> Vec<Fixture> {
        let mut out = vec![Fixture::Embedded(tempfile::tempdir().unwrap())];
        out.extend(crate::pgstore::test_database(test).map(Fixture::Postgres));
        out
    }

    fn open(&self) -> HashLists {
        match self {
            Fixture::Embedded(dir) => HashLists::open(dir.path(), MatchRules::default()).unwrap(),
            Fixture::Postgres(url) => {
                HashLists::from_postgres(crate::pgstore::Db::connect(url).unwrap(), MatchRules::default(), None)
                    .unwrap()
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Fixture::Embedded(_) => "embedded",
            Fixture::Postgres(_) => "postgres",
        }
    }
}

fn pdq_entry(id: &str, words: [u16; 16]) -> Entry {
    let hash = Pdq { words, quality: 100 }.hex();
    Entry { kind: HashKind::Pdq, hash, id: id.into(), label: Some("known".into()), source: None }
}

#[test]
fn lists_persist_match_and_forget() {
    for store in Fixture::all("persist") {
        persist_match_and_forget(&store);
    }
}

fn persist_match_and_forget(store: &Fixture) {
    let lists = store.open();
    let mut near = [0x5a5au16; 16];
    lists.import("ncii", vec![pdq_entry("a", near), pdq_entry("b", [0xffff; 16])]).unwrap();
    let bytes = b"some upload";
    let sha = hex::encode(Sha256::digest(bytes));
    let exact = Entry { kind: HashKind::Sha256, hash: sha.to_uppercase(), id: "c".into(), label: None, source: None };
    lists.import("exact", vec![exact]).unwrap();
    near[0] ^= 0b111; // 3 bits away
    let probe = Probe { bytes, pdq: &[Pdq { words: near, quality: 80 }], vpdq: None };
    let got = lists.matches(&probe);
    let brief: Vec<(&str, &str, u32)> = got.iter().map(|m| (m.list.as_str(), m.id.as_str(), m.distance)).collect();
    assert_eq!(brief, vec![("exact", "c", 0), ("ncii", "a", 3)]);
    // A low-quality hash is not matched; the exact digest still is.
    let low = Probe { bytes, pdq: &[Pdq { words: near, quality: 20 }], vpdq: None };
    assert_eq!(lists.matches(&low).len(), 1);
    drop(lists);
    // Reopened: the same lists.
    let lists = store.open();
    assert_eq!(lists.matches(&probe).len(), 2);
    assert!(lists.delete("ncii", "a").unwrap());
    assert_eq!(lists.delete_list("exact").unwrap(), 1);
    assert!(lists.matches(&probe).is_empty());
    drop(lists);
    let lists = store.open();
    let names: Vec<String> = lists.summaries().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["ncii"], "{}", store.name());
}

#[test]
fn videos_match_by_vpdq_share_of_frames() {
    let dir = tempfile::tempdir().unwrap();
    let lists = HashLists::open(dir.path(), MatchRules::default()).unwrap();
    let frame = |fill: u16, t: f64| vpdq::Feature { pdq: Pdq { words: [fill; 16], quality: 100 }, time_s: t };
    let listed: Vec<vpdq::Feature> = (0..10).map(|i| frame(1 << i, i as f64)).collect();
    // JSON Lines may give the frames as an array; they are stored in ThreatExchange's form.
    let frames: Vec<String> = listed.iter().map(vpdq::Feature::compact).collect();
    let line = serde_json::json!({"kind": "vpdq", "hash": frames, "id": "v"}).to_string();
    lists.import("videos", parse_entries(&line).unwrap()).unwrap();
    assert_eq!(lists.export("videos").unwrap().unwrap()[0].hash, vpdq::to_json(&listed));
    assert!(lists.wants_vpdq() && !lists.wants_pdq());
    let probe = |q: &[vpdq::Feature]| lists.matches(&Probe { bytes: b"clip", pdq: &[], vpdq: Some(q) });
    // The first 4 seconds, 16 bits off per frame: all of the query, 40% of the list.
    let cut: Vec<vpdq::Feature> = (0..4).map(|i| frame((1 << i) | 0x8000, i as f64)).collect();
    let m = probe(&cut);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].kind, m[0].distance, m[0].query_match_pct, m[0].list_match_pct),
        (HashKind::Vpdq, 16, Some(100.0), Some(40.0))
    );
    // 3 of 4 frames from the list (75%) is under the 80% rule.
    let mostly: Vec<vpdq::Feature> = vec![cut[0], cut[1], cut[2], frame(0x5555, 3.0)];
    assert!(probe(&mostly).is_empty());
}

#[test]
fn entries_parse_from_json_lines_and_csv_and_bad_ones_are_named() {
    let h = "a".repeat(64);
    let jsonl = format!("{{\"kind\":\"pdq\",\"hash\":\"{h}\",\"id\":\"x\"}}\n\n{{\"kind\":\"md5\",\"hash\":\"{}\",\"id\":\"y\",\"label\":\"l\"}}\n", "b".repeat(32));
    assert_eq!(parse_entries(&jsonl).unwrap().len(), 2);
    let csv = format!("kind,hash,id,label,source\npdq,{h},x,,\nsha256,{},z,lab,src\n", "c".repeat(64));
    let e = parse_entries(&csv).unwrap();
    assert_eq!((e[1].label.as_deref(), e[1].source.as_deref()), (Some("lab"), Some("src")));
    // An all-digit hash stays text in CSV; a vPDQ is its JSON text in one quoted cell.
    let digits = "1".repeat(32);
    let vpdq = format!("\"[\"\"{h},90,0.000\"\"]\"");
    let e = parse_entries(&format!("kind,hash,id\nmd5,{digits},d\nvpdq,{vpdq},v\n")).unwrap();
    assert_eq!(e[0].hash, digits);
    assert_eq!(e[1].hash, format!("[\"{h},90,0.000\"]"));
    let bad = format!(
        "{{\"kind\":\"pdq\",\"hash\":\"{h}\",\"id\":\"x\"}}\n{{\"kind\":\"pdq\",\"hash\":\"zz\",\"id\":\"y\"}}\n"
    );
    let err = format!("{:#}", parse_entries(&bad).unwrap_err());
    assert!(err.contains("64 hex digits"), "{err}");
    assert!(format!("{:#}", parse_entries("{\"kind\":\"nope\"}").unwrap_err()).contains("line 1"));
    assert!(check_list_name("a/b").is_err() && check_list_name("ok.list-1").is_ok());
}

/// A small xorshift, so the test's hashes are random but the same every run.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

fn random_words(next: &mut impl FnMut() -> u64) -> [u16; 16] {
    std::array::from_fn(|_| next() as u16)
}

/// Rounds of 32 single-entry changes released at once (16 imports, 16 deletes, and re-adds), on
/// a 10,000-entry list: after each round the index holds exactly the database's entries, and
/// at the end every stored entry matches and no deleted one does. Before the writer lock, a
/// change rebuilt the index from a read taken outside the lock, so an older snapshot could
/// replace a newer one: this test then failed in 6 to 8 rounds of 20.
#[test]
fn the_index_follows_the_database_under_interleaved_writers() {
    for store in Fixture::all("interleaved") {
        index_follows_the_database(&store);
    }
}

fn index_follows_the_database(store: &Fixture) {
    let lists = Arc::new(store.open());
    let mut next = rng(7);
    let base: Vec<Entry> = (0..10_000).map(|i| pdq_entry(&format!("base-{i}"), random_words(&mut next))).collect();
    lists.import("l", base.clone()).unwrap();
    for round in 0..20u64 {
        let barrier = Arc::new(std::sync::Barrier::new(32));
        let threads: Vec<_> = (0..32u64)
            .map(|t| {
                let (lists, base, barrier) = (lists.clone(), base.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut next = rng(1000 + 2 * (t + 100 * round));
                    let new = pdq_entry(&format!("r{round}-t{t}"), random_words(&mut next));
                    // Deletes reach back into earlier rounds' ids, and every fourth re-adds one.
                    let old = &base[((round * 32 + t) % 400) as usize];
                    barrier.wait();
                    match t % 4 {
                        0 | 2 => drop(lists.import("l", vec![new]).unwrap()),
                        1 => drop(lists.delete("l", &old.id).unwrap()),
                        _ => drop(lists.import("l", vec![old.clone()]).unwrap()),
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (indexed, stored) = lists.index_and_database("l").unwrap();
        assert_eq!(indexed, stored, "{}: round {round}", store.name());
        assert_eq!(lists.summaries()[0].entries, stored.len(), "{}: round {round}", store.name());
    }
    let entries = lists.export("l").unwrap().unwrap();
    let ids: std::collections::HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let probe = |e: &Entry| {
        let words = Pdq::parse_hex(&e.hash).unwrap();
        lists.matches(&Probe { bytes: b"", pdq: &[Pdq { words, quality: 100 }], vpdq: None })
    };
    for e in &entries {
        assert_eq!(probe(e).iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec![e.id.as_str()]);
    }
    let deleted: Vec<&Entry> = base.iter().filter(|e| !ids.contains(e.id.as_str())).collect();
    assert!(!deleted.is_empty());
    for e in deleted {
        assert!(probe(e).is_empty(), "deleted entry {} still matches", e.id);
    }
    // And after a restart, the same.
    let (_, stored) = lists.index_and_database("l").unwrap();
    drop(lists);
    let lists = store.open();
    assert_eq!(lists.index_and_database("l").unwrap().0, stored);
}

#[test]
fn imports_report_what_the_list_holds_and_refuse_what_is_not_a_list() {
    for store in Fixture::all("imports") {
        imports_report(&store);
    }
}

fn imports_report(store: &Fixture) {
    let lists = store.open();
    let h = |c: char| c.to_string().repeat(64);
    let line = |id: &str, c: char| format!("{{\"kind\":\"pdq\",\"hash\":\"{}\",\"id\":\"{id}\"}}\n", h(c));
    // Two lines with one id: one entry, one duplicate, the last line's hash kept.
    let r = lists.import_text("l", &(line("a", 'a') + &line("b", 'b') + &line("a", 'c'))).unwrap();
    assert_eq!((r.added, r.replaced, r.duplicates, r.entries), (2, 0, 1, 2));
    assert_eq!(lists.export("l").unwrap().unwrap()[0].hash, h('c'));
    // Behind a byte-order mark; one id already there.
    let r = lists.import_text("l", &format!("\u{feff}{}{}", line("b", 'd'), line("c", 'e'))).unwrap();
    assert_eq!((r.added, r.replaced, r.duplicates, r.entries), (1, 1, 0, 3));
    let csv = format!("\u{feff}kind,hash,id\npdq,{},d\n", h('f'));
    assert_eq!(lists.import_text("l", &csv).unwrap().entries, 4);
    for (body, why) in [
        ("", "no entries"),
        ("\n  \n\n", "no entries"),
        ("\u{feff}", "no entries"),
        ("kind,hash,id\n", "no entries"),
        (&format!("pdq,{},x\n", h('a')), "no header"),
        (&format!("kind,hash,id,colour\npdq,{},x,red\n", h('a')), "unknown CSV column"),
    ] {
        let err = lists.import_text("l", body).unwrap_err();
        assert!(matches!(err, ListError::Invalid(_)) && err.to_string().contains(why), "{body:?}: {err}");
    }
    let long = format!("{{\"kind\":\"pdq\",\"hash\":\"{}\",\"id\":\"x\",\"label\":\"{}\"}}", h('a'), "l".repeat(1001));
    assert!(lists.import_text("l", &long).unwrap_err().to_string().contains("over 1000 characters"));
    let ctl = format!("{{\"kind\":\"pdq\",\"hash\":\"{}\",\"id\":\"x\",\"source\":\"a\\u0007b\"}}", h('a'));
    assert!(lists.import_text("l", &ctl).unwrap_err().to_string().contains("control characters"));
    // Nothing of a refused import was applied.
    let (indexed, stored) = lists.index_and_database("l").unwrap();
    assert_eq!((indexed.len(), stored.len()), (4, 4));
}
