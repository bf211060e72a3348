//! Files and folders that may hold secrets (SQLite databases, `.eml`
//! files with tokens or temporary passwords, key files): Roster creates
//! them readable by their owner only, whatever the umask, so another
//! account on the machine cannot read them.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::path::Path;

/// The mode of a private file: read and write for the owner.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// The mode of a private folder: everything for the owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `path` and its missing parents as private folders. Folders that
/// exist already keep their mode: an operator chose it.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(PRIVATE_DIR_MODE);
    }
    builder.create(path)
}

/// Options that create a file as a private one (an existing file keeps
/// its mode).
pub fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(PRIVATE_FILE_MODE);
    }
    options
}

/// Creates `path` as an empty private file unless it exists.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    match private_file_options()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file.sync_all(),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Creates `path` as a new private file; fails if it exists.
pub fn create_new_private_file(path: &Path) -> io::Result<File> {
    private_file_options()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_folders_and_files_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        create_private_dir_all(&nested).unwrap();
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        ensure_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(create_new_private_file(&file).is_err(), "it exists");
    }

    #[test]
    fn existing_folders_and_files_keep_their_mode() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir_all(root.path()).unwrap();
        assert_eq!(mode(root.path()), 0o750);
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        ensure_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o640);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }
}
