//! `file_sd`: Prometheus' file-based discovery, by polling.
//!
//! Every [`POLL`] the patterns are matched again and each file's metadata read; a file is read
//! again when its size, times or inode changed, or when it was written so recently that a
//! second write within the file system's timestamp granularity could hide (it is then read
//! until it settles, and reparsed only if its contents changed). Polling rather than inotify
//! (the `notify` crate): it sees files on NFS and other network file systems, Kubernetes'
//! ConfigMap updates (a symlink swapped in the directory above) and editors that write a new
//! file and rename it, all of which inotify misses or needs special watches for; it needs no
//! watch per directory (bounded by `fs.inotify.max_user_watches`); and a new file matching a
//! glob is found without watching for it. It costs one `stat` per file every two seconds.
//!
//! A file that cannot be read or parsed keeps its last good targets. A file that is gone (no
//! longer matched) takes its targets with it, as in Prometheus, once it has been gone for two
//! polls in a row, so that a tool that deletes and writes a file anew is not mistaken for a
//! removal.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::targets::{parse_json, parse_yaml, Target};
use super::SourceContext;

/// How often files are looked at: a change applies within this (and the time to read it).
pub const POLL: Duration = Duration::from_secs(2);
/// A file larger than this is not read: about 100,000 targets with a few labels each.
pub const MAX_FILE_BYTES: u64 = 32 << 20;
/// A file modified less than this long ago is read again at the next poll.
const SETTLE: Duration = Duration::from_secs(1);
/// The label that names the file a target came from, as Prometheus names it.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

pub(super) async fn run(patterns: Vec<PathBuf>, max_targets: usize, cx: SourceContext) {
    let mut files = Some(Files::new(patterns, max_targets));
    let mut sent = None;
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(mut polled) = files.take() else {
            return;
        };
        // Reading and parsing files is blocking work.
        let Ok((polled, failures)) = tokio::task::spawn_blocking(move || {
            let failures = polled.poll(SystemTime::now());
            (polled, failures)
        })
        .await
        else {
            return;
        };
        for failure in &failures {
            cx.failed(failure);
        }
        cx.send(&mut sent, polled.targets()).await;
        files = Some(polled);
    }
}

/// `medic check-config`: every file read once; its targets and what could not be read.
pub(super) fn read_once(patterns: &[PathBuf], max_targets: usize) -> (Vec<Target>, Vec<String>) {
    let mut files = Files::new(patterns.to_vec(), max_targets);
    let failures = files.poll(SystemTime::now());
    (files.targets(), failures)
}

/// The files the patterns match, each with what was last read of it.
struct Files {
    patterns: Vec<PathBuf>,
    max_targets: usize,
    files: BTreeMap<PathBuf, File>,
}

struct File {
    /// What changes when the file does.
    stamp: Stamp,
    /// Written less than [`SETTLE`] before it was read: read it again.
    settling: bool,
    /// The contents last read (parsed or not), to tell a real change.
    hash: u64,
    /// The targets of the last contents that parsed.
    targets: Vec<Target>,
    /// Polls in a row the file was not found at.
    missing: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
            inode: (meta.dev(), meta.ino()),
        }
    }
}

impl Files {
    fn new(patterns: Vec<PathBuf>, max_targets: usize) -> Files {
        Files {
            patterns,
            max_targets,
            files: BTreeMap::new(),
        }
    }

    /// Every file's targets, in path order.
    fn targets(&self) -> Vec<Target> {
        self.files
            .values()
            .flat_map(|f| f.targets.iter().cloned())
            .collect()
    }

    /// Matches the patterns again and reads what changed; returns what could not be read.
    fn poll(&mut self, now: SystemTime) -> Vec<String> {
        let mut failures = Vec::new();
        let mut found = BTreeMap::new();
        for pattern in &self.patterns {
            match matching(pattern) {
                Ok(paths) => found.extend(paths.into_iter().map(|p| (p, ()))),
                Err(e) => {
                    failures.push(e);
                    // Unlisted is not gone: keep what this pattern had.
                    found.extend(
                        self.files
                            .keys()
                            .filter(|p| matches_pattern(pattern, p))
                            .map(|p| (p.clone(), ())),
                    );
                }
            }
        }
        self.files.retain(|path, file| {
            if found.contains_key(path) {
                return true;
            }
            file.missing += 1;
            file.missing < 2
        });
        for path in found.into_keys() {
            if let Err(e) = self.look_at(&path, now) {
                failures.push(format!("{}: {e}", path.display()));
            }
        }
        failures
    }

    /// Reads `path` if it changed; an error leaves its last good targets.
    fn look_at(&mut self, path: &Path, now: SystemTime) -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let stamp = Stamp::of(&meta);
        let known = self.files.get_mut(path);
        if let Some(file) = &known {
            if file.stamp == stamp && !file.settling {
                return Ok(());
            }
        }
        let settling = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_none_or(|age| age < SETTLE);
        if stamp.len > MAX_FILE_BYTES {
            return Err(format!("{} bytes, more than {MAX_FILE_BYTES}", stamp.len));
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let hash = hash_of(&bytes);
        let file = self.files.entry(path.to_path_buf()).or_insert(File {
            stamp,
            settling,
            hash: hash.wrapping_add(1),
            targets: Vec::new(),
            missing: 0,
        });
        file.missing = 0;
        file.stamp = stamp;
        file.settling = settling;
        if file.hash == hash {
            return Ok(());
        }
        file.hash = hash;
        file.targets = parse(path, &bytes, self.max_targets)?;
        Ok(())
    }
}

/// The file's targets, each labelled with the file's path.
fn parse(path: &Path, bytes: &[u8], max_targets: usize) -> Result<Vec<Target>, String> {
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut targets = if json {
        parse_json(bytes, max_targets)
    } else {
        parse_yaml(bytes, max_targets)
    }
    .map_err(|e| e.to_string())?;
    let shown = path.display().to_string();
    for target in &mut targets {
        target
            .labels
            .insert(FILEPATH_LABEL.to_string(), shown.clone());
    }
    Ok(targets)
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The files a pattern names now: itself, or with a `*` in its file name, the directory's
/// entries that match. A directory that does not exist holds none; one that cannot be read
/// is an error.
fn matching(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if !name.contains('*') {
        return match std::fs::metadata(pattern) {
            Ok(meta) if meta.is_file() => Ok(vec![pattern.to_path_buf()]),
            Ok(_) => Ok(Vec::new()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", pattern.display())),
        };
    }
    // A pattern relative to the working directory (a config file in it) has an empty parent.
    let dir = pattern
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    // Named as the pattern writes its directory, so that the two compare.
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| pattern.with_file_name(entry.file_name()))
        .filter(|path| matches_pattern(pattern, path) && path.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Whether `path` is one `pattern` names: the same directory, and the file name matching its
/// one `*` (any characters, none included; dot files too, as Go's filepath.Match).
fn matches_pattern(pattern: &Path, path: &Path) -> bool {
    if pattern.parent() != path.parent() {
        return false;
    }
    let (Some(want), Some(name)) = (
        pattern.file_name().and_then(|n| n.to_str()),
        path.file_name().and_then(|n| n.to_str()),
    ) else {
        return false;
    };
    match want.split_once('*') {
        None => want == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn names(files: &Files) -> Vec<String> {
        files.targets().into_iter().map(|t| t.target).collect()
    }

    /// A time well after every write, so no file is still settling.
    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_pattern_matches_in_its_own_directory_only() {
        let p = Path::new("/t/web-*.json");
        assert!(matches_pattern(p, Path::new("/t/web-1.json")));
        assert!(matches_pattern(p, Path::new("/t/web-.json")));
        assert!(!matches_pattern(p, Path::new("/t/web.json")));
        assert!(!matches_pattern(p, Path::new("/t/sub/web-1.json")));
        assert!(!matches_pattern(p, Path::new("/t/web-1.json.tmp")));
        assert!(matches_pattern(
            Path::new("/t/a.yml"),
            Path::new("/t/a.yml")
        ));
    }

    #[test]
    fn files_are_read_when_they_change_and_keep_their_last_good_targets() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.json", r#"[{"targets": ["a:1"]}]"#);
        write(d, "b.yml", "- targets: [b:1]\n");
        write(d, "c.txt", "not matched");
        let mut files = Files::new(vec![d.join("*.json"), d.join("b.yml")], 100);
        assert!(files.poll(later()).is_empty());
        assert_eq!(names(&files), ["a:1", "b:1"]);
        let a = &files.targets()[0];
        assert_eq!(
            a.labels[FILEPATH_LABEL],
            d.join("a.json").display().to_string()
        );
        // Garbage: counted, and the last good targets stay until it parses again.
        write(d, "a.json", "[{\"targets\": [");
        let failures = files.poll(later());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains("not a target list in JSON"),
            "{failures:?}"
        );
        assert_eq!(names(&files), ["a:1", "b:1"]);
        // Unchanged garbage is not read (nor counted) again.
        assert!(files.poll(later()).is_empty());
        write(d, "a.json", r#"[{"targets": ["a:2", "a:3"]}]"#);
        assert!(files.poll(later()).is_empty());
        assert_eq!(names(&files), ["a:2", "a:3", "b:1"]);
        // A new file matching the glob joins.
        write(d, "z.json", r#"[{"targets": ["z:1"]}]"#);
        files.poll(later());
        assert_eq!(names(&files), ["a:2", "a:3", "b:1", "z:1"]);
    }

    #[test]
    fn a_deleted_file_takes_its_targets_after_two_polls() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.json", r#"[{"targets": ["a:1"]}]"#);
        write(d, "b.json", r#"[{"targets": ["b:1"]}]"#);
        let mut files = Files::new(vec![d.join("*.json")], 100);
        files.poll(later());
        std::fs::remove_file(d.join("a.json")).unwrap();
        files.poll(later());
        assert_eq!(names(&files), ["a:1", "b:1"], "gone once: maybe rewritten");
        files.poll(later());
        assert_eq!(names(&files), ["b:1"]);
        // Deleted and written anew between two polls: nothing happened.
        std::fs::remove_file(d.join("b.json")).unwrap();
        files.poll(later());
        write(d, "b.json", r#"[{"targets": ["b:1"]}]"#);
        files.poll(later());
        assert_eq!(names(&files), ["b:1"]);
    }

    #[test]
    fn a_file_written_just_now_is_read_again_until_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = write(d, "a.json", r#"[{"targets": ["a:1"]}]"#);
        let mut files = Files::new(vec![path.clone()], 100);
        let now = SystemTime::now();
        files.poll(now);
        assert!(files.files[&path].settling);
        // Same size, same second: a stamp may not tell; the contents do.
        std::fs::write(&path, r#"[{"targets": ["b:1"]}]"#).unwrap();
        files.poll(now);
        assert_eq!(names(&files), ["b:1"]);
        files.poll(later());
        assert!(!files.files[&path].settling);
    }

    #[test]
    fn a_runaway_file_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.json", r#"[{"targets": ["a:1", "a:2", "a:3"]}]"#);
        let (targets, failures) = read_once(&[d.join("a.json")], 2);
        assert!(targets.is_empty());
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].ends_with("3 targets, more than max_targets 2"),
            "{failures:?}"
        );
    }
}
