//! Helpers shared by the integration tests. The emulator launcher ([`Moto`], the workspace
//! paths) lives in its own crate, `asg-refresh-emulator` (tests/emulator), which the CLI's
//! demo uses too; it is re-exported here so tests keep one import.

pub use asg_refresh_emulator::*;

use std::io::Write;

/// A zip archive of one executable file `name` (mode 0755, stored): enough for Lambda's
/// validation and for the extended emulator, which unpacks it and runs `bootstrap`.
pub fn stored_zip(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o755);
    zip.start_file(name, options)
        .expect("a zip entry in memory");
    zip.write_all(contents).expect("writing to memory");
    zip.finish().expect("a zip in memory").into_inner()
}
