//! What a parsed, validated application is: the types the manifest (`manifest`) produces
//! and routing, variables and allowed hosts read, as Spin's `spin-manifest` schema. Data
//! only: parsing and its checks live in `manifest`, above every module that reads these.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::template::{Template, VariableName};

/// A component id: `-`-separated words of ASCII letters and digits, each starting with a
/// letter and all lowercase or all UPPERCASE (Spin's `KebabId`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(pub(crate) String);

/// Why a string is not a component id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("words must be separated with `-`, not `_`")]
    Underscore,
    #[error("`-`-separated words must not be empty")]
    EmptyWord,
    #[error("each word must start with an ASCII letter, not {0:?}")]
    WordStart(char),
    #[error("words may contain only ASCII letters and digits, not {0:?}")]
    InvalidChar(char),
    #[error("word `{0}` must be all lowercase or all UPPERCASE")]
    MixedCase(String),
}

impl ComponentId {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if text.contains('_') {
            return Err(IdError::Underscore);
        }
        for word in text.split('-') {
            let mut chars = word.chars();
            let Some(first) = chars.next() else {
                return Err(IdError::EmptyWord);
            };
            if !first.is_ascii_alphabetic() {
                return Err(IdError::WordStart(first));
            }
            for c in chars {
                if !c.is_ascii_alphanumeric() {
                    return Err(IdError::InvalidChar(c));
                }
                if c.is_ascii_alphabetic() && c.is_ascii_uppercase() != first.is_ascii_uppercase() {
                    return Err(IdError::MixedCase(word.to_owned()));
                }
            }
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ComponentId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl AsRef<str> for ComponentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by id be queried with a plain `&str`.
impl std::borrow::Borrow<str> for ComponentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A parsed, validated application.
#[derive(Debug, Clone)]
pub struct AppManifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub authors: Vec<String>,
    pub variables: BTreeMap<VariableName, VariableDecl>,
    /// Includes components declared inline in a trigger, under Spin's generated ids.
    pub components: BTreeMap<ComponentId, ComponentSpec>,
    /// In manifest order.
    pub http_triggers: Vec<HttpTrigger>,
}

/// An entry of `[variables]`. Exactly one of `default` and `required` is set (Spin rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    pub description: Option<String>,
    pub default: Option<String>,
    pub required: bool,
    /// The value must stay out of logs and error messages.
    pub secret: bool,
}

/// A `[component.<id>]` table.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    pub id: ComponentId,
    pub description: String,
    /// The Wasm file, joined onto the manifest's directory. It may not exist yet (the
    /// runtime tells the user to build); parsing does not touch the file system.
    pub source: PathBuf,
    /// As written: entries may hold `{{ var }}` templates, rendered by
    /// [`AllowedHosts::parse`] once variables have values. Already validated.
    pub allowed_outbound_hosts: Vec<String>,
    /// Component variable name → template over app variables; references are checked.
    pub variables: BTreeMap<VariableName, Template>,
    /// Environment variables for the guest (WASI `environment`).
    pub environment: BTreeMap<String, String>,
    pub build: Option<BuildSpec>,
    /// Spin keys present and non-empty that this host does not implement (e.g. `files`),
    /// for a startup warning.
    pub ignored_keys: Vec<&'static str>,
}

/// `[component.<id>.build]`, for `edge build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// Run in order; `command` may be one string or a list, as in Spin.
    pub commands: Vec<String>,
    /// Joined onto the manifest's directory; `None` means the manifest's directory.
    pub workdir: Option<PathBuf>,
    /// Globs relative to the working directory, for watch-and-rebuild.
    pub watch: Vec<String>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// The `id` key, or the id Spin would generate (`<component>-http-trigger`, ...).
    pub id: String,
    pub route: RouteSpec,
    pub component: ComponentId,
}

/// A trigger's `route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    Route(String),
    /// `{ private = true }`: reachable only by service chaining, never from outside.
    Private,
}
