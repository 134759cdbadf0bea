//! Where dfserve finds ONNX Runtime, its models and its data when no flag says: the defaults of
//! `--ort-lib`, `--model-dir` and `--data-dir`, so that `dfserve serve` and `dfserve score` work
//! from any directory.
//!
//! The root ("home") is, in order: `DFSERVE_HOME`; the install prefix when the binary sits in
//! `PREFIX/bin` of an installed layout (`scripts/install.sh PREFIX`); the source checkout
//! when the binary was built in one (`target/release`); else the current directory.
//!
//! | | installed (`PREFIX`) | checkout |
//! |---|---|---|
//! | ONNX Runtime | `lib/dfserve/libonnxruntime.so.1.31.1` | `.dfserve/lib/...` |
//! | models | `share/dfserve/models` | `models` |
//! | data | `var/lib/dfserve` | `.dfserve/data` |
//!
//! `ORT_DYLIB_PATH`, the variable `ort` users know, names the library when `--ort-lib` and
//! `DFSERVE_ORT_LIB` do not.

use std::path::{Path, PathBuf};

/// The ONNX Runtime release this build loads.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub ort_lib: PathBuf,
    pub model_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Layout {
    /// The installed layout under `prefix`.
    pub fn installed(prefix: &Path) -> Layout {
        Layout {
            ort_lib: prefix.join("lib/dfserve").join(ORT_LIB_NAME),
            model_dir: prefix.join("share/dfserve/models"),
            data_dir: prefix.join("var/lib/dfserve"),
        }
    }

    /// A source checkout at `root` (what `scripts/setup.sh` fills).
    pub fn checkout(root: &Path) -> Layout {
        Layout {
            ort_lib: root.join(".dfserve/lib").join(ORT_LIB_NAME),
            model_dir: root.join("models"),
            data_dir: root.join(".dfserve/data"),
        }
    }

    /// The layout at `home`: installed if it has `share/dfserve/models`, else a checkout.
    pub fn at(home: &Path) -> Layout {
        if home.join("share/dfserve/models").is_dir() {
            Layout::installed(home)
        } else {
            Layout::checkout(home)
        }
    }

    /// The layout this process uses (see the module docs), with `ORT_DYLIB_PATH` applied.
    pub fn discover() -> Layout {
        let home = std::env::var_os("DFSERVE_HOME").map(PathBuf::from).filter(|h| !h.as_os_str().is_empty());
        let exe = std::env::current_exe().ok().and_then(|e| e.canonicalize().ok());
        let mut layout = match (home, exe) {
            (Some(home), _) => Layout::at(&home),
            (None, Some(exe)) => from_executable(&exe).unwrap_or_else(|| Layout::checkout(Path::new(""))),
            (None, None) => Layout::checkout(Path::new("")),
        };
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            layout.ort_lib = PathBuf::from(p);
        }
        layout
    }
}

/// The layout a binary at `exe` belongs to: `PREFIX/bin/dfserve` of an installed layout, or
/// anywhere under a checkout (a directory with `models/` and `Cargo.toml`).
fn from_executable(exe: &Path) -> Option<Layout> {
    let bin = exe.parent()?;
    if bin.file_name().is_some_and(|n| n == "bin") {
        let prefix = bin.parent()?;
        if prefix.join("share/dfserve/models").is_dir() {
            return Some(Layout::installed(prefix));
        }
    }
    bin.ancestors().find(|d| d.join("models").is_dir() && d.join("Cargo.toml").is_file()).map(Layout::checkout)
}

/// Computed once per process: clap asks for each default separately.
fn layout() -> &'static Layout {
    static LAYOUT: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
    LAYOUT.get_or_init(Layout::discover)
}

/// Default of `--ort-lib`.
pub fn ort_lib() -> PathBuf {
    layout().ort_lib.clone()
}

/// Default of `--model-dir`.
pub fn model_dir() -> PathBuf {
    layout().model_dir.clone()
}

/// Default of `--data-dir`.
pub fn data_dir() -> PathBuf {
    layout().data_dir.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_and_checkout_layouts_are_told_apart() {
        let t = tempfile::tempdir().unwrap();
        let prefix = t.path().join("opt/dfserve");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::create_dir_all(prefix.join("share/dfserve/models")).unwrap();
        let got = from_executable(&prefix.join("bin/dfserve")).unwrap();
        assert_eq!(got, Layout::installed(&prefix));
        assert_eq!(got.ort_lib, prefix.join("lib/dfserve/libonnxruntime.so.1.31.1"));
        assert_eq!(Layout::at(&prefix), got);

        let repo = t.path().join("src/dfserve");
        std::fs::create_dir_all(repo.join("models")).unwrap();
        std::fs::create_dir_all(repo.join("target/release")).unwrap();
        std::fs::write(repo.join("Cargo.toml"), "").unwrap();
        let got = from_executable(&repo.join("target/release/dfserve")).unwrap();
        assert_eq!(got, Layout::checkout(&repo));
        assert_eq!(got.model_dir, repo.join("models"));
        assert_eq!(Layout::at(&repo), got);

        // A binary copied somewhere else entirely belongs to no layout.
        std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
        assert_eq!(from_executable(&t.path().join("elsewhere/dfserve")), None);
    }
}
