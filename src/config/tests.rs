//! The configuration as a whole: precedence, messages, the catalogue's
//! keys, paths and secrets.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        Path::new("eshop.toml"),
        Path::new("."),
        &BTreeMap::new(),
        &Overrides::default(),
    )
}

#[test]
fn errors_name_the_key_and_line() {
    for (text, want) in [
        (
            "project = \"shop\"\n\n[images]\nregistri = \"x\"\n",
            "eshop.toml:4:1: unknown field `registri`",
        ),
        (
            "[local]\npricing_port = 70000\n",
            "eshop.toml:2:16: local.pricing_port: must be a port",
        ),
        ("project = \"Shop!\"\n", "eshop.toml:1:11: project: must be"),
        (
            "target = \"gcp\"\n",
            "eshop.toml:1:10: target: unknown target \"gcp\"",
        ),
        (
            "[images]\nregistry = \"https://x\"\n",
            "eshop.toml:2:12: images.registry",
        ),
        (
            "[services.cart]\nenv = {}\n",
            "eshop.toml:1:11: services.cart: unknown service",
        ),
        (
            "[local]\npricing_port = 9000\ninventory_port = 9000\n",
            "eshop.toml:3:18: local.inventory_port",
        ),
        ("project = \n", "eshop.toml:1:"),
        (
            "[build]\nprofile = \"debug\"\n",
            "eshop.toml:2:11: build.profile: \"debug\" is not a profile: release or dev",
        ),
        (
            "[kubernetes]\netcd_backup_schedule = \"daily; rm\"\n",
            "eshop.toml:2:24: kubernetes.etcd_backup_schedule: \"daily; rm\" must be a systemd OnCalendar",
        ),
        (
            "[kubernetes]\netcd_backup_dir = \"backups\"\n",
            "eshop.toml:2:19: kubernetes.etcd_backup_dir: \"backups\" must be an absolute path",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(want), "{text:?}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn precedence_is_flags_then_env_then_file() {
    let text = "target = \"aws\"\n[local]\npricing_port = 9000\n";
    let mut env = BTreeMap::new();
    env.insert("ESHOP_LOCAL_PRICING_PORT".to_owned(), "9100".to_owned());
    env.insert("ESHOP_TARGET".to_owned(), "local".to_owned());
    let c = Config::parse(
        text,
        Path::new("e.toml"),
        Path::new("."),
        &env,
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.local_ports["pricing"], 9100);
    assert_eq!(c.target, Target::Local);
    let flags = Overrides {
        target: Some(Target::Aws),
    };
    let c = Config::parse(text, Path::new("e.toml"), Path::new("."), &env, &flags).unwrap();
    assert_eq!(c.target, Target::Aws);
    let c = parse(text).unwrap();
    assert_eq!(c.local_ports["pricing"], 9000);
    assert_eq!(c.target, Target::Aws);
}

#[test]
fn defaults_need_no_file() {
    let c = parse("").unwrap();
    assert_eq!(c.project, "eshop");
    assert_eq!(c.target, Target::Local);
    assert_eq!(c.profile, crate::config::Profile::Release);
    let dev = parse("[build]\nprofile = \"dev\"\n").unwrap();
    assert_eq!(dev.profile.dir(), "debug");
    assert!(!c.push);
    assert_eq!(c.base_image, DEFAULT_BASE_IMAGE);
}

/// `text` as the file in folder `base`, for catalogue `shop`, with `env`.
fn parse_in(
    shop: &'static [Service],
    text: &str,
    base: &str,
    env: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (path, base) = (Path::new("eshop.toml"), Path::new(base));
    Config::parse_for(shop, text, path, base, &env, &Overrides::default())
}

fn parse_env(text: &str, base: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    parse_in(crate::shop::SHOP, text, base, env)
}

#[test]
fn environment_errors_show_the_variable_and_its_value() {
    for (var, value, want) in [
        (
            "ESHOP_PROJECT",
            "Shop!",
            "ESHOP_PROJECT=\"Shop!\": must be 1-32 characters",
        ),
        (
            "ESHOP_BUILD_PROFILE",
            "fast",
            "ESHOP_BUILD_PROFILE=\"fast\": \"fast\" is not a profile",
        ),
        (
            "ESHOP_IMAGES_PUSH",
            "maybe",
            "ESHOP_IMAGES_PUSH=\"maybe\": must be true or false",
        ),
        (
            "ESHOP_LOCAL_PRICING_PORT",
            "0",
            "ESHOP_LOCAL_PRICING_PORT=\"0\": must be a port from 1 to 65535",
        ),
        (
            "ESHOP_AWS_REGION",
            "eu-middle-9",
            "ESHOP_AWS_REGION=\"eu-middle-9\": unknown region",
        ),
        (
            "ESHOP_KUBERNETES_MODE",
            "on",
            "ESHOP_KUBERNETES_MODE=\"on\": \"on\" is not bootstrap",
        ),
    ] {
        // The file's value is fine: the variable wins, and is what is wrong.
        let err = parse_env("project = \"ok\"\n", ".", &[(var, value)])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{var}\n got: {err}\nwant: {want}");
    }
}

/// The bundled shop plus a made-up third service, as a new catalogue entry
/// would add it.
const THREE: &[Service] = &[
    crate::shop::USERS,
    crate::shop::INVENTORY,
    Service {
        public: true,
        ..crate::shop::PRICING
    },
    crate::shop::made_up("gift-cards", 8092, &["inventory"]),
];

fn parse_three(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    parse_in(THREE, text, ".", env)
}

#[test]
fn every_catalogue_entry_gets_a_published_port_key_and_variable() {
    let c = parse_three("", &[]).unwrap();
    assert_eq!(
        c.local_ports,
        BTreeMap::from([
            ("gift-cards", 8092),
            ("inventory", 8081),
            ("pricing", 8080),
            ("users", 8082)
        ])
    );
    assert_eq!(
        c.host_port(&THREE[3]),
        8092,
        "the catalogue's port by default"
    );
    let c = parse_three("[local]\ngift-cards_port = 9300\n", &[]).unwrap();
    assert_eq!(c.host_port(&THREE[3]), 9300);
    let c = parse_three(
        "[local]\ngift-cards_port = 9300\n",
        &[("ESHOP_LOCAL_GIFT_CARDS_PORT", "9400")],
    )
    .unwrap();
    assert_eq!(c.host_port(&THREE[3]), 9400, "the variable over the file");
    // The bundled shop has no such entry: its key is unknown there.
    let err = parse("[local]\ngift-cards_port = 9300\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "eshop.toml:2:1: unknown field `gift-cards_port`, expected one of `bind`, \
         `ready_timeout_secs`, `demo_data`, `users_port`, `inventory_port`, `payments_port`, `pricing_port`, \
         `orders_port`, `storefront_port`"
    );
}

#[test]
fn local_keys_are_checked_by_hand_as_serde_would() {
    for (text, want) in [
        (
            "[local]\nbind = \"::1\"\nx_port = 1\n",
            "eshop.toml:3:1: unknown field `x_port`",
        ),
        (
            "[local]\npricing_port = \"8080\"\n",
            "eshop.toml:2:16: invalid type: string \"8080\", expected i64",
        ),
        (
            "[local]\nbind = 127\n",
            "eshop.toml:2:8: invalid type: integer `127`, expected a string",
        ),
        (
            "[local]\nbind = \"localhost\"\n",
            "eshop.toml:2:8: local.bind: must be an IP",
        ),
        (
            "[local]\nready_timeout_secs = 0\n",
            "eshop.toml:2:22: local.ready_timeout_secs: must be between 1 and 600",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(want), "{text:?}\n got: {err}\nwant: {want}");
    }
    let c = parse("[local]\nbind = \"::1\"\nready_timeout_secs = 5\n").unwrap();
    assert_eq!(c.bind.to_string(), "::1");
    assert_eq!(c.ready_timeout.as_secs(), 5);
}

#[test]
fn published_ports_clash_naming_the_deliberate_key() {
    for (text, env, want) in [
        // The new entry's key against a default.
        (
            "[local]\ngift-cards_port = 8080\n",
            &[][..],
            "eshop.toml:2:19: local.gift-cards_port: must differ from local.pricing_port",
        ),
        // Both written: the later line is named.
        (
            "[local]\npricing_port = 9000\ngift-cards_port = 9000\n",
            &[],
            "eshop.toml:3:19: local.gift-cards_port: must differ from local.pricing_port",
        ),
        (
            "[local]\ngift-cards_port = 9000\npricing_port = 9000\n",
            &[],
            "eshop.toml:3:16: local.pricing_port: must differ from local.gift-cards_port",
        ),
        (
            "[monitoring]\nprometheus_port = 8092\n",
            &[],
            "eshop.toml:2:19: monitoring.prometheus_port: must differ from local.gift-cards_port",
        ),
        // A variable is named with its value, over the file and defaults.
        (
            "[local]\npricing_port = 9000\n",
            &[("ESHOP_LOCAL_INVENTORY_PORT", "9000")],
            "ESHOP_LOCAL_INVENTORY_PORT=\"9000\": must differ from local.pricing_port",
        ),
        (
            "",
            &[("ESHOP_MONITORING_GRAFANA_PORT", "8081")],
            "ESHOP_MONITORING_GRAFANA_PORT=\"8081\": must differ from local.inventory_port",
        ),
    ] {
        let err = parse_three(text, env).unwrap_err().to_string();
        assert_eq!(err, want, "{text:?} {env:?}");
    }
}

#[test]
fn relative_paths_are_relative_to_the_config_folder() {
    let text = "[build]\nsource_dir = \"src\"\n\
                [aws]\nssh_public_key = \"keys/id.pub\"\n\
                [kubernetes]\nmode = \"existing\"\nkubeconfig = \"kube/config\"\n";
    let c = parse_env(text, "sub", &[("HOME", "/home/me")]).unwrap();
    assert_eq!(c.aws.ssh_public_key, Path::new("sub/keys/id.pub"));
    assert_eq!(c.source_dir, Path::new("sub/src"));
    assert_eq!(c.kube.kubeconfig, Path::new("sub/kube/config"));
    assert_eq!(c.state_dir, Path::new("sub/.eshop"));
    // `~/` is the home folder, an absolute path is itself.
    let text = "[aws]\nssh_public_key = \"~/.ssh/k.pub\"\n\
                [kubernetes]\nmode = \"existing\"\nkubeconfig = \"/etc/kube\"\n";
    let c = parse_env(text, "sub", &[("HOME", "/home/me")]).unwrap();
    assert_eq!(c.aws.ssh_public_key, Path::new("/home/me/.ssh/k.pub"));
    assert_eq!(c.kube.kubeconfig, Path::new("/etc/kube"));
    let c = parse_env("", "sub", &[("HOME", "/home/me")]).unwrap();
    assert_eq!(
        c.aws.ssh_public_key,
        Path::new("/home/me/.ssh/id_ed25519.pub")
    );
    // Files that must exist are looked for there too, and named as found.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/id"), "key").unwrap();
    let base = dir.path().to_str().unwrap();
    let c = parse_env("[ssh]\nidentity_file = \"keys/id\"\n", base, &[]).unwrap();
    assert_eq!(c.ssh.identity_file, Some(dir.path().join("keys/id")));
    let err = parse_env("[ssh]\nconfig_file = \"keys/none\"\n", base, &[])
        .unwrap_err()
        .to_string();
    let want = format!(
        "eshop.toml:2:15: ssh.config_file: {} does not exist",
        dir.path().join("keys/none").display()
    );
    assert_eq!(err, want);
}

#[test]
fn secrets_come_from_the_environment_and_never_print() {
    let text = "[apm]\ndynatrace_url = \"https://abc12345.live.dynatrace.com\"\n";
    let env = [
        ("ESHOP_REGISTRY_USERNAME", "robot"),
        ("ESHOP_REGISTRY_PASSWORD", "s3cr3t-registry"),
        ("ESHOP_GRAFANA_ADMIN_PASSWORD", "s3cr3t-grafana"),
        ("ESHOP_OTLP_HEADERS", "x-key=s3cr3t-otlp"),
        ("ESHOP_DYNATRACE_API_TOKEN", "s3cr3t-api"),
        ("ESHOP_DYNATRACE_DATA_INGEST_TOKEN", "s3cr3t-ingest"),
    ];
    let c = parse_env(text, ".", &env).unwrap();
    let auth = c.registry_auth.as_ref().unwrap();
    assert_eq!(
        (auth.username.as_str(), auth.password.expose()),
        ("robot", "s3cr3t-registry")
    );
    assert_eq!(
        c.grafana_admin_password.as_ref().map(Secret::expose),
        Some("s3cr3t-grafana")
    );
    let dt = c.apm.dynatrace.as_ref().unwrap();
    assert_eq!(dt.ingest_token.expose(), "s3cr3t-ingest");
    let debug = format!("{c:?}");
    assert!(debug.contains("robot") && debug.contains("<redacted>"));
    assert!(!debug.contains("s3cr3t"), "{debug}");

    // One registry variable alone is a mistake; the message names both
    // variables and echoes neither value.
    let err = parse_env("", ".", &env[1..2]).unwrap_err().to_string();
    assert!(
        err.contains("ESHOP_REGISTRY_USERNAME and ESHOP_REGISTRY_PASSWORD go together"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    let err = parse_env("", ".", &[("ESHOP_OTLP_HEADERS", "s3cr3t")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "ESHOP_OTLP_HEADERS: must be key=value pairs separated by commas"
    );
    let c = parse("").unwrap();
    assert!(c.registry_auth.is_none() && c.grafana_admin_password.is_none());
}

#[test]
fn urls_are_kept_as_the_parser_reads_them_and_line_breaks_are_refused() {
    // The URL parser drops tabs and newlines silently: a value that
    // "parses" must still not reach a template with its line break.
    for bad in [
        "https://abc.live.dynatrace.com\nproxy: http://evil",
        "https://abc.live.dynatrace.com\u{2028}x",
        "https://user:pw@abc.live.dynatrace.com",
        // A host the URL parser accepts, and Jinja would run.
        "https://{{lookup('pipe','id')}}.live.dynatrace.com",
    ] {
        let text = format!(
            "[apm]\ndynatrace_url = {}\n",
            toml::Value::String(bad.into())
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("apm.dynatrace_url"), "{err}");
    }
    let c = parse("[apm]\notlp_endpoint = \"HTTP://Collector.Example:4318/\"\n").unwrap();
    assert_eq!(
        c.apm.otlp_endpoint.as_deref(),
        Some("http://collector.example:4318")
    );
}

#[test]
fn credentials_to_a_remote_plain_http_receiver_are_warned_about() {
    let with = |url: &str, headers: bool| {
        let env: &[(&str, &str)] = if headers {
            &[("ESHOP_OTLP_HEADERS", "authorization=x")]
        } else {
            &[]
        };
        parse_env(&format!("[apm]\notlp_endpoint = \"{url}\"\n"), ".", env)
            .unwrap()
            .apm
            .cleartext_credentials()
    };
    assert!(with("http://10.0.0.7:4318", true).is_some_and(|w| w.contains("plain http")));
    assert!(with("http://collector.example:4318", true).is_some());
    assert!(
        with("http://10.0.0.7:4318", false).is_none(),
        "no credentials"
    );
    assert!(with("https://collector.example", true).is_none());
    for local in [
        "http://127.0.0.1:4318",
        "http://localhost:4318",
        "http://[::1]:4318",
    ] {
        assert!(with(local, true).is_none(), "{local}");
    }
}

#[test]
fn service_environment_names_are_identifiers() {
    for bad in [
        "\"A B\"",
        "\"1X\"",
        "\"X\\n---\\nkind: ClusterRoleBinding\"",
        "\"\"",
    ] {
        let text = format!("[services.pricing.env]\n{bad} = \"v\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("services.pricing.env."), "{bad}: {err}");
        assert!(err.contains("letters, digits and _"), "{bad}: {err}");
    }
    let c =
        parse("[services.pricing.env]\nTAX_RATE_PERCENT = \"8.875\\n# not a comment\"\n").unwrap();
    assert_eq!(
        c.service_env["pricing"]["TAX_RATE_PERCENT"], "8.875\n# not a comment",
        "values are free text: they travel as data"
    );
}

#[test]
fn the_clusters_own_namespaces_are_refused() {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let err = parse(&format!("[kubernetes]\nnamespace = \"{ns}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kubernetes.namespace") && err.contains("cluster's own"),
            "{err}"
        );
    }
    let err = parse("[kubernetes]\napi_server = \"https://10.0.0.1:6443\\ncat /etc/shadow\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("kubernetes.api_server"), "{err}");
}
