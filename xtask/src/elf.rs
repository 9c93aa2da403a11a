//! Reads what an ELF executable needs from glibc (its `.gnu.version_r` version needs), so a
//! Lambda linked against a newer glibc than its runtime has fails the build, not its first
//! invocation.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Context};
use object::elf::{FileHeader32, FileHeader64, Machine, PT_DYNAMIC, SHT_DYNSYM};
use object::read::elf::{FileHeader, ProgramHeader, Sym};
use object::{Endianness, FileKind};

/// The glibc of the `provided.al2023` Lambda runtime.
pub const LAMBDA_GLIBC: GlibcVersion = GlibcVersion::new(2, 34, 0);

/// A numbered glibc symbol version: `GLIBC_2.34` is 2.34, `GLIBC_2.2.5` is 2.2.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion {
    major: u32,
    minor: u32,
    patch: u32,
}

impl GlibcVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses a version name as `.gnu.version_r` spells it; `None` for anything that is not
    /// a numbered glibc version (`GCC_3.0`, `GLIBC_PRIVATE`).
    pub fn from_version_name(name: &str) -> Option<Self> {
        let mut parts = name.strip_prefix("GLIBC_")?.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(patch) => patch.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        Ok(())
    }
}

/// What an ELF file needs from the machine that runs it.
#[derive(Debug, Default)]
pub struct ElfNeeds {
    /// `e_machine` (`object::elf::EM_X86_64`, `EM_AARCH64`, ...).
    pub machine: Machine,
    /// Every numbered glibc version the dynamic loader must find, with the undefined
    /// dynamic symbols bound to it (empty when no symbol names it).
    pub glibc: BTreeMap<GlibcVersion, Vec<String>>,
    /// `GLIBC_*` names that are not numbered versions, such as `GLIBC_PRIVATE`.
    pub glibc_unnumbered: Vec<String>,
}

impl ElfNeeds {
    /// The newest glibc version needed; `None` for a static binary.
    pub fn max_glibc(&self) -> Option<GlibcVersion> {
        self.glibc.keys().next_back().copied()
    }

    /// Fails naming every version newer than `limit` and the symbols that need it.
    pub fn check_glibc(&self, limit: GlibcVersion) -> anyhow::Result<()> {
        let too_new: Vec<String> = self
            .glibc
            .iter()
            .filter(|(version, _)| **version > limit)
            .map(|(version, symbols)| match symbols.is_empty() {
                true => format!("GLIBC_{version}"),
                false => format!("GLIBC_{version} ({})", symbols.join(", ")),
            })
            .collect();
        if !too_new.is_empty() {
            bail!("needs glibc newer than {limit}: {}", too_new.join("; "));
        }
        if !self.glibc_unnumbered.is_empty() {
            bail!(
                "needs {}, which only one glibc build provides",
                self.glibc_unnumbered.join(", ")
            );
        }
        Ok(())
    }
}

/// Reads the machine and the glibc version needs of a 32- or 64-bit ELF file.
pub fn needs(data: &[u8]) -> anyhow::Result<ElfNeeds> {
    match FileKind::parse(data).context("not an ELF file")? {
        FileKind::Elf32 => needs_of::<FileHeader32<Endianness>>(data),
        FileKind::Elf64 => needs_of::<FileHeader64<Endianness>>(data),
        other => bail!("not an ELF file but {other:?}"),
    }
}

fn needs_of<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> anyhow::Result<ElfNeeds> {
    let header = Elf::parse(data).context("cannot parse the ELF header")?;
    let endian = header.endian().context("cannot parse the ELF header")?;
    let sections = header
        .sections(endian, data)
        .context("cannot read the section headers")?;
    let dynamic = header
        .program_headers(endian, data)
        .context("cannot read the program headers")?
        .iter()
        .any(|segment| segment.p_type(endian) == PT_DYNAMIC);
    if dynamic && sections.is_empty() {
        bail!("dynamically linked but has no section headers: cannot read its version needs");
    }
    let mut needs = ElfNeeds {
        machine: header.e_machine(endian),
        ..ElfNeeds::default()
    };
    // The loader refuses to start a binary when any version need is missing, referenced by
    // a symbol or not, so the needs section is the authority.
    if let Some((mut verneeds, link)) = sections
        .gnu_verneed(endian, data)
        .context("cannot read .gnu.version_r")?
    {
        let strings = sections
            .strings(endian, data, link)
            .context("cannot read .gnu.version_r's strings")?;
        while let Some((_, mut auxes)) = verneeds.next().context("cannot read .gnu.version_r")? {
            while let Some(aux) = auxes.next().context("cannot read .gnu.version_r")? {
                let name =
                    String::from_utf8_lossy(aux.name(endian, strings).context("bad version name")?);
                match GlibcVersion::from_version_name(&name) {
                    Some(version) => {
                        needs.glibc.entry(version).or_default();
                    }
                    None if name.starts_with("GLIBC_") => {
                        needs.glibc_unnumbered.push(name.into_owned())
                    }
                    None => {}
                }
            }
        }
    }
    // Name the symbols behind each version, for messages.
    if let Some(versions) = sections
        .versions(endian, data)
        .context("cannot read .gnu.version")?
    {
        let symbols = sections
            .symbols(endian, data, SHT_DYNSYM)
            .context("cannot read .dynsym")?;
        for (index, symbol) in symbols.enumerate() {
            if !symbol.is_undefined(endian) {
                continue;
            }
            let version = versions.version(versions.version_index(endian, index).index());
            let Some(version) = version.context("bad symbol version index")? else {
                continue;
            };
            let Some(glibc) =
                GlibcVersion::from_version_name(&String::from_utf8_lossy(version.name()))
            else {
                continue;
            };
            let name = symbol
                .name(endian, symbols.strings())
                .context("bad symbol name")?;
            needs
                .glibc
                .entry(glibc)
                .or_default()
                .push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str) -> GlibcVersion {
        GlibcVersion::from_version_name(name).expect(name)
    }

    #[test]
    fn parses_numbered_versions_only() {
        assert_eq!(v("GLIBC_2.34"), GlibcVersion::new(2, 34, 0));
        assert_eq!(v("GLIBC_2.2.5"), GlibcVersion::new(2, 2, 5));
        for name in [
            "GLIBC_PRIVATE",
            "GCC_3.0",
            "GLIBC_2",
            "GLIBC_2.34.1.1",
            "GLIBC_2.x",
            "glibc_2.34",
        ] {
            assert_eq!(GlibcVersion::from_version_name(name), None, "{name}");
        }
    }

    #[test]
    fn compares_numerically_and_displays_as_glibc_does() {
        let mut versions = [
            v("GLIBC_2.34"),
            v("GLIBC_2.4"),
            v("GLIBC_2.2.5"),
            v("GLIBC_2.35"),
            v("GLIBC_2.3"),
        ];
        versions.sort();
        let shown: Vec<String> = versions.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["2.2.5", "2.3", "2.4", "2.34", "2.35"]);
        assert!(v("GLIBC_2.34") <= LAMBDA_GLIBC && v("GLIBC_2.35") > LAMBDA_GLIBC);
        assert!(v("GLIBC_2.34.1") > LAMBDA_GLIBC);
    }

    #[test]
    fn check_fails_on_newer_versions_and_names_their_symbols() {
        let mut needs = ElfNeeds::default();
        needs.glibc.insert(v("GLIBC_2.2.5"), vec!["malloc".into()]);
        needs
            .glibc
            .insert(v("GLIBC_2.34"), vec!["__libc_start_main".into()]);
        assert_eq!(needs.max_glibc(), Some(LAMBDA_GLIBC));
        needs.check_glibc(LAMBDA_GLIBC).expect("2.34 is allowed");

        needs.glibc.insert(
            v("GLIBC_2.38"),
            vec!["__isoc23_strtol".into(), "strlcpy".into()],
        );
        needs.glibc.insert(v("GLIBC_2.35"), Vec::new());
        let error = needs
            .check_glibc(LAMBDA_GLIBC)
            .expect_err("2.38 is too new")
            .to_string();
        assert_eq!(
            error,
            "needs glibc newer than 2.34: GLIBC_2.35; GLIBC_2.38 (__isoc23_strtol, strlcpy)"
        );

        let mut private = ElfNeeds::default();
        private.glibc_unnumbered.push("GLIBC_PRIVATE".into());
        assert!(private.check_glibc(LAMBDA_GLIBC).is_err());
    }

    #[test]
    fn rejects_what_is_not_elf() {
        assert!(needs(b"#!/bin/sh\necho hi\n").is_err());
        assert!(needs(&[0x7f, b'E', b'L', b'F', 2, 1, 1]).is_err());
    }

    /// The version needs `objdump -p` lists under "Version References" for a GLIBC version.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn objdump_glibc_needs(path: &std::path::Path) -> std::collections::BTreeSet<GlibcVersion> {
        let output = std::process::Command::new("objdump")
            .arg("-p")
            .arg(path)
            .output()
            .expect("objdump (binutils) runs");
        assert!(output.status.success(), "objdump -p {}", path.display());
        let text = String::from_utf8_lossy(&output.stdout);
        let references = text
            .split("Version References:")
            .nth(1)
            .expect("objdump lists version references");
        references
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .filter_map(GlibcVersion::from_version_name)
            .collect()
    }

    /// Real binaries linked on this machine: the test itself and `/bin/ls`. The parser must
    /// find exactly the GLIBC version needs binutils finds.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn agrees_with_objdump_on_real_binaries() {
        let exe = std::env::current_exe().expect("test binary path");
        for path in [exe.as_path(), std::path::Path::new("/bin/ls")] {
            if !path.exists() {
                continue;
            }
            let data = std::fs::read(path).expect("readable binary");
            let needs = needs(&data).expect("parses");
            let found: std::collections::BTreeSet<GlibcVersion> =
                needs.glibc.keys().copied().collect();
            assert_eq!(found, objdump_glibc_needs(path), "{}", path.display());
            assert!(
                needs.max_glibc() >= Some(GlibcVersion::new(2, 2, 5)),
                "{}",
                path.display()
            );
            assert!(
                needs.glibc.values().any(|symbols| !symbols.is_empty()),
                "{} names no symbol",
                path.display()
            );
        }
        let data = std::fs::read(&exe).expect("readable test binary");
        let machine = needs(&data).expect("parses").machine;
        let expected = if cfg!(target_arch = "x86_64") {
            object::elf::EM_X86_64
        } else if cfg!(target_arch = "aarch64") {
            object::elf::EM_AARCH64
        } else {
            machine
        };
        assert_eq!(machine, expected);
    }
}
