//! Temporary probe.
#[test]
fn probe() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-envs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.push("/tmp/fixgen/base.toml".into());
    for f in files {
        match generator::config::load(&f) {
            Ok(_) => println!("OK {}", f.display()),
            Err(e) => {
                println!("== {}\n{e}\n{:?}", f.file_name().unwrap().to_string_lossy(), e.problems());
            }
        }
    }
}
