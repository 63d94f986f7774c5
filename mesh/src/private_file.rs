//! Secrets on disk (NKEY seeds, private keys): written whole or not at all, readable by their
//! owner only.

use std::path::Path;

/// Writes `contents` to `path` through a temporary file beside it (a crash never leaves half a
/// key), with mode 0600 on Unix.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    {
        let mut file = options.open(&partial)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&partial, path)
}
