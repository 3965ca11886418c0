//! Which file a SQLite store has open. SQLite keeps writing to the inode it opened: a database
//! file deleted (or replaced, say by a restore) under a running medic takes every later write
//! into an unlinked file, silently. Comparing the path's device and inode with those seen at
//! open tells the supervisor to reopen.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// A file as the kernel knows it: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    pub fn of(path: &Path) -> io::Result<FileIdentity> {
        let meta = std::fs::metadata(path)?;
        Ok(FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// What became of the opened file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChange {
    /// Nothing is at the path any more.
    Deleted,
    /// Another file is at the path.
    Replaced,
}

impl FileChange {
    pub fn as_str(self) -> &'static str {
        match self {
            FileChange::Deleted => "deleted",
            FileChange::Replaced => "replaced",
        }
    }
}

/// The decision, given what the path is now. Only "no such file" (or a directory on the way
/// that is no directory any more) counts as deleted: a transient error reading the path
/// (permissions, EIO) is no evidence the file is gone, and reopening on it would only fail.
pub fn change(opened: FileIdentity, now: io::Result<FileIdentity>) -> Option<FileChange> {
    match now {
        Ok(now) if now == opened => None,
        Ok(_) => Some(FileChange::Replaced),
        Err(e) if is_gone(&e) => Some(FileChange::Deleted),
        Err(_) => None,
    }
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_different_file_is_a_change() {
        let a = FileIdentity { dev: 1, ino: 10 };
        assert_eq!(change(a, Ok(a)), None);
        assert_eq!(
            change(a, Ok(FileIdentity { dev: 1, ino: 11 })),
            Some(FileChange::Replaced)
        );
        assert_eq!(
            change(a, Ok(FileIdentity { dev: 2, ino: 10 })),
            Some(FileChange::Replaced)
        );
        assert_eq!(
            change(a, Err(io::ErrorKind::NotFound.into())),
            Some(FileChange::Deleted)
        );
        assert_eq!(
            change(a, Err(io::Error::from_raw_os_error(nix::libc::ENOTDIR))),
            Some(FileChange::Deleted)
        );
        assert_eq!(change(a, Err(io::ErrorKind::PermissionDenied.into())), None);
        assert_eq!(
            change(a, Err(io::Error::from_raw_os_error(nix::libc::EIO))),
            None
        );
    }

    #[test]
    fn a_real_file_deleted_or_replaced_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        std::fs::write(&path, b"x").unwrap();
        let opened = FileIdentity::of(&path).unwrap();
        assert_eq!(change(opened, FileIdentity::of(&path)), None);
        // Renamed over, as a restore would: the old inode is still open, so a new one differs.
        let _keep = std::fs::File::open(&path).unwrap();
        let other = dir.path().join("new.db");
        std::fs::write(&other, b"y").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(
            change(opened, FileIdentity::of(&path)),
            Some(FileChange::Replaced)
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            change(opened, FileIdentity::of(&path)),
            Some(FileChange::Deleted)
        );
    }
}
