//! Every command has a man page and explains every flag in --help.

mod support;

#[test]
fn every_binary_has_a_man_page_and_help() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \"rs-"))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    assert!(bins.len() >= 4, "{bins:?}");
    for b in bins {
        let name = format!("rs-{b}");
        assert!(
            root.join("man").join(format!("{name}.1")).exists(),
            "man/{name}.1 missing: run scripts/man.sh"
        );
        let out = std::process::Command::new(support::bin(&name))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        // Every option line is followed by its explanation.
        for (i, line) in help.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("--")
                || (t.starts_with('-') && t.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic()))
            {
                let explained = line.len() > 40
                    || help
                        .lines()
                        .nth(i + 1)
                        .is_some_and(|n| n.starts_with("          "));
                assert!(explained, "{name}: `{t}` is not explained");
            }
        }
    }
}
