//! HTTP routing with the semantics of Spin 4.1's HTTP trigger (`spin-http-routes`, which
//! ranks routes with routefinder 0.5), reimplemented segment-wise.
//!
//! Route syntax: `/a/b` is exact (a trailing `/` is ignored on both sides, so it also
//! matches `/a/b/`); `:name` matches one segment and is passed on as
//! `spin-path-match-name`; a trailing `/...` (or `/*`) matches the prefix itself and
//! anything below it (`/a/...` matches `/a`, `/a/`, `/a/x/y`), with the rest passed on as
//! `spin-path-info`.
//!
//! Precedence: candidates are compared segment by segment, the first difference deciding:
//! a literal segment beats a parameter, which beats the trailing wildcard, and a route that
//! has ended beats one that continues with its wildcard. So `/one` beats `/...`, and the
//! longest wildcard prefix wins (`/a/b/...` over `/a/...`) whatever the declaration order.
//! Routes are sorted by that order once, at build time; [`Router::route`] takes the first
//! match, allocating only for `:name` captures.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::schema::{ComponentId, HttpTrigger, RouteSpec};

/// Paths the runtime answers itself, before routing: `health` and `info`; any other path
/// under the prefix is a 404.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// Names of the headers Spin adds to the request a guest sees.
pub mod header {
    pub const PATH_INFO: &str = "spin-path-info";
    pub const FULL_URL: &str = "spin-full-url";
    pub const MATCHED_ROUTE: &str = "spin-matched-route";
    pub const BASE_PATH: &str = "spin-base-path";
    pub const RAW_COMPONENT_ROUTE: &str = "spin-raw-component-route";
    pub const COMPONENT_ROUTE: &str = "spin-component-route";
    pub const CLIENT_ADDR: &str = "spin-client-addr";
    /// Followed by the lowercased parameter name, `_` written as `-`.
    pub const PATH_MATCH_PREFIX: &str = "spin-path-match-";
}

/// A path the runtime serves itself under [`WELL_KNOWN_PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnown {
    /// `/.well-known/spin/health`: 200 `OK`.
    Health,
    /// `/.well-known/spin/info`: app information as JSON.
    Info,
    /// Anything else under the prefix: 404, never routed to a component.
    NotFound,
}

/// Classifies a request path; `None` means "route it".
pub fn well_known(path: &str) -> Option<WellKnown> {
    match path.strip_prefix(WELL_KNOWN_PREFIX)? {
        "health" => Some(WellKnown::Health),
        "info" => Some(WellKnown::Info),
        _ => Some(WellKnown::NotFound),
    }
}

/// `spin-full-url`: the request as the client addressed it. Spin uses `localhost` when the
/// request has no `Host` header.
pub fn full_url(scheme: &str, host: Option<&str>, path_and_query: &str) -> String {
    format!("{scheme}://{}{path_and_query}", host.unwrap_or("localhost"))
}

/// Path segments [`Router::route`] splits onto the stack; deeper routes still work.
const INLINE_SEGMENTS: usize = 16;

/// The HTTP routes of an app, ready to match request paths.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// In precedence order: the first route that matches wins.
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    component: ComponentId,
    trigger: usize,
    /// As written in the manifest (`spin-raw-component-route`).
    raw: String,
    /// Absolute, one trailing `/` removed (`spin-matched-route`; `""` for `/`).
    matched: String,
    /// `raw` without a trailing `/...` (`spin-component-route`).
    component_route: String,
    segments: Vec<Segment>,
    wildcard: bool,
    /// `spin-path-match-<name>` for each parameter, in order.
    param_headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Param(String),
}

/// Why the routes cannot be built; names the trigger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("trigger.http[{index}] (component `{component}`): route `{route}`: {reason}")]
    Invalid {
        index: usize,
        component: ComponentId,
        route: String,
        reason: RoutePatternError,
    },
    /// Spin keeps only one of two equivalent routes and logs an error; a duplicate is always
    /// a mistake, and which one Spin keeps depends on details of how they are spelled.
    #[error(
        "trigger.http[{index}] (component `{component}`): route `{route}` duplicates route \
         `{first_route}` of trigger.http[{first_index}] (component `{first_component}`); \
         only one of them could ever be reached"
    )]
    Duplicate {
        index: usize,
        component: ComponentId,
        route: String,
        first_index: usize,
        first_component: ComponentId,
        first_route: String,
    },
}

/// Why one route pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutePatternError {
    #[error("`:` must be followed by a parameter name")]
    UnnamedParam,
    #[error("parameter name `{0}` may contain only ASCII letters, digits, `_` and `-`")]
    ParamName(String),
    #[error("parameters `{first}` and `{second}` would both be passed as header `{}`", param_header(.second))]
    DuplicateParam { first: String, second: String },
    #[error("segment `{0}`: a parameter must be a whole segment (`/:name`)")]
    PartialParam(String),
    #[error("segment `{0}`: `*` may only be the whole last segment (`/prefix/*` or `/prefix/...`)")]
    MisplacedWildcard(String),
    #[error(
        "routes under {WELL_KNOWN_PREFIX} are served by the runtime and would never be reached"
    )]
    Reserved,
}

impl Router {
    /// Builds the router from the app's HTTP triggers; private routes are skipped.
    pub fn build(triggers: &[HttpTrigger]) -> Result<Self, RouteError> {
        let mut routes: Vec<Route> = Vec::with_capacity(triggers.len());
        let mut shapes: HashMap<String, usize> = HashMap::new();
        for (index, trigger) in triggers.iter().enumerate() {
            let RouteSpec::Route(raw) = &trigger.route else {
                continue;
            };
            let route = Route::parse(raw, trigger.component.clone(), index).map_err(|reason| {
                RouteError::Invalid {
                    index,
                    component: trigger.component.clone(),
                    route: raw.clone(),
                    reason,
                }
            })?;
            let shape = route.shape();
            if let Some(&first) = shapes.get(&shape) {
                let first = &routes[first];
                return Err(RouteError::Duplicate {
                    index,
                    component: trigger.component.clone(),
                    route: raw.clone(),
                    first_index: first.trigger,
                    first_component: first.component.clone(),
                    first_route: first.raw.clone(),
                });
            }
            shapes.insert(shape, routes.len());
            routes.push(route);
        }
        // Stable, so routes that can never match the same path keep manifest order.
        routes.sort_by(Route::precedence);
        Ok(Self { routes })
    }

    /// The route for a request path (no query string), or `None` for a 404.
    pub fn route<'a>(&'a self, path: &'a str) -> Option<RouteMatch<'a>> {
        let trimmed = path.trim_matches('/');
        // Split once, on the stack; routes compare slices. Longer paths still count right,
        // and routes longer than the buffer fall back to splitting again.
        let mut parts = [""; INLINE_SEGMENTS];
        let mut count = 0;
        if !trimmed.is_empty() {
            for part in trimmed.split('/') {
                if let Some(slot) = parts.get_mut(count) {
                    *slot = part;
                }
                count += 1;
            }
        }
        let route = self
            .routes
            .iter()
            .find(|route| route.matches(&parts, trimmed, count))?;
        Some(RouteMatch::new(route, path, trimmed))
    }

    /// `(route as written, component)` in precedence order, for startup logs.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &ComponentId)> {
        self.routes
            .iter()
            .map(|route| (route.raw.as_str(), &route.component))
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Route {
    fn parse(raw: &str, component: ComponentId, trigger: usize) -> Result<Self, RoutePatternError> {
        let absolute = if raw.starts_with('/') {
            raw.to_owned()
        } else {
            format!("/{raw}")
        };
        let matched = absolute.strip_suffix('/').unwrap_or(&absolute).to_owned();
        if matched.starts_with(WELL_KNOWN_PREFIX) {
            return Err(RoutePatternError::Reserved);
        }
        let (prefix, wildcard) = match matched
            .strip_suffix("/...")
            .or_else(|| matched.strip_suffix("/*"))
        {
            Some(prefix) => (prefix, true),
            None => (matched.as_str(), false),
        };
        let segments = prefix
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(parse_segment)
            .collect::<Result<Vec<_>, _>>()?;
        let mut param_headers: Vec<String> = Vec::new();
        let mut param_names: Vec<&str> = Vec::new();
        for segment in &segments {
            let Segment::Param(name) = segment else {
                continue;
            };
            let header = param_header(name);
            if let Some(i) = param_headers.iter().position(|h| *h == header) {
                return Err(RoutePatternError::DuplicateParam {
                    first: param_names[i].to_owned(),
                    second: name.clone(),
                });
            }
            param_headers.push(header);
            param_names.push(name);
        }
        Ok(Self {
            component,
            trigger,
            raw: raw.to_owned(),
            component_route: raw.strip_suffix("/...").unwrap_or(raw).to_owned(),
            matched,
            segments,
            wildcard,
            param_headers,
        })
    }

    /// Two routes with the same shape match exactly the same paths.
    fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            match segment {
                Segment::Exact(text) => shape.push_str(text),
                Segment::Param(_) => shape.push(':'),
            }
        }
        if self.wildcard {
            shape.push_str("/*");
        }
        shape
    }

    /// Rank of position `i`: a route that has ended (3) beats a literal (2), a parameter
    /// (1), and the trailing wildcard (0).
    fn rank(&self, i: usize) -> u8 {
        match self.segments.get(i) {
            Some(Segment::Exact(_)) => 2,
            Some(Segment::Param(_)) => 1,
            None if self.wildcard && i == self.segments.len() => 0,
            None => 3,
        }
    }

    /// `Less` when `self` must be tried first.
    fn precedence(&self, other: &Self) -> Ordering {
        let longest = self.segments.len().max(other.segments.len());
        for i in 0..=longest {
            let (mine, theirs) = (self.rank(i), other.rank(i));
            if mine != theirs {
                return theirs.cmp(&mine);
            }
            if mine == 0 || mine == 3 {
                break;
            }
        }
        Ordering::Equal
    }

    fn matches(&self, parts: &[&str; INLINE_SEGMENTS], trimmed: &str, count: usize) -> bool {
        let needed = self.segments.len();
        let fits = if self.wildcard {
            count >= needed
        } else {
            count == needed
        };
        if !fits {
            return false;
        }
        let same = |(part, segment): (&str, &Segment)| match segment {
            Segment::Exact(text) => part == text,
            Segment::Param(_) => true,
        };
        match parts.get(..needed) {
            Some(parts) => parts.iter().copied().zip(&self.segments).all(same),
            None => trimmed.split('/').zip(&self.segments).all(same),
        }
    }
}

/// Spin's `SPIN_PATH_MATCH_<NAME>` key, lowercased with `_` as `-`.
fn param_header(name: &str) -> String {
    format!(
        "{}{}",
        header::PATH_MATCH_PREFIX,
        name.to_ascii_lowercase().replace('_', "-")
    )
}

fn parse_segment(segment: &str) -> Result<Segment, RoutePatternError> {
    if let Some(name) = segment.strip_prefix(':') {
        if name.is_empty() {
            return Err(RoutePatternError::UnnamedParam);
        }
        if name.contains('.') {
            // routefinder would read `:id.json` as parameter `id` then `.json`.
            return Err(RoutePatternError::PartialParam(segment.to_owned()));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(RoutePatternError::ParamName(name.to_owned()));
        }
        return Ok(Segment::Param(name.to_owned()));
    }
    // routefinder also splits segments at dots, where `:` and `*` start a parameter or a
    // wildcard again; such routes are surely unintended, so refuse rather than guess.
    for piece in segment.split('.') {
        if piece.starts_with(':') {
            return Err(RoutePatternError::PartialParam(segment.to_owned()));
        }
        if piece.starts_with('*') {
            return Err(RoutePatternError::MisplacedWildcard(segment.to_owned()));
        }
    }
    Ok(Segment::Exact(segment.to_owned()))
}

/// A routed request: the component to run and what Spin tells it about the match.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    pub component: &'a ComponentId,
    route: &'a Route,
    path: &'a str,
    params: Vec<&'a str>,
    /// What the trailing wildcard captured, without the slashes around it.
    rest: &'a str,
}

impl<'a> RouteMatch<'a> {
    fn new(route: &'a Route, path: &'a str, trimmed: &'a str) -> Self {
        let params = if route.param_headers.is_empty() {
            Vec::new()
        } else {
            trimmed
                .split('/')
                .zip(&route.segments)
                .filter(|(_, segment)| matches!(segment, Segment::Param(_)))
                .map(|(part, _)| part)
                .collect()
        };
        let rest = if !route.wildcard {
            ""
        } else if route.segments.is_empty() {
            trimmed
        } else {
            trimmed
                .match_indices('/')
                .nth(route.segments.len() - 1)
                .map_or("", |(i, _)| &trimmed[i + 1..])
        };
        Self {
            component: &route.component,
            route,
            path,
            params,
            rest,
        }
    }

    /// The route as written in the manifest.
    pub fn raw_route(&self) -> &'a str {
        &self.route.raw
    }

    /// `spin-matched-route`: the route made absolute with one trailing `/` removed, so the
    /// route `/` gives `""` (a Spin quirk kept for compatibility).
    pub fn matched_route(&self) -> &'a str {
        &self.route.matched
    }

    /// `spin-component-route`: the route as written without a trailing `/...`.
    pub fn component_route(&self) -> &'a str {
        &self.route.component_route
    }

    /// `spin-path-info`: what the trailing wildcard matched, with a leading `/` and the
    /// request's trailing `/` kept; `""` for exact routes. For `/foo/...`: `/foo` gives
    /// `""`, `/foo/` gives `/`, `/foo/bar` gives `/bar`, `/foo/bar/` gives `/bar/`.
    pub fn path_info(&self) -> Cow<'a, str> {
        if !self.route.wildcard {
            return Cow::Borrowed("");
        }
        match (self.rest.is_empty(), self.path.ends_with('/')) {
            (true, false) => Cow::Borrowed(""),
            (true, true) => Cow::Borrowed("/"),
            (false, false) => Cow::Owned(format!("/{}", self.rest)),
            (false, true) => Cow::Owned(format!("/{}/", self.rest)),
        }
    }

    /// `(name, value)` of each `:name` capture, in route order; values are not decoded.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let names = self
            .route
            .segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Param(name) => Some(name.as_str()),
                Segment::Exact(_) => None,
            });
        names.zip(self.params.iter().copied())
    }

    /// Index of the matched trigger in `[[trigger.http]]`.
    pub fn trigger_index(&self) -> usize {
        self.route.trigger
    }

    /// The `spin-*` headers for the guest request, in Spin's order. `full_url` is the
    /// `spin-full-url` value (see [`full_url`]). Spin appends these after the client's own
    /// headers without removing client-sent `spin-*` ones.
    pub fn spin_headers(&self, full_url: &str, client_addr: SocketAddr) -> Vec<(&'a str, String)> {
        let mut headers = Vec::with_capacity(7 + self.params.len());
        headers.push((header::PATH_INFO, self.path_info().into_owned()));
        headers.push((header::FULL_URL, full_url.to_owned()));
        headers.push((header::MATCHED_ROUTE, self.matched_route().to_owned()));
        headers.push((header::BASE_PATH, "/".to_owned()));
        headers.push((header::RAW_COMPONENT_ROUTE, self.raw_route().to_owned()));
        headers.push((header::COMPONENT_ROUTE, self.component_route().to_owned()));
        headers.push((header::CLIENT_ADDR, client_addr.to_string()));
        for (name, value) in self.route.param_headers.iter().zip(&self.params) {
            headers.push((name.as_str(), (*value).to_owned()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn trigger(route: &str, component: &str) -> HttpTrigger {
        HttpTrigger {
            id: format!("{component}-http-trigger"),
            route: RouteSpec::Route(route.to_owned()),
            component: ComponentId::parse(component).unwrap(),
        }
    }

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<HttpTrigger> = routes.iter().map(|(r, c)| trigger(r, c)).collect();
        Router::build(&triggers).unwrap()
    }

    fn component<'a>(router: &'a Router, path: &'a str) -> Option<&'a str> {
        router.route(path).map(|m| m.component.as_str())
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:8777".parse().unwrap()
    }

    /// The ticketing app's kind of route table, declared in a deliberately unhelpful order.
    fn app_router() -> Router {
        router(&[
            ("/...", "fallback"),
            ("/api/...", "api"),
            ("/api/queues/:queue_id/...", "queue-any"),
            ("/api/queues/:queue_id", "queue-one"),
            ("/api/queues/stats", "queue-stats"),
            ("/api/queues/stats/...", "queue-stats-any"),
            ("/api/users/:user_id/orders/:order_id", "order"),
            ("/api/:kind/latest", "latest"),
            ("/", "root"),
            ("/static/*", "static"),
            ("exact/", "exact"),
            ("/.well-known/spin", "well-known-ish"),
        ])
    }

    #[test]
    fn the_precedence_table_holds() {
        let r = app_router();
        // path, component, spin-path-info, spin-matched-route, spin-component-route
        let table: &[(&str, &str, &str, &str, &str)] = &[
            ("/", "root", "", "", "/"),
            ("", "root", "", "", "/"),
            ("//", "root", "", "", "/"),
            ("/x", "fallback", "/x", "/...", ""),
            ("/x/", "fallback", "/x/", "/...", ""),
            ("/x/y//", "fallback", "/x/y/", "/...", ""),
            ("/api", "api", "", "/api/...", "/api"),
            ("/api/", "api", "/", "/api/...", "/api"),
            ("/api/other", "api", "/other", "/api/...", "/api"),
            ("/api/queues", "api", "/queues", "/api/...", "/api"),
            ("/api/queues/", "api", "/queues/", "/api/...", "/api"),
            (
                "/api/queues/7",
                "queue-one",
                "",
                "/api/queues/:queue_id",
                "/api/queues/:queue_id",
            ),
            (
                "/api/queues/7/",
                "queue-one",
                "",
                "/api/queues/:queue_id",
                "/api/queues/:queue_id",
            ),
            (
                "/api/queues/7/join",
                "queue-any",
                "/join",
                "/api/queues/:queue_id/...",
                "/api/queues/:queue_id",
            ),
            (
                "/api/queues/7/a/b/",
                "queue-any",
                "/a/b/",
                "/api/queues/:queue_id/...",
                "/api/queues/:queue_id",
            ),
            (
                "/api/queues/stats",
                "queue-stats",
                "",
                "/api/queues/stats",
                "/api/queues/stats",
            ),
            (
                "/api/queues/stats/",
                "queue-stats",
                "",
                "/api/queues/stats",
                "/api/queues/stats",
            ),
            (
                "/api/queues/stats/x",
                "queue-stats-any",
                "/x",
                "/api/queues/stats/...",
                "/api/queues/stats",
            ),
            // The second segment decides (literal `queues` over `:kind`), even though the
            // third would favour `/api/:kind/latest`.
            (
                "/api/queues/latest",
                "queue-one",
                "",
                "/api/queues/:queue_id",
                "/api/queues/:queue_id",
            ),
            (
                "/api/things/latest",
                "latest",
                "",
                "/api/:kind/latest",
                "/api/:kind/latest",
            ),
            (
                "/api/users/1/orders/2",
                "order",
                "",
                "/api/users/:user_id/orders/:order_id",
                "/api/users/:user_id/orders/:order_id",
            ),
            (
                "/api/users/1/orders/2/x",
                "api",
                "/users/1/orders/2/x",
                "/api/...",
                "/api",
            ),
            (
                "/api/users/1/orders",
                "api",
                "/users/1/orders",
                "/api/...",
                "/api",
            ),
            ("/static", "static", "", "/static/*", "/static/*"),
            (
                "/static/app.js",
                "static",
                "/app.js",
                "/static/*",
                "/static/*",
            ),
            ("/staticx", "fallback", "/staticx", "/...", ""),
            ("/exact", "exact", "", "/exact", "exact/"),
            ("/exact/", "exact", "", "/exact", "exact/"),
            ("/exact/more", "fallback", "/exact/more", "/...", ""),
            ("/Exact", "fallback", "/Exact", "/...", ""),
            (
                "/.well-known/spin",
                "well-known-ish",
                "",
                "/.well-known/spin",
                "/.well-known/spin",
            ),
        ];
        for &(path, expected, path_info, matched, component_route) in table {
            let m = r
                .route(path)
                .unwrap_or_else(|| panic!("{path:?} should match"));
            assert_eq!(
                (
                    m.component.as_str(),
                    m.path_info().as_ref(),
                    m.matched_route(),
                    m.component_route()
                ),
                (expected, path_info, matched, component_route),
                "{path:?}"
            );
        }
    }

    #[test]
    fn exact_routes_beat_the_catch_all() {
        let r = router(&[("/...", "wildcard"), ("/one", "one-exact")]);
        assert_eq!(component(&r, "/one"), Some("one-exact"));
        assert_eq!(component(&r, "/two"), Some("wildcard"));
    }

    #[test]
    fn the_longest_wildcard_prefix_wins_in_any_declaration_order() {
        let routes = [
            ("/one/...", "one"),
            ("/one/two/...", "one-two"),
            ("/one/two/three/...", "one-two-three"),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let r = router(&order.map(|i| routes[i]));
            assert_eq!(component(&r, "/one/two/three/four"), Some("one-two-three"));
            assert_eq!(component(&r, "/one/two/three"), Some("one-two-three"));
            assert_eq!(component(&r, "/one/two/x"), Some("one-two"));
            assert_eq!(component(&r, "/one"), Some("one"));
        }
    }

    #[test]
    fn segments_decide_left_to_right_literal_over_parameter_over_wildcard() {
        let r = router(&[
            ("/:a/b", "param-first"),
            ("/a/:b", "literal-first"),
            ("/a/...", "wild"),
        ]);
        assert_eq!(component(&r, "/a/b"), Some("literal-first"));
        assert_eq!(component(&r, "/x/b"), Some("param-first"));
        // A literal first segment beats a parameter even when the literal route is a wildcard.
        let r = router(&[("/:x", "param"), ("/foo/...", "foo-wild")]);
        assert_eq!(component(&r, "/foo"), Some("foo-wild"));
        assert_eq!(component(&r, "/bar"), Some("param"));
        // A parameter beats the wildcard at the same position.
        let r = router(&[("/foo/...", "wild"), ("/foo/:x", "param")]);
        assert_eq!(component(&r, "/foo/bar"), Some("param"));
        assert_eq!(component(&r, "/foo"), Some("wild"));
        assert_eq!(component(&r, "/foo/bar/baz"), Some("wild"));
    }

    #[test]
    fn a_route_that_ends_beats_the_same_prefix_continued_by_a_wildcard() {
        let r = router(&[("/:x/...", "wild"), ("/:x", "param")]);
        assert_eq!(component(&r, "/a"), Some("param"));
        assert_eq!(component(&r, "/a/b"), Some("wild"));
    }

    #[test]
    fn the_catch_all_matches_the_root_with_path_info_slash() {
        let r = router(&[("/...", "all")]);
        let m = r.route("/").unwrap();
        assert_eq!(m.component.as_str(), "all");
        assert_eq!(m.path_info(), "/");
        assert_eq!(m.component_route(), "");
        assert_eq!(r.route("/1/2/3").unwrap().path_info(), "/1/2/3");
    }

    #[test]
    fn nothing_matches_without_a_route_for_it() {
        let r = router(&[("/a", "a"), ("/b/:id", "b")]);
        assert_eq!(component(&r, "/"), None);
        assert_eq!(component(&r, "/a/b"), None);
        assert_eq!(component(&r, "/b"), None);
        assert_eq!(component(&r, "/b/"), None);
        assert_eq!(component(&r, "/ab"), None);
        assert!(Router::build(&[]).unwrap().route("/").is_none());
    }

    #[test]
    fn parameters_capture_whole_segments_and_become_headers() {
        let r = router(&[("/foo/:userid/...", "user"), ("/a/:x/b", "ab")]);
        let m = r.route("/foo/42/bar").unwrap();
        assert_eq!(m.params().collect::<Vec<_>>(), [("userid", "42")]);
        assert_eq!(m.path_info(), "/bar");
        assert_eq!(
            r.route("/foo/42").unwrap().params().collect::<Vec<_>>(),
            [("userid", "42")]
        );
        assert_eq!(
            r.route("/foo/a%20b").unwrap().params().next(),
            Some(("userid", "a%20b"))
        );
        // An empty segment between slashes is still a segment (routefinder does the same).
        assert_eq!(r.route("/a//b").unwrap().params().next(), Some(("x", "")));
    }

    #[test]
    fn the_spin_headers_match_spins_for_a_wildcard_route() {
        let r = router(&[("/foo/...", "dummy")]);
        let m = r.route("/foo/bar").unwrap();
        let url = full_url(
            "https",
            Some("fermyon.dev"),
            "/foo/bar?key1=value1&key2=value2",
        );
        assert_eq!(
            m.spin_headers(&url, addr()),
            [
                ("spin-path-info", "/bar".to_owned()),
                (
                    "spin-full-url",
                    "https://fermyon.dev/foo/bar?key1=value1&key2=value2".to_owned()
                ),
                ("spin-matched-route", "/foo/...".to_owned()),
                ("spin-base-path", "/".to_owned()),
                ("spin-raw-component-route", "/foo/...".to_owned()),
                ("spin-component-route", "/foo".to_owned()),
                ("spin-client-addr", "127.0.0.1:8777".to_owned()),
            ]
        );
    }

    #[test]
    fn the_spin_headers_carry_one_path_match_per_parameter() {
        let r = router(&[("/foo/:userid/:Order_ID/...", "dummy")]);
        let m = r.route("/foo/42/7/bar").unwrap();
        let headers = m.spin_headers("http://localhost/foo/42/7/bar", addr());
        assert_eq!(
            headers[2],
            (
                "spin-matched-route",
                "/foo/:userid/:Order_ID/...".to_owned()
            )
        );
        assert_eq!(
            headers[5],
            ("spin-component-route", "/foo/:userid/:Order_ID".to_owned())
        );
        assert_eq!(
            headers[7..],
            [
                ("spin-path-match-userid", "42".to_owned()),
                ("spin-path-match-order-id", "7".to_owned())
            ]
        );
    }

    #[test]
    fn the_root_route_reports_an_empty_matched_route() {
        let r = router(&[("/", "root")]);
        let headers = r
            .route("/")
            .unwrap()
            .spin_headers("http://localhost/", addr());
        assert_eq!(headers[2], ("spin-matched-route", String::new()));
        assert_eq!(headers[4], ("spin-raw-component-route", "/".to_owned()));
        assert_eq!(headers[5], ("spin-component-route", "/".to_owned()));
    }

    #[test]
    fn the_full_url_defaults_its_host_to_localhost() {
        assert_eq!(full_url("http", None, "/a?b"), "http://localhost/a?b");
        assert_eq!(
            full_url("http", Some("127.0.0.1:3000"), "/"),
            "http://127.0.0.1:3000/"
        );
    }

    #[test]
    fn relative_and_slashed_spellings_are_the_same_route() {
        for (route, path, matched) in [
            ("foo", "/foo", "/foo"),
            ("/foo/", "/foo", "/foo"),
            ("bar/...", "/bar/x", "/bar/..."),
        ] {
            let r = router(&[(route, "c")]);
            let m = r.route(path).unwrap();
            assert_eq!(m.matched_route(), matched, "{route}");
            assert_eq!(m.raw_route(), route);
        }
    }

    #[test]
    fn private_routes_are_not_routable() {
        let triggers = [
            trigger("/...", "public"),
            HttpTrigger {
                id: "internal-http-trigger".to_owned(),
                route: RouteSpec::Private,
                component: ComponentId::parse("internal").unwrap(),
            },
        ];
        let r = Router::build(&triggers).unwrap();
        assert_eq!(r.routes().count(), 1);
        assert_eq!(component(&r, "/internal"), Some("public"));
    }

    #[test]
    fn equivalent_routes_are_rejected_naming_both_triggers() {
        for (first, second) in [
            ("/foo", "/foo"),
            ("/foo", "/foo/"),
            ("/foo", "foo"),
            ("/a//b", "/a/b"),
            ("/:a", "/:b"),
            ("/x/...", "/x/*"),
            ("/", ""),
        ] {
            let triggers = [
                trigger(first, "one"),
                trigger("/other", "other"),
                trigger(second, "two"),
            ];
            let err = Router::build(&triggers).unwrap_err();
            assert!(
                matches!(
                    &err,
                    RouteError::Duplicate {
                        index: 2,
                        first_index: 0,
                        ..
                    }
                ),
                "{first} / {second}: {err}"
            );
        }
        let err = Router::build(&[trigger("/foo", "one"), trigger("/foo/", "two")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trigger.http[1] (component `two`): route `/foo/` duplicates route `/foo` of trigger.http[0] \
             (component `one`); only one of them could ever be reached"
        );
    }

    #[test]
    fn a_route_and_its_wildcard_are_not_duplicates() {
        let r = router(&[("/foo", "exact"), ("/foo/...", "wild")]);
        assert_eq!(component(&r, "/foo"), Some("exact"));
        assert_eq!(component(&r, "/foo/x"), Some("wild"));
    }

    #[test]
    fn malformed_routes_are_rejected_with_the_reason() {
        let cases: &[(&str, RoutePatternError)] = &[
            ("/a/:", RoutePatternError::UnnamedParam),
            (
                "/a/:id.json",
                RoutePatternError::PartialParam(":id.json".to_owned()),
            ),
            (
                "/a/file.:ext",
                RoutePatternError::PartialParam("file.:ext".to_owned()),
            ),
            (
                "/a/:na!me",
                RoutePatternError::ParamName("na!me".to_owned()),
            ),
            (
                "/a/*/b",
                RoutePatternError::MisplacedWildcard("*".to_owned()),
            ),
            (
                "/a/*name",
                RoutePatternError::MisplacedWildcard("*name".to_owned()),
            ),
            (
                "/a/b.*",
                RoutePatternError::MisplacedWildcard("b.*".to_owned()),
            ),
            (
                "/:user_id/:user-id",
                RoutePatternError::DuplicateParam {
                    first: "user_id".to_owned(),
                    second: "user-id".to_owned(),
                },
            ),
            ("/.well-known/spin/...", RoutePatternError::Reserved),
            ("/.well-known/spin/health", RoutePatternError::Reserved),
        ];
        for (route, expected) in cases {
            let err = Router::build(&[trigger(route, "c")]).unwrap_err();
            assert!(
                matches!(&err, RouteError::Invalid { reason, .. } if reason == expected),
                "{route}: {err}"
            );
        }
        let err = Router::build(&[trigger("/a/:", "queue")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trigger.http[0] (component `queue`): route `/a/:`: `:` must be followed by a parameter name"
        );
    }

    #[test]
    fn literal_dots_and_stars_inside_segments_are_plain_text() {
        let r = router(&[
            ("/files/app.js", "js"),
            ("/a*b/...", "star"),
            ("/v1.0/:x", "versioned"),
        ]);
        assert_eq!(component(&r, "/files/app.js"), Some("js"));
        assert_eq!(component(&r, "/files/appxjs"), None);
        assert_eq!(component(&r, "/a*b/c"), Some("star"));
        assert_eq!(component(&r, "/v1.0/x"), Some("versioned"));
    }

    #[test]
    fn paths_and_routes_deeper_than_the_inline_buffer_still_route() {
        let deep: String = (0..20).map(|i| format!("/s{i}")).collect();
        let r = router(&[(&format!("{deep}/:last"), "deep"), ("/s0/...", "shallow")]);
        let (exact, longer) = (format!("{deep}/x"), format!("{deep}/x/y"));
        let m = r.route(&exact).unwrap();
        assert_eq!(m.component.as_str(), "deep");
        assert_eq!(m.params().collect::<Vec<_>>(), [("last", "x")]);
        let m = r.route(&longer).unwrap();
        assert_eq!(m.component.as_str(), "shallow");
        assert_eq!(m.path_info(), format!("{}/x/y", &deep[3..]));
    }

    #[test]
    fn well_known_paths_are_classified_before_routing() {
        assert_eq!(
            well_known("/.well-known/spin/health"),
            Some(WellKnown::Health)
        );
        assert_eq!(well_known("/.well-known/spin/info"), Some(WellKnown::Info));
        assert_eq!(
            well_known("/.well-known/spin/other"),
            Some(WellKnown::NotFound)
        );
        assert_eq!(well_known("/.well-known/spin/"), Some(WellKnown::NotFound));
        assert_eq!(well_known("/.well-known/spin"), None);
        assert_eq!(well_known("/api"), None);
    }

    #[test]
    fn routes_are_listed_in_precedence_order() {
        let r = router(&[("/...", "all"), ("/a", "a"), ("/a/...", "a-any")]);
        let listed: Vec<&str> = r.routes().map(|(route, _)| route).collect();
        assert_eq!(listed, ["/a", "/a/...", "/..."]);
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let segment = prop::sample::select(vec![
            "api", "queues", "stats", "7", "x", "", "latest", "users", "orders", "static",
        ]);
        (prop::collection::vec(segment, 0..6), any::<bool>()).prop_map(|(segments, slash)| {
            let mut path = format!("/{}", segments.join("/"));
            if slash {
                path.push('/');
            }
            path
        })
    }

    proptest! {
        #[test]
        fn routing_does_not_depend_on_declaration_order(
            order in Just((0..12).collect::<Vec<usize>>()).prop_shuffle(),
            path in path_strategy(),
        ) {
            let reference = app_router();
            let declared: Vec<(&str, &str)> = reference.routes.iter().map(|r| (r.raw.as_str(), r.component.as_str())).collect();
            let shuffled = router(&order.iter().map(|&i| declared[i]).collect::<Vec<_>>());
            let expected = reference.route(&path).map(|m| (m.component.as_str(), m.path_info().into_owned()));
            let actual = shuffled.route(&path).map(|m| (m.component.as_str(), m.path_info().into_owned()));
            prop_assert_eq!(expected, actual);
        }
    }
}
