//! Reconfiguration through the real binaries (SPEC.md section 10): the
//! configuration's source chain, and the one recovery attempt per class of
//! failure (connectivity: a new configuration, directly or by redirect;
//! identity: a new certificate, only through a redirect to the site's own
//! network), against HTTPS servers on 127.0.0.1.

mod support;

use support::http::{route, serve_tls, Files, Pair, Pki, Serve};
use support::{free_port, Site};

/// nginx serving files from `www`; a POST to `/direct/NAME` is answered
/// with the file (as a configuration service answering directly), and a
/// POST to `/redirect/NAME` with a redirect to `/NAME`.
fn config_server(dir: &std::path::Path, server: &Pair) -> Files {
    let www = dir.join("www");
    Files::start(
        dir,
        server,
        &(format!("        location /direct/ {{ alias {}/; error_page 405 =200 $uri; }}\n", www.display())
            + "        location /redirect/ { rewrite ^/redirect/(.*)$ /$1 redirect; }\n        location = /elsewhere { return 302 https://192.0.2.1/cert.pem; }\n        location = /site.toml { if ($http_x_rs_host = \"\") { return 400; } }\n"),
    )
}

fn flush(site: &Site) -> support::Run {
    site.cmd("rs-queue").args(["flush"]).run()
}

/// The provider `p.hub` serving HTTPS for `a.host` (client certificates
/// from `pki`).
fn hub(pki: &Pki, server: &Pair) -> Site {
    let p = Site::component("p.hub");
    p.peer("a.host", "");
    serve_tls(&p, server, &pki.ca, "");
    p
}

/// `a.host`'s configuration: `p.hub` upstream at `url`, with its client
/// certificate, and where to ask for a new configuration.
fn site_config(url: &str, ca: &std::path::Path, cert: &Pair, config_url: &str) -> String {
    format!(
        "site = \"a\"\ncomponent = \"a.host\"\n[recovery]\nconfig_url = \"{config_url}\"\n[[peer]]\nid = \"p.hub\"\nupstream = true\nroutes = [\"{}\"]\n",
        route(url, ca, Some(cert))
    )
}

#[test]
fn the_configuration_comes_from_the_file_else_the_environments_url() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let web = config_server(&holder.root().join("web"), &pki.server());
    let text = "site = \"a\"\ncomponent = \"a.host\"\n[throttle]\nmax_messages_per_day = 5\n";
    std::fs::write(web.www.join("site.toml"), text).unwrap();
    std::fs::write(web.www.join("bad.toml"), "site = \"a\"\nnonsense = 1\n").unwrap();
    let url = |name: &str| format!("{}/{name}?ca={}", web.base, pki.ca.display());

    // No file: the environment's URL (the GET names this host: nginx
    // answers 400 without X-Rs-Host).
    let fresh = holder.root().join("fresh");
    let list = |dir: &std::path::Path, u: &str| {
        holder
            .cmd("rs-queue")
            .env("RS_SPOOL", dir.to_str().unwrap())
            .env("RS_CONFIG_URL", u)
            .args(["list", "--json"])
            .run()
    };
    let r = list(&fresh, &url("site.toml")).success();
    assert!(r.stderr.contains("fetched from"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(fresh.join("config.toml")).unwrap(),
        text
    );
    assert_eq!(
        std::fs::read_to_string(fresh.join("config.source"))
            .unwrap()
            .trim(),
        url("site.toml")
    );
    // The file, once there, wins: the environment is not asked again.
    std::fs::remove_file(web.www.join("site.toml")).unwrap();
    list(&fresh, &url("site.toml")).success();
    // An invalid configuration is not written (78); an unreachable
    // source is for later (75).
    let other = holder.root().join("other");
    let r = list(&other, &url("bad.toml")).code(78);
    assert!(r.stderr.contains("nonsense"), "{}", r.stderr);
    assert!(!other.join("config.toml").exists());
    let down = format!(
        "https://127.0.0.1:{}/site.toml?ca={}",
        free_port(),
        pki.ca.display()
    );
    list(&other, &down).code(75);
    assert!(!other.join("config.toml").exists());
}

#[test]
fn a_connectivity_failure_gets_a_new_configuration_directly_or_by_redirect() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    let p = hub(&pki, &server);
    let srv = Serve::start(&p);
    let web = config_server(&holder.root().join("web"), &server);
    let cert = pki.client("a.host");
    let dead = format!("https://127.0.0.1:{}/rs", free_port());
    let asked =
        |how: &str, name: &str| format!("{}/{how}/{name}?ca={}", web.base, pki.ca.display());

    // The redirect's target does not exist: nothing changes, the message
    // waits, 75.
    let a = Site::component("a.host");
    let broken = site_config(&dead, &pki.ca, &cert, &asked("redirect", "missing.toml"));
    std::fs::write(a.spool.join("config.toml"), &broken).unwrap();
    let id = a.send(&[], b"after the move");
    let r = flush(&a).code(75);
    assert!(
        r.stderr.contains("connectivity trouble")
            && r.stderr.contains("recovery failed, nothing changed")
            && r.stderr.contains("404"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(a.spool.join("config.toml")).unwrap(),
        broken
    );
    assert_eq!(a.listed_ids(), std::slice::from_ref(&id));

    // By redirect to a server on the site's network: the new
    // configuration names where the provider is now.
    let a = Site::component("a.host");
    a.send(&[], b"after the move");
    let moved = site_config(&srv.url, &pki.ca, &cert, &asked("redirect", "a.toml"));
    std::fs::write(web.www.join("a.toml"), &moved).unwrap();
    let config = site_config(&dead, &pki.ca, &cert, &asked("redirect", "a.toml"));
    std::fs::write(a.spool.join("config.toml"), &config).unwrap();
    let r = flush(&a).success();
    assert!(
        r.stderr
            .contains("the link is back in order after a new configuration"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(a.spool.join("config.toml")).unwrap(),
        moved
    );
    assert_eq!(
        std::fs::read_to_string(a.spool.join("config.toml.prev")).unwrap(),
        config
    );
    assert!(a.list().is_empty());
    assert_eq!(p.received().len(), 1);

    // Directly from the configuration URL.
    let b = Site::component("a.host");
    std::fs::write(
        web.www.join("direct.toml"),
        site_config(&srv.url, &pki.ca, &cert, &asked("direct", "direct.toml")),
    )
    .unwrap();
    std::fs::write(
        b.spool.join("config.toml"),
        site_config(&dead, &pki.ca, &cert, &asked("direct", "direct.toml")),
    )
    .unwrap();
    b.send(&[], b"direct");
    let r = flush(&b).success();
    assert!(r.stderr.contains("back in order"), "{}", r.stderr);
    assert_eq!(p.received().len(), 2);

    // A configuration for another component is refused.
    let c = Site::component("a.host");
    std::fs::write(
        web.www.join("wrong.toml"),
        "site = \"z\"\ncomponent = \"z.host\"\n",
    )
    .unwrap();
    std::fs::write(
        c.spool.join("config.toml"),
        site_config(&dead, &pki.ca, &cert, &asked("direct", "wrong.toml")),
    )
    .unwrap();
    c.send(&[], b"stays");
    let r = flush(&c).code(75);
    assert!(
        r.stderr.contains("not this site a component a.host"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_identity_failure_takes_a_certificate_only_through_a_redirect_to_the_site() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    let p = hub(&pki, &server);
    let srv = Serve::start(&p);
    let web = config_server(&holder.root().join("web"), &server);
    // The site's certificate is from a CA the provider does not trust.
    let other = Pki::new(holder.root(), "other-ca");
    let revoked = other.client("a.host");
    let good = pki.client("a.host");
    let mut bundle = std::fs::read(&good.cert).unwrap();
    bundle.extend(std::fs::read(&good.key).unwrap());
    std::fs::write(web.www.join("a.pem"), &bundle).unwrap();
    let asked = |how: &str| format!("{}/{how}?ca={}", web.base, pki.ca.display());

    let setup = |config_url: &str| {
        let a = Site::component("a.host");
        let dir = a.root().join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        let cert = Pair {
            cert: dir.join("a.pem"),
            key: dir.join("a.key"),
        };
        std::fs::copy(&revoked.cert, &cert.cert).unwrap();
        std::fs::copy(&revoked.key, &cert.key).unwrap();
        std::fs::write(
            a.spool.join("config.toml"),
            site_config(&srv.url, &pki.ca, &cert, config_url),
        )
        .unwrap();
        a.send(&[], b"signed in again");
        (a, cert)
    };

    // Served directly by the provider: refused, logged, nothing installed.
    let (a, cert) = setup(&asked("direct/a.pem"));
    let r = flush(&a).code(75);
    assert!(
        r.stderr.contains("identity trouble")
            && r.stderr.contains("served a certificate directly: refused"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read(&cert.cert).unwrap(),
        std::fs::read(&revoked.cert).unwrap()
    );
    assert_eq!(a.list().len(), 1);

    // A redirect off the site's networks, and one to nothing: refused.
    for (how, says) in [
        ("elsewhere", "not on the site's own networks"),
        ("redirect/missing.pem", "404"),
    ] {
        let (a, cert) = setup(&asked(how));
        let r = flush(&a).code(75);
        assert!(r.stderr.contains(says), "{how}: {}", r.stderr);
        assert_eq!(
            std::fs::read(&cert.key).unwrap(),
            std::fs::read(&revoked.key).unwrap()
        );
    }

    // Through a redirect to the site's own server: installed, the link
    // works again, the message goes.
    let (a, cert) = setup(&asked("redirect/a.pem"));
    let r = flush(&a).success();
    assert!(
        r.stderr
            .contains("the link is back in order after a new certificate"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read(&cert.cert).unwrap(),
        std::fs::read(&good.cert).unwrap()
    );
    assert!(a.list().is_empty());
    assert_eq!(p.received().len(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cert.key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Issue 29, item 6b: a configuration fetched from a URL (the first fetch,
/// or a repair) may not install a setting that runs a program or names a
/// key file the configuration in use does not, unless the operator allows
/// it here in `RS_CONFIG_TRUST`: refused whole (78), nothing written, the
/// setting and the remedy named.
#[test]
fn a_fetched_configuration_cannot_install_a_handler() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    let web = config_server(&holder.root().join("web"), &server);
    let url = |name: &str| format!("{}/{name}?ca={}", web.base, pki.ca.display());
    let handler = "site = \"a\"\ncomponent = \"a.host\"\n[[rule]]\nname = \"sh\"\naction = \"divert\"\nhandler = \"/bin/sh\"\nargs = [\"-c\", \"touch /tmp/rs-pwned\"]\n";
    std::fs::write(web.www.join("site.toml"), handler).unwrap();
    let keyed = format!(
        "site = \"a\"\ncomponent = \"a.host\"\n[http]\nkey = \"{}\"\n",
        server.key.display()
    );
    std::fs::write(web.www.join("keyed.toml"), &keyed).unwrap();
    let list = |dir: &std::path::Path, u: &str, trust: Option<&str>| {
        let mut c = holder
            .cmd("rs-queue")
            .env("RS_SPOOL", dir.to_str().unwrap())
            .env("RS_CONFIG_URL", u);
        if let Some(t) = trust {
            c = c.env("RS_CONFIG_TRUST", t);
        }
        c.args(["list", "--json"]).run()
    };

    // First fetch: a handler, then a key file; refused, nothing written.
    let fresh = holder.root().join("fresh");
    let r = list(&fresh, &url("site.toml"), None).code(78);
    assert!(
        r.stderr.contains("handler of [[rule]] sh = /bin/sh")
            && r.stderr.contains("runs a program")
            && r.stderr.contains("RS_CONFIG_TRUST=programs")
            && r.stderr.contains("nothing was installed"),
        "{}",
        r.stderr
    );
    assert!(!fresh.join("config.toml").exists());
    assert!(!fresh.join("config.source").exists());
    let r = list(&fresh, &url("keyed.toml"), Some("programs")).code(78);
    assert!(
        r.stderr.contains("[http] key = ") && r.stderr.contains("RS_CONFIG_TRUST=keys"),
        "{}",
        r.stderr
    );
    assert!(!fresh.join("config.toml").exists());
    // A word the operator did not mean is not taken for a permission.
    let r = list(&fresh, &url("site.toml"), Some("everything")).code(78);
    assert!(r.stderr.contains("`everything`"), "{}", r.stderr);
    assert!(!fresh.join("config.toml").exists());
    // Allowed here, by the operator's environment: installed.
    list(&fresh, &url("site.toml"), Some("programs")).success();
    assert_eq!(
        std::fs::read_to_string(fresh.join("config.toml")).unwrap(),
        handler
    );
    let keyed_dir = holder.root().join("keyed");
    list(&keyed_dir, &url("keyed.toml"), Some("keys,programs")).success();

    // A repair: the new configuration adds a handler; refused (78), the
    // configuration in use kept, the message still queued.
    let p = hub(&pki, &server);
    let srv = Serve::start(&p);
    let cert = pki.client("a.host");
    let dead = format!("https://127.0.0.1:{}/rs", free_port());
    let asked = format!("{}/direct/repair.toml?ca={}", web.base, pki.ca.display());
    let repaired = site_config(&srv.url, &pki.ca, &cert, &asked)
        + "[[rule]]\nname = \"sh\"\naction = \"divert\"\nhandler = \"/bin/sh\"\n";
    std::fs::write(web.www.join("repair.toml"), &repaired).unwrap();
    let a = Site::component("a.host");
    let config = site_config(&dead, &pki.ca, &cert, &asked);
    std::fs::write(a.spool.join("config.toml"), &config).unwrap();
    let id = a.send(&[], b"waits for a repair");
    let r = flush(&a).code(78);
    assert!(
        r.stderr.contains("recovery failed, nothing changed")
            && r.stderr.contains("handler of [[rule]] sh")
            && r.stderr.contains("RS_CONFIG_TRUST=programs"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(a.spool.join("config.toml")).unwrap(),
        config
    );
    assert_eq!(a.listed_ids(), std::slice::from_ref(&id));

    // The same key files as the configuration in use are no new power; a
    // client key it does not name is.
    let elsewhere = holder.root().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = Pair {
        cert: elsewhere.join("a.pem"),
        key: elsewhere.join("a.key"),
    };
    std::fs::copy(&cert.cert, &other.cert).unwrap();
    std::fs::copy(&cert.key, &other.key).unwrap();
    let moved_key = site_config(&srv.url, &pki.ca, &other, &asked);
    std::fs::write(web.www.join("repair.toml"), &moved_key).unwrap();
    let force = |trust: &str| {
        a.cmd("rs-queue")
            .env("RS_CONFIG_TRUST", trust)
            .args(["flush", "--force"])
            .run()
    };
    let r = force("").code(78);
    assert!(
        r.stderr.contains("route key= of [[peer]] p.hub")
            && r.stderr.contains("RS_CONFIG_TRUST=keys"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(a.spool.join("config.toml")).unwrap(),
        config
    );

    // Allowed by the operator: installed, and the link works again.
    std::fs::write(web.www.join("repair.toml"), &repaired).unwrap();
    let r = force("programs").success();
    assert!(r.stderr.contains("back in order"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(a.spool.join("config.toml")).unwrap(),
        repaired
    );
    assert_eq!(p.received().len(), 1);
}

/// Issue 29, item 6b: a plain `http://` configuration source is used only
/// on the site's own networks (before any configuration exists: loopback
/// and the private ranges; then `[recovery] site_networks`); elsewhere it
/// is refused (78) before anything is asked.
#[test]
fn a_plain_http_configuration_source_outside_the_site_networks_is_refused() {
    let holder = Site::component("x.holder");
    let list = |dir: &std::path::Path, u: &str| {
        holder
            .cmd("rs-queue")
            .env("RS_SPOOL", dir.to_str().unwrap())
            .env("RS_CONFIG_URL", u)
            .args(["list", "--json"])
            .run()
    };
    // 192.0.2.1 (TEST-NET-1) is no private range: refused, not asked.
    let fresh = holder.root().join("fresh");
    let r = list(&fresh, "http://192.0.2.1/site.toml?timeout=2s").code(78);
    assert!(
        r.stderr.contains("refused")
            && r.stderr.contains("plain http://")
            && r.stderr.contains("192.0.2.1")
            && r.stderr.contains("use https://"),
        "{}",
        r.stderr
    );
    assert!(!fresh.join("config.toml").exists());
    // On loopback it is asked (nothing listens there: for later, 75).
    let local = format!("http://127.0.0.1:{}/site.toml", free_port());
    let r = list(&fresh, &local).code(75);
    assert!(!r.stderr.contains("plain http://"), "{}", r.stderr);

    // A repair asks a plain http:// URL off [recovery] site_networks:
    // refused (78), nothing asked; on them, asked (nothing listens: 75).
    let a = Site::component("a.host");
    let dead = format!("https://127.0.0.1:{}/rs", free_port());
    let config_url = format!("http://127.0.0.1:{}/rs", free_port());
    let config = |networks: &str| {
        format!(
            "site = \"a\"\ncomponent = \"a.host\"\n[recovery]\nconfig_url = \"{config_url}\"\n{networks}[[peer]]\nid = \"p.hub\"\nupstream = true\nroutes = [\"{dead}\"]\n"
        )
    };
    std::fs::write(
        a.spool.join("config.toml"),
        config("site_networks = [\"10.0.0.0/8\"]\n"),
    )
    .unwrap();
    a.send(&[], b"waits");
    let r = flush(&a).code(78);
    assert!(
        r.stderr.contains("connectivity trouble")
            && r.stderr.contains("plain http://")
            && r.stderr.contains("[recovery] site_networks: 10.0.0.0/8"),
        "{}",
        r.stderr
    );
    std::fs::write(a.spool.join("config.toml"), config("")).unwrap();
    let r = a.cmd("rs-queue").args(["flush", "--force"]).run().code(75);
    assert!(
        r.stderr.contains("recovery failed") && !r.stderr.contains("plain http://"),
        "{}",
        r.stderr
    );
}
