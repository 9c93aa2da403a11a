//! Lists a zip archive's entries from its central directory (names, sizes, CRC-32, Unix
//! modes) without decompressing anything: enough to prove a Lambda zip holds exactly the
//! binary that was checked, executable.

use anyhow::{bail, Context};

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

const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const CENTRAL_DIRECTORY_HEADER: u32 = 0x0201_4b50;
/// "Version made by" host system for Unix, whose external attributes hold `st_mode << 16`.
const HOST_UNIX: u8 = 3;

/// The entries of a zip archive, in central directory order. Zip64 archives are refused.
pub fn entries(data: &[u8]) -> anyhow::Result<Vec<ZipEntry>> {
    // The end record is 22 bytes and a comment of at most 65535 bytes that ends the file;
    // the comment length tells a real record from its signature inside a comment.
    let lowest = data.len().saturating_sub(22 + 0xffff);
    let end = (lowest..=data.len().saturating_sub(22))
        .rev()
        .find(|&at| {
            u32_at(data, at) == Some(END_OF_CENTRAL_DIRECTORY)
                && u16_at(data, at + 20)
                    .is_some_and(|comment| at + 22 + usize::from(comment) == data.len())
        })
        .context("not a zip file: no end of central directory record")?;
    let count = u16_at(data, end + 10).context("truncated end of central directory record")?;
    let start = u32_at(data, end + 16).context("truncated end of central directory record")?;
    if count == 0xffff || start == 0xffff_ffff {
        bail!("zip64 archives are not supported");
    }
    let mut at = start as usize;
    let mut entries = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let truncated = || format!("truncated central directory entry at byte {at}");
        if u32_at(data, at) != Some(CENTRAL_DIRECTORY_HEADER) {
            bail!("no central directory entry at byte {at}");
        }
        let host = *data.get(at + 5).with_context(truncated)?;
        let crc32 = u32_at(data, at + 16).with_context(truncated)?;
        let size = u32_at(data, at + 24).with_context(truncated)?;
        let name_len = usize::from(u16_at(data, at + 28).with_context(truncated)?);
        let extra_len = usize::from(u16_at(data, at + 30).with_context(truncated)?);
        let comment_len = usize::from(u16_at(data, at + 32).with_context(truncated)?);
        let attributes = u32_at(data, at + 38).with_context(truncated)?;
        let name = data
            .get(at + 46..at + 46 + name_len)
            .with_context(truncated)?;
        if size == 0xffff_ffff {
            bail!("zip64 archives are not supported");
        }
        entries.push(ZipEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            size: u64::from(size),
            crc32,
            unix_mode: (host == HOST_UNIX).then_some(attributes >> 16),
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// CRC-32 (IEEE 802.3, the zip checksum).
pub fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|mut c| {
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            c
        })
        .collect();
    !data.iter().fold(!0u32, |crc, &byte| {
        table[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
    })
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A zip of stored (uncompressed) files, laid out as the zip specification says.
    pub(crate) fn stored_zip(files: &[(&str, u32, &[u8])], comment: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, mode, contents) in files {
            let offset = out.len() as u32;
            let crc = crc32(contents);
            let size = contents.len() as u32;
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, stored, time, date
            out.extend(crc.to_le_bytes());
            out.extend(size.to_le_bytes());
            out.extend(size.to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(*contents);
            central.extend(CENTRAL_DIRECTORY_HEADER.to_le_bytes());
            central.extend([20, HOST_UNIX, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made by, needed, flags, method, time, date
            central.extend(crc.to_le_bytes());
            central.extend(size.to_le_bytes());
            central.extend(size.to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend([0, 0, 0, 0, 0, 0, 0, 0]); // extra, comment, disk, internal attributes
            central.extend((mode << 16).to_le_bytes());
            central.extend(offset.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let start = out.len() as u32;
        out.extend(&central);
        out.extend(END_OF_CENTRAL_DIRECTORY.to_le_bytes());
        out.extend([0, 0, 0, 0]);
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(start.to_le_bytes());
        out.extend((comment.len() as u16).to_le_bytes());
        out.extend(comment);
        out
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
