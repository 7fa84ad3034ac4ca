//! A progress bar on stderr, shown only when stderr is a terminal and `--quiet` is off, and
//! never while the data itself comes from or goes to the terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether the data of a command comes from or goes to a terminal: then no bar is drawn.
/// Plaintext decrypted to the terminal would otherwise have the bar's redraws mixed into
/// it, and a spinner would draw over what the user is typing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ends {
    /// The input is the terminal (stdin, nothing piped in).
    pub input_is_terminal: bool,
    /// The output is the terminal (stdout, or a device such as `/dev/tty`).
    pub output_is_terminal: bool,
}

/// Whether to draw a bar: not with `--quiet`, only on a terminal stderr, and not when the
/// input or the output is a terminal (see [`Ends`]).
pub fn wanted(quiet: bool, stderr_is_terminal: bool, ends: Ends) -> bool {
    !quiet
        && stderr_is_terminal
        && !ends.input_is_terminal
        && !ends.output_is_terminal
        && !LOGGING.load(std::sync::atomic::Ordering::Relaxed)
}

/// What is printed, instead of a spinner that would wait for ever, when the input is a
/// terminal: the user may have forgotten INPUT or the pipe.
pub const TERMINAL_INPUT_HINT: &str = "reading the input from the terminal: type it and end \
     with Ctrl-D (Ctrl-C cancels), or give an INPUT file or pipe the data in";

/// The note for an input read from stdin (`None`: nothing to say): the hint when stdin is a
/// terminal, unless `--quiet`.
pub fn terminal_input_note(stdin_is_terminal: bool, quiet: bool) -> Option<&'static str> {
    (stdin_is_terminal && !quiet).then_some(TERMINAL_INPUT_HINT)
}

/// Called when the input is stdin: prints [`TERMINAL_INPUT_HINT`] if stdin is a terminal
/// (unless `quiet`) and returns whether it is one, for [`Ends::input_is_terminal`].
pub fn stdin_input(quiet: bool) -> bool {
    let tty = std::io::stdin().is_terminal();
    if let Some(note) = terminal_input_note(tty, quiet) {
        eprintln!("sealstream: {note}");
    }
    tty
}

/// Set when `-v`/`RUST_LOG` log to stderr: no bar then (log lines would tear it).
static LOGGING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the bar off for the rest of the process when logs go to stderr.
pub fn set_logging(on: bool) {
    LOGGING.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Creates a bar for `total` bytes (or a spinner when unknown); hidden when not wanted.
pub fn bar(total: Option<u64>, quiet: bool, label: &str) -> ProgressBar {
    bar_between(total, quiet, label, Ends::default())
}

/// [`bar`] for a transfer whose input or output may be the terminal.
pub fn bar_between(total: Option<u64>, quiet: bool, label: &str, ends: Ends) -> ProgressBar {
    if !wanted(quiet, std::io::stderr().is_terminal(), ends) {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => {
            let pb = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ) {
                pb.set_style(style);
            }
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {spinner} [{elapsed_precise}] {bytes} {binary_bytes_per_sec}",
            ) {
                pb.set_style(style);
            }
            pb
        }
    };
    pb.set_message(label.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decisions, exhaustively: a bar only for a quiet-less run on a terminal stderr
    /// whose data touches no terminal; the hint only for a terminal stdin without --quiet.
    #[test]
    fn bar_and_hint_decisions() {
        for quiet in [false, true] {
            for stderr in [false, true] {
                for input in [false, true] {
                    for output in [false, true] {
                        let ends = Ends {
                            input_is_terminal: input,
                            output_is_terminal: output,
                        };
                        let want = !quiet && stderr && !input && !output;
                        assert_eq!(
                            wanted(quiet, stderr, ends),
                            want,
                            "{quiet} {stderr} {ends:?}"
                        );
                    }
                }
            }
            assert_eq!(terminal_input_note(false, quiet), None);
            assert_eq!(
                terminal_input_note(true, quiet),
                (!quiet).then_some(TERMINAL_INPUT_HINT)
            );
        }
    }
}
