//! A progress bar on stderr, shown only when stderr is a terminal and `--quiet` is off, and
//! never while the data itself comes from or goes to the terminal.

use std::io::IsTerminal;

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, WeakProgressBar};

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
    let phase_label = label.to_string();
    let phase = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(phase_text(&phase_label, state.pos(), state.len()));
    };
    let pb = match total {
        Some(t) => {
            let pb = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{phase} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ) {
                pb.set_style(style.with_key("phase", phase));
            }
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{phase} {spinner} [{elapsed_precise}] {bytes} {binary_bytes_per_sec}",
            ) {
                pb.set_style(style.with_key("phase", phase));
            }
            pb
        }
    };
    if let Ok(mut bars) = LIVE_BARS.lock() {
        bars.retain(|b| b.upgrade().is_some());
        bars.push(pb.downgrade());
    }
    pb
}

/// The words before the bar: the label while bytes flow; once every byte is through, what
/// the command is still doing, instead of a bar sitting silently at 100 % (an upload's last
/// parts and CompleteMultipartUpload can take seconds).
pub fn phase_text(label: &str, pos: u64, len: Option<u64>) -> &str {
    match len {
        Some(len) if pos >= len && len > 0 => match label {
            "uploading" => "finishing the upload (last parts, CompleteMultipartUpload)",
            "encrypting" | "decrypting" => "finishing (flushing the output)",
            _ => label,
        },
        _ => label,
    }
}

/// The bars on screen, for [`stop_for_interrupt`]: weak, so a finished command's bar goes.
static LIVE_BARS: Mutex<Vec<WeakProgressBar>> = Mutex::new(Vec::new());

/// Called first by the Ctrl-C/SIGTERM handler: every bar still running stops redrawing at
/// once and says that the command is aborting, before the cleanup (removing temporaries,
/// aborting multipart uploads) that may take a moment.
pub fn stop_for_interrupt() {
    if let Ok(bars) = LIVE_BARS.lock() {
        for pb in bars.iter().filter_map(WeakProgressBar::upgrade) {
            if !pb.is_finished() {
                pb.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                pb.abandon_with_message(
                    "interrupted: aborting (removing partial output, aborting uploads)",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bar says what is still going on at 100 %, and only then.
    #[test]
    fn phase_after_the_last_byte() {
        assert_eq!(phase_text("uploading", 5, Some(10)), "uploading");
        assert!(phase_text("uploading", 10, Some(10)).contains("CompleteMultipartUpload"));
        assert!(phase_text("encrypting", 10, Some(10)).starts_with("finishing"));
        assert_eq!(phase_text("encrypting", 0, Some(0)), "encrypting");
        assert_eq!(phase_text("downloading", 10, None), "downloading");
    }

    /// Ctrl-C stops a live bar with the aborting message and leaves a finished one alone.
    #[test]
    fn interrupt_stops_live_bars() {
        let pb = ProgressBar::with_draw_target(Some(10), ProgressDrawTarget::hidden());
        let done = ProgressBar::with_draw_target(Some(10), ProgressDrawTarget::hidden());
        done.finish_with_message("done");
        if let Ok(mut bars) = LIVE_BARS.lock() {
            bars.push(pb.downgrade());
            bars.push(done.downgrade());
        }
        stop_for_interrupt();
        assert!(pb.is_finished());
        assert!(pb.message().starts_with("interrupted: aborting"));
        assert_eq!(done.message(), "done");
    }

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
