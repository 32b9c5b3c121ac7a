use super::*;

/// The keys serde accepts in the table `prefix` opens, as its error for
/// an unknown key lists them.
fn keys_of(prefix: &str) -> Vec<String> {
    let text = format!("site='s'\ncomponent='s.c'\n{prefix}zz_not_a_key = 1\n");
    let err = Config::parse(&text).unwrap_err().to_string();
    let expected = err
        .split_once("expected one of")
        .or_else(|| err.split_once("expected"))
        .unwrap_or_else(|| panic!("{prefix}: {err}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_default_file_parses_and_names_every_key() {
    Config::parse(DEFAULT_TEXT).unwrap();
    // `key = ...` or a table `[key]`, `[[key]]`, commented or not.
    let named = |key: &str| {
        DEFAULT_TEXT.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            let table = l.trim_start_matches('[');
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
                || (table.len() < l.len()
                    && table.strip_prefix(key).is_some_and(|r| r.starts_with(']')))
                || (l.starts_with('[') && l.contains(&format!(".{key}]")))
        })
    };
    for prefix in [
        "",
        "[queue]\n",
        "[queue.urgent]\n",
        "[throttle]\n",
        "[spool]\n",
        "[receive]\n",
        "[lease]\n",
        "[http]\n",
        "[bulk]\n",
        "[registration]\n",
        "[registrar]\n",
        "[recovery]\n",
        "[spm]\n",
        "[shared]\n",
        "[[peer]]\nid = 'p.x'\n",
        "[[rule]]\naction = 'discard'\n",
        "[[group]]\nname = 'g'\nmembers = []\n",
    ] {
        let keys = keys_of(prefix);
        assert!(!keys.is_empty(), "{prefix}");
        let missing: Vec<&String> = keys.iter().filter(|k| !named(k)).collect();
        assert!(
            missing.is_empty(),
            "{prefix}: not in src/lib/default-config.toml: {missing:?}"
        );
    }
}

#[test]
fn default_text_parses_to_unlimited() {
    let site = Name::new("site", "acme").unwrap();
    let comp = Name::new("component", "acme.host1").unwrap();
    let c = Config::parse(&Config::default_text(&site, &comp)).unwrap();
    assert_eq!(c.site, site);
    assert!(c.queue.total().is_unlimited());
    assert_eq!(c.throttle, Throttle::default());
    assert_eq!(c.spool, SpoolSettings::default());
}

#[test]
fn peers() {
    let text = "site='a'\ncomponent='a.b'\n[[peer]]\nid='hub'\nroutes=['dir:/media/usb']\nupstream=true\nack_timeout='10m'\n[[peer]]\nid='c.d'\n";
    let c = Config::parse(text).unwrap();
    assert_eq!(c.upstream().unwrap().id.as_str(), "hub");
    assert_eq!(
        c.peer("hub").unwrap().routes,
        vec![Route::Dir("/media/usb".into())]
    );
    assert_eq!(c.peer("hub").unwrap().ack_timeout, Duration::from_secs(600));
    assert_eq!(
        c.peer("c.d").unwrap().retry_cap,
        Duration::from_secs(86_400)
    );
    let twice = "site='a'\ncomponent='a.b'\n[[peer]]\nid='x'\nupstream=true\n[[peer]]\nid='y'\nupstream=true\n";
    assert!(Config::parse(twice)
        .unwrap_err()
        .to_string()
        .contains("upstream"));
    let selfpeer = "site='a'\ncomponent='a.b'\n[[peer]]\nid='a.b'\n";
    assert!(Config::parse(selfpeer).is_err());
    let badroute = "site='a'\ncomponent='a.b'\n[[peer]]\nid='x'\nroutes=['usb']\n";
    assert!(Config::parse(badroute)
        .unwrap_err()
        .to_string()
        .contains("not a route"));
}

#[test]
fn failover_groups_are_chains_of_backups() {
    let c = Config::parse("site='a'\ncomponent='a.b'\n[[peer]]\nid='r1'\nupstream=true\nbackup='r2'\n[[peer]]\nid='r2'\nbackup='r3'\n[[peer]]\nid='r3'\n[[peer]]\nid='x'\n").unwrap();
    let names = |v: Vec<&Name>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(names(c.failover_group("r2")), ["r1", "r2", "r3"]);
    assert_eq!(names(c.failover_group("x")), ["x"]);
    assert_eq!(c.failover_next("r1").unwrap().as_str(), "r2");
    assert_eq!(c.failover_next("r3").unwrap().as_str(), "r1");
    assert_eq!(c.failover_next("x").unwrap().as_str(), "x");
    assert!(c.twins("r3", "r1") && c.twins("x", "x") && !c.twins("x", "r1"));
    for (bad, says) in [
        (
            "[[peer]]\nid='r1'\nbackup='r1'\n",
            "must be another configured",
        ),
        (
            "[[peer]]\nid='r1'\nbackup='nobody'\n",
            "must be another configured",
        ),
        (
            "[[peer]]\nid='r1'\nbackup='r2'\n[[peer]]\nid='r2'\nbackup='r1'\n",
            "lead back to it",
        ),
        (
            "[[peer]]\nid='r1'\nbackup='r3'\n[[peer]]\nid='r2'\nbackup='r3'\n[[peer]]\nid='r3'\n",
            "already the backup of r1",
        ),
    ] {
        let e = Config::parse(&format!("site='a'\ncomponent='a.b'\n{bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says) && e.starts_with("line "), "{bad}: {e}");
    }
}

#[test]
fn smtp_routes() {
    let Route::Smtp(r) = Route::parse("smtp://mail.example:587?from=a@x.test&to=b@y.test&auth=/etc/rs/smtp-auth&batch=20&timeout=10s").unwrap() else {
        panic!("not smtp")
    };
    assert_eq!(
        (r.host.as_str(), r.port, r.tls),
        ("mail.example", 587, SmtpTls::StartTls)
    );
    assert_eq!(
        (r.from.as_str(), r.to.as_str(), r.batch),
        ("a@x.test", "b@y.test", 20)
    );
    assert_eq!(r.auth, Some(PathBuf::from("/etc/rs/smtp-auth")));
    assert_eq!(r.timeout, Duration::from_secs(10));
    let Route::Smtp(r) = Route::parse("smtp://mx?from=a@x&to=b@y&tls=tls").unwrap() else {
        panic!()
    };
    assert_eq!((r.port, r.tls), (465, SmtpTls::Implicit));
    for bad in [
        "smtp://mx?to=b@y",
        "smtp://mx?from=a@x&to=b@y&tls=maybe",
        "smtp://mx?from=a@x&to=b@y&password=x",
        "smtp://?from=a@x&to=b@y",
        "smtp://mx?from=a@x&to=b@y&tls=none&tls=tls",
    ] {
        assert!(Route::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn guarded_settings_are_handlers_and_key_files() {
    let c = Config::parse(
        "site='a'\ncomponent='a.b'\n[http]\nkey='/k/http.key'\n[bulk]\nidentity='/k/bulk.key'\nencrypt_to=['/k/recipients']\n[[peer]]\nid='p.hub'\nour_key='/k/our.key'\nroutes=['smtp://mx?from=a@x&to=b@y&auth=/k/smtp-auth', 'https://h/rs?ca=/k/ca.pem&cert=/k/c.pem&key=/k/c.key']\n[[rule]]\nname='sh'\naction='divert'\nhandler='/bin/sh'\nargs=['-c', 'id']\n",
    )
    .unwrap();
    let said: Vec<(String, String, Power)> = c
        .guarded()
        .into_iter()
        .map(|g| (g.name(), g.value, g.power))
        .collect();
    let want = |n: &str, v: &str, p| (n.to_string(), v.to_string(), p);
    assert_eq!(
        said,
        vec![
            want(
                "handler of [[rule]] sh",
                "/bin/sh \"-c\" \"id\"",
                Power::Programs
            ),
            want("[http] key", "/k/http.key", Power::Keys),
            want("[bulk] encrypt_to", "/k/recipients", Power::Keys),
            want("[bulk] identity", "/k/bulk.key", Power::Keys),
            want("our_key of [[peer]] p.hub", "/k/our.key", Power::Keys),
            want("route auth= of [[peer]] p.hub", "/k/smtp-auth", Power::Keys),
            want("route ca= of [[peer]] p.hub", "/k/ca.pem", Power::Keys),
            want("route cert= of [[peer]] p.hub", "/k/c.pem", Power::Keys),
            want("route key= of [[peer]] p.hub", "/k/c.key", Power::Keys),
        ]
    );
}

#[test]
fn what_a_provider_may_set_runs_nothing_and_names_no_file() {
    // Registration defaults and set-configuration touch only these
    // tables: every key of them set, nothing guarded.
    let c = Config::parse(
        "site='a'\ncomponent='a.b'\n[[peer]]\nid='p.hub'\nupstream=true\n[queue]\nmax_bytes='1G'\nmax_messages=5\n[queue.urgent]\nmax_bytes='1M'\nmax_messages=1\n[queue.normal]\nmax_messages=1\n[queue.bulk]\nmax_messages=1\n[throttle]\nmax_bytes_per_hour='1M'\nmax_bytes_per_day='1G'\nmax_messages_per_hour=1\nmax_messages_per_day=2\nmax_message_bytes='1M'\nwindows=['22:00-06:00']\n[registration]\nenabled=true\nheartbeat='5m'\nresend_after=2\n",
    )
    .unwrap();
    assert_eq!(c.guarded(), Vec::new());
}

#[test]
fn typos_are_refused() {
    let text = "site='a'\ncomponent='a.b'\n[queue]\nmax_byte = 10\n";
    let err = Config::parse(text).unwrap_err().to_string();
    assert!(err.contains("max_byte"), "{err}");
}

#[test]
fn edit_keeps_comments() {
    let text = "# keep me\nsite='a'\ncomponent='a.b'\n[throttle]\n# and me\n";
    let out = edit(text, "throttle", "max_messages_per_hour", Some(10.into())).unwrap();
    assert!(out.contains("# keep me") && out.contains("# and me"));
    let c = Config::parse(&out).unwrap();
    assert_eq!(c.throttle.max_messages_per_hour, Some(10));
    let out = edit(&out, "throttle", "max_messages_per_hour", None).unwrap();
    assert_eq!(
        Config::parse(&out).unwrap().throttle.max_messages_per_hour,
        None
    );
    // A value rewritten keeps its line's comment.
    let text =
        "site='a'\ncomponent='a.b'\n[throttle]\nmax_messages_per_hour = 5   # the relay's limit\n";
    let out = edit(text, "throttle", "max_messages_per_hour", Some(7.into())).unwrap();
    assert!(
        out.contains("max_messages_per_hour = 7   # the relay's limit"),
        "{out}"
    );
}

#[test]
fn refusals_name_the_value_the_line_and_the_remedy() {
    assert_eq!(
        Route::parse("smtp://relay.example?from=a")
            .unwrap_err()
            .to_string(),
        "`smtp://relay.example?from=a`: from= and to= must be mail addresses"
    );
    assert_eq!(
        Route::parse("ftp://x").unwrap_err().to_string(),
        "`ftp://x` is not a route: use dir:/path, smtp://host:port?from=ADDR&to=ADDR, https://host/path or spm:SERVICE"
    );
    assert_eq!(
        MapSource::parse("file://map.xml").unwrap_err().to_string(),
        "`file://map.xml`: a file URL names an absolute path (file:///etc/rs/map.xml)"
    );
    assert_eq!(
        parse_network("10.0.0.0/33").unwrap_err().to_string(),
        "`10.0.0.0/33`: a prefix length is 0 to 32"
    );
    let e = Config::parse("site='a'\ncomponent='a.b'\n[[peer]]\nid='b.c'\n[[rule]]\nname='rs-mine'\naction='discard'\n")
        .unwrap_err();
    assert_eq!(
        e,
        Invalid::At {
            line: 5,
            message: "[[rule]] name \"rs-mine\" is rs's own: choose another".into()
        }
    );
    assert!(matches!(
        Config::parse("site='a'\ncomponent=").unwrap_err(),
        Invalid::Syntax(_)
    ));
    let e = Error::Parse {
        path: "/etc/rs/config.toml".into(),
        message: e.to_string(),
    };
    assert_eq!(
        e.to_string(),
        "/etc/rs/config.toml: line 5: [[rule]] name \"rs-mine\" is rs's own: choose another"
    );
}
