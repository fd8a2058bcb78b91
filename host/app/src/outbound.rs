//! `allowed_outbound_hosts`: which network destinations a component may reach, with the
//! grammar and matching of Spin's `spin-outbound-networking-config`.
//!
//! Each entry is `scheme://host[:port]` with an optional single trailing `/` and no path:
//! - scheme: `*` or a lowercase name (`redis`, `mysql`, `https`, ...);
//! - host: `*`, `*.suffix.example` (subdomains only, not the bare domain), a literal domain,
//!   IPv4 or `[IPv6]` address, an IP network in CIDR form (`10.0.0.0/8`, matches IP literals
//!   only), or `self` / `self.alt` (relative requests back to this app);
//! - port: omitted for the scheme's well-known port (postgres 5432, mysql 3306, redis 6379,
//!   mqtt 1883, http 80, https 443; any other scheme must name one), `*`, `N`, or `A..B`
//!   (end exclusive).
//!
//! Entries may use `{{ var }}` app variable templates. A templated entry that renders to
//! `""`, `http://` or `https://` is skipped, so an optional endpoint can be switched off by
//! leaving its variable empty.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use ipnet::IpNet;
use url::Host;

use crate::schema::VariableDecl;
use crate::template::{Template, TemplateError, VariableName};
use crate::variables::{AppVariables, VariableError};

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    rules: Vec<AllowedHostRule>,
}

/// One entry of `allowed_outbound_hosts`, without templates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHostRule {
    text: String,
    scheme: SchemeRule,
    host: HostRule,
    port: PortRule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SchemeRule {
    Any,
    Is(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostRule {
    Any,
    /// `self` / `self.alt`: relative requests only, never a named host.
    ToSelf,
    /// `*.example.com`, stored as `.example.com`.
    Subdomain(String),
    Literal(Host<String>),
    Cidr(IpNet),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortRule {
    Any,
    Port(u16),
    Range(Range<u16>),
}

/// Why one entry is not a valid allowed host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "not an allowed host: entries look like `scheme://host[:port]`; \
         `*://*:*` allows every destination (and disables the network sandbox)"
    )]
    BareWildcard,
    #[error(
        "`insecure:allow-all` is not supported; write `*://*:*` if you really mean to allow all outbound traffic"
    )]
    AllowAll,
    #[error(
        "missing a scheme: write `scheme://host[:port]`, e.g. `https://example.com` or `*://example.com:*`"
    )]
    NoScheme,
    #[error("scheme lists `{{...}}` are not supported; write one entry per scheme")]
    SchemeList,
    #[error("scheme `{0}` must be `*` or lowercase ASCII letters")]
    InvalidScheme(String),
    #[error("host lists `{{...}}` are not supported; write one entry per host")]
    HostList,
    #[error("must not include a path: only `scheme://host[:port]` with an optional trailing `/`")]
    Path,
    #[error("`*` may only be the whole host (`*`) or a subdomain prefix (`*.example.com`)")]
    WildcardPosition,
    #[error("`*.` must be followed by a domain name, not `{0}`")]
    WildcardSuffix(String),
    #[error("invalid host `{host}`: {reason}")]
    InvalidHost {
        host: String,
        reason: url::ParseError,
    },
    #[error("no port given and scheme `{0}` has no well-known port: add one, e.g. `:8080` or `:*`")]
    NoDefaultPort(String),
    #[error(
        "port lists `{{...}}` are not supported; write one entry per port or use a range `A..B`"
    )]
    PortList,
    #[error("invalid port `{0}`: expected a number up to 65535, `*` or a range `A..B`")]
    InvalidPort(String),
    #[error("port range `{0}` is empty (the end is exclusive)")]
    EmptyPortRange(String),
}

/// Why a component's `allowed_outbound_hosts` is invalid; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundConfigError {
    #[error("allowed_outbound_hosts[{index}] `{entry}`: {reason}")]
    Template {
        index: usize,
        entry: String,
        reason: TemplateError,
    },
    #[error("allowed_outbound_hosts[{index}] `{entry}`: {reason}")]
    Variable {
        index: usize,
        entry: String,
        reason: VariableError,
    },
    #[error("allowed_outbound_hosts[{index}] `{entry}`: {reason}")]
    Rule {
        index: usize,
        entry: String,
        reason: RuleError,
    },
    #[error("allowed_outbound_hosts[{index}] `{entry}` renders to `{rendered}`: {reason}")]
    Rendered {
        index: usize,
        entry: String,
        rendered: String,
        reason: RuleError,
    },
    /// The rendered entry (and so the reason) would show a secret's value.
    #[error(
        "allowed_outbound_hosts[{index}] `{entry}` does not render to a valid `scheme://host[:port]` \
         (details withheld: it uses a secret variable)"
    )]
    RenderedSecret { index: usize, entry: String },
}

impl AllowedHosts {
    /// Renders and parses the entries. Entries rendering to `""`, `http://` or `https://`
    /// are skipped (a literal empty entry is still an error, as in Spin).
    pub fn parse(entries: &[String], vars: &AppVariables) -> Result<Self, OutboundConfigError> {
        let mut rules = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let template = parse_template(index, entry)?;
            rules.extend(parse_entry(index, entry, &template, vars)?);
        }
        Ok(Self { rules })
    }

    /// Load-time check, before any value is known: templates parse and refer to declared
    /// variables, literal entries parse, and templated entries whose variables all have
    /// defaults parse once rendered with those defaults (Spin's `validate`). Entries using a
    /// variable without a default are checked when the app starts.
    pub fn validate(
        entries: &[String],
        decls: &BTreeMap<VariableName, VariableDecl>,
    ) -> Result<(), OutboundConfigError> {
        for (index, entry) in entries.iter().enumerate() {
            let template = parse_template(index, entry)?;
            let mut defaults = AppVariables::default();
            let mut all_have_defaults = true;
            for name in template.references() {
                let Some(decl) = decls.get(name) else {
                    return Err(OutboundConfigError::Variable {
                        index,
                        entry: entry.clone(),
                        reason: VariableError::Undeclared { name: name.clone() },
                    });
                };
                match &decl.default {
                    Some(default) => defaults.insert(name.clone(), default.clone(), decl.secret),
                    None => all_have_defaults = false,
                }
            }
            if all_have_defaults {
                parse_entry(index, entry, &template, &defaults)?;
            }
        }
        Ok(())
    }

    /// Whether `url` may be reached. `url` may be a full URL (credentials and path are
    /// ignored) or a bare `host:port`, which gets `scheme_if_missing`; a URL without a port
    /// is checked against its scheme's well-known port. Unparseable URLs are refused.
    pub fn allows(&self, url: &str, scheme_if_missing: &str) -> bool {
        let Some(target) = Target::parse(url, scheme_if_missing) else {
            return false;
        };
        self.rules.iter().any(|rule| rule.matches(&target))
    }

    /// Whether relative HTTP(S) requests back to this app are allowed (`self`, `self.alt`
    /// or a `*` host, under an `http`, `https` or `*` scheme).
    pub fn allows_relative(&self) -> bool {
        self.rules.iter().any(|rule| {
            matches!(rule.host, HostRule::Any | HostRule::ToSelf)
                && (rule.scheme.allows("http") || rule.scheme.allows("https"))
        })
    }

    pub fn rules(&self) -> &[AllowedHostRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// One entry: `None` when a templated entry renders to nothing.
fn parse_entry(
    index: usize,
    entry: &str,
    template: &Template,
    vars: &AppVariables,
) -> Result<Option<AllowedHostRule>, OutboundConfigError> {
    if template.is_literal() {
        return AllowedHostRule::parse(entry).map(Some).map_err(|reason| {
            OutboundConfigError::Rule {
                index,
                entry: entry.to_owned(),
                reason,
            }
        });
    }
    let rendered = vars
        .render(template)
        .map_err(|reason| OutboundConfigError::Variable {
            index,
            entry: entry.to_owned(),
            reason,
        })?;
    if is_switched_off(&rendered) {
        return Ok(None);
    }
    AllowedHostRule::parse(&rendered)
        .map(Some)
        .map_err(|reason| {
            let entry = entry.to_owned();
            if template
                .references()
                .any(|name| vars.is_secret(name.as_str()))
            {
                OutboundConfigError::RenderedSecret { index, entry }
            } else {
                OutboundConfigError::Rendered {
                    index,
                    entry,
                    rendered: rendered.clone(),
                    reason,
                }
            }
        })
}

fn parse_template(index: usize, entry: &str) -> Result<Template, OutboundConfigError> {
    Template::parse(entry).map_err(|reason| OutboundConfigError::Template {
        index,
        entry: entry.to_owned(),
        reason,
    })
}

/// Spin's "optional endpoint": an entry whose variables rendered to nothing.
fn is_switched_off(rendered: &str) -> bool {
    matches!(rendered, "" | "http://" | "https://")
}

impl AllowedHostRule {
    /// Parses one entry (no templates).
    pub fn parse(entry: &str) -> Result<Self, RuleError> {
        let text = entry.trim();
        if text == "insecure:allow-all" {
            return Err(RuleError::AllowAll);
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(match text {
                "*" | ":" | "" | "?" => RuleError::BareWildcard,
                _ => RuleError::NoScheme,
            });
        };
        let scheme = SchemeRule::parse(scheme)?;
        let (host, port) = split_host_port(rest)?;
        let port = PortRule::parse(port, &scheme)?;
        let host = HostRule::parse(host)?;
        Ok(Self {
            text: entry.to_owned(),
            scheme,
            host,
            port,
        })
    }

    fn matches(&self, target: &Target) -> bool {
        self.scheme.allows(&target.scheme)
            && self.host.allows(&target.host)
            && self
                .port
                .allows(target.port.or_else(|| well_known_port(&target.scheme)))
    }
}

impl fmt::Display for AllowedHostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits `host[:port][/]`. A colon may belong to the host (`[::1]`, `ff00::/8`), so the
/// whole remainder is tried as a host first, as Spin does.
fn split_host_port(rest: &str) -> Result<(&str, &str), RuleError> {
    match rest.rsplit_once(':') {
        None => Ok((rest, "")),
        Some((host, "")) => Ok((host, "")),
        Some((host, tail)) => {
            if HostRule::parse(rest).is_ok() {
                return Ok((rest, ""));
            }
            let port = match tail.split_once('/') {
                Some((_, path)) if !path.is_empty() => return Err(RuleError::Path),
                Some((port, _)) => port,
                None => tail,
            };
            Ok((host, port))
        }
    }
}

impl SchemeRule {
    fn parse(scheme: &str) -> Result<Self, RuleError> {
        if scheme == "*" {
            return Ok(Self::Any);
        }
        if scheme.starts_with('{') {
            return Err(RuleError::SchemeList);
        }
        // Spin accepts any alphabetic scheme but URLs arrive lowercased, so an uppercase
        // rule could never match: reject it rather than ignore it silently.
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(RuleError::InvalidScheme(scheme.to_owned()));
        }
        Ok(Self::Is(scheme.to_owned()))
    }

    fn allows(&self, scheme: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Is(s) => s == scheme,
        }
    }
}

impl HostRule {
    fn parse(host: &str) -> Result<Self, RuleError> {
        let host = host.trim();
        match host {
            "*" => return Ok(Self::Any),
            "self" | "self.alt" => return Ok(Self::ToSelf),
            _ => {}
        }
        if host.starts_with('{') {
            return Err(RuleError::HostList);
        }
        if let Ok(net) = IpNet::from_str(host) {
            return Ok(Self::Cidr(net.trunc()));
        }
        let host = host.strip_suffix('/').unwrap_or(host);
        if host.contains('/') {
            return Err(RuleError::Path);
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                return Err(RuleError::WildcardPosition);
            }
            return match parse_host(domain)? {
                Host::Domain(domain) => Ok(Self::Subdomain(format!(".{domain}"))),
                _ => Err(RuleError::WildcardSuffix(domain.to_owned())),
            };
        }
        if host.contains('*') {
            return Err(RuleError::WildcardPosition);
        }
        parse_host(host).map(Self::Literal)
    }

    fn allows(&self, host: &Host<String>) -> bool {
        match (self, host) {
            (Self::Any, _) => true,
            (Self::Subdomain(suffix), Host::Domain(domain)) => domain.ends_with(suffix.as_str()),
            (Self::Literal(literal), host) => literal == host,
            (Self::Cidr(net), Host::Ipv4(ip)) => net.contains(&std::net::IpAddr::V4(*ip)),
            (Self::Cidr(net), Host::Ipv6(ip)) => net.contains(&std::net::IpAddr::V6(*ip)),
            // Subdomain rules match names only, CIDR rules addresses only, and `self` is
            // for relative requests, which have no host.
            (Self::Subdomain(_), _) | (Self::Cidr(_), Host::Domain(_)) | (Self::ToSelf, _) => false,
        }
    }
}

/// `url::Host::parse` is WHATWG host parsing: lowercases names, recognises IPv4 forms and
/// bracketed IPv6, and rejects forbidden characters.
fn parse_host(host: &str) -> Result<Host<String>, RuleError> {
    Host::parse(host).map_err(|reason| RuleError::InvalidHost {
        host: host.to_owned(),
        reason,
    })
}

impl PortRule {
    fn parse(port: &str, scheme: &SchemeRule) -> Result<Self, RuleError> {
        if port.is_empty() {
            let known = match scheme {
                SchemeRule::Is(s) => well_known_port(s),
                SchemeRule::Any => None,
            };
            let name = match scheme {
                SchemeRule::Is(s) => s.as_str(),
                SchemeRule::Any => "*",
            };
            return known
                .map(Self::Port)
                .ok_or_else(|| RuleError::NoDefaultPort(name.to_owned()));
        }
        if port == "*" {
            return Ok(Self::Any);
        }
        if port.starts_with('{') {
            return Err(RuleError::PortList);
        }
        let number = |text: &str| {
            text.parse::<u16>()
                .map_err(|_| RuleError::InvalidPort(port.to_owned()))
        };
        match port.split_once("..") {
            Some((start, end)) => {
                let range = number(start)?..number(end)?;
                // Spin accepts an empty range, which can never match: surely a mistake.
                if range.is_empty() {
                    return Err(RuleError::EmptyPortRange(port.to_owned()));
                }
                Ok(Self::Range(range))
            }
            None => number(port).map(Self::Port),
        }
    }

    fn allows(&self, port: Option<u16>) -> bool {
        match (self, port) {
            (Self::Any, _) => true,
            (_, None) => false,
            (Self::Port(p), Some(port)) => *p == port,
            (Self::Range(range), Some(port)) => range.contains(&port),
        }
    }
}

/// Well-known ports of the schemes Spin knows; others must give a port explicitly.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The destination of an outbound request, reduced to what the rules look at.
#[derive(Debug)]
struct Target {
    scheme: String,
    host: Host<String>,
    port: Option<u16>,
}

impl Target {
    fn parse(url: &str, scheme_if_missing: &str) -> Option<Self> {
        let url = without_userinfo(url);
        let parsed = match url::Url::parse(&url) {
            Ok(parsed) if parsed.has_host() => parsed,
            _ => url::Url::parse(&format!("{scheme_if_missing}://{url}")).ok()?,
        };
        // Non-special schemes (redis, mysql) keep an opaque host: parse it again the WHATWG
        // way so `127.0.0.1` is an address and `DB.example` matches `db.example`.
        let host = Host::parse(parsed.host_str()?).ok()?;
        Some(Self {
            scheme: parsed.scheme().to_owned(),
            host,
            port: parsed.port(),
        })
    }
}

/// Drops `user:password@` from the authority. Credentials may hold characters that break
/// URL parsing (`#`, `%`...) and never affect where the connection goes. As in Spin, the
/// userinfo ends at the first `@`, if that comes before the first `/` after the scheme.
fn without_userinfo(url: &str) -> Cow<'_, str> {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let (scheme, rest) = url.split_at(authority_start);
    match (rest.find('@'), rest.find('/')) {
        (Some(at), slash) if slash.is_none_or(|slash| at < slash) => {
            Cow::Owned(format!("{scheme}{}", &rest[at + 1..]))
        }
        _ => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(entry: &str) -> AllowedHostRule {
        AllowedHostRule::parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}"))
    }

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        AllowedHosts::parse(&entries, &AppVariables::default()).unwrap()
    }

    fn parts(entry: &str) -> (SchemeRule, HostRule, PortRule) {
        let r = rule(entry);
        (r.scheme, r.host, r.port)
    }

    fn is(scheme: &str) -> SchemeRule {
        SchemeRule::Is(scheme.to_owned())
    }

    fn literal(host: &str) -> HostRule {
        HostRule::Literal(Host::parse(host).unwrap())
    }

    fn cidr(net: &str) -> HostRule {
        HostRule::Cidr(net.parse().unwrap())
    }

    #[test]
    fn a_missing_port_means_the_schemes_well_known_port() {
        for (entry, scheme, port) in [
            ("http://example.com", "http", 80),
            ("https://example.com", "https", 443),
            ("redis://cache", "redis", 6379),
            ("mysql://db", "mysql", 3306),
            ("postgres://db", "postgres", 5432),
            ("mqtt://broker", "mqtt", 1883),
        ] {
            let host = entry.split_once("://").unwrap().1;
            assert_eq!(
                parts(entry),
                (is(scheme), literal(host), PortRule::Port(port)),
                "{entry}"
            );
        }
    }

    #[test]
    fn a_trailing_slash_or_colon_is_tolerated() {
        assert_eq!(
            parts("http://example.com/"),
            (is("http"), literal("example.com"), PortRule::Port(80))
        );
        assert_eq!(
            parts("http://example.com:"),
            (is("http"), literal("example.com"), PortRule::Port(80))
        );
        assert_eq!(
            parts("http://example.com:4444/"),
            (is("http"), literal("example.com"), PortRule::Port(4444))
        );
        assert_eq!(
            parts("  http://example.com  "),
            (is("http"), literal("example.com"), PortRule::Port(80))
        );
    }

    #[test]
    fn ports_can_be_any_a_number_or_an_exclusive_range() {
        assert_eq!(
            parts("*://*:*"),
            (SchemeRule::Any, HostRule::Any, PortRule::Any)
        );
        assert_eq!(parts("tcp://db:15432").2, PortRule::Port(15432));
        assert_eq!(
            parts("http://example.com:4444..5555").2,
            PortRule::Range(4444..5555)
        );
    }

    #[test]
    fn hosts_can_be_wildcards_subdomains_addresses_networks_or_self() {
        assert_eq!(parts("http://*").1, HostRule::Any);
        assert_eq!(parts("http://self").1, HostRule::ToSelf);
        assert_eq!(parts("http://self.alt").1, HostRule::ToSelf);
        assert_eq!(
            parts("http://*.Example.COM").1,
            HostRule::Subdomain(".example.com".to_owned())
        );
        assert_eq!(parts("http://192.168.1.1:3002").1, literal("192.168.1.1"));
        assert_eq!(
            parts("http://[::1]:8001"),
            (is("http"), literal("[::1]"), PortRule::Port(8001))
        );
        assert_eq!(
            parts("http://[::1]"),
            (is("http"), literal("[::1]"), PortRule::Port(80))
        );
        assert_eq!(parts("http://[::1]:*").2, PortRule::Any);
        assert_eq!(parts("http://[::1]:8080/").2, PortRule::Port(8080));
        assert_eq!(parts("http://LocalHost").1, literal("localhost"));
    }

    #[test]
    fn networks_are_truncated_to_their_prefix_and_may_carry_a_port() {
        assert_eq!(
            parts("*://127.0.0.1/24:63551"),
            (SchemeRule::Any, cidr("127.0.0.0/24"), PortRule::Port(63551))
        );
        assert_eq!(
            parts("http://10.0.0.0/8"),
            (is("http"), cidr("10.0.0.0/8"), PortRule::Port(80))
        );
        assert_eq!(
            parts("http://ff00::/8"),
            (is("http"), cidr("ff00::/8"), PortRule::Port(80))
        );
        assert_eq!(
            parts("https://2001:db8::/32"),
            (is("https"), cidr("2001:db8::/32"), PortRule::Port(443))
        );
        assert_eq!(parts("http://2001:db8::/32:443").2, PortRule::Port(443));
        assert_eq!(parts("http://::1/128").1, cidr("::1/128"));
    }

    #[test]
    fn malformed_entries_are_rejected_with_the_reason() {
        let cases: &[(&str, RuleError)] = &[
            ("*", RuleError::BareWildcard),
            ("", RuleError::BareWildcard),
            (":", RuleError::BareWildcard),
            ("?", RuleError::BareWildcard),
            ("insecure:allow-all", RuleError::AllowAll),
            ("example.com", RuleError::NoScheme),
            ("example.com:8080", RuleError::NoScheme),
            ("[::1]:8080", RuleError::NoScheme),
            ("{http,https}://example.com", RuleError::SchemeList),
            (
                "HTTP://example.com",
                RuleError::InvalidScheme("HTTP".to_owned()),
            ),
            (
                "http2://example.com:80",
                RuleError::InvalidScheme("http2".to_owned()),
            ),
            ("http://{a,b}.com", RuleError::HostList),
            ("http://example.com/a", RuleError::Path),
            ("http://example.com:6666/a/b", RuleError::Path),
            ("http://*.example.com/p", RuleError::Path),
            ("http://*.example.com:8080/p", RuleError::Path),
            ("http://127.0.0.0/24/p", RuleError::Path),
            ("http://example.com//", RuleError::Path),
            ("http://self//", RuleError::Path),
            ("http://[::1]/foo", RuleError::Path),
            ("http://ff00::/8/extra", RuleError::Path),
            ("http://a.*.com", RuleError::WildcardPosition),
            ("http://*.*.com", RuleError::WildcardPosition),
            ("http://exa*mple.com", RuleError::WildcardPosition),
            (
                "http://*.127.0.0.1",
                RuleError::WildcardSuffix("127.0.0.1".to_owned()),
            ),
            (
                "http://*.192.168.001.001",
                RuleError::WildcardSuffix("192.168.001.001".to_owned()),
            ),
            // The port is parsed first: `*.[::1]` is not a host, so `1]` must be a port.
            ("http://*.[::1]", RuleError::InvalidPort("1]".to_owned())),
            ("*://example.com", RuleError::NoDefaultPort("*".to_owned())),
            ("*://127.0.0.0/24", RuleError::NoDefaultPort("*".to_owned())),
            (
                "tcp://example.com",
                RuleError::NoDefaultPort("tcp".to_owned()),
            ),
            ("http://example.com:{80,81}", RuleError::PortList),
            (
                "http://example.com:notaport",
                RuleError::InvalidPort("notaport".to_owned()),
            ),
            (
                "http://example.com:99999",
                RuleError::InvalidPort("99999".to_owned()),
            ),
            (
                "http://example.com:8080..70000",
                RuleError::InvalidPort("8080..70000".to_owned()),
            ),
            (
                "http://*.example.com:8080..",
                RuleError::InvalidPort("8080..".to_owned()),
            ),
            (
                "http://*.example.com:8O8O",
                RuleError::InvalidPort("8O8O".to_owned()),
            ),
            (
                "http://self:notaport",
                RuleError::InvalidPort("notaport".to_owned()),
            ),
            (
                "http://*:notaport",
                RuleError::InvalidPort("notaport".to_owned()),
            ),
            (
                "http://[::1]:notaport",
                RuleError::InvalidPort("notaport".to_owned()),
            ),
            (
                "http://example.com:9000..8000",
                RuleError::EmptyPortRange("9000..8000".to_owned()),
            ),
        ];
        for (entry, expected) in cases {
            assert_eq!(
                AllowedHostRule::parse(entry).as_ref(),
                Err(expected),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn hosts_that_are_not_valid_names_or_addresses_are_rejected() {
        for entry in [
            "http://*.",
            "http://*.:8080",
            "http://example%.com",
            "http://example%GG.com",
            "http://exa[mple.com",
            r"http://exa\mple.com",
            "http://example.com:80:90",
            "http://[::1",
            "http://[::1junk",
            "http://[::1]junk",
            "http://[::1]::80",
            "http://[v1.]",
        ] {
            assert!(AllowedHostRule::parse(entry).is_err(), "{entry:?}");
        }
    }

    #[test]
    fn error_messages_point_at_the_fix() {
        let message = AllowedHostRule::parse("*").unwrap_err().to_string();
        assert!(message.contains("`*://*:*`"), "{message}");
        let message = AllowedHostRule::parse("insecure:allow-all")
            .unwrap_err()
            .to_string();
        assert!(message.contains("`*://*:*`"), "{message}");
        let message = AllowedHostRule::parse("tcp://db").unwrap_err().to_string();
        assert!(
            message.contains("scheme `tcp` has no well-known port"),
            "{message}"
        );
    }

    #[test]
    fn credentials_in_the_checked_url_do_not_matter() {
        let allowed = hosts(&[
            "mysql://127.0.0.1:13306",
            "redis://127.0.0.1:16379",
            "mysql://xyz.com",
        ]);
        for url in [
            "mysql://user:pass@127.0.0.1:13306/db",
            "mysql://ticketing:ticketing@127.0.0.1:13306/ticketing",
            "mysql://127.0.0.1:13306",
            "redis://127.0.0.1:16379",
            "redis://:secret@127.0.0.1:16379/0",
            "redis://default:p%40ss@127.0.0.1:16379",
            "mysql://user:pass#word@xyz.com",
            "mysql://user:p@ss@xyz.com/db",
            "mysql://user%3Apass%23word@xyz.com",
        ] {
            assert!(allowed.allows(url, "mysql"), "{url}");
        }
        assert!(!allowed.allows("mysql://user:pass@127.0.0.1:3306/db", "mysql"));
        assert!(!allowed.allows("redis://127.0.0.1:6379", "redis"));
    }

    #[test]
    fn a_url_without_a_scheme_gets_the_callers_scheme() {
        let allowed = hosts(&["redis://127.0.0.1:16379", "mysql://xyz.com"]);
        assert!(allowed.allows("127.0.0.1:16379", "redis"));
        assert!(!allowed.allows("127.0.0.1:16379", "mysql"));
        assert!(allowed.allows("xyz.com", "mysql"));
        assert!(allowed.allows("user%3Apass%23word@xyz.com", "mysql"));
        assert!(allowed.allows("user:pass@xyz.com:3306", "mysql"));
    }

    #[test]
    fn a_url_without_a_port_is_checked_against_its_schemes_well_known_port() {
        let allowed = hosts(&["https://api.example.com", "redis://cache"]);
        assert!(allowed.allows("https://api.example.com", "https"));
        assert!(allowed.allows("https://api.example.com/", "https"));
        assert!(allowed.allows("https://api.example.com:443/x?y#z", "https"));
        assert!(allowed.allows("api.example.com", "https"));
        assert!(!allowed.allows("http://api.example.com", "https"));
        assert!(!allowed.allows("https://api.example.com:8443", "https"));
        assert!(allowed.allows("redis://cache", "redis"));
        assert!(allowed.allows("redis://cache:6379", "redis"));
        assert!(!allowed.allows("redis://cache:6380", "redis"));
    }

    #[test]
    fn specific_entries_allow_only_their_scheme_host_and_port() {
        let allowed = hosts(&["*://spin.fermyon.dev:443", "http://example.com:8383"]);
        assert!(allowed.allows("http://example.com:8383/foo/bar", "http"));
        assert!(allowed.allows("https://spin.fermyon.dev", "https"));
        assert!(allowed.allows("https://spin.fermyon.dev/", "https"));
        assert!(allowed.allows("spin.fermyon.dev:443", "https"));
        assert!(allowed.allows("example.com:8383", "http"));
        assert!(!allowed.allows("http://example.com/", "http"));
        assert!(!allowed.allows("http://google.com/", "http"));
    }

    #[test]
    fn subdomain_wildcards_match_subdomains_but_not_the_domain_itself() {
        let allowed = hosts(&["http://*.example.com", "http://*.example2.com:8383"]);
        assert!(allowed.allows("http://a.example.com/foo/bar", "http"));
        assert!(allowed.allows("http://a.b.example.com/foo/bar", "http"));
        assert!(allowed.allows("http://A.Example.COM", "http"));
        assert!(allowed.allows("http://a.b.example2.com:8383/foo/bar", "http"));
        assert!(!allowed.allows("http://a.b.example2.com/foo/bar", "http"));
        assert!(!allowed.allows("http://example.com/foo/bar", "http"));
        assert!(!allowed.allows("http://myexample.com/foo/bar", "http"));
        assert!(!allowed.allows("http://127.0.0.1", "http"));
    }

    #[test]
    fn literal_hosts_compare_case_insensitively_for_every_scheme() {
        let allowed = hosts(&["redis://cache.internal:16379"]);
        assert!(allowed.allows("redis://Cache.Internal:16379", "redis"));
    }

    #[test]
    fn networks_match_addresses_in_range_but_never_names() {
        let allowed = hosts(&["*://10.0.0.0/8:*", "http://2001:db8::/32"]);
        assert!(allowed.allows("redis://10.1.2.3:6379", "redis"));
        assert!(allowed.allows("mysql://u:p@10.255.255.255:3306/db", "mysql"));
        assert!(!allowed.allows("redis://11.0.0.1:6379", "redis"));
        assert!(!allowed.allows("redis://ten.example:6379", "redis"));
        assert!(allowed.allows("http://[2001:db8::1]", "http"));
        assert!(allowed.allows("http://[2001:db8:abcd::1]/x", "http"));
        assert!(!allowed.allows("http://[2001:db9::1]", "http"));
        assert!(!allowed.allows("http://[2001:db8::1]:8080", "http"));
    }

    #[test]
    fn ipv6_literals_match_with_or_without_the_default_port() {
        let allowed = hosts(&["http://[::1]"]);
        assert!(allowed.allows("http://[::1]", "http"));
        assert!(allowed.allows("http://[::1]/some/path", "http"));
        assert!(allowed.allows("http://[::1]:80", "http"));
        assert!(!allowed.allows("http://[::2]", "http"));
        assert!(!allowed.allows("http://[::1]:81", "http"));
    }

    #[test]
    fn port_ranges_exclude_their_end() {
        let allowed = hosts(&["redis://cache:7000..7002"]);
        assert!(allowed.allows("redis://cache:7000", "redis"));
        assert!(allowed.allows("redis://cache:7001", "redis"));
        assert!(!allowed.allows("redis://cache:7002", "redis"));
        assert!(!allowed.allows("redis://cache", "redis"));
    }

    #[test]
    fn the_scheme_wildcard_allows_any_scheme_but_an_unknown_scheme_needs_a_port() {
        let allowed = hosts(&["*://db.example:*"]);
        assert!(allowed.allows("postgres://db.example", "postgres"));
        assert!(allowed.allows("custom://db.example", "custom"));
        let allowed = hosts(&["*://db.example:5432"]);
        assert!(allowed.allows("postgres://db.example", "postgres"));
        assert!(!allowed.allows("custom://db.example", "custom"));
    }

    #[test]
    fn allow_all_allows_everything_including_relative_requests() {
        let allowed = hosts(&["*://*:*"]);
        assert!(allowed.allows("https://anything.example:1234/x", "https"));
        assert!(allowed.allows("10.0.0.1:9", "redis"));
        assert!(allowed.allows_relative());
    }

    #[test]
    fn self_allows_relative_requests_only() {
        let allowed = hosts(&["http://self"]);
        assert!(allowed.allows_relative());
        assert!(!allowed.allows("http://self", "http"));
        assert!(!allowed.allows("http://localhost", "http"));
        assert!(hosts(&["https://self.alt"]).allows_relative());
        assert!(hosts(&["*://self:*"]).allows_relative());
        assert!(!hosts(&["redis://self"]).allows_relative());
        assert!(!hosts(&["https://example.com"]).allows_relative());
        assert!(!hosts(&[]).allows_relative());
    }

    #[test]
    fn nothing_is_allowed_by_default_and_garbage_urls_are_refused() {
        assert!(!hosts(&[]).allows("https://example.com", "https"));
        assert!(!hosts(&["*://*:*"]).allows("", "https"));
        let allowed = hosts(&["redis://cache"]);
        assert!(!allowed.allows("redis://:6379", "redis"));
        assert!(!allowed.allows("redis://cache:notaport", "redis"));
        assert!(!allowed.allows("redis://u:pa/ss@cache", "redis"));
    }

    #[test]
    fn templated_entries_render_with_app_variables() {
        let vars = AppVariables::from_values([
            (VariableName::parse("redis_host").unwrap(), "127.0.0.1"),
            (VariableName::parse("redis_port").unwrap(), "16379"),
        ]);
        let entries = vec!["redis://{{ redis_host }}:{{ redis_port }}".to_owned()];
        let allowed = AllowedHosts::parse(&entries, &vars).unwrap();
        assert!(allowed.allows("redis://127.0.0.1:16379", "redis"));
        assert_eq!(allowed.rules()[0].to_string(), "redis://127.0.0.1:16379");
    }

    #[test]
    fn entries_rendering_to_nothing_are_skipped_but_a_literal_empty_entry_is_an_error() {
        let vars = AppVariables::from_values([
            (VariableName::parse("one").unwrap(), ""),
            (VariableName::parse("two").unwrap(), ""),
        ]);
        let entries: Vec<String> = [
            "https://{{ one }}",
            "{{ two }}",
            "http://{{ one }}{{ two }}",
            "https://three",
        ]
        .map(str::to_owned)
        .to_vec();
        let allowed = AllowedHosts::parse(&entries, &vars).unwrap();
        assert_eq!(allowed.rules().len(), 1);
        assert!(allowed.allows("https://three", "https"));

        let err = AllowedHosts::parse(&[String::new()], &vars).unwrap_err();
        assert!(matches!(
            err,
            OutboundConfigError::Rule {
                index: 0,
                reason: RuleError::BareWildcard,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_entry_by_index() {
        let entries = [
            "https://ok.example".to_owned(),
            "redis://{{ host }".to_owned(),
        ];
        let err = AllowedHosts::parse(&entries, &AppVariables::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "allowed_outbound_hosts[1] `redis://{{ host }`: unterminated template: `{{` at byte 8 has no closing `}}`"
        );

        let entries = ["redis://{{ host }}".to_owned()];
        let err = AllowedHosts::parse(&entries, &AppVariables::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "allowed_outbound_hosts[0] `redis://{{ host }}`: application variable `host` is not declared in [variables]"
        );

        let vars = AppVariables::from_values([(VariableName::parse("host").unwrap(), "a b")]);
        let err = AllowedHosts::parse(&entries, &vars).unwrap_err();
        assert!(
            err.to_string().starts_with("allowed_outbound_hosts[0] `redis://{{ host }}` renders to `redis://a b`: invalid host"),
            "{err}"
        );
    }

    #[test]
    fn a_rendered_entry_using_a_secret_is_redacted_in_errors() {
        let name = VariableName::parse("token").unwrap();
        let decls = BTreeMap::from([(
            name.clone(),
            VariableDecl {
                description: None,
                default: None,
                required: true,
                secret: true,
            },
        )]);
        let vars = AppVariables::resolve(&decls, |_| Some("s3cr3t x".to_owned())).unwrap();
        let err = AllowedHosts::parse(&["https://{{ token }}".to_owned()], &vars).unwrap_err();
        assert_eq!(
            err,
            OutboundConfigError::RenderedSecret {
                index: 0,
                entry: "https://{{ token }}".to_owned()
            }
        );
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    fn decls(entries: &[(&str, Option<&str>)]) -> BTreeMap<VariableName, VariableDecl> {
        entries
            .iter()
            .map(|(name, default)| {
                (
                    VariableName::parse(name).unwrap(),
                    VariableDecl {
                        description: None,
                        default: default.map(str::to_owned),
                        required: default.is_none(),
                        secret: false,
                    },
                )
            })
            .collect()
    }

    fn validate(
        entries: &[&str],
        decls: &BTreeMap<VariableName, VariableDecl>,
    ) -> Result<(), OutboundConfigError> {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        AllowedHosts::validate(&entries, decls)
    }

    #[test]
    fn validation_checks_literal_entries_and_templates_against_declarations() {
        let d = decls(&[
            ("db_host", Some("example.com")),
            ("db_port", Some("1234")),
            ("token", None),
        ]);
        assert_eq!(
            validate(
                &[
                    "http://x.y",
                    "*://my.db:*",
                    "http://{{ db_host }}:{{ db_port }}"
                ],
                &d
            ),
            Ok(())
        );
        assert!(matches!(
            validate(&["http://x.y", "zootle! wurdl!"], &d),
            Err(OutboundConfigError::Rule {
                index: 1,
                reason: RuleError::NoScheme,
                ..
            })
        ));
        assert!(matches!(
            validate(&["http://{{ nope }}"], &d),
            Err(OutboundConfigError::Variable {
                reason: VariableError::Undeclared { .. },
                ..
            })
        ));
        assert!(matches!(
            validate(&["http://{{ nope"], &d),
            Err(OutboundConfigError::Template { .. })
        ));
    }

    #[test]
    fn validation_renders_with_defaults_when_every_variable_has_one() {
        let d = decls(&[
            ("bad", Some("zoinks, Scooby!")),
            ("empty", Some("")),
            ("required", None),
        ]);
        assert!(matches!(
            validate(&["http://{{ bad }}"], &d),
            Err(OutboundConfigError::Rendered { .. })
        ));
        assert_eq!(
            validate(&["https://{{ empty }}", "{{ empty }}"], &d),
            Ok(())
        );
        // No value yet: checked when the app starts.
        assert_eq!(validate(&["http://{{ required }}"], &d), Ok(()));
    }
}
