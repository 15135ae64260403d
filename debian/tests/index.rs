//! apt `Packages` indexes, plain and compressed (gzip, xz, LZ4 frames), cut short or
//! corrupt, and this machine's own lists.

use std::path::{Path, PathBuf};

use courier_debian::index::{self, Compression, IndexError, IndexStats};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every package of an index as (name, version, arch, source), and the stats.
fn read(path: &Path) -> Result<(Vec<[String; 4]>, IndexStats), IndexError> {
    let mut packages = Vec::new();
    let stats = index::read_packages(path, |p| {
        let source = p.source.unwrap_or("-").to_owned();
        packages.push([p.name.into(), p.version.into(), p.arch.into(), source]);
    })?;
    Ok((packages, stats))
}

#[test]
fn reads_every_compression_alike() {
    let expected: Vec<[String; 4]> = [
        ["base-files", "12.4+deb12u14", "amd64", "-"],
        ["bash", "5.2.15-2+b13", "amd64", "bash"],
        ["distro-info-data", "0.58+deb12u7", "all", "-"],
        ["libc6", "2.36-9+deb12u14", "amd64", "glibc"],
        ["tzdata", "2026b-0+deb12u1", "all", "-"],
        ["tzdata", "2025b-0+deb12u1", "all", "-"],
    ]
    .map(|row| row.map(String::from))
    .into();
    for (name, compression) in [
        ("Packages", Compression::Plain),
        ("Packages.gz", Compression::Gzip),
        ("Packages.xz", Compression::Xz),
        ("Packages.lz4", Compression::Lz4),
    ] {
        let (packages, stats) = read(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(packages, expected, "{name}");
        assert_eq!(stats.compression, compression, "{name}");
        // No version, an invalid version, a line without a colon.
        assert_eq!((stats.packages, stats.skipped), (6, 3), "{name}");
    }
}

#[test]
fn a_cut_or_corrupt_file_is_an_error_naming_it() {
    for name in [
        "truncated.gz",
        "truncated.xz",
        "truncated.lz4",
        "corrupt.gz",
    ] {
        let path = fixture(name);
        let err = read(&path).expect_err(name);
        assert!(matches!(err, IndexError::Corrupt { .. }), "{name}: {err:?}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("{}: corrupt or truncated", path.display())));
    }
    let missing = read(&fixture("absent.lz4")).expect_err("missing file");
    assert!(matches!(missing, IndexError::Open { .. }), "{missing:?}");
}

#[test]
fn an_lz4_file_cut_between_blocks_is_an_error() {
    let text = std::fs::read(fixture("Packages")).expect("fixture");
    let (first, second) = text.split_at(text.len() / 2);
    // A frame of two stored blocks, no checksums: magic, FLG, BD, HC, blocks, end mark.
    let mut frame = vec![0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82];
    let mut boundaries = Vec::new();
    for block in [first, second] {
        let size = u32::try_from(block.len()).expect("small") | 0x8000_0000;
        frame.extend(size.to_le_bytes());
        frame.extend(block);
        boundaries.push(frame.len());
    }
    let cut_at = boundaries[0];
    frame.extend([0, 0, 0, 0]);
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = dir.path().join("whole.lz4");
    let cut = dir.path().join("cut.lz4");
    std::fs::write(&whole, &frame).expect("write");
    std::fs::write(&cut, &frame[..cut_at]).expect("write");
    let (packages, _) = read(&whole).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(packages.len(), 6);
    let err = read(&cut).expect_err("cut between blocks");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn refuses_formats_it_does_not_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let zstd = dir.path().join("Packages.zst");
    std::fs::write(&zstd, [0x28, 0xB5, 0x2F, 0xFD, 0, 0]).expect("write");
    let err = read(&zstd).expect_err("zstd");
    assert!(
        matches!(err, IndexError::Unsupported { format: "zstd", .. }),
        "{err:?}"
    );
}

#[test]
fn reads_this_machines_lists_as_the_lz4_tool_does() {
    let lists = Path::new("/var/lib/apt/lists");
    let Ok(entries) = std::fs::read_dir(lists) else {
        eprintln!("no {} on this machine: nothing to check", lists.display());
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("_Packages"))
        })
        .collect();
    paths.sort();
    for path in paths {
        let (packages, stats) = read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stats.skipped, 0, "{}", path.display());
        let lz4 = std::process::Command::new("lz4")
            .arg("-dc")
            .arg(&path)
            .output();
        match lz4 {
            Ok(out) if stats.compression == Compression::Lz4 && out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let expected = text.lines().filter(|l| l.starts_with("Package:")).count();
                assert_eq!(packages.len(), expected, "{}", path.display());
            }
            _ => eprintln!(
                "{}: {} packages, not checked against lz4",
                path.display(),
                packages.len()
            ),
        }
    }
}
