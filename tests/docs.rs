//! Every command has a man page and explains every flag in --help.

mod support;

#[test]
fn every_binary_has_a_man_page_and_help() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    // The names of the [[bin]] tables (not the package's, nor the deb's).
    let mut section = "";
    let mut bins: Vec<&str> = Vec::new();
    for l in manifest.lines() {
        if l.starts_with('[') {
            section = l;
        } else if section == "[[bin]]" {
            if let Some(b) = l.strip_prefix("name = \"rs-") {
                bins.push(b.trim_end_matches('"'));
            }
        }
    }
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

/// Issue 29, item 6a: `rs-relay cgi` believes whoever can reach its
/// FastCGI socket, so the example the package installs gives it a socket
/// only the web server's user can reach, says why, and the README and
/// ARCHITECTURE name the boundary.
#[test]
fn the_nginx_example_keeps_the_fastcgi_socket_to_the_web_server() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let nginx = read("packaging/examples/nginx-rs.conf");
    let socket = read("packaging/examples/rs-fcgiwrap.socket");
    let service = read("packaging/examples/rs-fcgiwrap.service");
    let setting = |text: &str, key: &str| -> Option<String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_end_matches(';').trim().to_string())
    };
    // nginx passes to the socket the unit makes, nothing shared.
    let pass = setting(&nginx, "fastcgi_pass").expect("nginx-rs.conf has a fastcgi_pass");
    let path = setting(&socket, "ListenStream=").expect("the socket unit listens");
    assert_eq!(
        pass,
        format!("unix:{path}"),
        "nginx passes to rs's own socket"
    );
    assert_ne!(
        path, "/run/fcgiwrap.socket",
        "not the shared fcgiwrap socket"
    );
    // Only the owner (rs) and the web server's group may connect.
    assert_eq!(setting(&socket, "SocketMode=").as_deref(), Some("0660"));
    assert_eq!(
        setting(&socket, "SocketGroup=").as_deref(),
        Some("www-data")
    );
    assert_eq!(setting(&socket, "SocketUser=").as_deref(), Some("rs"));
    // fcgiwrap runs as the spool's owner and runs nothing but rs's script.
    assert_eq!(setting(&service, "User=").as_deref(), Some("rs"));
    let exec = setting(&service, "ExecStart=").expect("the service starts fcgiwrap");
    assert!(exec.contains("-p /usr/lib/cgi-bin/rs"), "{exec}");
    // Each says why, as do the README and ARCHITECTURE.
    for (name, text) in [("nginx-rs.conf", &nginx), ("rs-fcgiwrap.socket", &socket)] {
        assert!(
            text.contains("can claim to") && text.contains("any peer"),
            "{name} does not say why the socket is the web server's only"
        );
    }
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let text = read(doc).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains("whoever can reach the FastCGI socket can claim to be any peer"),
            "{doc} does not name the trust boundary of rs-relay cgi"
        );
    }
}
