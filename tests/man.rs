//! The manual pages match the program: every subcommand and option that `mcrelay --help` and
//! `mcrelay SUB --help` print is documented in `man/mcrelay.8`, every exit code in
//! `mcrelay::exit` is under EXIT STATUS, and `mandoc -T lint` has nothing to say about either page.
//!
//! Needs `mandoc` (scripts/install-deps installs it); without it the lint tests fail, never skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn every_subcommand_is_documented_in_synopsis_and_commands() {
    let page = mdoc_source("mcrelay.8");
    let synopsis = section(&page, "SYNOPSIS");
    let commands = section(&page, "COMMANDS");
    let subcommands = subcommands();
    assert!(
        subcommands.len() >= 5,
        "expected run, check, reload, status and stats in `mcrelay --help`, got {subcommands:?}"
    );
    for sub in &subcommands {
        assert!(
            synopsis.lines().any(|l| l == format!(".Cm {sub}")),
            "man/mcrelay.8: subcommand `{sub}` is missing from SYNOPSIS (expected a `.Cm {sub}` line)"
        );
        assert!(
            !command_block(&commands, sub).is_empty(),
            "man/mcrelay.8: subcommand `{sub}` has no `.It Cm {sub}` entry under COMMANDS"
        );
    }
}

#[test]
fn every_option_of_every_subcommand_is_documented_under_it() {
    let page = mdoc_source("mcrelay.8");
    let synopsis = section(&page, "SYNOPSIS");
    let commands = section(&page, "COMMANDS");
    // --help and --version belong to every command; the page documents them once for all.
    let global: BTreeSet<String> = options_in(&help(&[])).into_iter().collect();
    let everywhere = flags_in(&page);
    for opt in &global {
        assert!(
            everywhere.contains(opt),
            "man/mcrelay.8: option `{opt}` of `mcrelay --help` is not documented anywhere"
        );
    }
    for sub in subcommands() {
        let block = command_block(&commands, &sub);
        let documented = flags_in(&block);
        let in_synopsis = flags_in(&synopsis_of(&synopsis, &sub));
        for opt in options_in(&help(&[&sub])) {
            if global.contains(&opt) {
                continue;
            }
            assert!(
                documented.contains(&opt),
                "man/mcrelay.8: option `{opt}` of `mcrelay {sub}` is missing from its entry under \
                 COMMANDS (documented there: {documented:?})"
            );
            // The synopsis shows the short form when there is one.
            let short_or_long = short_alias(&help(&[&sub]), &opt).unwrap_or(opt.clone());
            assert!(
                in_synopsis.contains(&short_or_long),
                "man/mcrelay.8: option `{short_or_long}` of `mcrelay {sub}` is missing from its \
                 SYNOPSIS line (found {in_synopsis:?})"
            );
        }
    }
}

#[test]
fn every_exit_code_is_documented_under_exit_status() {
    let page = mdoc_source("mcrelay.8");
    let exit_status = section(&page, "EXIT STATUS");
    use mcrelay::exit::*;
    for code in [
        OK,
        FAILURE,
        USAGE,
        NOINPUT,
        UNAVAILABLE,
        SOFTWARE,
        OSERR,
        NOPERM,
        CONFIG,
    ] {
        assert!(
            exit_status.lines().any(|l| l == format!(".It {code}")),
            "man/mcrelay.8: exit code {code} from mcrelay::exit is not under EXIT STATUS"
        );
    }
}

#[test]
fn the_sections_a_reader_expects_are_there() {
    let page = mdoc_source("mcrelay.8");
    for name in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "OPERATION",
        "SIGNALS",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            !section(&page, name).is_empty(),
            "man/mcrelay.8: section {name} is missing"
        );
    }
    let operation = section(&page, "OPERATION");
    for needed in [
        "Ss Reload",
        "What needs a restart",
        "CAP_NET_RAW",
        "CAP_NET_ADMIN",
    ] {
        assert!(
            operation.contains(needed),
            "man/mcrelay.8: OPERATION does not cover `{needed}`"
        );
    }
}

#[test]
fn mandoc_lint_is_clean_on_mcrelay_8() {
    assert_lint_clean("mcrelay.8");
}

#[test]
fn mandoc_lint_is_clean_on_mcrelay_toml_5() {
    assert_lint_clean("mcrelay.toml.5");
}

// ---------------------------------------------------------------------------------------------

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

fn mdoc_source(name: &str) -> String {
    let path = man_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (the page must exist)", path.display()))
}

/// Runs `mandoc -T lint` (all levels, style included) and fails on any message, with two
/// exceptions that say nothing about the page itself:
/// - "outdated mandoc.db lacks NAME(S) entry": the page referenced was found on disk, only the
///   system's search index is stale;
/// - "referenced manual not found: Xr mcrelay... N" for a page this repository ships in `man/`:
///   it is not installed on the build machine, but the package installs it next to this one
///   (scripts/test.d/50-deb checks the installed pages with `man -w`).
fn assert_lint_clean(name: &str) {
    let path = man_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: mcrelay ships it",
        path.display()
    );
    let out = match Command::new("mandoc")
        .args(["-T", "lint"])
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "MANDOC IS MISSING: cannot run `mandoc -T lint` ({e}); install it with scripts/install-deps \
             (apt-get install mandoc). This test fails rather than skip."
        ),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("outdated mandoc.db lacks"))
        .filter(|l| !is_reference_to_our_own_page(l))
        .collect();
    assert!(
        complaints.is_empty(),
        "mandoc -T lint {}:\n{}",
        path.display(),
        complaints.join("\n")
    );
}

fn is_reference_to_our_own_page(line: &str) -> bool {
    let Some(rest) = line.split("referenced manual not found: Xr ").nth(1) else {
        return false;
    };
    let mut words = rest.split_whitespace();
    let (Some(name), Some(sec)) = (words.next(), words.next()) else {
        return false;
    };
    name.starts_with("mcrelay") && man_dir().join(format!("{name}.{sec}")).is_file()
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mcrelay"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run mcrelay --help");
    assert!(
        out.status.success(),
        "mcrelay {args:?} --help failed: {out:?}"
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands `mcrelay --help` lists (clap's own `help` excluded).
fn subcommands() -> Vec<String> {
    let text = help(&[]);
    help_section(&text, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_owned)
        .collect()
}

/// Every option spelling in a help text: `-c, --config <FILE>` gives `-c` and `--config`.
fn options_in(help: &str) -> Vec<String> {
    let mut opts = Vec::new();
    for line in help_section(help, "Options:") {
        let spec = line.trim_start();
        if !spec.starts_with('-') {
            continue; // a continuation of the previous option's description
        }
        let spec = spec.split("  ").next().unwrap_or(spec);
        for part in spec.split(", ") {
            let word = part.split([' ', '[', '<', '=']).next().unwrap_or("");
            if word.starts_with('-') {
                opts.push(word.to_owned());
            }
        }
    }
    assert!(!opts.is_empty(), "no options found in help text:\n{help}");
    opts
}

/// The short spelling of `long` in a help text, if it has one.
fn short_alias(help: &str, long: &str) -> Option<String> {
    help_section(help, "Options:").iter().find_map(|line| {
        let spec = line.trim_start();
        let mut parts = spec.split("  ").next()?.split(", ");
        let first = parts.next()?;
        let second = parts.next()?.split([' ', '[', '<', '=']).next()?;
        (second == long && first.len() == 2).then(|| first.to_owned())
    })
}

/// Lines under a `Heading:` of a clap help text, up to the next blank line.
fn help_section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// The lines of one `.Sh NAME` section of an mdoc page.
fn section(page: &str, name: &str) -> String {
    let head = format!(".Sh {name}");
    page.lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| !l.starts_with(".Sh "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The entry `.It Cm SUB ...` of the COMMANDS list, up to the next subcommand's entry.
fn command_block(commands: &str, sub: &str) -> String {
    let head = format!(".It Cm {sub}");
    commands
        .lines()
        .skip_while(|l| !(*l == head || l.starts_with(&format!("{head} "))))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with(".It Cm "))
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The SYNOPSIS lines of one subcommand: from `.Cm SUB` to the next `.Nm`.
fn synopsis_of(synopsis: &str, sub: &str) -> String {
    let head = format!(".Cm {sub}");
    synopsis
        .lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| *l != ".Nm")
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every flag an mdoc text documents with `Fl`: `Fl c` is `-c`, `Fl \-config` is `--config`.
fn flags_in(mdoc: &str) -> BTreeSet<String> {
    let text = mdoc.replace("\\-", "-");
    let mut flags = BTreeSet::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    for pair in words.windows(2) {
        if pair[0] == "Fl" || pair[0] == ".Fl" {
            let name: String = pair[1]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                flags.insert(format!("-{name}"));
            }
        }
    }
    flags
}
