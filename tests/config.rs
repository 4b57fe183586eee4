//! `mcrelay check` as a user runs it: every shipped file passes, and the exit statuses are the
//! documented ones (0 valid, 78 invalid, 66 unreadable, 64 bad usage).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mcrelay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcrelay"))
        .args(args)
        .output()
        .expect("run the mcrelay binary")
}

fn check(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["check", "-c", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    mcrelay(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mcrelay-check-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_example_and_the_shipped_config_pass_check() {
    let mut files = Vec::new();
    toml_files(&repo().join("examples"), &mut files);
    toml_files(&repo().join("etc"), &mut files);
    files.sort();
    for required in [
        "one-to-one.toml",
        "fan-out.toml",
        "multicast-to-unicast.toml",
        "source-specific.toml",
        "ipv6.toml",
        "many-groups.toml",
        "tunnel-site.toml",
        "tunnel-cloud.toml",
        "unicast-in.toml",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(Path::new("examples").join(required))),
            "examples/{required} is missing"
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("etc/mcrelay/mcrelay.toml"))
    );
    for f in &files {
        for extra in [&[][..], &["-v"][..]] {
            let out = check(f, extra);
            assert_eq!(
                out.status.code(),
                Some(0),
                "mcrelay check {extra:?} {} failed:\n{}{}",
                f.display(),
                text(&out.stdout),
                text(&out.stderr)
            );
            let stdout = text(&out.stdout);
            assert!(
                stdout
                    .lines()
                    .last()
                    .unwrap()
                    .starts_with("configuration OK: "),
                "{stdout}"
            );
            // Warnings are allowed (interfaces absent from this machine); errors are not.
            for line in text(&out.stderr).lines().filter(|l| l.contains(".toml:")) {
                assert!(line.contains(": warning: "), "{}: {line}", f.display());
            }
        }
    }
}

#[test]
fn the_shipped_config_relays_nothing_until_edited() {
    let out = check(&repo().join("etc/mcrelay/mcrelay.toml"), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "configuration OK: 0 groups, 0 destinations, 0 interfaces\n"
    );
    assert_eq!(text(&out.stderr), "");
}

/// The commented-out keys of the shipped file are themselves a valid configuration, so that
/// uncommenting them is a safe way to start.
#[test]
fn the_shipped_config_commented_keys_are_valid_when_uncommented() {
    let shipped = std::fs::read_to_string(repo().join("etc/mcrelay/mcrelay.toml")).unwrap();
    let uncommented: String = shipped
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let scratch = Scratch::new("uncommented");
    let path = scratch.file("full.toml", &uncommented);
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "configuration OK: 2 groups, 2 destinations, 2 interfaces\n"
    );
}

#[test]
fn verbose_prints_the_table_canonically() {
    let scratch = Scratch::new("verbose");
    let path = scratch.file(
        "v.toml",
        r#"
[interfaces.mcr-nx-b]
ttl = 16
[interfaces.mcr-nx-a]

[destinations.studio-b]
interface = "mcr-nx-b"
group = "239.2.2.2"
port = 6000
ttl = 8
dscp = 34

[destinations.archive]
address = "10.20.0.9:7000"

[destinations.v6]
interface = "mcr-nx-b"

[[groups]]
interface = "mcr-nx-a"
group = "ff3e::1:5"
to = ["v6"]

[[groups]]
name = "camera-1"
interface = "mcr-nx-a"
group = "239.1.1.1"
port = 5000
source = "10.10.1.100"
to = ["studio-b", "archive"]
rtp = true
"#,
    );
    let out = check(&path, &["-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "daemon control_socket /run/mcrelay/control.sock control_group - user - stats_interval 1s silence_timeout 2s reload_debounce 200ms metrics_listen off
interface mcr-nx-a ttl 1 ingress frames workers 1 cpus any rcvbuf 33554432
interface mcr-nx-b ttl 16 ingress frames workers 1 cpus any rcvbuf 33554432
destination archive unicast 10.20.0.9:7000 ttl 64 dscp 0
destination studio-b multicast mcr-nx-b group 239.2.2.2 port 6000 ttl 8 dscp 34
destination v6 multicast mcr-nx-b group same port same ttl 16 dscp 0
mcr-nx-a 239.1.1.1:5000 from 10.10.1.100 -> studio-b (mcr-nx-b 239.2.2.2:6000 ttl 8 dscp 34), archive (10.20.0.9:7000 ttl 64)  # camera-1, rtp
mcr-nx-a [ff3e::1:5]:* -> v6 (mcr-nx-b [ff3e::1:5]:* ttl 16)  # ff3e::1:5
configuration OK: 2 groups, 3 destinations, 2 interfaces
"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(":2:13: warning: interface `mcr-nx-b` does not exist on this machine now"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_file_exits_78_with_every_error() {
    let scratch = Scratch::new("invalid");
    let path = scratch.file(
        "bad.toml",
        "[interfaces.eth0]\nttl = 0\n[[groups]]\ninterface = \"eth0\"\ngroup = \"10.1.1.1\"\nto = [\"nowhere\"]\n",
    );
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(text(&out.stdout), "");
    let p = path.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "{p}:2:7: ttl must be between 1 and 255, not 0
  ttl = 0
        ^
{p}:5:9: group 10.1.1.1 is not a multicast address (IPv4 multicast is 224.0.0.0/4, IPv6 is ff00::/8)
  group = \"10.1.1.1\"
          ^^^^^^^^^^
{p}:6:7: no destination named `nowhere`; define it in a [destinations.nowhere] table
  to = [\"nowhere\"]
        ^^^^^^^^^
{p}: 3 errors, configuration is invalid
"
        )
    );
}

/// Issue 17: an unknown key, a port out of range and a value of the wrong type are three
/// errors in one run of `mcrelay check`, each at its own line and column (the unknown key used
/// to be the only one reported).
#[test]
fn unknown_key_range_and_type_errors_are_reported_together() {
    let scratch = Scratch::new("together");
    let path = scratch.file(
        "three.toml",
        "[interfaces.eth0]\n[interfaces.eth1]\n\n[destinations.studio]\ninterface = \"eth1\"\ncolour = 3\nport = 99999\n\n[[groups]]\ninterface = \"eth0\"\ngroup = \"239.1.1.1\"\nto = [\"studio\"]\nrtp = \"yes\"\n",
    );
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    let p = path.display();
    let located: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{p}:")))
        .collect();
    assert_eq!(
        located,
        [
            format!("{p}:6:1: unknown key `colour` in [destinations.studio]; the keys here are interface, group, port, address, ttl, dscp, source_port").as_str(),
            format!("{p}:7:8: port must be between 1 and 65535, not 99999").as_str(),
            format!("{p}:13:7: `rtp` in [[groups]] must be true or false, not a string (\"yes\")").as_str(),
            format!("{p}: 3 errors, configuration is invalid").as_str(),
        ],
        "{stderr}"
    );
}

#[test]
fn a_syntax_error_exits_78() {
    let scratch = Scratch::new("syntax");
    let path = scratch.file("s.toml", "[daemon]\nstats_interval = 1s\n");
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}:2:18: ", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(": 1 error, configuration is invalid\n"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_file_exits_66() {
    let scratch = Scratch::new("missing");
    let path = scratch.0.join("absent.toml");
    let out = check(&path, &[]);
    assert_eq!(out.status.code(), Some(66));
    assert_eq!(
        text(&out.stderr),
        format!(
            "mcrelay: cannot read {}: No such file or directory (os error 2)\n",
            path.display()
        )
    );
    // A directory cannot be read as a file either.
    assert_eq!(check(&scratch.0, &[]).status.code(), Some(66));
}

#[test]
fn bad_usage_exits_64() {
    assert_eq!(
        mcrelay(&["check", "--no-such-option"]).status.code(),
        Some(64)
    );
    assert_eq!(mcrelay(&["check", "-c"]).status.code(), Some(64));
}

/// `mandoc -T lint` (every level) has nothing to say about mcrelay.toml(5), except that the
/// mcrelay(8) it refers to is not installed on the build machine (the package installs both).
#[test]
fn mandoc_lint_is_clean_on_mcrelay_toml_5() {
    let page = repo().join("man/mcrelay.toml.5");
    let out = Command::new("mandoc")
        .args(["-T", "lint"])
        .arg(&page)
        .output()
        .unwrap_or_else(|e| {
            panic!("MANDOC IS MISSING ({e}): install it with scripts/install-deps; this test fails rather than skip")
        });
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let complaints: Vec<&str> = report
        .lines()
        .filter(|l| !l.contains("outdated mandoc.db lacks"))
        .filter(|l| {
            !(l.contains("referenced manual not found: Xr mcrelay 8")
                && repo().join("man/mcrelay.8").is_file())
        })
        .collect();
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}

/// The configurations shown to readers (mcrelay.toml(5) EXAMPLES, README.md) are valid.
#[test]
fn the_documented_examples_compile() {
    use mcrelay::config::{FakeResolver, compile, render_errors};

    let page = std::fs::read_to_string(repo().join("man/mcrelay.toml.5")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match (&mut current, line) {
            (None, l) if l.starts_with(".Bd -literal") => current = Some(String::new()),
            (Some(_), ".Ed") => blocks.push(current.take().unwrap()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for block in readme.split("```toml\n").skip(1) {
        blocks.push(block.split("```").next().unwrap().to_string());
    }
    assert!(blocks.len() >= 3, "found only {} examples", blocks.len());
    for b in &blocks {
        if let Err(e) = compile(b, Path::new("example.toml"), &FakeResolver::everything()) {
            panic!(
                "a documented example is invalid:\n{b}\n{}",
                render_errors(&e)
            );
        }
    }
}
