//! Reading a file that must lie inside a data root, checked when it is opened.
//!
//! Ingest checks a `path` item against the data root once, but the file is
//! read later, when a worker labels it. Anyone who can write under the root
//! could swap the file (or a folder on its path) for a symbolic link in
//! between, and a plain `std::fs::read` would follow it out of the root. So
//! the reader walks the path one component at a time from a descriptor of
//! the root, opening each with `O_NOFOLLOW`: every step is relative to the
//! folder already opened, no symbolic link is ever followed, and a link
//! swapped in at any moment can only make the open fail, never redirect it.
//! Ingest stores canonical paths (links already resolved), so a link met
//! here was put there after ingest.

use std::path::{Component, Path};

use super::ItemError;

/// Read `path` (relative to `root`, or absolute and under it) without
/// following any symbolic link below `root`. `root` must be canonical, as the
/// server makes `--data-root` at start-up.
pub fn read_beneath(root: &Path, path: &Path) -> Result<Vec<u8>, ItemError> {
    read_parts(root, path).map_err(|e| e.into_item(path))
}

/// [`read_beneath`] for a path a client named a moment ago and that was only
/// checked lexically (no `..`, under `root`): a symbolic link on its way is
/// followed if it resolves inside the root, as ingest's check allows, and
/// refused otherwise. The common case, no link, costs one open; only a link
/// pays for resolving the path, and the resolved path is then read without
/// following anything, so a link swapped in meanwhile can only make it fail.
pub fn read_under_root(root: &Path, path: &Path) -> Result<Vec<u8>, ItemError> {
    match read_parts(root, path) {
        Err(Failure::Link) => {
            let joined = if path.is_absolute() {
                path.to_path_buf()
            } else {
                root.join(path)
            };
            match joined.canonicalize() {
                Ok(real) if real.starts_with(root) => read_beneath(root, &real),
                Ok(_) => Err(Failure::Link.into_item(path)),
                Err(e) => Err(Failure::Io(e).into_item(path)),
            }
        }
        r => r.map_err(|e| e.into_item(path)),
    }
}

enum Failure {
    /// `..`, another root, or a path outside `root`.
    Escapes,
    /// The root itself.
    Root,
    /// A symbolic link on the way.
    Link,
    Io(std::io::Error),
}

impl Failure {
    fn into_item(self, path: &Path) -> ItemError {
        let shown = path.display().to_string();
        match self {
            Failure::Escapes | Failure::Link => ItemError::OutsideRoot { path: shown },
            Failure::Root => ItemError::Io {
                path: shown,
                message: "the path names the data root itself, not a file".into(),
            },
            Failure::Io(e) => ItemError::Io {
                path: shown,
                message: e.to_string(),
            },
        }
    }
}

/// [`read_beneath`] without the read: the file, opened by the same rule
/// (no link below `root` followed), and its size, for a caller that reads
/// a part of it (an HTTP range of a long recording) instead of all of it.
pub fn open_beneath(root: &Path, path: &Path) -> Result<(std::fs::File, u64), ItemError> {
    let opened = parts_of(root, path).and_then(|parts| {
        imp::open(root, &parts).map_err(|e| match e {
            imp::Error::Link => Failure::Link,
            imp::Error::Io(e) => Failure::Io(e),
        })
    });
    opened.map_err(|e| e.into_item(path))
}

fn read_parts(root: &Path, path: &Path) -> Result<Vec<u8>, Failure> {
    let parts = parts_of(root, path)?;
    imp::read(root, &parts).map_err(|e| match e {
        imp::Error::Link => Failure::Link,
        imp::Error::Io(e) => Failure::Io(e),
    })
}

/// `path`'s components below `root`, refusing any that could step out.
fn parts_of<'a>(root: &Path, path: &'a Path) -> Result<Vec<&'a std::ffi::OsStr>, Failure> {
    let rel = if path.is_absolute() {
        path.strip_prefix(root).map_err(|_| Failure::Escapes)?
    } else {
        path
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            // `..`, a second root or a prefix could step out of the root.
            _ => return Err(Failure::Escapes),
        }
    }
    if parts.is_empty() {
        return Err(Failure::Root);
    }
    Ok(parts)
}

#[cfg(unix)]
mod imp {
    use std::ffi::OsStr;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::path::Path;

    use rustix::fs::{fstat, openat, statat, AtFlags, FileType, Mode, OFlags, CWD};
    use rustix::io::Errno;

    pub enum Error {
        /// A component is a symbolic link, which is never followed.
        Link,
        Io(std::io::Error),
    }

    fn err(e: Errno) -> Error {
        // `O_NOFOLLOW` on a link fails with ELOOP (EMLINK on FreeBSD).
        if e == Errno::LOOP || e == Errno::MLINK {
            Error::Link
        } else {
            Error::Io(e.into())
        }
    }

    fn is_link(dir: &OwnedFd, name: &OsStr) -> bool {
        statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    }

    pub fn read(root: &Path, parts: &[&OsStr]) -> Result<Vec<u8>, Error> {
        read_all(open_fd(root, parts)?)
    }

    /// The regular file at `parts` and its size.
    pub fn open(root: &Path, parts: &[&OsStr]) -> Result<(std::fs::File, u64), Error> {
        let fd = open_fd(root, parts)?;
        let size = regular_size(&fd)?;
        Ok((std::fs::File::from(fd), size))
    }

    fn open_fd(root: &Path, parts: &[&OsStr]) -> Result<OwnedFd, Error> {
        #[cfg(target_os = "linux")]
        if let Some(fd) = fast::open_file(root, parts) {
            return fd;
        }
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir: OwnedFd = openat(CWD, root, dir_flags, Mode::empty()).map_err(err)?;
        let (last, folders) = match parts.split_last() {
            Some(x) => x,
            None => return Err(Error::Io(std::io::ErrorKind::InvalidInput.into())),
        };
        for part in folders {
            dir = match openat(&dir, *part, dir_flags | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(d) => d,
                // Linux answers ENOTDIR for a link opened as a folder with
                // `O_NOFOLLOW`; tell a link from a plain file for the message.
                Err(Errno::NOTDIR) if is_link(&dir, part) => return Err(Error::Link),
                Err(e) => return Err(err(e)),
            };
        }
        openat(&dir, *last, READ_FLAGS | OFlags::NOFOLLOW, Mode::empty()).map_err(err)
    }

    /// The size of a regular file; anything else under the root is refused.
    fn regular_size(fd: &OwnedFd) -> Result<u64, Error> {
        let st = fstat(fd).map_err(|e| Error::Io(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::Io(std::io::Error::other("not a regular file")));
        }
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }

    /// Files are opened with these: a FIFO under the root must not block
    /// the open, nor a terminal become ours.
    pub(super) const READ_FLAGS: OFlags = OFlags::RDONLY
        .union(OFlags::NONBLOCK)
        .union(OFlags::NOCTTY)
        .union(OFlags::CLOEXEC);

    /// Largest buffer reserved up front from the size `fstat` tells; a
    /// larger file grows it as it is read.
    const RESERVE: usize = 64 << 20;

    fn read_all(fd: OwnedFd) -> Result<Vec<u8>, Error> {
        // One fstat tells a regular file (nothing else under the root is
        // read) and its size, so the bytes come in one read and one at end
        // of file: `File::read_to_end` would ask for the size again itself.
        let size = usize::try_from(regular_size(&fd)?)
            .unwrap_or(0)
            .min(RESERVE);
        let mut bytes = Vec::with_capacity(size + 1);
        std::fs::File::from(fd)
            .take(u64::MAX)
            .read_to_end(&mut bytes)
            .map_err(Error::Io)?;
        Ok(bytes)
    }

    /// Linux's `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` does
    /// the walk above in one system call, with the same guarantee: nothing
    /// outside the root, no link followed. It starts from a descriptor of
    /// the root kept open (one per root, for the process), so the kernel
    /// walks only the path below it. A kernel or sandbox without `openat2`
    /// answers ENOSYS or EPERM, and the walk takes over from then on.
    #[cfg(target_os = "linux")]
    pub mod fast {
        use std::ffi::OsStr;
        use std::os::fd::OwnedFd;
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        use rustix::fs::{fstat, open, openat2, FileType, Mode, OFlags, ResolveFlags};
        use rustix::io::Errno;

        use super::{err, Error};

        static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
        /// Roots already opened: a server has one, tests a few.
        static ROOTS: Mutex<Vec<(PathBuf, Arc<OwnedFd>)>> = Mutex::new(Vec::new());

        fn root_fd(root: &Path) -> Option<Arc<OwnedFd>> {
            let mut roots = ROOTS.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, fd)) = roots.iter().find(|(p, _)| p == root) {
                return Some(fd.clone());
            }
            let fd = Arc::new(
                open(
                    root,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?,
            );
            if roots.len() < 64 {
                roots.push((root.to_path_buf(), fd.clone()));
            }
            Some(fd)
        }

        /// `rel` (relative, no `..`) opened beneath `root`; `None` when
        /// `openat2` or the root is unavailable.
        fn open_beneath(root: &Path, rel: &Path, flags: OFlags) -> Option<Result<OwnedFd, Errno>> {
            if UNAVAILABLE.load(Ordering::Relaxed) {
                return None;
            }
            let dir = root_fd(root)?;
            match openat2(
                &*dir,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            ) {
                Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => {
                    UNAVAILABLE.store(true, Ordering::Relaxed);
                    None
                }
                r => Some(r),
            }
        }

        pub fn open_file(root: &Path, parts: &[&OsStr]) -> Option<Result<OwnedFd, Error>> {
            let rel: PathBuf = parts.iter().collect();
            Some(open_beneath(root, &rel, super::READ_FLAGS)?.map_err(err))
        }

        /// See [`super::super::regular_file_beneath`].
        pub fn regular_file_beneath(root: &Path, rel: &Path) -> Option<bool> {
            let fd = open_beneath(root, rel, OFlags::PATH).and_then(Result::ok)?;
            let st = fstat(&fd).ok()?;
            Some(FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
        }
    }
}

/// Whether `rel` (relative, `..`-free) below the canonical `root` is a
/// regular file reached through no symbolic link, told in one system call
/// where the kernel can: `Some(true)` or `Some(false)`; `None` when a link
/// is on the way, nothing is there, or the kernel cannot tell (resolve the
/// path the slow way).
pub fn regular_file_beneath(root: &Path, rel: &Path) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        imp::fast::regular_file_beneath(root, rel)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (root, rel);
        None
    }
}

#[cfg(not(unix))]
mod imp {
    //! Without `openat`, resolve the path and check it once more right
    //! before reading: a narrower window than the ingest check alone.
    use std::ffi::OsStr;
    use std::path::{Path, PathBuf};

    pub enum Error {
        Link,
        Io(std::io::Error),
    }

    fn checked(root: &Path, parts: &[&OsStr]) -> Result<PathBuf, Error> {
        let joined: PathBuf = parts.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let real = joined.canonicalize().map_err(Error::Io)?;
        if real != joined {
            return Err(Error::Link);
        }
        Ok(real)
    }

    pub fn read(root: &Path, parts: &[&OsStr]) -> Result<Vec<u8>, Error> {
        std::fs::read(checked(root, parts)?).map_err(Error::Io)
    }

    pub fn open(root: &Path, parts: &[&OsStr]) -> Result<(std::fs::File, u64), Error> {
        let file = std::fs::File::open(checked(root, parts)?).map_err(Error::Io)?;
        let meta = file.metadata().map_err(Error::Io)?;
        if !meta.is_file() {
            return Err(Error::Io(std::io::Error::other("not a regular file")));
        }
        Ok((file, meta.len()))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_links_and_parent_steps() {
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().canonicalize().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root_path.join("sub")).unwrap();
        std::fs::write(root_path.join("sub/a.txt"), b"inside").unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"outside").unwrap();
        assert_eq!(
            read_beneath(&root_path, Path::new("sub/a.txt")).unwrap(),
            b"inside"
        );
        assert_eq!(
            read_beneath(&root_path, &root_path.join("sub/a.txt")).unwrap(),
            b"inside"
        );
        // A link as the file, and a link as a folder on the way.
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            root_path.join("sub/link.txt"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), root_path.join("out")).unwrap();
        for p in [
            "sub/link.txt",
            "out/secret.txt",
            "../secret.txt",
            "sub/../../x",
        ] {
            let e = read_beneath(&root_path, Path::new(p)).unwrap_err();
            assert!(matches!(e, ItemError::OutsideRoot { .. }), "{p}: {e}");
        }
        let e = read_beneath(&root_path, &outside.path().join("secret.txt")).unwrap_err();
        assert!(matches!(e, ItemError::OutsideRoot { .. }), "{e}");
        let e = read_beneath(&root_path, Path::new("sub/missing.txt")).unwrap_err();
        assert!(matches!(e, ItemError::Io { .. }), "{e}");
    }

    #[test]
    fn under_root_follows_inner_links_only_and_reads_only_regular_files() {
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().canonicalize().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root_path.join("sub")).unwrap();
        std::fs::write(root_path.join("a.txt"), b"inside").unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"outside").unwrap();
        std::os::unix::fs::symlink("../a.txt", root_path.join("sub/in.txt")).unwrap();
        std::os::unix::fs::symlink(root_path.join("sub"), root_path.join("alias")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_path.join("out")).unwrap();
        for p in ["a.txt", "sub/in.txt", "alias/in.txt"] {
            assert_eq!(
                read_under_root(&root_path, Path::new(p)).unwrap(),
                b"inside",
                "{p}"
            );
        }
        let e = read_under_root(&root_path, Path::new("out/secret.txt")).unwrap_err();
        assert!(matches!(e, ItemError::OutsideRoot { .. }), "{e}");
        // A folder and a FIFO are refused, and the FIFO's open does not
        // wait for a writer.
        let fifo = root_path.join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        for p in ["sub", "fifo"] {
            let e = read_under_root(&root_path, Path::new(p)).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{p}: {e}");
        }
    }
}
