//! The Spin application manifest (`spin.toml`, `spin_manifest_version = 2`), read the way
//! Spin 4.1 reads it, and checked up front so a bad manifest fails at startup with a
//! message naming the field, not at the first request.
//!
//! Supported: `[application]` (`name`, `version`, `description`, `authors`, `targets`,
//! `tool`, `[application.trigger.http] base = "/"`), `[variables]`, `[[trigger.http]]`
//! (`id`, `route` as a string or `{ private = true }`, `component` as an id or an inline
//! table, `executor = { type = "http" }`), and `[component.<id>]` with a local `source`,
//! `allowed_outbound_hosts`, `variables`, `environment` and `build`.
//!
//! Unknown keys are errors, as in Spin (`deny_unknown_fields`). Spin keys for features this
//! host lacks are accepted and listed in [`ComponentSpec::ignored_keys`] (`files`,
//! `key_value_stores`, ...) when they ask for something, so the runtime can warn; keys
//! without runtime effect (`description`, `targets`, `tool`, `profile`) are just accepted.
//! Features that would change behaviour silently (remote sources, other trigger types,
//! static responses, WAGI) are errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::outbound::{AllowedHosts, OutboundConfigError};
use crate::routes::{RouteError, Router};
use crate::schema::{
    AppManifest, BuildSpec, ComponentId, ComponentSpec, HttpTrigger, IdError, RouteSpec,
    VariableDecl,
};
use crate::template::{NameError, Template, TemplateError, VariableName};

/// Why a manifest cannot be used. `Invalid` messages start with the manifest location,
/// e.g. ``component `queue`: allowed_outbound_hosts[1] `redis://{{ host }`: unterminated
/// template ...``.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {}: {reason}", path.display())]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown key; the message shows the line.
    #[error("invalid manifest: {0}")]
    Syntax(Box<toml::de::Error>),
    /// Boxed to keep `Result`s small on the happy path.
    #[error("{at}: {problem}")]
    Invalid { at: String, problem: Box<Problem> },
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// What is wrong at a manifest location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("unsupported manifest version {0}: this host reads `spin_manifest_version = 2`")]
    Version(String),
    #[error("invalid component id: {0}")]
    ComponentId(IdError),
    #[error("invalid variable name: {0}")]
    VariableName(NameError),
    #[error("must set either `default` or `required = true`, not both")]
    DefaultAndRequired,
    #[error("must set either `default` or `required = true`")]
    NeitherDefaultNorRequired,
    #[error("{0}")]
    Template(TemplateError),
    #[error("refers to application variable `{0}`, which is not declared in [variables]")]
    UndeclaredVariable(VariableName),
    #[error("{0}")]
    AllowedHosts(OutboundConfigError),
    #[error("component `{0}` is not declared: add a [component.{0}] table")]
    UnknownComponent(ComponentId),
    #[error(
        "{0} sources are not supported by this host: build or download the Wasm file and set `source` to its path"
    )]
    RemoteSource(&'static str),
    #[error("{0} is not supported by this host")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(at: impl Into<String>, problem: Problem) -> ManifestError {
    ManifestError::Invalid {
        at: at.into(),
        problem: Box::new(problem),
    }
}

fn syntax(err: toml::de::Error) -> ManifestError {
    ManifestError::Syntax(Box::new(err))
}

impl AppManifest {
    /// Reads and parses a manifest; relative paths in it are resolved against its
    /// directory, made absolute.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let read_error = |reason| ManifestError::Read {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let dir = std::path::absolute(dir).map_err(read_error)?;
        Self::parse(&text, &dir)
    }

    /// Parses manifest text. Relative `source` and `build.workdir` paths are joined onto
    /// `base_dir` (pass an absolute directory to get absolute paths).
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ManifestError> {
        let probe: VersionProbe = toml::from_str(text).map_err(syntax)?;
        check_version(probe.spin_manifest_version)?;
        let raw: RawManifest = toml::from_str(text).map_err(syntax)?;

        check_application_trigger_config(&raw.application.trigger)?;

        let mut variables = BTreeMap::new();
        for (name, raw_decl) in raw.variables {
            let at = format!("variables.{name}");
            let name = VariableName::parse_declared(&name)
                .map_err(|reason| invalid(&at, Problem::VariableName(reason)))?;
            let decl = match (raw_decl.required, raw_decl.default) {
                (true, Some(_)) => return Err(invalid(at, Problem::DefaultAndRequired)),
                (false, None) => return Err(invalid(at, Problem::NeitherDefaultNorRequired)),
                (required, default) => VariableDecl {
                    description: raw_decl.description,
                    default,
                    required,
                    secret: raw_decl.secret,
                },
            };
            variables.insert(name, decl);
        }

        let mut components = BTreeMap::new();
        for (id, raw_component) in raw.component {
            let at = format!("component `{id}`");
            let id = ComponentId::parse(&id)
                .map_err(|reason| invalid(&at, Problem::ComponentId(reason)))?;
            let spec = component_spec(&at, id.clone(), raw_component, &variables, base_dir)?;
            components.insert(id, spec);
        }

        let http_triggers = http_triggers(raw.trigger, &mut components, &variables, base_dir)?;
        Router::build(&http_triggers)?;

        Ok(Self {
            name: raw.application.name,
            version: raw.application.version,
            description: raw.application.description,
            authors: raw.application.authors,
            variables,
            components,
            http_triggers,
        })
    }
}

fn check_version(version: Option<toml::Value>) -> Result<(), ManifestError> {
    const AT: &str = "spin_manifest_version";
    match version {
        None => Err(invalid(AT, Problem::Missing("spin_manifest_version = 2"))),
        Some(toml::Value::Integer(2)) => Ok(()),
        Some(toml::Value::String(v)) if v == "1" => Err(invalid(
            AT,
            Problem::Version("\"1\" (a v1 manifest; `spin doctor` can upgrade it)".to_owned()),
        )),
        Some(other) => Err(invalid(AT, Problem::Version(other.to_string()))),
    }
}

/// `[application.trigger.http]` may only hold the deprecated `base = "/"`; Spin refuses
/// any other base. Settings for other trigger types are ignored, since those triggers are.
fn check_application_trigger_config(configs: &toml::Table) -> Result<(), ManifestError> {
    const AT: &str = "application.trigger.http";
    let Some(http) = configs.get("http") else {
        return Ok(());
    };
    let Some(http) = http.as_table() else {
        return Err(invalid(AT, Problem::Invalid("must be a table".to_owned())));
    };
    for (key, value) in http {
        match (key.as_str(), value.as_str()) {
            ("base", Some("/")) => {}
            ("base", _) => {
                return Err(invalid(
                    format!("{AT}.base"),
                    Problem::Unsupported(
                        "a base other than \"/\" (deprecated in Spin: prepend it to each route instead)"
                            .to_owned(),
                    ),
                ));
            }
            (other, _) => {
                return Err(invalid(
                    AT,
                    Problem::Invalid(format!("unknown key `{other}`, expected `base`")),
                ));
            }
        }
    }
    Ok(())
}

fn component_spec(
    at: &str,
    id: ComponentId,
    raw: RawComponent,
    variables: &BTreeMap<VariableName, VariableDecl>,
    base_dir: &Path,
) -> Result<ComponentSpec, ManifestError> {
    let source = component_source(at, raw.source, base_dir)?;
    if !raw.allowed_http_hosts.is_empty() {
        return Err(invalid(
            format!("{at}: allowed_http_hosts"),
            Problem::Unsupported(
                "the deprecated `allowed_http_hosts` (use `allowed_outbound_hosts = [\"https://example.com\"]`)"
                    .to_owned(),
            ),
        ));
    }
    AllowedHosts::validate(&raw.allowed_outbound_hosts, variables)
        .map_err(|err| invalid(at, Problem::AllowedHosts(err)))?;
    let component_variables = component_variables(at, raw.variables, variables)?;
    let build = raw
        .build
        .map(|build| build_spec(at, build, base_dir))
        .transpose()?;
    let ignored_keys = [
        ("files", raw.files.is_empty()),
        ("exclude_files", raw.exclude_files.is_empty()),
        ("key_value_stores", raw.key_value_stores.is_empty()),
        ("sqlite_databases", raw.sqlite_databases.is_empty()),
        ("ai_models", raw.ai_models.is_empty()),
        ("dependencies", raw.dependencies.is_empty()),
    ]
    .into_iter()
    .filter_map(|(key, empty)| (!empty).then_some(key))
    .collect();
    Ok(ComponentSpec {
        id,
        description: raw.description,
        source,
        allowed_outbound_hosts: raw.allowed_outbound_hosts,
        variables: component_variables,
        environment: raw.environment,
        build,
        ignored_keys,
    })
}

/// A component's `source`: a local path, relative to the manifest. Spin also fetches URLs
/// and registry packages; this host refuses them by name rather than as malformed.
fn component_source(
    at: &str,
    source: toml::Value,
    base_dir: &Path,
) -> Result<PathBuf, ManifestError> {
    let problem = match source {
        toml::Value::String(path) if !path.is_empty() => return Ok(base_dir.join(path)),
        toml::Value::String(_) => Problem::Invalid("must not be empty".to_owned()),
        toml::Value::Table(table) if table.contains_key("url") => {
            Problem::RemoteSource("URL (`{ url, digest }`)")
        }
        toml::Value::Table(table) if table.contains_key("package") => {
            Problem::RemoteSource("registry (`{ registry, package, version }`)")
        }
        _ => Problem::Invalid(
            "must be a path string, `{ url, digest }` or `{ registry, package, version }`"
                .to_owned(),
        ),
    };
    Err(invalid(format!("{at}: source"), problem))
}

/// A component's `[component.x.variables]`: declared names, templates that reference only
/// the application's declared variables.
fn component_variables(
    at: &str,
    raw: BTreeMap<String, String>,
    declared: &BTreeMap<VariableName, VariableDecl>,
) -> Result<BTreeMap<VariableName, Template>, ManifestError> {
    let mut parsed = BTreeMap::new();
    for (name, text) in raw {
        let var_at = format!("{at}: variables.{name}");
        let name = VariableName::parse_declared(&name)
            .map_err(|reason| invalid(&var_at, Problem::VariableName(reason)))?;
        let template =
            Template::parse(&text).map_err(|err| invalid(&var_at, Problem::Template(err)))?;
        if let Some(undeclared) = template.references().find(|r| !declared.contains_key(*r)) {
            return Err(invalid(
                var_at,
                Problem::UndeclaredVariable(undeclared.clone()),
            ));
        }
        parsed.insert(name, template);
    }
    Ok(parsed)
}

fn build_spec(at: &str, raw: RawBuild, base_dir: &Path) -> Result<BuildSpec, ManifestError> {
    let commands = match raw.command {
        toml::Value::String(command) => vec![command],
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(command) => Some(command),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                invalid(
                    format!("{at}: build.command"),
                    Problem::Invalid("must be a string or an array of strings".to_owned()),
                )
            })?,
        _ => {
            return Err(invalid(
                format!("{at}: build.command"),
                Problem::Invalid("must be a string or an array of strings".to_owned()),
            ));
        }
    };
    Ok(BuildSpec {
        commands,
        workdir: raw.workdir.map(|dir| base_dir.join(dir)),
        watch: raw.watch,
    })
}

/// A trigger's `component` before inline components get their ids.
enum ComponentRef {
    Id(ComponentId),
    Inline(Box<RawComponent>),
}

fn http_triggers(
    triggers: Option<toml::Table>,
    components: &mut BTreeMap<ComponentId, ComponentSpec>,
    variables: &BTreeMap<VariableName, VariableDecl>,
    base_dir: &Path,
) -> Result<Vec<HttpTrigger>, ManifestError> {
    let entries = http_trigger_entries(triggers)?;
    let mut parsed = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("trigger.http[{index}]");
        let raw: RawHttpTrigger = entry.try_into().map_err(|err: toml::de::Error| {
            invalid(&at, Problem::Invalid(err.message().to_owned()))
        })?;
        parsed.push(http_trigger_parts(&at, raw)?);
    }
    name_unnamed_triggers(&mut parsed);

    // All inline components first, so a trigger may name one declared by a later trigger.
    let mut http_triggers = Vec::with_capacity(parsed.len());
    for (index, (id, route, component)) in parsed.into_iter().enumerate() {
        let component = match component {
            ComponentRef::Id(component) => component,
            ComponentRef::Inline(raw) => {
                let generated = inline_component_id(&id, components);
                let at = format!("trigger.http[{index}].component");
                let spec = component_spec(&at, generated.clone(), *raw, variables, base_dir)?;
                components.insert(generated.clone(), spec);
                generated
            }
        };
        http_triggers.push(HttpTrigger {
            id,
            route,
            component,
        });
    }
    for (index, trigger) in http_triggers.iter().enumerate() {
        if !components.contains_key(&trigger.component) {
            return Err(invalid(
                format!("trigger.http[{index}]"),
                Problem::UnknownComponent(trigger.component.clone()),
            ));
        }
    }
    Ok(http_triggers)
}

/// The `[[trigger.http]]` tables; any other trigger type is refused by name.
fn http_trigger_entries(triggers: Option<toml::Table>) -> Result<Vec<toml::Value>, ManifestError> {
    let Some(mut triggers) = triggers else {
        return Err(invalid("trigger", Problem::Missing("[[trigger.http]]")));
    };
    if let Some(kind) = triggers.keys().find(|kind| *kind != "http") {
        return Err(invalid(
            format!("trigger.{kind}"),
            Problem::Unsupported(format!(
                "trigger type `{kind}` (this host serves only `http`)"
            )),
        ));
    }
    match triggers.remove("http") {
        Some(toml::Value::Array(entries)) if !entries.is_empty() => Ok(entries),
        Some(toml::Value::Array(_)) | None => {
            Err(invalid("trigger", Problem::Missing("[[trigger.http]]")))
        }
        Some(_) => Err(invalid(
            "trigger.http",
            Problem::Invalid("must be an array of tables: write [[trigger.http]]".to_owned()),
        )),
    }
}

/// Spin's normalization, so ids match what `spin up` reports: trigger ids first, then
/// `<component>-http-trigger`, then `http-trigger<N>`.
fn name_unnamed_triggers(parsed: &mut [(String, RouteSpec, ComponentRef)]) {
    let mut taken: BTreeSet<String> = parsed.iter().map(|(id, _, _)| id.clone()).collect();
    let mut counter = 1;
    for (id, _, component) in parsed.iter_mut() {
        if !id.is_empty() {
            continue;
        }
        if let ComponentRef::Id(component) = component {
            let natural = format!("{component}-http-trigger");
            if taken.insert(natural.clone()) {
                *id = natural;
                continue;
            }
        }
        *id = loop {
            let candidate = format!("http-trigger{counter}");
            if taken.insert(candidate.clone()) {
                break candidate;
            }
            counter += 1;
        };
    }
}

/// `<trigger id>-component` when that is a free, valid id, else `inline-component<N>`.
fn inline_component_id(
    trigger_id: &str,
    components: &BTreeMap<ComponentId, ComponentSpec>,
) -> ComponentId {
    if let Ok(id) = ComponentId::parse(&format!("{trigger_id}-component"))
        && !components.contains_key(&id)
    {
        return id;
    }
    (1..)
        .map(|n| ComponentId(format!("inline-component{n}")))
        .find(|id| !components.contains_key(id))
        .unwrap_or_else(|| ComponentId("inline-component".to_owned()))
}

fn http_trigger_parts(
    at: &str,
    raw: RawHttpTrigger,
) -> Result<(String, RouteSpec, ComponentRef), ManifestError> {
    if raw.static_response.is_some() {
        return Err(invalid(
            at,
            Problem::Unsupported("`static_response`".to_owned()),
        ));
    }
    if !raw.components.is_empty() {
        return Err(invalid(
            at,
            Problem::Unsupported("`components` on an HTTP trigger".to_owned()),
        ));
    }
    if !raw.dependencies.is_empty() {
        return Err(invalid(
            at,
            Problem::Unsupported("`dependencies` on a trigger".to_owned()),
        ));
    }
    if let Some(executor) = &raw.executor {
        check_executor(at, executor)?;
    }
    let route = match raw.route {
        None => return Err(invalid(at, Problem::Missing("route"))),
        Some(toml::Value::String(route)) => RouteSpec::Route(route),
        Some(toml::Value::Table(table)) => match (table.get("private"), table.len()) {
            (Some(toml::Value::Boolean(true)), 1) => RouteSpec::Private,
            _ => {
                return Err(invalid(
                    format!("{at}.route"),
                    Problem::Invalid("must be a string pattern or `{ private = true }`".to_owned()),
                ));
            }
        },
        Some(_) => {
            return Err(invalid(
                format!("{at}.route"),
                Problem::Invalid("must be a string pattern or `{ private = true }`".to_owned()),
            ));
        }
    };
    let component = match raw.component {
        None => return Err(invalid(at, Problem::Missing("component"))),
        Some(toml::Value::String(id)) => {
            ComponentRef::Id(ComponentId::parse(&id).map_err(|reason| {
                invalid(format!("{at}.component"), Problem::ComponentId(reason))
            })?)
        }
        Some(table @ toml::Value::Table(_)) => {
            let component: RawComponent = table.try_into().map_err(|err: toml::de::Error| {
                invalid(
                    format!("{at}.component"),
                    Problem::Invalid(err.message().to_owned()),
                )
            })?;
            ComponentRef::Inline(Box::new(component))
        }
        Some(_) => {
            return Err(invalid(
                format!("{at}.component"),
                Problem::Invalid("must be a component id or an inline component table".to_owned()),
            ));
        }
    };
    Ok((raw.id, route, component))
}

/// `executor = { type = "http" }` (alias `"spin"`) is the default; WAGI is not served here.
fn check_executor(at: &str, executor: &toml::Value) -> Result<(), ManifestError> {
    let at = format!("{at}.executor");
    let kind = executor.as_table().and_then(|table| {
        let kind = table.get("type")?.as_str()?;
        Some((kind, table.len()))
    });
    match kind {
        Some(("http" | "spin", 1)) => Ok(()),
        Some(("wagi", _)) => Err(invalid(
            at,
            Problem::Unsupported("the WAGI executor".to_owned()),
        )),
        _ => Err(invalid(
            at,
            Problem::Invalid("must be `{ type = \"http\" }`".to_owned()),
        )),
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    spin_manifest_version: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(rename = "spin_manifest_version")]
    _version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    trigger: Option<toml::Table>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    authors: Vec<String>,
    /// Deployment environments for `spin build` checks: no runtime effect.
    #[serde(default, rename = "targets")]
    _targets: Vec<toml::Value>,
    #[serde(default)]
    trigger: toml::Table,
    /// For external tools; Spin ignores it too.
    #[serde(default, rename = "tool")]
    _tool: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    description: String,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    /// No runtime effect (checked by `spin build`).
    #[serde(default, rename = "targets")]
    _targets: Option<Vec<toml::Value>>,
    #[serde(default)]
    build: Option<RawBuild>,
    #[serde(default, rename = "tool")]
    _tool: toml::Table,
    /// Only matters with `dependencies`, which are reported as ignored.
    #[serde(default, rename = "dependencies_inherit_configuration")]
    _dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    dependencies: toml::Table,
    /// Build profiles: this host always runs the default profile, i.e. the base settings.
    #[serde(default, rename = "profile")]
    _profile: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: toml::Value,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    #[serde(default)]
    id: String,
    #[serde(default)]
    component: Option<toml::Value>,
    #[serde(default)]
    route: Option<toml::Value>,
    #[serde(default)]
    executor: Option<toml::Value>,
    #[serde(default)]
    static_response: Option<toml::Value>,
    #[serde(default)]
    components: toml::Table,
    #[serde(default)]
    dependencies: toml::Table,
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
spin_manifest_version = 2

[application]
name = "ticketing"
version = "0.1.0"
description = "tickets"
authors = ["someone <someone@example.com>"]

[application.trigger.http]
base = "/"

[variables]
redis_url = { default = "redis://127.0.0.1:16379" }
redis_host = { default = "127.0.0.1" }
mysql_url = { default = "mysql://ticketing:ticketing@127.0.0.1:13306/ticketing" }
pass_signing_key = { required = true, secret = true, description = "HMAC key" }

[[trigger.http]]
route = "/api/queues/..."
component = "queue"

[[trigger.http]]
id = "seats-trigger"
route = "/api/concerts/..."
component = "seats"

[[trigger.http]]
route = { private = true }
component = "seats"

[component.queue]
source = "target/wasm32-wasip2/release/queue.wasm"
allowed_outbound_hosts = ["redis://{{ redis_host }}:16379", "https://self"]
environment = { RUST_LOG = "info" }
[component.queue.variables]
redis_url = "{{ redis_url }}"
signing_key = "{{ pass_signing_key }}"
[component.queue.build]
command = "cargo build --target wasm32-wasip2 --release -p queue"
workdir = "functions/queue"
watch = ["src/**/*.rs"]

[component.seats]
source = "/abs/seats.wasm"
description = "seats"
allowed_outbound_hosts = ["mysql://127.0.0.1:13306"]
variables = { mysql_url = "{{ mysql_url }}" }
build = { command = ["cargo fetch", "cargo build"] }
"#;

    fn parse(text: &str) -> Result<AppManifest, ManifestError> {
        AppManifest::parse(text, Path::new("/app"))
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    /// A minimal valid manifest with `extra` appended (TOML tables may come in any order).
    fn with(extra: &str) -> String {
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n{extra}"
        )
    }

    fn id(text: &str) -> ComponentId {
        ComponentId::parse(text).unwrap()
    }

    #[test]
    fn a_full_manifest_parses_into_components_variables_and_triggers() {
        let app = parse(APP).unwrap();
        assert_eq!(
            (
                app.name.as_str(),
                app.version.as_str(),
                app.description.as_str()
            ),
            ("ticketing", "0.1.0", "tickets")
        );
        assert_eq!(app.authors, ["someone <someone@example.com>"]);

        assert_eq!(app.variables.len(), 4);
        let key = &app.variables["pass_signing_key"];
        assert_eq!(
            (key.required, key.secret, key.default.as_deref()),
            (true, true, None)
        );
        assert_eq!(key.description.as_deref(), Some("HMAC key"));
        assert_eq!(
            app.variables["redis_url"].default.as_deref(),
            Some("redis://127.0.0.1:16379")
        );

        let queue = &app.components["queue"];
        assert_eq!(
            queue.source,
            Path::new("/app/target/wasm32-wasip2/release/queue.wasm")
        );
        assert_eq!(
            queue.allowed_outbound_hosts,
            ["redis://{{ redis_host }}:16379", "https://self"]
        );
        assert_eq!(queue.variables["redis_url"].as_str(), "{{ redis_url }}");
        assert_eq!(queue.environment["RUST_LOG"], "info");
        assert_eq!(
            queue.build,
            Some(BuildSpec {
                commands: vec!["cargo build --target wasm32-wasip2 --release -p queue".to_owned()],
                workdir: Some(PathBuf::from("/app/functions/queue")),
                watch: vec!["src/**/*.rs".to_owned()],
            })
        );
        assert!(queue.ignored_keys.is_empty());

        let seats = &app.components["seats"];
        assert_eq!(seats.source, Path::new("/abs/seats.wasm"));
        assert_eq!(
            seats.build.as_ref().unwrap().commands,
            ["cargo fetch", "cargo build"]
        );
        assert_eq!(seats.build.as_ref().unwrap().workdir, None);

        assert_eq!(
            app.http_triggers,
            [
                HttpTrigger {
                    id: "queue-http-trigger".to_owned(),
                    route: RouteSpec::Route("/api/queues/...".to_owned()),
                    component: id("queue"),
                },
                HttpTrigger {
                    id: "seats-trigger".to_owned(),
                    route: RouteSpec::Route("/api/concerts/...".to_owned()),
                    component: id("seats"),
                },
                HttpTrigger {
                    id: "seats-http-trigger".to_owned(),
                    route: RouteSpec::Private,
                    component: id("seats")
                },
            ]
        );
    }

    #[test]
    fn a_missing_source_file_is_not_a_parse_error() {
        let app = parse(&with("")).unwrap();
        assert_eq!(app.components["c"].source, Path::new("/app/c.wasm"));
    }

    #[test]
    fn from_file_resolves_paths_against_the_manifests_directory() {
        let dir = std::env::temp_dir().join(format!("edge-app-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spin.toml");
        std::fs::write(&path, with("")).unwrap();
        let app = AppManifest::from_file(&path).unwrap();
        assert_eq!(app.components["c"].source, dir.join("c.wasm"));
        assert!(app.components["c"].source.is_absolute());
        std::fs::remove_dir_all(&dir).unwrap();

        let err = AppManifest::from_file(&dir.join("spin.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read manifest {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn the_manifest_version_must_be_2() {
        let v2 = with("");
        let without = v2.replace("spin_manifest_version = 2\n", "");
        assert_eq!(
            message(&without),
            "spin_manifest_version: missing `spin_manifest_version = 2`"
        );
        assert!(message(&v2.replace("= 2", "= \"1\"")).contains("a v1 manifest"));
        assert_eq!(
            message(&v2.replace("= 2", "= 3")),
            "spin_manifest_version: unsupported manifest version 3: this host reads `spin_manifest_version = 2`"
        );
    }

    #[test]
    fn unknown_keys_are_errors_that_show_the_line() {
        let err = message(&with("sauce = \"x.wasm\"\n"));
        assert!(err.contains("unknown field `sauce`"), "{err}");
        assert!(err.contains("line 9"), "{err}");
        assert!(message(&format!("{}\n[extra]\n", with(""))).contains("unknown field `extra`"));
        assert!(
            message(&with("").replace("name = \"t\"", "name = \"t\"\nversoin = \"1\""))
                .contains("unknown field `versoin`")
        );
        assert!(
            message(&with(
                "[variables]\nx = { default = \"1\", secrte = true }\n"
            ))
            .contains("unknown field `secrte`")
        );
        assert!(
            message(&with("").replace("route = \"/...\"", "route = \"/...\"\nrout = \"/\""))
                .contains("unknown field `rout`")
        );
    }

    #[test]
    fn spin_keys_without_an_implementation_here_are_accepted_and_reported() {
        let app = parse(&with(
            "files = [\"assets/**\"]\nkey_value_stores = [\"default\"]\nsqlite_databases = []\nai_models = [\"llama2-chat\"]\n\
             targets = [\"spin-up:3.3\"]\ntool = { x = { y = 1 } }\ndependencies_inherit_configuration = true\n\
             exclude_files = []\ndescription = \"c\"\n[component.c.dependencies]\n\"foo:bar\" = \">= 0.1.0\"\n\
             [component.c.profile.debug]\nsource = \"debug.wasm\"\n",
        ))
        .unwrap();
        assert_eq!(
            app.components["c"].ignored_keys,
            ["files", "key_value_stores", "ai_models", "dependencies"]
        );
        assert_eq!(app.components["c"].source, Path::new("/app/c.wasm"));
    }

    #[test]
    fn component_ids_must_be_kebab_case() {
        for good in ["a", "queue", "seat-holds", "v2-api", "API-v2"] {
            assert!(ComponentId::parse(good).is_ok(), "{good}");
        }
        let bad = [
            ("", IdError::Empty),
            ("seat_holds", IdError::Underscore),
            ("seat--holds", IdError::EmptyWord),
            ("-a", IdError::EmptyWord),
            ("2fa", IdError::WordStart('2')),
            ("a-2", IdError::WordStart('2')),
            ("a.b", IdError::InvalidChar('.')),
            ("Queue", IdError::MixedCase("Queue".to_owned())),
        ];
        for (text, expected) in bad {
            assert_eq!(ComponentId::parse(text), Err(expected), "{text:?}");
        }
        assert_eq!(
            message(&with("[component.seat_holds]\nsource = \"x.wasm\"\n")),
            "component `seat_holds`: invalid component id: words must be separated with `-`, not `_`"
        );
    }

    #[test]
    fn variables_need_valid_names_and_exactly_one_of_default_and_required() {
        assert_eq!(
            message(&with("[variables]\nRedis = { default = \"x\" }\n")),
            "variables.Redis: invalid variable name: invalid character 'R': names may contain only lowercase letters, digits and `_`"
        );
        assert_eq!(
            message(&with("[variables]\ntls_2 = { default = \"x\" }\n")),
            "variables.tls_2: invalid variable name: each `_`-separated word must start with a letter"
        );
        assert_eq!(
            message(&with(
                "[variables]\nx = { default = \"1\", required = true }\n"
            )),
            "variables.x: must set either `default` or `required = true`, not both"
        );
        assert_eq!(
            message(&with("[variables]\nx = { secret = true }\n")),
            "variables.x: must set either `default` or `required = true`"
        );
        assert!(
            parse(&with(
                "[variables]\nx = { default = \"\", secret = true }\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn component_variables_must_be_templates_over_declared_variables() {
        assert_eq!(
            message(&with("variables = { db = \"mysql://{{ mysql_url }}\" }\n")),
            "component `c`: variables.db: refers to application variable `mysql_url`, which is not declared in [variables]"
        );
        assert_eq!(
            message(&with(
                "variables = { db = \"{{ db\" }\n[variables]\ndb = { default = \"x\" }\n"
            )),
            "component `c`: variables.db: unterminated template: `{{` at byte 0 has no closing `}}`"
        );
        assert_eq!(
            message(&with("variables = { a_1 = \"x\" }\n")),
            "component `c`: variables.a_1: invalid variable name: each `_`-separated word must start with a letter"
        );
    }

    #[test]
    fn allowed_outbound_hosts_errors_name_the_component_and_the_entry() {
        assert_eq!(
            message(&with(
                "allowed_outbound_hosts = [\"redis://127.0.0.1:6379\", \"redis://{{ host }\"]\n"
            )),
            "component `c`: allowed_outbound_hosts[1] `redis://{{ host }`: unterminated template: `{{` at byte 8 has no closing `}}`"
        );
        assert_eq!(
            message(&with("allowed_outbound_hosts = [\"redis://{{ host }}\"]\n")),
            "component `c`: allowed_outbound_hosts[0] `redis://{{ host }}`: application variable `host` is not declared in [variables]"
        );
        assert!(message(&with("allowed_outbound_hosts = [\"*\"]\n")).contains("`*://*:*`"));
        assert!(
            message(&with("allowed_outbound_hosts = [\"insecure:allow-all\"]\n"))
                .contains("insecure:allow-all")
        );
        assert!(
            message(&with("allowed_outbound_hosts = [\"redis://{{ host }}\"]\n[variables]\nhost = { default = \"a b\" }\n"))
                .contains("renders to `redis://a b`")
        );
        // Without a default the entry is checked once the variable has a value.
        assert!(parse(&with("allowed_outbound_hosts = [\"redis://{{ host }}\"]\n[variables]\nhost = { required = true }\n")).is_ok());
        assert!(
            message(&with("allowed_http_hosts = [\"example.com\"]\n"))
                .contains("use `allowed_outbound_hosts")
        );
    }

    #[test]
    fn sources_other_than_a_path_are_refused_with_a_way_out() {
        let url = with("").replace(
            "source = \"c.wasm\"",
            "source = { url = \"https://example.com/c.wasm\", digest = \"sha256:00\" }",
        );
        assert_eq!(
            message(&url),
            "component `c`: source: URL (`{ url, digest }`) sources are not supported by this host: \
             build or download the Wasm file and set `source` to its path"
        );
        let registry = with("").replace(
            "source = \"c.wasm\"",
            "source = { package = \"a:b\", version = \"1.0.0\" }",
        );
        assert!(message(&registry).contains("registry"));
        assert!(
            message(&with("").replace("source = \"c.wasm\"", "source = 3"))
                .contains("must be a path string")
        );
        assert!(
            message(&with("").replace("source = \"c.wasm\"", "source = \"\""))
                .contains("must not be empty")
        );
        assert!(
            message(&with("").replace("source = \"c.wasm\"", ""))
                .contains("missing field `source`")
        );
    }

    #[test]
    fn a_trigger_naming_an_unknown_component_is_an_error_naming_the_trigger() {
        assert_eq!(
            message(&with(
                "[[trigger.http]]\nroute = \"/x\"\ncomponent = \"payment\"\n"
            )),
            "trigger.http[1]: component `payment` is not declared: add a [component.payment] table"
        );
        assert!(
            message(&with("").replace("component = \"c\"", "component = \"C_c\""))
                .starts_with("trigger.http[0].component: invalid component id")
        );
    }

    #[test]
    fn triggers_need_a_route_and_a_component() {
        assert_eq!(
            message(&with("").replace("route = \"/...\"\n", "")),
            "trigger.http[0]: missing `route`"
        );
        assert_eq!(
            message(&with("").replace("component = \"c\"\n", "")),
            "trigger.http[0]: missing `component`"
        );
        assert_eq!(
            message(&with("").replace("\"/...\"", "{ private = false }")),
            "trigger.http[0].route: must be a string pattern or `{ private = true }`"
        );
        assert!(message(&with("").replace("\"/...\"", "7")).contains("must be a string pattern"));
    }

    #[test]
    fn an_app_without_http_triggers_is_refused() {
        let none = "spin_manifest_version = 2\n[application]\nname = \"t\"\n[component.c]\nsource = \"c.wasm\"\n";
        assert_eq!(message(none), "trigger: missing `[[trigger.http]]`");
        assert_eq!(
            message(&format!("{none}[trigger]\nhttp = []\n")),
            "trigger: missing `[[trigger.http]]`"
        );
    }

    #[test]
    fn features_this_host_lacks_are_refused_rather_than_ignored() {
        assert_eq!(
            message(&with(
                "[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"c\"\n"
            )),
            "trigger.redis: trigger type `redis` (this host serves only `http`) is not supported by this host"
        );
        assert_eq!(
            message(&with("").replace("component = \"c\"", "static_response = { body = \"hi\" }")),
            "trigger.http[0]: `static_response` is not supported by this host"
        );
        assert_eq!(
            message(&with("").replace(
                "component = \"c\"",
                "component = \"c\"\nexecutor = { type = \"wagi\" }"
            )),
            "trigger.http[0].executor: the WAGI executor is not supported by this host"
        );
        assert!(
            parse(&with("").replace(
                "component = \"c\"",
                "component = \"c\"\nexecutor = { type = \"http\" }"
            ))
            .is_ok()
        );
        assert!(
            parse(&with("").replace(
                "component = \"c\"",
                "component = \"c\"\nexecutor = { type = \"spin\" }"
            ))
            .is_ok()
        );
    }

    #[test]
    fn only_the_root_base_is_accepted() {
        let base = |value: &str| {
            with("").replace(
                "name = \"t\"",
                &format!("name = \"t\"\ntrigger.http.base = \"{value}\""),
            )
        };
        assert!(parse(&base("/")).is_ok());
        assert!(
            message(&base("/api"))
                .starts_with("application.trigger.http.base: a base other than \"/\"")
        );
        // Settings for trigger types this host does not run are ignored, as Spin ignores them.
        assert!(
            parse(&with("").replace(
                "name = \"t\"",
                "name = \"t\"\ntrigger.redis.address = \"redis://x\""
            ))
            .is_ok()
        );
    }

    #[test]
    fn route_errors_surface_from_parse() {
        let err = message(&with(
            "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n",
        ));
        assert!(
            err.contains("duplicates route `/...` of trigger.http[0]"),
            "{err}"
        );
        let err = message(&with("").replace("\"/...\"", "\"/a/:\""));
        assert_eq!(
            err,
            "trigger.http[0] (component `c`): route `/a/:`: `:` must be followed by a parameter name"
        );
    }

    #[test]
    fn inline_components_get_the_ids_spin_would_give_them() {
        let app = parse(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n\
             [[trigger.http]]\nroute = \"/d\"\ncomponent = \"named-component\"\n\
             [[trigger.http]]\nroute = \"/a\"\ncomponent = { source = \"a.wasm\", allowed_outbound_hosts = [\"https://example.com\"] }\n\
             [[trigger.http]]\nid = \"named\"\nroute = \"/b\"\ncomponent = { source = \"b.wasm\" }\n\
             [[trigger.http]]\nid = \"x_y\"\nroute = \"/c\"\ncomponent = { source = \"c.wasm\" }\n",
        )
        .unwrap();
        let ids: Vec<(&str, &str)> = app
            .http_triggers
            .iter()
            .map(|t| (t.id.as_str(), t.component.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("named-component-http-trigger", "named-component"),
                ("http-trigger1", "http-trigger1-component"),
                ("named", "named-component"),
                ("x_y", "inline-component1"),
            ]
        );
        assert_eq!(
            app.components["http-trigger1-component"].source,
            Path::new("/app/a.wasm")
        );
        assert_eq!(
            app.components["http-trigger1-component"].allowed_outbound_hosts,
            ["https://example.com"]
        );
    }

    #[test]
    fn inline_component_errors_name_the_trigger() {
        let err = message(&with("").replace(
            "component = \"c\"",
            "component = { source = \"a.wasm\", sauce = 1 }",
        ));
        assert!(
            err.starts_with("trigger.http[0].component: unknown field `sauce`"),
            "{err}"
        );
        let err = message(&with("").replace(
            "component = \"c\"",
            "component = { source = \"a.wasm\", allowed_outbound_hosts = [\"*\"] }",
        ));
        assert!(
            err.starts_with("trigger.http[0].component: allowed_outbound_hosts[0] `*`"),
            "{err}"
        );
    }

    #[test]
    fn build_commands_must_be_strings() {
        assert!(
            message(&with("build = { command = 3 }\n"))
                .contains("build.command: must be a string or an array of strings")
        );
        assert!(message(&with("build = { command = [\"a\", 1] }\n")).contains("build.command"));
        assert!(
            message(&with("build = { workdir = \"x\" }\n")).contains("missing field `command`")
        );
    }

    #[test]
    fn the_projects_own_spin_toml_parses() {
        let mut text = include_str!("../../../spin.toml").to_owned();
        // Until the first component lands the app has no trigger, which Spin also refuses.
        if !text.contains("[[trigger.http]]") {
            text.push_str("\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n");
        }
        let app = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(app.name, "ticketing");
        assert!(app.variables["admin_key"].secret);
    }
}
