//! Application and component variables, with Spin's semantics.
//!
//! Two levels, as in Spin. The app declares variables in `[variables]`; each gets its value
//! from the environment (`SPIN_VARIABLE_<NAME>`) or its `default`. Guests never read those
//! directly: a component maps its *own* variable names to templates over app variables
//! (`redis_url = "redis://{{ redis_host }}:6379"`), and `spin:variables/variables.get` sees
//! only its component's names. That is what keeps a secret app variable away from the
//! components that do not ask for it.
//!
//! Values are resolved once, at startup: [`AppVariables::resolve`] reads the environment and
//! [`ComponentVariables::resolve`] renders a component's templates, so a guest's `get` is a
//! map lookup.

use std::collections::BTreeMap;
use std::fmt;

use crate::schema::{ComponentId, ComponentSpec, VariableDecl};
use crate::template::{Template, VariableName};

/// Why variables cannot be resolved or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// Listed together so one failed start names every variable left to set.
    #[error("required application variables have no value: {}", missing_list(.missing))]
    Required { missing: Vec<VariableName> },
    #[error("application variable `{name}` is not declared in [variables]")]
    Undeclared { name: VariableName },
    #[error(
        "component `{component}`: variables.{variable}: application variable `{name}` is not declared in [variables]"
    )]
    ComponentUndeclared {
        component: ComponentId,
        variable: VariableName,
        name: VariableName,
    },
}

fn missing_list(missing: &[VariableName]) -> String {
    let items: Vec<String> = missing
        .iter()
        .map(|name| format!("`{name}` (set {})", name.env_var()))
        .collect();
    items.join(", ")
}

/// Resolved app variable values. `Debug` redacts secrets, so the value can be logged.
#[derive(Clone, Default)]
pub struct AppVariables {
    values: BTreeMap<VariableName, AppValue>,
}

#[derive(Clone)]
struct AppValue {
    value: String,
    secret: bool,
}

impl AppVariables {
    /// Gives every declared variable its value: `env("SPIN_VARIABLE_<NAME>")` first, then its
    /// default. `env` is a parameter so tests (and a `.env` file fallback, which `spin up`
    /// also reads) need no process environment.
    pub fn resolve(
        decls: &BTreeMap<VariableName, VariableDecl>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, VariableError> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in decls {
            match env(&name.env_var()).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(
                        name.clone(),
                        AppValue {
                            value,
                            secret: decl.secret,
                        },
                    );
                }
                None => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(Self { values })
        } else {
            Err(VariableError::Required { missing })
        }
    }

    /// Builds values directly, all non-secret: for tests and tools that already have them.
    pub fn from_values<V: Into<String>>(
        values: impl IntoIterator<Item = (VariableName, V)>,
    ) -> Self {
        let values = values
            .into_iter()
            .map(|(name, value)| {
                (
                    name,
                    AppValue {
                        value: value.into(),
                        secret: false,
                    },
                )
            })
            .collect();
        Self { values }
    }

    pub(crate) fn insert(&mut self, name: VariableName, value: String, secret: bool) {
        self.values.insert(name, AppValue { value, secret });
    }

    /// `template` with these values substituted.
    pub fn render(&self, template: &Template) -> Result<String, VariableError> {
        template
            .render(|name| self.get(name))
            .map_err(|name| VariableError::Undeclared { name })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.value.as_str())
    }

    /// Whether the variable was declared `secret = true`: its value must not reach logs or
    /// error messages.
    pub fn is_secret(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| v.secret)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for AppVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.values {
            if value.secret {
                map.entry(name, &"<redacted>");
            } else {
                map.entry(name, &value.value);
            }
        }
        map.finish()
    }
}

/// The variables one component's guest can read, already rendered.
#[derive(Clone)]
pub struct ComponentVariables {
    component: ComponentId,
    values: BTreeMap<VariableName, String>,
}

/// What `spin:variables/variables.get` reports to a guest; the strings are Spin's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    #[error("invalid variable name: {0}")]
    InvalidName(String),
    #[error("undefined variable: {0}")]
    Undefined(String),
}

impl ComponentVariables {
    /// Renders the component's `variables` templates against the app values.
    pub fn resolve(spec: &ComponentSpec, app: &AppVariables) -> Result<Self, VariableError> {
        let mut values = BTreeMap::new();
        for (variable, template) in &spec.variables {
            let value = app.render(template).map_err(|err| match err {
                VariableError::Undeclared { name } => VariableError::ComponentUndeclared {
                    component: spec.id.clone(),
                    variable: variable.clone(),
                    name,
                },
                other => other,
            })?;
            values.insert(variable.clone(), value);
        }
        Ok(Self {
            component: spec.id.clone(),
            values,
        })
    }

    /// A guest's lookup: validates the name with Spin's rule, then looks it up among this
    /// component's variables only.
    pub fn get(&self, name: &str) -> Result<&str, GetError> {
        VariableName::parse(name)
            .map_err(|reason| GetError::InvalidName(format!("{name:?}: {reason}")))?;
        self.values.get(name).map(String::as_str).ok_or_else(|| {
            GetError::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.component.as_str()
            ))
        })
    }

    pub fn component(&self) -> &ComponentId {
        &self.component
    }

    /// Names the guest can read, for diagnostics (values stay private: they may be secret).
    pub fn names(&self) -> impl Iterator<Item = &VariableName> {
        self.values.keys()
    }
}

/// Lists names only: any value may come from a secret.
impl fmt::Debug for ComponentVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentVariables")
            .field("component", &self.component)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn name(text: &str) -> VariableName {
        VariableName::parse(text).unwrap()
    }

    fn decl(default: Option<&str>, secret: bool) -> VariableDecl {
        VariableDecl {
            description: None,
            default: default.map(str::to_owned),
            required: default.is_none(),
            secret,
        }
    }

    fn spec(id: &str, variables: &[(&str, &str)]) -> ComponentSpec {
        ComponentSpec {
            id: ComponentId::parse(id).unwrap(),
            description: String::new(),
            source: PathBuf::from("/app/x.wasm"),
            allowed_outbound_hosts: Vec::new(),
            variables: variables
                .iter()
                .map(|(k, v)| (name(k), Template::parse(v).unwrap()))
                .collect(),
            environment: BTreeMap::new(),
            build: None,
            ignored_keys: Vec::new(),
        }
    }

    #[test]
    fn rendering_substitutes_values_around_literal_text() {
        let vars = AppVariables::from_values([(name("host"), "db"), (name("port"), "6379")]);
        let t = Template::parse("redis://{{ host }}:{{ port }}/0").unwrap();
        assert_eq!(vars.render(&t).unwrap(), "redis://db:6379/0");
    }

    #[test]
    fn rendering_an_unknown_variable_names_it() {
        let t = Template::parse("{{ nope }}").unwrap();
        assert_eq!(
            AppVariables::default().render(&t),
            Err(VariableError::Undeclared { name: name("nope") })
        );
    }

    #[test]
    fn the_environment_beats_the_default() {
        let decls = BTreeMap::from([(name("redis_url"), decl(Some("redis://default"), false))]);
        let vars = AppVariables::resolve(&decls, |key| {
            (key == "SPIN_VARIABLE_REDIS_URL").then(|| "redis://env".to_owned())
        })
        .unwrap();
        assert_eq!(vars.get("redis_url"), Some("redis://env"));
    }

    #[test]
    fn the_default_applies_when_the_environment_is_silent() {
        let decls = BTreeMap::from([(name("redis_url"), decl(Some("redis://default"), false))]);
        let vars = AppVariables::resolve(&decls, |_| None).unwrap();
        assert_eq!(vars.get("redis_url"), Some("redis://default"));
    }

    #[test]
    fn an_empty_environment_value_is_still_a_value() {
        let decls = BTreeMap::from([(name("key"), decl(None, true))]);
        let vars = AppVariables::resolve(&decls, |_| Some(String::new())).unwrap();
        assert_eq!(vars.get("key"), Some(""));
    }

    #[test]
    fn every_missing_required_variable_is_named_with_its_env_var() {
        let decls = BTreeMap::from([
            (name("admin_key"), decl(None, true)),
            (name("pass_signing_key"), decl(None, true)),
            (name("redis_url"), decl(Some("redis://x"), false)),
        ]);
        let err = AppVariables::resolve(&decls, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required application variables have no value: \
             `admin_key` (set SPIN_VARIABLE_ADMIN_KEY), \
             `pass_signing_key` (set SPIN_VARIABLE_PASS_SIGNING_KEY)"
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let decls = BTreeMap::from([
            (name("admin_key"), decl(None, true)),
            (name("redis_url"), decl(Some("redis://x"), false)),
        ]);
        let vars = AppVariables::resolve(&decls, |_| Some("hunter2".to_owned())).unwrap();
        let debug = format!("{vars:?}");
        assert_eq!(
            debug,
            r#"{"admin_key": "<redacted>", "redis_url": "hunter2"}"#
        );
        assert!(vars.is_secret("admin_key"));
        assert!(!vars.is_secret("redis_url"));
    }

    #[test]
    fn a_component_sees_only_its_own_variables() {
        let app =
            AppVariables::from_values([(name("redis_url"), "redis://r"), (name("admin_key"), "k")]);
        let queue = spec("queue", &[("redis", "{{ redis_url }}"), ("greeting", "hi")]);
        let vars = ComponentVariables::resolve(&queue, &app).unwrap();
        assert_eq!(vars.get("redis"), Ok("redis://r"));
        assert_eq!(vars.get("greeting"), Ok("hi"));
        assert_eq!(
            vars.get("admin_key"),
            Err(GetError::Undefined(
                r#"no variable for "queue"."admin_key""#.to_owned()
            ))
        );
        assert_eq!(vars.component().as_str(), "queue");
    }

    #[test]
    fn get_rejects_invalid_names_before_looking_up() {
        let vars =
            ComponentVariables::resolve(&spec("queue", &[]), &AppVariables::default()).unwrap();
        assert_eq!(
            vars.get("Redis"),
            Err(GetError::InvalidName(
                r#""Redis": invalid character 'R': names may contain only lowercase letters, digits and `_`"#
                    .to_owned()
            ))
        );
        assert!(matches!(vars.get(""), Err(GetError::InvalidName(_))));
        assert!(matches!(vars.get("a__b"), Err(GetError::InvalidName(_))));
    }

    #[test]
    fn a_component_template_over_an_undeclared_variable_names_component_and_variable() {
        let err = ComponentVariables::resolve(
            &spec("seats", &[("db", "mysql://{{ mysql_url }}")]),
            &AppVariables::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "component `seats`: variables.db: application variable `mysql_url` is not declared in [variables]"
        );
    }

    #[test]
    fn component_debug_output_lists_names_but_no_values() {
        let app = AppVariables::from_values([(name("admin_key"), "hunter2")]);
        let vars = ComponentVariables::resolve(&spec("queue", &[("key", "{{ admin_key }}")]), &app)
            .unwrap();
        let debug = format!("{vars:?}");
        assert!(debug.contains("\"key\""));
        assert!(!debug.contains("hunter2"));
    }
}
