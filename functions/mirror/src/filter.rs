//! Which keys a mirror covers: `include` and `exclude` lists of key prefixes or
//! globs, matched against the key relative to the mirrored prefix.
//!
//! A pattern without `*`, `?` or `[` is a plain prefix (`logs/` covers
//! everything under `logs/`). Otherwise it is a glob matched against the whole
//! relative key: `*` matches within one path segment (not `/`), `**` matches
//! anything including `/`, `?` one character other than `/`.

use understudy_shared::{Error, Result};

/// The include/exclude rules of one mirror.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Prefix(String),
    Glob(Vec<char>),
}

impl Pattern {
    fn parse(field: &str, index: usize, text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::InvalidInput(format!(
                "invalid input at `{field}[{index}]`: an empty pattern would match every key"
            )));
        }
        if text.contains('[') {
            return Err(Error::InvalidInput(format!(
                "invalid input at `{field}[{index}]`: character classes (`[...]`) are not supported in `{text}`"
            )));
        }
        if text.contains(['*', '?']) {
            Ok(Pattern::Glob(text.chars().collect()))
        } else {
            Ok(Pattern::Prefix(text.to_owned()))
        }
    }

    fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::Prefix(prefix) => key.starts_with(prefix.as_str()),
            Pattern::Glob(pattern) => {
                let key: Vec<char> = key.chars().collect();
                glob_matches(pattern, &key)
            }
        }
    }
}

impl KeyFilter {
    /// Parses the two lists; `include_field`/`exclude_field` name them in errors.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let parse = |field: &str, list: &[String]| -> Result<Vec<Pattern>> {
            list.iter().enumerate().map(|(i, text)| Pattern::parse(field, i, text)).collect()
        };
        Ok(Self { include: parse("include", include)?, exclude: parse("exclude", exclude)? })
    }

    /// Whether the mirror covers `key` (relative to the mirrored prefix): it
    /// matches an include (or there are none) and no exclude.
    pub fn covers(&self, key: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(key)))
            && !self.exclude.iter().any(|p| p.matches(key))
    }
}

fn glob_matches(pattern: &[char], text: &[char]) -> bool {
    match pattern {
        [] => text.is_empty(),
        ['*', '*', rest @ ..] => (0..=text.len()).any(|i| glob_matches(rest, &text[i..])),
        ['*', rest @ ..] => {
            for i in 0..=text.len() {
                if glob_matches(rest, &text[i..]) {
                    return true;
                }
                if text.get(i) == Some(&'/') {
                    return false;
                }
            }
            false
        }
        ['?', rest @ ..] => text.first().is_some_and(|&c| c != '/') && glob_matches(rest, &text[1..]),
        [c, rest @ ..] => text.first() == Some(c) && glob_matches(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> KeyFilter {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        KeyFilter::new(&owned(include), &owned(exclude)).unwrap()
    }

    #[test]
    fn no_rules_cover_everything() {
        assert!(filter(&[], &[]).covers("any/key"));
        assert!(filter(&[], &[]).covers(""));
    }

    #[test]
    fn plain_patterns_are_prefixes() {
        let f = filter(&["images/"], &["images/tmp/"]);
        assert!(f.covers("images/a.png"));
        assert!(!f.covers("images/tmp/a.png"));
        assert!(!f.covers("docs/a.pdf"));
    }

    #[test]
    fn single_star_stays_within_a_segment_double_star_crosses() {
        let f = filter(&[], &["*.log"]);
        assert!(!f.covers("app.log"));
        assert!(f.covers("logs/app.log"));
        let f = filter(&[], &["**.log"]);
        assert!(!f.covers("logs/deep/app.log"));
        assert!(f.covers("logs/app.txt"));
        let f = filter(&["**/thumbs/*"], &[]);
        assert!(f.covers("a/b/thumbs/x.png"));
        assert!(!f.covers("a/b/thumbs/x/y.png"));
        let f = filter(&["file-?.txt"], &[]);
        assert!(f.covers("file-1.txt") && f.covers("file-é.txt") && !f.covers("file-12.txt"));
    }

    #[test]
    fn empty_and_class_patterns_are_refused_by_position() {
        let err = KeyFilter::new(&[], &["a".into(), String::new()]).unwrap_err();
        assert!(err.to_string().contains("`exclude[1]`"), "{err}");
        let err = KeyFilter::new(&["[ab]*".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("`include[0]`"), "{err}");
    }
}
