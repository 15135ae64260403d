//! The policy file: the repository's example parses to what it says, and bad files are
//! refused with the file and the line (or the field) named.
#![allow(clippy::unwrap_used)]

use super::*;

const EXAMPLE: &str = include_str!("../../../../examples/policy.toml");

fn parse(text: &str) -> Result<PolicyFile, PolicyFileError> {
    PolicyFile::parse(Path::new("p.toml"), text)
}

fn syntax_line(text: &str) -> (usize, String) {
    match parse(text) {
        Err(PolicyFileError::Syntax { line, message, .. }) => (line, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn the_example_file_parses_to_what_it_says() {
    let file = parse(EXAMPLE).unwrap();
    let p = &file.policy;
    assert!(p.allowed_facts.contains("packages") && p.allowed_facts.contains("managed-dir"));
    assert_eq!(
        p.operator,
        OperatorMode::Terminal {
            fallback: OperatorAnswer::DenyAll
        }
    );
    let dir = p.preopen.as_ref().unwrap();
    assert_eq!(
        (dir.host.as_path(), dir.guest.as_str(), dir.writable),
        (Path::new("/srv/courier-managed"), "/managed", true)
    );
    let names: Vec<&str> = p.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["apt-upgrade", "example-app-health"]);
    let apt = p.command("apt-upgrade").unwrap();
    assert_eq!(apt.extra_args, ExtraArgs::PackageNames);
    assert_eq!(apt.timeout, Duration::from_secs(15 * 60));
    assert!(apt.confirm);
    assert_eq!(apt.argv[0], "apt-get");
    let health = p.command("example-app-health").unwrap();
    assert_eq!(
        (health.extra_args, health.confirm),
        (ExtraArgs::None, false)
    );
    assert_eq!(p.limits.memory_bytes, 128 << 20);
    assert_eq!(p.limits.wall_time, Duration::from_secs(20 * 60));
    assert_eq!(p.limits.command_output_bytes, 64 << 10);
    assert_eq!(p.limits.table_elements, Limits::default().table_elements);
    assert_eq!(
        file.share.as_deref().unwrap(),
        [
            "os",
            "arch",
            "kernel",
            "os-release",
            "package-manager",
            "packages"
        ]
    );
    assert!(!file.report_answer);
    assert!(file.trusted_vendors.is_empty() && file.trusted_operators.is_empty());
    assert!(p.granted_courier().contains(&crate::policy::COMMANDS));
}

#[test]
fn an_empty_file_lends_nothing_and_asks_on_the_terminal() {
    let file = parse("").unwrap();
    assert!(file.policy.allowed_facts.is_empty());
    assert!(file.policy.commands.is_empty() && file.policy.preopen.is_none());
    assert_eq!(file.share, None);
    assert!(
        !file
            .policy
            .granted_courier()
            .contains(&crate::policy::COMMANDS)
    );
    let unattended =
        parse("[operator]\nanswer = \"approve\"\n[reports]\ninclude-answer = true\n").unwrap();
    assert_eq!(
        unattended.policy.operator,
        OperatorMode::Unattended(OperatorAnswer::ApproveAll)
    );
    assert!(unattended.report_answer);
    let key = courier_protocol::VendorKey::of(&courier_protocol::SigningKey::from_bytes(&[7; 32]));
    let trust = parse(&format!("[trust]\noperators = [\"{key}\"]\n")).unwrap();
    assert_eq!(trust.trusted_operators, [key]);
}

#[test]
fn unknown_keys_and_bad_values_name_their_line() {
    let (line, message) = syntax_line("[facts]\nread = [\"os\"]\nsahre = [\"os\"]\n");
    assert_eq!(line, 3, "{message}");
    assert!(message.contains("sahre"), "{message}");
    let (line, message) = syntax_line("\n[facts]\nread = [\"os\", \"secrets\"]\n");
    assert_eq!(line, 3);
    assert!(message.contains("unknown fact \"secrets\""), "{message}");
    let (line, message) = syntax_line("[limits]\ncpu-time = \"soon\"\n");
    assert_eq!(line, 2);
    assert!(message.contains("duration"), "{message}");
    let (line, _) = syntax_line("[operator]\nanswer = \"maybe\"\n");
    assert_eq!(line, 2);
    let (line, message) = syntax_line("[trust]\nvendors = [\"ed25519:zz\"]\n");
    assert_eq!(line, 2);
    assert!(message.contains("ed25519"), "{message}");
    let (line, _) = syntax_line("[facts\nread = []\n");
    assert_eq!(line, 1);
    let (line, message) = syntax_line(
        "[[command]]\nname = \"x1\"\nargv = [\"true\"]\ntimeout = \"1s\"\nshell = true\n",
    );
    assert_eq!(line, 5);
    assert!(message.contains("shell"), "{message}");
    let (line, message) = syntax_line("[[command]]\nname = \"x1\"\nargv = [\"true\"]\n");
    assert_eq!(line, 1);
    assert!(message.contains("timeout"), "{message}");
    let (_, message) = syntax_line("[limits]\nmemory-mib = -1\n");
    assert!(!message.is_empty());
}

#[test]
fn values_that_do_not_go_together_name_the_field() {
    let invalid = |text: &str| match parse(text) {
        Err(PolicyFileError::Invalid { field, message, .. }) => (field, message),
        other => panic!("expected an invalid field, got {other:?}"),
    };
    let command = |name: &str| {
        format!("[[command]]\nname = \"{name}\"\nargv = [\"true\"]\ntimeout = \"1s\"\n")
    };
    let (field, message) = invalid(&format!("{}{}", command("same"), command("same")));
    assert_eq!(field, "command");
    assert!(message.contains("same"), "{message}");
    assert_eq!(invalid(&command("Not Ok")).0, "command");
    assert_eq!(
        invalid("[[command]]\nname = \"x\"\nargv = []\ntimeout = \"1s\"\n").0,
        "command"
    );
    assert_eq!(
        invalid("[directory]\npath = \"relative/dir\"\n").0,
        "directory.path"
    );
    assert_eq!(
        invalid("[directory]\npath = \"/srv\"\nguest = \"managed\"\n").0,
        "directory.guest"
    );
    assert_eq!(invalid("[limits]\nmemory-mib = 0\n").0, "limits.memory-mib");
    assert_eq!(
        invalid("[limits]\nwall-time = \"0s\"\n").0,
        "limits.wall-time"
    );
    let text = invalid("[limits]\nmemory-mib = 0\n");
    let shown = PolicyFileError::Invalid {
        path: "p.toml".into(),
        field: text.0,
        message: text.1,
    }
    .to_string();
    assert_eq!(
        shown,
        "policy file p.toml, limits.memory-mib: must be more than zero"
    );
}

#[test]
fn a_missing_file_is_none_and_an_unreadable_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        PolicyFile::load_if_present(&dir.path().join("none.toml"))
            .unwrap()
            .is_none()
    );
    let err = PolicyFile::load(&dir.path().join("none.toml")).unwrap_err();
    assert!(matches!(err, PolicyFileError::Read { .. }));
    assert!(err.to_string().contains("none.toml"));
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    assert!(PolicyFile::load_if_present(&path).unwrap().is_some());
}

#[test]
fn provider_endpoints_are_read_and_a_bad_range_names_its_line() {
    let file = parse(
        r#"
[provider-endpoints]
hosts = ["provider.example", "*.example.net"]
networks = ["192.0.2.0/24", "2001:db8::/32"]
ports = [4433]
local-from-remote = true
"#,
    )
    .unwrap();
    let rules = &file.policy.provider_endpoints;
    assert_eq!(rules.hosts, ["provider.example", "*.example.net"]);
    assert_eq!(rules.networks.len(), 2);
    assert_eq!(rules.ports, [4433]);
    assert!(rules.local_from_remote);
    // Without the table: any endpoint, but not this machine's for a remote registry.
    assert_eq!(
        parse("").unwrap().policy.provider_endpoints,
        EndpointRules::default()
    );
    let (line, message) = syntax_line("[provider-endpoints]\n\nnetworks = [\"10.0.0.0/33\"]\n");
    assert_eq!(line, 3);
    assert!(message.contains("not an address range"), "{message}");
}
