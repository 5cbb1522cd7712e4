//! How a `command` stage's line is started: `sh -c LINE`, `sh command.sh` for a line too
//! long for one argument, or — for a plain line such as `cp in/pool out.txt` — the
//! program itself, without a shell in between.
//!
//! The direct start is GNU make's fast path: a line made only of characters the shell
//! gives no meaning to, whose first word is neither an assignment nor a shell builtin or
//! keyword, means to `sh` exactly "run this program with these words". Skipping `sh`
//! spares one process start per job, a third of the process starts of a sweep of `cp`s.
//! A program that cannot be started is retried through `sh`, so "not found" and
//! "permission denied" read, and exit with 127 and 126, as they do in a shell.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

/// Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN); a gather over a
/// 10,000-member sweep easily makes a longer line. Longer lines go through a script file.
const LONGEST_ARGUMENT: usize = 64 * 1024;

/// Words `sh` treats specially at the start of a line: these lines always go through
/// it. From make's list, plus the builtins whose behaviour differs from a program of the
/// same name.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done", "echo",
    "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi", "for",
    "getopts", "hash", "if", "jobs", "kill", "local", "login", "logout", "printf", "pwd", "read",
    "readonly", "return", "set", "shift", "source", "test", "then", "times", "trap", "true",
    "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while", "[",
];

/// The words of `line` if `sh -c line` would run them as one program with no expansion,
/// redirection, quoting or builtin; `None` when the line needs the shell.
pub fn plain_words(line: &str) -> Option<Vec<&str>> {
    let plain = |c: char| c == ' ' || c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if line.len() > LONGEST_ARGUMENT || !line.chars().all(plain) {
        return None;
    }
    let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
    let first = *words.first()?;
    if first.contains('=') || SHELL_WORDS.contains(&first) {
        return None;
    }
    Some(words)
}

/// The command that starts `line`: the program itself when the line is plain (and
/// `direct` allows it), else `sh`. `work` holds the script of a too-long line.
pub fn command_for(line: &str, work: &Path, direct: bool) -> io::Result<Command> {
    if direct {
        if let Some(words) = plain_words(line) {
            let mut program = Command::new(words[0]);
            program.args(&words[1..]);
            return Ok(program);
        }
    }
    let mut shell = Command::new("sh");
    if line.len() <= LONGEST_ARGUMENT {
        shell.arg("-c").arg(line);
    } else {
        let script = work.join("command.sh");
        fs::write(&script, format!("{line}\n"))?;
        shell.arg(script);
    }
    Ok(shell)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_split_into_words() {
        assert_eq!(
            plain_words("cp  /w/in/pool /w/run/images.txt"),
            Some(vec!["cp", "/w/in/pool", "/w/run/images.txt"])
        );
        assert_eq!(
            plain_words("python3 train.py --lr=0.5 --tag a,b@c:d%e+f"),
            Some(vec![
                "python3",
                "train.py",
                "--lr=0.5",
                "--tag",
                "a,b@c:d%e+f"
            ])
        );
    }

    #[test]
    fn lines_the_shell_interprets_keep_the_shell() {
        for line in [
            "cat a b > c",
            "echo data",
            "cd sub && make",
            "cp 'a b' c",
            "cp $HOME/x y",
            "cp ~/x y",
            "ls *.txt",
            "A=1 run",
            "run # comment",
            "a | b",
            "cp a\tb",
            "true",
            "",
            "   ",
        ] {
            assert_eq!(plain_words(line), None, "{line:?}");
        }
        assert_eq!(
            plain_words(&format!("cp {}", "a".repeat(LONGEST_ARGUMENT))),
            None
        );
    }

    #[test]
    fn a_plain_line_runs_without_a_shell_and_a_missing_program_reads_as_in_sh() {
        let dir = tempfile::tempdir().unwrap();
        let direct = command_for("cp a b", dir.path(), true).unwrap();
        assert_eq!(direct.get_program(), "cp");
        let shell = command_for("cp a b", dir.path(), false).unwrap();
        assert_eq!(shell.get_program(), "sh");
        let long = format!("true {}", "x".repeat(LONGEST_ARGUMENT));
        let script = command_for(&long, dir.path(), true).unwrap();
        assert_eq!(script.get_program(), "sh");
        assert!(dir.path().join("command.sh").exists());
    }
}
