//! Shell completions come from the command line definition (`mcrelay completions SHELL`): bash,
//! running the generated script as bash-completion would, and fish, through its own `complete -C`,
//! offer every subcommand that `mcrelay --help` lists and the options of a subcommand; zsh parses
//! its script, which names them too. Needs bash, fish and zsh (scripts/install-deps).

use std::process::Command;

fn mcrelay(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mcrelay"))
        .args(args)
        .output()
        .expect("run the mcrelay binary");
    assert!(out.status.success(), "mcrelay {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `mcrelay --help` lists (the lines under "Commands:", without `help`).
fn subcommands() -> Vec<String> {
    mcrelay(&["--help"])
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_string)
        .collect()
}

/// What bash offers after `words`, the last being the word being completed: the generated
/// script is sourced and its function called as bash's `complete -F` would.
fn bash_offers(script: &str, words: &[&str]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("mcrelay-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mcrelay.bash");
    std::fs::write(&path, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}' || exit 2
complete -p mcrelay >/dev/null || exit 3
COMP_WORDS=({})
COMP_CWORD={cword}
COMP_LINE='{}'
COMP_POINT=${{#COMP_LINE}}
_mcrelay mcrelay '{}' '{prev}'
printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "bash: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_offers_every_subcommand() {
    let subs = subcommands();
    assert!(
        ["run", "check", "reload", "status", "stats", "completions"]
            .iter()
            .all(|s| subs.iter().any(|x| x == s)),
        "unexpected `mcrelay --help`: {subs:?}"
    );
    let script = mcrelay(&["completions", "bash"]);
    let offered = bash_offers(&script, &["mcrelay", ""]);
    for sub in &subs {
        assert!(
            offered.contains(sub),
            "bash completion of `mcrelay ` does not offer {sub}: {offered:?}"
        );
    }
    let st = bash_offers(&script, &["mcrelay", "st"]);
    assert_eq!(st, ["status", "stats"], "completion of `mcrelay st`");
    let options = bash_offers(&script, &["mcrelay", "stats", "--"]);
    for opt in ["--json", "--watch", "--config", "--socket"] {
        assert!(
            options.iter().any(|o| o == opt),
            "`mcrelay stats --` does not offer {opt}: {options:?}"
        );
    }
}

/// fish, given the generated script, completes `mcrelay ` with every subcommand and
/// `mcrelay stats --` with its options (fish's own `complete -C`).
#[test]
fn fish_completion_offers_every_subcommand() {
    let dir = std::env::temp_dir().join(format!("mcrelay-fish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mcrelay.fish");
    std::fs::write(&path, mcrelay(&["completions", "fish"])).unwrap();
    let complete = |line: &str| -> Vec<String> {
        let out = Command::new("fish")
            .args([
                "--no-config",
                "-c",
                &format!("source '{}'; and complete -C '{line}'", path.display()),
            ])
            .output()
            .expect("run fish (scripts/install-deps installs it)");
        assert!(out.status.success(), "fish: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect()
    };
    let subs = complete("mcrelay ");
    let options = complete("mcrelay stats --");
    let _ = std::fs::remove_dir_all(&dir);
    for sub in subcommands() {
        assert!(subs.contains(&sub), "fish does not offer {sub}: {subs:?}");
    }
    for opt in ["--json", "--watch", "--config", "--socket"] {
        assert!(
            options.iter().any(|o| o == opt),
            "fish: `mcrelay stats --` does not offer {opt}: {options:?}"
        );
    }
}

/// zsh parses the generated script (`zsh -n`), and it names every subcommand.
#[test]
fn the_zsh_script_parses_and_names_every_subcommand() {
    let script = mcrelay(&["completions", "zsh"]);
    let dir = std::env::temp_dir().join(format!("mcrelay-zsh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("_mcrelay");
    std::fs::write(&path, &script).unwrap();
    let out = Command::new("zsh")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("run zsh (scripts/install-deps installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "zsh -n: {out:?}");
    for sub in subcommands() {
        assert!(
            script.contains(&format!("'{sub}:")),
            "the zsh script does not complete {sub}"
        );
    }
}
