//! How a key's value is found, written once for every key: a flag, else its
//! `ESHOP_*` variable, else the file, else the caller's default. So every
//! key reports a bad value the same way: `FILE:LINE:COL: key: what is
//! wrong` for a file value, `VAR="value": what is wrong` for a variable,
//! and `VAR: what is wrong` for a secret (its value is never echoed).
//! Paths follow one rule too ([`Origin::path`]).

use super::{ConfigError, EnvSource};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where values come from: the file (its text for line numbers, its folder
/// for relative paths) and the environment.
pub(super) struct Origin<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    /// The config file's folder.
    pub base: &'a Path,
    pub env: &'a dyn EnvSource,
}

impl<'a> Origin<'a> {
    /// `FILE:LINE:COL` of a byte offset range.
    pub fn at(&self, span: std::ops::Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{col}", self.path.display())
    }

    pub fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        msg: impl std::fmt::Display,
    ) -> Result<T, ConfigError> {
        Err(ConfigError(format!("{}: {key}: {msg}", self.at(span))))
    }

    /// The layers of `key`, whose file value is `file`; add `.env(…)`,
    /// then ask [`Layer::get`] or [`Layer::or`] (or [`Layer::over`] for a
    /// key that also has a flag).
    pub fn key<'k, F>(&'k self, key: &'k str, file: &'k Option<Spanned<F>>) -> Layer<'k, F> {
        Layer {
            o: self,
            key,
            env: None,
            secret: false,
            file: file.as_ref(),
        }
    }

    /// A value only the environment gives (credentials are never read from
    /// the file); secret: errors name the variable, never its value.
    pub fn secret<'k>(&'k self, var: &'k str) -> Layer<'k, String> {
        Layer {
            o: self,
            key: var,
            env: Some(var),
            secret: true,
            file: None,
        }
    }

    /// The one rule for every path eshop reads from the file or the
    /// environment: `~/…` is under the home folder, an absolute path is
    /// itself, and a relative one is relative to the config file's folder
    /// (never to the working directory, so `eshop --config sub/eshop.toml`
    /// means the same files from anywhere). Without a home folder, `~/…`
    /// stays as written and fails where it is used, naming it.
    pub fn path(&self, p: &str) -> PathBuf {
        match p.strip_prefix("~/") {
            Some(rest) => match self.env.var("HOME") {
                Some(home) => Path::new(&home).join(rest),
                None => PathBuf::from(p),
            },
            None => self.base.join(p),
        }
    }
}

/// What a file value can be, and how the same value is read from a
/// variable's text.
pub(super) trait Raw: Sized {
    /// What checks see: `str` for strings, the value itself otherwise.
    type View: ?Sized;
    fn view(&self) -> &Self::View;
    fn from_env(s: &str) -> Result<Self, String>;
}

impl Raw for String {
    type View = str;
    fn view(&self) -> &str {
        self
    }
    fn from_env(s: &str) -> Result<Self, String> {
        Ok(s.to_owned())
    }
}

impl Raw for i64 {
    type View = i64;
    fn view(&self) -> &i64 {
        self
    }
    fn from_env(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map_err(|_| "must be a whole number".to_owned())
    }
}

impl Raw for bool {
    type View = bool;
    fn view(&self) -> &bool {
        self
    }
    fn from_env(s: &str) -> Result<Self, String> {
        match s {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err("must be true or false".into()),
        }
    }
}

/// The layer that decides a value, ordered from the least to the most
/// deliberate choice (a value written later in the file ranks higher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SetBy {
    Default,
    File(usize),
    Env,
}

/// One key's sources below the flags, highest first: a variable, the file.
pub(super) struct Layer<'k, F> {
    o: &'k Origin<'k>,
    key: &'k str,
    env: Option<&'k str>,
    secret: bool,
    file: Option<&'k Spanned<F>>,
}

impl<'k, F: Raw> Layer<'k, F> {
    /// The variable that overrides the file.
    pub fn env(mut self, var: &'k str) -> Self {
        self.env = Some(var);
        self
    }

    /// The value of the highest layer that sets one, checked by `check`
    /// (the same check for the variable's text and the file's value);
    /// None: no layer sets it, the caller's default applies.
    pub fn get<T>(
        &self,
        check: impl Fn(&F::View) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        if let Some((var, text)) = self.env_value() {
            return F::from_env(&text)
                .and_then(|f| check(f.view()))
                .map(Some)
                .map_err(|m| self.env_error(var, &text, m));
        }
        match self.file {
            Some(v) => check(v.get_ref().view())
                .map(Some)
                .or_else(|m| self.o.err(v.span(), self.key, m)),
            None => Ok(None),
        }
    }

    /// [`Layer::get`], or `default` when no layer sets the key.
    pub fn or<T>(
        &self,
        default: T,
        check: impl Fn(&F::View) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.get(check)?.unwrap_or(default))
    }

    /// [`Layer::or`] below a command-line flag, which wins when given.
    pub fn over<T>(
        &self,
        flag: Option<T>,
        default: T,
        check: impl Fn(&F::View) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match flag {
            Some(v) => Ok(v),
            None => self.or(default, check),
        }
    }

    /// An error about the value this key ended up with (one that clashes
    /// with another key's), pointing at whichever layer set it: the
    /// variable, the file's line, or the key alone for a default.
    pub fn blame(&self, msg: impl std::fmt::Display) -> ConfigError {
        if let Some((var, text)) = self.env_value() {
            return self.env_error(var, &text, msg);
        }
        match self.file {
            Some(v) => ConfigError(format!("{}: {}: {msg}", self.o.at(v.span()), self.key)),
            None => ConfigError(format!("{}: {}: {msg}", self.o.path.display(), self.key)),
        }
    }

    /// Where in the file the value is written; None when the variable or
    /// the default decides it.
    pub fn span(&self) -> Option<std::ops::Range<usize>> {
        match self.set_by() {
            SetBy::File(_) => self.file.map(|v| v.span()),
            _ => None,
        }
    }

    /// Which layer decides the value.
    pub fn set_by(&self) -> SetBy {
        match (self.env_value(), self.file) {
            (Some(_), _) => SetBy::Env,
            (None, Some(v)) => SetBy::File(v.span().start),
            (None, None) => SetBy::Default,
        }
    }

    pub fn key_name(&self) -> &'k str {
        self.key
    }

    fn env_value(&self) -> Option<(&'k str, String)> {
        let var = self.env?;
        self.o.env.var(var).map(|v| (var, v))
    }

    fn env_error(&self, var: &str, text: &str, msg: impl std::fmt::Display) -> ConfigError {
        if self.secret {
            ConfigError(format!("{var}: {msg}"))
        } else {
            ConfigError(format!("{var}={text:?}: {msg}"))
        }
    }
}

/// A check for whole numbers in `range`, giving them as `T` (the range
/// fits in `T`).
pub(super) fn within<T: TryFrom<i64>>(
    range: std::ops::RangeInclusive<i64>,
) -> impl Fn(&i64) -> Result<T, String> {
    move |n| {
        range
            .contains(n)
            .then(|| T::try_from(*n).ok())
            .flatten()
            .ok_or_else(|| format!("must be between {} and {}", range.start(), range.end()))
    }
}

/// A TCP port.
pub(super) fn port(n: &i64) -> Result<u16, String> {
    u16::try_from(*n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| "must be a port from 1 to 65535".into())
}

/// A string check that only accepts or refuses: the value is kept as
/// written.
pub(super) fn keep(
    check: impl Fn(&str) -> Result<(), String>,
) -> impl Fn(&str) -> Result<String, String> {
    move |s| check(s).map(|()| s.to_owned())
}

/// Any text but the empty one, which is refused with `msg`.
pub(super) fn nonempty(msg: &'static str) -> impl Fn(&str) -> Result<String, String> {
    move |s| match s {
        "" => Err(msg.to_owned()),
        s => Ok(s.to_owned()),
    }
}

/// `""` means "none": the check applies to the rest.
pub(super) fn optional<T>(
    check: impl Fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<Option<T>, String> {
    move |s| {
        if s.is_empty() {
            Ok(None)
        } else {
            check(s).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn origin<'a>(text: &'a str, env: &'a BTreeMap<String, String>) -> Origin<'a> {
        Origin {
            path: Path::new("eshop.toml"),
            text,
            base: Path::new("sub"),
            env,
        }
    }

    #[derive(serde::Deserialize)]
    struct F {
        n: Option<Spanned<i64>>,
        s: Option<Spanned<String>>,
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let text = "n = 7\ns = \"x\"\n";
        let f: F = toml::from_str(text).unwrap();
        let none: Option<Spanned<i64>> = None;
        let in_range = || within::<i64>(0..=100);
        // (the variable, then what flag None / flag 9 / no key give)
        for (var, want, set_by) in [(None, 7, SetBy::File(4)), (Some("8"), 8, SetBy::Env)] {
            let env: BTreeMap<String, String> = var
                .map(|v| ("ESHOP_A_N".to_owned(), v.to_owned()))
                .into_iter()
                .collect();
            let o = origin(text, &env);
            let n = o.key("a.n", &f.n).env("ESHOP_A_N");
            assert_eq!(n.or(1, in_range()).unwrap(), want, "{var:?}");
            assert_eq!(n.over(None, 1, in_range()).unwrap(), want);
            assert_eq!(n.over(Some(9), 1, in_range()).unwrap(), 9, "the flag wins");
            assert_eq!(n.set_by(), set_by);
            let m = o.key("a.m", &none).env("ESHOP_A_M");
            assert_eq!(m.or(1, in_range()).unwrap(), 1, "the default");
            assert_eq!(m.set_by(), SetBy::Default);
        }
        let env = BTreeMap::new();
        let o = origin(text, &env);
        assert_eq!(o.key("a.s", &f.s).span(), Some(10..13));
    }

    #[test]
    fn each_layer_reports_errors_its_own_way() {
        let text = "n = 70000\ns = \"x\"\n";
        let f: F = toml::from_str(text).unwrap();
        let mut env = BTreeMap::new();
        let o = origin(text, &env);
        let err = o.key("a.n", &f.n).get(port).unwrap_err().to_string();
        assert_eq!(err, "eshop.toml:1:5: a.n: must be a port from 1 to 65535");
        let err = o
            .key("a.s", &f.s)
            .get(|_| Err::<(), _>("no".into()))
            .unwrap_err();
        assert_eq!(err.to_string(), "eshop.toml:2:5: a.s: no");
        let blame = o.key("a.s", &f.s).blame("clashes");
        assert_eq!(blame.to_string(), "eshop.toml:2:5: a.s: clashes");
        let none: Option<Spanned<String>> = None;
        let blame = o.key("a.t", &none).blame("clashes");
        assert_eq!(blame.to_string(), "eshop.toml: a.t: clashes");

        env.insert("ESHOP_A_N".to_owned(), "seven".to_owned());
        env.insert("ESHOP_TOKEN".to_owned(), "hunter2".to_owned());
        let o = origin(text, &env);
        let err = o.key("a.n", &f.n).env("ESHOP_A_N").get(port).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ESHOP_A_N=\"seven\": must be a whole number"
        );
        let err = o
            .secret("ESHOP_TOKEN")
            .get(|_| Err::<(), _>("must be key=value".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "ESHOP_TOKEN: must be key=value");
        assert!(!o
            .secret("ESHOP_TOKEN")
            .blame("x")
            .to_string()
            .contains("hunter2"));
    }

    #[test]
    fn paths_are_relative_to_the_config_folder() {
        let mut env = BTreeMap::new();
        let o = origin("", &env);
        assert_eq!(o.path("keys/a.pub"), Path::new("sub/keys/a.pub"));
        assert_eq!(o.path("/etc/a.pub"), Path::new("/etc/a.pub"));
        assert_eq!(
            o.path("~/a.pub"),
            Path::new("~/a.pub"),
            "no home: as written"
        );
        env.insert("HOME".to_owned(), "/home/me".to_owned());
        let o = origin("", &env);
        assert_eq!(o.path("~/a.pub"), Path::new("/home/me/a.pub"));
    }
}
