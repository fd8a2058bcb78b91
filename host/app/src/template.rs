//! The names and templates of Spin's variables (spin-expressions): a variable name's rule,
//! and `{{ name }}` templates that the manifest's `variables` and `allowed_outbound_hosts`
//! are written in. The lowest layer of the crate: it knows nothing of manifests.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// Prefix of the environment variables that give app variables their values, as in Spin's
/// default environment provider.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// A variable name: lowercase ASCII letters, digits and single underscores, starting with a
/// letter and ending with a letter or digit (Spin's `Key` rule). The rule keeps names
/// mappable to environment variables and back.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VariableName(String);

/// Why a string is not a valid variable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("invalid character {0:?}: names may contain only lowercase letters, digits and `_`")]
    InvalidChar(char),
    #[error("must start with a lowercase letter")]
    BadStart,
    #[error("must end with a lowercase letter or digit")]
    BadEnd,
    #[error("must not contain consecutive underscores")]
    DoubleUnderscore,
    /// Only the manifest enforces this (Spin's `lower_snake_case` ids for declared names);
    /// a guest may still *ask* for `a_1`, and gets "undefined".
    #[error("each `_`-separated word must start with a letter")]
    WordStart,
}

impl VariableName {
    /// Parses a name with the rule Spin applies to every lookup.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let bytes = text.as_bytes();
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return Err(NameError::Empty);
        };
        if let Some(bad) = text
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            return Err(NameError::InvalidChar(bad));
        }
        if !first.is_ascii_lowercase() {
            return Err(NameError::BadStart);
        }
        if !last.is_ascii_alphanumeric() {
            return Err(NameError::BadEnd);
        }
        if text.contains("__") {
            return Err(NameError::DoubleUnderscore);
        }
        Ok(Self(text.to_owned()))
    }

    /// Parses a name declared in the manifest, which Spin holds to `lower_snake_case`: on top
    /// of [`VariableName::parse`], every word starts with a letter (`tls_v2` yes, `tls_2` no).
    pub fn parse_declared(text: &str) -> Result<Self, NameError> {
        let name = Self::parse(text)?;
        if name
            .0
            .split('_')
            .any(|word| !word.starts_with(|c: char| c.is_ascii_lowercase()))
        {
            return Err(NameError::WordStart);
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The environment variable that sets this app variable: `SPIN_VARIABLE_<NAME>`.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.0.to_ascii_uppercase())
    }
}

impl FromStr for VariableName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl AsRef<str> for VariableName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by name be queried with a plain `&str`.
impl Borrow<str> for VariableName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VariableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VariableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A string with `{{ name }}` references to app variables (Spin's `spin-expressions`
/// template). Whitespace inside the braces is ignored; there is no escape for a literal
/// `{{`, and a lone `}}` is literal text.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(VariableName),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unterminated template: `{{{{` at byte {at} has no closing `}}}}`")]
    Unterminated { at: usize },
    #[error("`{{{{ {name} }}}}`: invalid variable name: {reason}")]
    InvalidName { name: String, reason: NameError },
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                parts.push(Part::Literal(rest.to_owned()));
                break;
            };
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after_open = &rest[open + 2..];
            let Some(close) = after_open.find("}}") else {
                let at = text.len() - rest.len() + open;
                return Err(TemplateError::Unterminated { at });
            };
            let raw_name = after_open[..close].trim();
            let name =
                VariableName::parse(raw_name).map_err(|reason| TemplateError::InvalidName {
                    name: raw_name.to_owned(),
                    reason,
                })?;
            parts.push(Part::Variable(name));
            rest = &after_open[close + 2..];
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the template has no `{{ }}` reference, so it can be checked at load time.
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|part| matches!(part, Part::Literal(_)))
    }

    /// The app variables the template refers to, in order, repeats included.
    pub fn references(&self) -> impl Iterator<Item = &VariableName> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name),
            Part::Literal(_) => None,
        })
    }

    /// Substitutes the values `value_of` gives; a reference it has no value for is the
    /// error.
    pub fn render<'v>(
        &self,
        value_of: impl Fn(&str) -> Option<&'v str>,
    ) -> Result<String, VariableName> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => {
                    out.push_str(value_of(name.as_str()).ok_or_else(|| name.clone())?)
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> VariableName {
        VariableName::parse(text).unwrap()
    }

    #[test]
    fn names_follow_spins_key_rule() {
        for good in ["a", "abc", "a1b2c3", "a_1", "a_1_b_3", "redis_url"] {
            assert!(VariableName::parse(good).is_ok(), "{good}");
        }
        let bad = [
            ("", NameError::Empty),
            ("aX", NameError::InvalidChar('X')),
            ("1bc", NameError::BadStart),
            ("_x", NameError::BadStart),
            ("x.y", NameError::InvalidChar('.')),
            ("x-y", NameError::InvalidChar('-')),
            ("x_", NameError::BadEnd),
            ("a__b", NameError::DoubleUnderscore),
        ];
        for (text, expected) in bad {
            assert_eq!(VariableName::parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn declared_names_also_need_every_word_to_start_with_a_letter() {
        assert!(VariableName::parse_declared("tls_v2").is_ok());
        assert_eq!(
            VariableName::parse_declared("tls_2"),
            Err(NameError::WordStart)
        );
        assert_eq!(
            VariableName::parse_declared("Tls"),
            Err(NameError::InvalidChar('T'))
        );
    }

    #[test]
    fn the_env_var_is_the_uppercased_name_behind_the_spin_prefix() {
        assert_eq!(
            name("pass_signing_key").env_var(),
            "SPIN_VARIABLE_PASS_SIGNING_KEY"
        );
    }

    #[test]
    fn templates_split_literals_and_trimmed_references() {
        let t = Template::parse("redis://{{ host }}:{{port}}/{{  db  }}").unwrap();
        let refs: Vec<&str> = t.references().map(VariableName::as_str).collect();
        assert_eq!(refs, ["host", "port", "db"]);
        assert!(!t.is_literal());
        assert_eq!(t.to_string(), "redis://{{ host }}:{{port}}/{{  db  }}");
    }

    #[test]
    fn a_template_without_braces_is_literal_and_a_lone_closing_brace_pair_is_text() {
        for text in ["", "plain", "a }} b", "{ single }"] {
            let t = Template::parse(text).unwrap();
            assert!(t.is_literal(), "{text:?}");
            assert_eq!(t.render(|_| None).unwrap(), text);
        }
    }

    #[test]
    fn an_unmatched_opening_brace_pair_is_an_error_that_says_where() {
        assert_eq!(
            Template::parse("redis://{{ host }}:{{ port }"),
            Err(TemplateError::Unterminated { at: 19 })
        );
        let message = Template::parse("{{ x").unwrap_err().to_string();
        assert!(message.starts_with("unterminated template"), "{message}");
    }

    #[test]
    fn a_reference_must_be_a_valid_name() {
        assert!(matches!(
            Template::parse("{{ }}"),
            Err(TemplateError::InvalidName {
                reason: NameError::Empty,
                ..
            })
        ));
        assert!(matches!(
            Template::parse("{{ Host }}"),
            Err(TemplateError::InvalidName {
                reason: NameError::InvalidChar('H'),
                ..
            })
        ));
    }
}
