//! Command-line parse errors as tern reports every error: one line starting with `tern:`, naming
//! the flag (and the value and what is accepted), and where to read more.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Let every argument that takes a value take a negative number (`--speed -1`, `describe -1`):
/// clap would read it as an unknown short flag otherwise. No tern flag is a digit, so a value
/// that looks like a negative number is always a value.
pub fn allow_negative_numbers(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            if arg.get_action().takes_values() {
                arg.allow_negative_numbers(true)
            } else {
                arg
            }
        })
        .mut_subcommands(allow_negative_numbers)
}

/// Whether `error` is not an error but help or a version to print (exit 0).
pub fn is_display(error: &clap::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// `error` in one line, without the `tern: ` prefix; `command` is the command the arguments name
/// (`tern replay`), for the errors that do not say it themselves.
pub fn one_line(error: &clap::Error, command: &str) -> String {
    let text = |kind: ContextKind| -> Option<String> {
        match error.get(kind)? {
            ContextValue::String(text) => Some(text.clone()),
            ContextValue::Strings(texts) => Some(texts.join(", ")),
            ContextValue::StyledStr(text) => Some(text.to_string()),
            ContextValue::StyledStrs(texts) => Some(
                texts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ContextValue::Number(number) => Some(number.to_string()),
            _ => None,
        }
    };
    let arg = text(ContextKind::InvalidArg).unwrap_or_default();
    let flag = flag_name(&arg);
    let value = text(ContextKind::InvalidValue).unwrap_or_default();
    let help = format!(
        "see `{} --help`",
        command_path(error).unwrap_or_else(|| command.to_string())
    );
    let suggestion = |kind: ContextKind| {
        text(kind)
            .filter(|suggested| !suggested.is_empty())
            .map(|suggested| format!(" (did you mean {suggested}?)"))
            .unwrap_or_default()
    };
    match error.kind() {
        ErrorKind::UnknownArgument if arg.starts_with('-') => format!(
            "unknown flag {arg}{}; {help}",
            suggestion(ContextKind::SuggestedArg)
        ),
        ErrorKind::UnknownArgument => format!("unexpected argument {arg:?}; {help}"),
        ErrorKind::InvalidValue if value.is_empty() => {
            match text(ContextKind::ValidValue).filter(|valid| !valid.is_empty()) {
                Some(valid) => format!("{flag} needs a value: one of {valid}"),
                None => format!("{flag} needs a value; {help}"),
            }
        }
        ErrorKind::InvalidValue => {
            let valid = text(ContextKind::ValidValue).unwrap_or_default();
            format!(
                "{flag} {value}: expected one of {valid}{}",
                suggestion(ContextKind::SuggestedValue)
            )
        }
        ErrorKind::ValueValidation => {
            let reason = std::error::Error::source(error)
                .map(|source| reason(&value, source))
                .unwrap_or_else(|| "not accepted".into());
            format!("{flag} {value}: {reason}")
        }
        ErrorKind::MissingRequiredArgument => format!("missing {arg}; {help}"),
        ErrorKind::ArgumentConflict => {
            let prior = text(ContextKind::PriorArg).unwrap_or_default();
            format!(
                "{flag} cannot be used with {}; {help}",
                prior
                    .split(", ")
                    .map(flag_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        ErrorKind::InvalidSubcommand => format!(
            "unknown command {:?}{}; {help}",
            text(ContextKind::InvalidSubcommand).unwrap_or_default(),
            suggestion(ContextKind::SuggestedSubcommand)
        ),
        ErrorKind::MissingSubcommand => format!(
            "a command is needed: {}; {help}",
            text(ContextKind::ValidSubcommand).unwrap_or_default()
        ),
        _ => {
            let rendered = error.render().to_string();
            let first = rendered
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("bad command line");
            format!("{}; {help}", first.strip_prefix("error: ").unwrap_or(first))
        }
    }
}

/// `--speed <SPEED>` as `--speed`; a positional `<ID>` stays `<ID>`.
fn flag_name(arg: &str) -> String {
    arg.split_whitespace().next().unwrap_or(arg).to_string()
}

/// The subcommand path from the error's usage (`Usage: tern replay [OPTIONS] <ID>`).
fn command_path(error: &clap::Error) -> Option<String> {
    let usage = match error.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(usage)) => usage.to_string(),
        _ => return None,
    };
    let words: Vec<&str> = usage
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .trim_start_matches("Usage:")
        .split_whitespace()
        .take_while(|word| !word.starts_with(['[', '<', '-']))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Why a value parser refused `value`: tern's parsers say it in words; clap's number parsers give
/// Rust's parse errors or `V is not in A..=B`, said here in words too.
fn reason(value: &str, source: &(dyn std::error::Error + 'static)) -> String {
    if let Some(error) = source.downcast_ref::<std::num::ParseIntError>() {
        return match error.kind() {
            std::num::IntErrorKind::Empty => "empty: expected an integer".into(),
            std::num::IntErrorKind::PosOverflow => "too large".into(),
            std::num::IntErrorKind::NegOverflow => "too small".into(),
            // An unsigned parse of a negative integer.
            _ if value.parse::<i128>().is_ok() => "must not be negative".into(),
            _ => "not an integer".into(),
        };
    }
    if source.is::<std::num::ParseFloatError>() {
        return "not a number".into();
    }
    let text = source.to_string();
    // clap's ranged integer parsers: "5000000000 is not in -2147483648..=2147483647".
    if let Some((low, high)) = text
        .strip_prefix(&format!("{value} is not in "))
        .and_then(|range| range.split_once("..="))
    {
        return format!("must be between {low} and {high}");
    }
    text
}
