//! Lists a zip archive's entries from its central directory (names, sizes, CRC-32, Unix
//! modes) with the `zip` crate, without decompressing anything: enough to prove a Lambda
//! zip holds exactly the binary that was checked, executable.

use std::io::Cursor;

use anyhow::Context;

/// One file in a zip, as its central directory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    pub name: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// CRC-32 of the uncompressed bytes.
    pub crc32: u32,
    /// Unix permission and type bits, when the archiver recorded them.
    pub unix_mode: Option<u32>,
}

/// The entries of a zip archive, in central directory order.
pub fn entries(data: &[u8]) -> anyhow::Result<Vec<ZipEntry>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).context("not a whole zip file")?;
    (0..archive.len())
        .map(|index| {
            // Raw: the entry as the central directory describes it, nothing decompressed.
            let file = archive
                .by_index_raw(index)
                .with_context(|| format!("cannot read zip entry {index}"))?;
            Ok(ZipEntry {
                name: file
                    .name()
                    .with_context(|| format!("zip entry {index} has no readable name"))?
                    .into_owned(),
                size: file.size(),
                crc32: file.crc32(),
                unix_mode: file.unix_mode(),
            })
        })
        .collect()
}

/// CRC-32 (IEEE 802.3, the zip checksum).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A zip of stored (uncompressed) files with these Unix modes and this archive comment,
    /// written by the `zip` crate.
    pub(crate) fn stored_zip(files: &[(&str, u32, &[u8])], comment: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use zip::write::SimpleFileOptions;

        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, mode, contents) in files {
            let options = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .unix_permissions(*mode);
            zip.start_file(*name, options).unwrap();
            zip.write_all(contents).unwrap();
        }
        zip.set_raw_comment(comment.to_vec().into()).unwrap();
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn lists_names_sizes_checksums_and_modes() {
        let zip = stored_zip(
            &[
                ("bootstrap", 0o100755, b"\x7fELF..."),
                ("README", 0o100644, b"hi"),
            ],
            b"PK\x05\x06 is a fake end record inside this long comment",
        );
        let listed = entries(&zip).expect("valid zip");
        assert_eq!(
            listed,
            [
                ZipEntry {
                    name: "bootstrap".into(),
                    size: 7,
                    crc32: crc32(b"\x7fELF..."),
                    unix_mode: Some(0o100755)
                },
                ZipEntry {
                    name: "README".into(),
                    size: 2,
                    crc32: crc32(b"hi"),
                    unix_mode: Some(0o100644)
                },
            ]
        );
    }

    #[test]
    fn rejects_what_is_not_a_whole_zip() {
        assert!(entries(b"").is_err());
        assert!(entries(b"not a zip at all, not even close").is_err());
        let zip = stored_zip(&[("bootstrap", 0o100755, b"binary")], b"");
        let central = zip.len() - 22 - 46 - "bootstrap".len();
        let mut cut = zip[..central].to_vec();
        cut.extend(&zip[zip.len() - 22..]);
        assert!(entries(&cut).is_err());
    }
}
