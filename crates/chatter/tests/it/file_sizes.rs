//! The house rule that a file past 800 lines is two concerns (issue 10), kept true: every
//! non-test `.rs` file under the `src` of `chatter-core`, `chatter-web` and `chatter-channels`
//! is at most `MAX_LINES` long. Test files (`tests.rs`, anything under a `tests` folder) may be
//! longer; inline `#[cfg(test)]` modules count, as they do for a reader of the file.

use std::path::{Path, PathBuf};

/// Longest a non-test source file of the checked crates may be.
const MAX_LINES: usize = 800;

/// The crates whose `src` the rule covers.
const CRATES: [&str; 3] = ["chatter-core", "chatter-web", "chatter-channels"];

/// Every `.rs` file below `dir` that is not a test file, in a stable order.
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" {
                source_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for name in CRATES {
        source_files(&crates.join(name).join("src"), &mut files);
    }
    assert!(
        files.len() > 50,
        "found only {} files: wrong folder?",
        files.len()
    );
    let too_long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            let lines = text.lines().count();
            let shown = f.strip_prefix(&crates).unwrap_or(f).display();
            (lines > MAX_LINES).then(|| format!("crates/{shown}: {lines} lines"))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "over {MAX_LINES} lines (split it by concern, each new module saying what it owns):\n{}",
        too_long.join("\n")
    );
}
