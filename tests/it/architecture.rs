//! ARCHITECTURE.md's code map names every file under `src/`, and names no file that is gone:
//! a newcomer reads the map before the code, so a map that leaves files out sends them looking.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code map's rows: (first column, whole row).
fn rows(doc: &str) -> Vec<(String, String)> {
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let first = l.split('|').nth(1).unwrap_or_default().to_string();
            (first, l.to_string())
        })
        .collect()
}

/// Whether the map names `rel` (a path under `src/`, e.g. `config/checks/http.rs`): a row of its
/// own, or the row of its top folder naming each folder below it and the file itself.
fn named(rows: &[(String, String)], rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.len() == 1 {
        return rows
            .iter()
            .any(|(first, _)| first.contains(&format!("`src/{rel}`")));
    }
    let top = format!("`src/{}/`", parts[0]);
    let Some((_, row)) = rows.iter().find(|(first, _)| first.contains(&top)) else {
        return false;
    };
    let folders = &parts[1..parts.len() - 1];
    let file = parts[parts.len() - 1];
    folders.iter().all(|f| row.contains(&format!("`{f}/`"))) && row.contains(&format!("`{file}`"))
}

#[test]
fn the_code_map_names_every_file_and_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let rows = rows(&doc);
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut missing: Vec<String> = files
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(root.join("src")).expect("under src/");
            rel.to_string_lossy().replace('\\', "/")
        })
        .filter(|rel| !named(&rows, rel))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map leaves out: {missing:?}"
    );

    let mut gone = Vec::new();
    for (first, _) in &rows {
        for name in first.split('`').filter(|s| s.starts_with("src/")) {
            if !root.join(name).exists() {
                gone.push(name.to_string());
            }
        }
    }
    assert!(
        gone.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {gone:?}"
    );
}
