//! `natter serve --config FILE` and `natter config`: a TOML file whose keys
//! are the `serve` flags without their dashes, with the same values.
//!
//! Nothing here lists the flags: they come from the subcommand's struct
//! itself (`serve::Serve`, passed in as `T`), through argh's [`ArgsInfo`]
//! (names, kinds, descriptions) and serde (the defaults). A file is turned
//! into the arguments it stands for and parsed by the same parser as the
//! command line, so a key means exactly what its flag means, and a flag
//! added to the struct is a key at once. Flags given on the command line
//! win over the file.

use std::collections::BTreeMap;

use argh::{ArgsInfo, FlagInfo, FlagInfoKind, FromArgs, Optionality};
use serde::Serialize;

/// Flags that are not keys: `--help`, and `--config`, since a file does not
/// name another.
const NOT_KEYS: [&str; 2] = ["--help", "--config"];

/// The flags of `T` a file may set, in the order `--help` lists them.
pub fn flags<T: ArgsInfo>() -> Vec<&'static FlagInfo<'static>> {
    T::get_args_info()
        .flags
        .iter()
        .filter(|flag| !NOT_KEYS.contains(&flag.long))
        .collect()
}

/// The arguments of the subcommand `T` (named `command`) for the file
/// `text` (named `file` in errors) followed by `command_line`, leaving out
/// every key whose flag the command line gives. Each key is checked alone
/// by the flags' parser, so an error names the file, the line and the key,
/// and nothing is started.
pub fn arguments<T: FromArgs + ArgsInfo>(
    command: &str,
    text: &str,
    file: &str,
    command_line: &[String],
) -> Result<Vec<String>, String> {
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> =
        toml::from_str(text).map_err(|err| format!("{file}: {err}"))?;
    let mut keys: Vec<_> = table.into_iter().collect();
    keys.sort_by_key(|(key, _)| key.span().start);
    let given: Vec<&str> = command_line
        .iter()
        .filter_map(|arg| arg.strip_prefix("--"))
        .map(|arg| arg.split_once('=').map_or(arg, |(name, _)| name))
        .collect();
    let flags = flags::<T>();
    let mut arguments = Vec::new();
    for (key, value) in keys {
        let line = line_of(text, key.span().start);
        let at = |why: String| format!("{file} line {line}: {}: {why}", key.as_ref());
        let Some(flag) = flags.iter().find(|f| f.long.get(2..) == Some(key.as_ref())) else {
            return Err(at(
                "no such setting (`natter config` lists them all)".to_owned()
            ));
        };
        let these = flag_arguments(flag, value.as_ref()).map_err(at)?;
        // The flags' own parser judges the value, alone, so that its
        // complaint is about this key.
        if let Err(exit) = T::from_args(&[command], &as_strs(&these)) {
            return Err(at(exit.output.trim().to_owned()));
        }
        if !given.contains(&key.as_ref().as_str()) {
            arguments.extend(these);
        }
    }
    arguments.extend(command_line.iter().cloned());
    Ok(arguments)
}

/// The line (from 1) that byte `offset` of `text` is on.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|&b| b == b'\n').count() + 1
}

/// `--flag value` (or `--flag`, or nothing, or the flag once per value) for
/// one key of the file.
fn flag_arguments(flag: &FlagInfo<'_>, value: &toml::Value) -> Result<Vec<String>, String> {
    let long = flag.long.to_owned();
    match (&flag.kind, &flag.optionality, value) {
        (FlagInfoKind::Switch, _, toml::Value::Boolean(on)) => {
            Ok(if *on { vec![long] } else { Vec::new() })
        }
        (FlagInfoKind::Switch, _, _) => Err("is true or false".to_owned()),
        (_, Optionality::Repeating, toml::Value::Array(values)) => {
            let mut arguments = Vec::new();
            for value in values {
                arguments.push(long.clone());
                arguments.push(scalar(value)?);
            }
            Ok(arguments)
        }
        (_, _, value) => Ok(vec![long, scalar(value)?]),
    }
}

/// A single TOML value as the flag's argument.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) => Err("takes one value, not a list".to_owned()),
        toml::Value::Table(_) => Err("takes a value, not a table".to_owned()),
    }
}

fn as_strs(arguments: &[String]) -> Vec<&str> {
    arguments.iter().map(String::as_str).collect()
}

/// Every setting of `value` (a parsed subcommand) with its value, keyed as
/// in the file; those without a value (an option not given) are left out.
pub fn settings<T: Serialize>(value: &T) -> BTreeMap<String, toml::Value> {
    match toml::Value::try_from(value) {
        Ok(toml::Value::Table(table)) => table.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// What `natter config` prints for the subcommand `T` (named `command`):
/// every key with its flag's description as a comment and its default as
/// the value. Keys without a default (a file, an address that is off unless
/// given) are commented out.
pub fn example<T: FromArgs + ArgsInfo + Serialize>(command: &str) -> Result<String, String> {
    let defaults = T::from_args(&[command], &[]).map_err(|exit| exit.output)?;
    let defaults = settings(&defaults);
    let mut out = format!(
        "# natter {command} --config natter.toml: every `natter {command}` flag is\n\
         # a key here, without its dashes; a flag given on the command line wins.\n\
         # SIGHUP (or `natter admin reload`) reads this file again.\n",
    );
    for flag in flags::<T>() {
        let key = flag.long.get(2..).unwrap_or(flag.long);
        out.push('\n');
        for line in wrap(flag.description, 76) {
            out.push_str("# ");
            out.push_str(&line);
            out.push('\n');
        }
        match defaults.get(key) {
            Some(value) => out.push_str(&format!("{key} = {value}\n")),
            None => out.push_str(&format!("# {key} = \"\"\n")),
        }
    }
    Ok(out)
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let Some(line) = lines.last_mut() else {
            break;
        };
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::{arguments, example, flags, settings};
    use argh::{ArgsInfo, FromArgs};
    use serde::Serialize;

    /// A subcommand with one flag of each kind.
    #[derive(FromArgs, ArgsInfo, Serialize, Debug, PartialEq)]
    #[argh(subcommand, name = "demo")]
    #[serde(rename_all = "kebab-case")]
    struct Demo {
        /// how many (default 3)
        #[argh(option, default = "3")]
        max_clients: usize,
        /// a word (default none)
        #[argh(option)]
        name: Option<String>,
        /// an origin (repeatable)
        #[argh(option)]
        web_origin: Vec<String>,
        /// off unless given
        #[argh(switch)]
        no_web: bool,
        /// the file
        #[argh(option)]
        #[serde(skip)]
        config: Option<String>,
    }

    fn parse(file: &str, command_line: &[&str]) -> Result<Demo, String> {
        let command_line: Vec<String> = command_line.iter().map(|s| s.to_string()).collect();
        let args = arguments::<Demo>("demo", file, "natter.toml", &command_line)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Demo::from_args(&["demo"], &args).map_err(|e| e.output)
    }

    // The example is a valid file that changes nothing, and names every
    // flag but --config, set or commented out.
    #[test]
    fn the_example_is_the_defaults_and_names_every_flag() {
        let example = example::<Demo>("demo").expect("an example");
        let defaults = Demo::from_args(&["demo"], &[]).expect("defaults");
        assert_eq!(parse(&example, &[]), Ok(defaults));
        assert!(example.contains("\nmax-clients = 3\n"), "{example}");
        assert!(example.contains("\n# name = \"\"\n"), "{example}");
        assert!(example.contains("\nweb-origin = []\n"), "{example}");
        assert!(example.contains("\nno-web = false\n"), "{example}");
        assert!(!example.contains("config ="), "{example}");
        assert_eq!(flags::<Demo>().len(), 4);
    }

    // A flag on the command line wins over the same key in the file.
    #[test]
    fn the_command_line_wins() {
        let demo =
            parse("max-clients = 7\nname = \"file\"\n", &["--name", "flag"]).expect("parses");
        assert_eq!(demo.max_clients, 7);
        assert_eq!(demo.name.as_deref(), Some("flag"));
        assert_eq!(
            settings(&demo).get("name"),
            Some(&toml::Value::from("flag"))
        );
    }

    // Mistakes name the line and the key.
    #[test]
    fn errors_name_the_line_and_the_key() {
        let err = parse("name = \"a\"\n\nmax-clientz = 7\n", &[]).expect_err("refused");
        assert!(
            err.contains("natter.toml line 3: max-clientz: no such setting"),
            "{err}"
        );
        let err = parse("name = \"a\"\nmax-clients = \"many\"\n", &[]).expect_err("refused");
        assert!(
            err.contains("natter.toml line 2: max-clients: Error parsing"),
            "{err}"
        );
        let err = parse("no-web = 1\n", &[]).expect_err("refused");
        assert!(err.contains("line 1: no-web: is true or false"), "{err}");
        let err = parse("name = [\"a\"]\n", &[]).expect_err("refused");
        assert!(err.contains("line 1: name: takes one value"), "{err}");
        let err = parse("config = \"other.toml\"\n", &[]).expect_err("refused");
        assert!(err.contains("line 1: config: no such setting"), "{err}");
        let err = parse("name = \n", &[]).expect_err("refused");
        assert!(err.starts_with("natter.toml: "), "{err}");
    }

    // Lists are repeated flags, switches are booleans.
    #[test]
    fn lists_and_switches() {
        let demo = parse(
            "web-origin = [\"https://a.example\", \"https://b.example\"]\nno-web = true\n",
            &[],
        )
        .expect("parses");
        assert_eq!(demo.web_origin, ["https://a.example", "https://b.example"]);
        assert!(demo.no_web);
    }
}
