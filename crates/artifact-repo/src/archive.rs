//! The local-directory artifact repository: an artifact is stored under its key, as a tar.gz
//! holding one entry named after the saved path's base name (Argo's default `archive: tar`),
//! or as the plain file or directory (`archive: none`).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0}")]
    Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Save `src` into the repository file or directory `dest`.
pub fn save(
    src: &Path,
    dest: &Path,
    archive: bool,
    level: Option<u32>,
) -> Result<(), ArtifactError> {
    if !src.exists() {
        return Err(ArtifactError::Other(format!("{} not found", src.display())));
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = dest.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_file(&tmp);
    if archive {
        let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let gz = GzEncoder::new(file, Compression::new(level.unwrap_or(6)));
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        let name = src
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "artifact".into());
        if src.is_dir() {
            tar.append_dir_all(&name, src).map_err(io_err(src))?;
        } else {
            tar.append_path_with_name(src, &name).map_err(io_err(src))?;
        }
        tar.into_inner()
            .and_then(|gz| gz.finish())
            .map_err(io_err(&tmp))?;
    } else if src.is_dir() {
        copy_dir(src, &tmp)?;
    } else {
        fs::copy(src, &tmp).map_err(io_err(src))?;
    }
    if dest.is_dir() {
        let _ = fs::remove_dir_all(dest);
    }
    fs::rename(&tmp, dest).map_err(io_err(dest))
}

pub fn copy_dir(src: &Path, dest: &Path) -> Result<(), ArtifactError> {
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    for entry in fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let p = entry.path();
        let d = dest.join(entry.file_name());
        let ft = entry.file_type().map_err(io_err(&p))?;
        if ft.is_dir() {
            copy_dir(&p, &d)?;
        } else if ft.is_symlink() {
            // Only links that stay inside the tree are kept: the copy may land in the
            // repository on the host, where an absolute link or one through `..` would lead
            // out of it.
            if let Ok(target) = fs::read_link(&p) {
                if stays_inside(&target) {
                    let _ = std::os::unix::fs::symlink(target, &d);
                }
            }
        } else {
            fs::copy(&p, &d).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

/// Whether a link's target is relative and never climbs with `..`.
fn stays_inside(target: &Path) -> bool {
    target.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    })
}

fn is_gzip(p: &Path) -> bool {
    let mut buf = [0u8; 2];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
        && buf == [0x1f, 0x8b]
}

/// Place the stored artifact `src` at `dest` (unpacking a tar.gz), optionally only its
/// `sub_path`.
pub fn load(
    src: &Path,
    dest: &Path,
    sub_path: Option<&str>,
    scratch: &Path,
) -> Result<(), ArtifactError> {
    if !src.exists() {
        return Err(ArtifactError::Other(format!(
            "artifact {} not found in the repository",
            src.display()
        )));
    }
    let staged: PathBuf = if src.is_file() && is_gzip(src) {
        let out = scratch.join("unpack");
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).map_err(io_err(&out))?;
        let file = fs::File::open(src).map_err(io_err(src))?;
        let mut ar = tar::Archive::new(GzDecoder::new(file));
        ar.set_preserve_permissions(true);
        ar.unpack(&out).map_err(io_err(src))?;
        let entries: Vec<_> = fs::read_dir(&out)
            .map_err(io_err(&out))?
            .filter_map(Result::ok)
            .collect();
        if entries.len() == 1 {
            entries[0].path()
        } else {
            out
        }
    } else {
        src.to_path_buf()
    };
    let chosen = match sub_path {
        Some(s) if !s.is_empty() => {
            // Inside the artifact, through no link.
            let mut at = staged.clone();
            for part in s.split('/').filter(|p| !p.is_empty() && *p != ".") {
                if part == ".." {
                    return Err(ArtifactError::Other(format!(
                        "subPath {s:?} climbs out of the artifact with '..'"
                    )));
                }
                at.push(part);
                if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(ArtifactError::Other(format!(
                        "subPath {s:?} goes through a link in the artifact"
                    )));
                }
            }
            at
        }
        _ => staged,
    };
    if fs::symlink_metadata(&chosen).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ArtifactError::Other(
            "the artifact is a link, which is not followed".into(),
        ));
    }
    if !chosen.exists() {
        return Err(ArtifactError::Other(format!(
            "subPath {} not found in the artifact",
            sub_path.unwrap_or_default()
        )));
    }
    place(&chosen, dest)
}

fn place(src: &Path, dest: &Path) -> Result<(), ArtifactError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if src.is_dir() {
        copy_dir(src, dest)
    } else {
        fs::copy(src, dest).map(|_| ()).map_err(io_err(src))
    }
}

/// Write raw data to `dest`.
pub fn write_raw(data: &str, dest: &Path) -> Result<(), ArtifactError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    fs::write(dest, data).map_err(io_err(dest))
}

/// Download `url` to `dest`.
pub fn download(url: &str, headers: &[(String, String)], dest: &Path) -> Result<(), ArtifactError> {
    let mut req = ureq::get(url).timeout(std::time::Duration::from_secs(60));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = req
        .call()
        .map_err(|e| ArtifactError::Other(format!("GET {url}: {e}")))?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut f = fs::File::create(dest).map_err(io_err(dest))?;
    io::copy(&mut resp.into_reader(), &mut f).map_err(io_err(dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_file_and_dir_with_and_without_archive() {
        let base = std::env::temp_dir().join(format!("onyx-art-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("src/dir/sub")).unwrap();
        fs::write(base.join("src/file.txt"), "hello").unwrap();
        fs::write(base.join("src/dir/sub/a.txt"), "a").unwrap();
        for archive in [true, false] {
            let key = base.join(format!("repo/f-{archive}"));
            save(&base.join("src/file.txt"), &key, archive, None).unwrap();
            let out = base.join(format!("out/f-{archive}.txt"));
            load(&key, &out, None, &base).unwrap();
            assert_eq!(fs::read_to_string(&out).unwrap(), "hello");
            let dkey = base.join(format!("repo/d-{archive}"));
            save(&base.join("src/dir"), &dkey, archive, Some(0)).unwrap();
            let dout = base.join(format!("out/d-{archive}"));
            load(&dkey, &dout, None, &base.join("scratch1")).unwrap();
            assert_eq!(fs::read_to_string(dout.join("sub/a.txt")).unwrap(), "a");
            let sout = base.join(format!("out/s-{archive}.txt"));
            load(&dkey, &sout, Some("sub/a.txt"), &base.join("scratch2")).unwrap();
            assert_eq!(fs::read_to_string(&sout).unwrap(), "a");
        }
        assert!(save(&base.join("missing"), &base.join("repo/x"), true, None).is_err());
        let _ = fs::remove_dir_all(&base);
    }
}
