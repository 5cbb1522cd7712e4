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
//!
//! A plain line whose output goes to a file (`cat a b > out.txt`, the commonest line
//! after a plain one) starts the same way: the file is opened as `sh` opens it
//! (created, truncated, mode 0666 less the umask) and given to the program as stdout.
//! A file that cannot be opened sends the line through `sh`, which says why.

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

/// The words of a plain line whose stdout goes to a file (`words > target`), and the
/// target as written; `None` for any other line (`2>`, `>>`, two redirections, …).
pub fn redirected_words(line: &str) -> Option<(Vec<&str>, &str)> {
    let (command, target) = line.rsplit_once('>')?;
    // `cmd 2> f` redirects stderr and `cmd >> f` appends: only ` > ` is stdout.
    if !command.ends_with(' ') {
        return None;
    }
    let target = target.trim_start_matches(' ').trim_end_matches(' ');
    let words = plain_words(command)?;
    match plain_words(target)?.as_slice() {
        [only] if *only == target && !target.starts_with('-') => Some((words, target)),
        _ => None,
    }
}

/// Whether [`command_for`] may start `line` without `sh` (plain, or plain but for
/// `> file`): a program that then cannot be started is retried through `sh`.
pub fn starts_directly(line: &str) -> bool {
    plain_words(line).is_some() || redirected_words(line).is_some()
}

/// The command that starts `line`: the program itself when the line is plain, or plain
/// but for `> file` (and `direct` allows it), else `sh`. `work` holds the script of a
/// too-long line; `cwd` is where the line runs. The second value is the file a
/// redirected line's stdout goes to.
pub fn command_for(
    line: &str,
    work: &Path,
    cwd: &Path,
    direct: bool,
) -> io::Result<(Command, Option<fs::File>)> {
    if direct {
        if let Some(words) = plain_words(line) {
            let mut program = Command::new(words[0]);
            program.args(&words[1..]);
            return Ok((program, None));
        }
        if let Some((words, target)) = redirected_words(line) {
            if let Ok(file) = fs::File::create(cwd.join(target)) {
                let mut program = Command::new(words[0]);
                program.args(&words[1..]);
                return Ok((program, Some(file)));
            }
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
    Ok((shell, None))
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
        let start = |line: &str, direct| command_for(line, dir.path(), dir.path(), direct);
        let (direct, _) = start("cp a b", true).unwrap();
        assert_eq!(direct.get_program(), "cp");
        let (shell, _) = start("cp a b", false).unwrap();
        assert_eq!(shell.get_program(), "sh");
        let long = format!("true {}", "x".repeat(LONGEST_ARGUMENT));
        let (script, _) = start(&long, true).unwrap();
        assert_eq!(script.get_program(), "sh");
        assert!(dir.path().join("command.sh").exists());
    }

    #[test]
    fn only_a_single_stdout_redirection_to_a_plain_file_skips_the_shell() {
        assert_eq!(
            redirected_words("cat /w/in/model /seeds/s_1.txt >  /w/run/images.txt "),
            Some((
                vec!["cat", "/w/in/model", "/seeds/s_1.txt"],
                "/w/run/images.txt"
            ))
        );
        for line in [
            "cat a 2> c",
            "cat a >> c",
            "cat a > b > c",
            "cat a >c d",
            "cat a > 'c d'",
            "cat a > $OUT",
            "cat a > -c",
            "echo a > c",
            "> c",
            "cat a > ",
            "cat a | b > c",
        ] {
            assert_eq!(redirected_words(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_redirected_line_writes_its_file_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "data\n").unwrap();
        fs::write(dir.path().join("out.txt"), "old and longer\n").unwrap();
        let (mut cat, file) = command_for("cat a > out.txt", dir.path(), dir.path(), true).unwrap();
        assert_eq!(cat.get_program(), "cat");
        let status = cat
            .current_dir(dir.path())
            .stdout(file.expect("stdout goes to the file"))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            fs::read_to_string(dir.path().join("out.txt")).unwrap(),
            "data\n"
        );
        // A file that cannot be opened goes through `sh`, which says why.
        let (shell, file) =
            command_for("cat a > no/such/dir/out", dir.path(), dir.path(), true).unwrap();
        assert_eq!(shell.get_program(), "sh");
        assert!(file.is_none());
    }
}
