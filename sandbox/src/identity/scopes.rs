//! Reading the OAuth `scope` parameter the way the v2.0 endpoint does.
//!
//! The sandbox knows one resource, Microsoft Graph. Bare permission names (`User.Read`) mean
//! Graph, as they do at Microsoft; any other resource is rejected.

const GRAPH_PREFIXES: [&str; 2] = [
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000/",
];

/// What a delegated grant covers: Graph permissions plus the OpenID Connect scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScopeSet {
    /// Graph permission names without the resource prefix, first spelling kept.
    pub(crate) graph: Vec<String>,
    pub(crate) openid: bool,
    pub(crate) profile: bool,
    pub(crate) email: bool,
    pub(crate) offline_access: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScopeError {
    Missing,
    /// Carries the offending scope value.
    Invalid(String),
}

impl ScopeSet {
    /// Parses a space-separated scope list. `.default` expands to the permissions configured
    /// on the app registration, and, as at Microsoft, cannot be mixed with named permissions.
    pub(crate) fn parse(raw: &str, configured_permissions: &[String]) -> Result<Self, ScopeError> {
        let mut scopes = ScopeSet::default();
        let mut saw_any = false;
        let mut uses_default = false;
        let mut named = 0usize;
        for item in raw.split_whitespace() {
            saw_any = true;
            match item.to_ascii_lowercase().as_str() {
                "openid" => scopes.openid = true,
                "profile" => scopes.profile = true,
                "email" => scopes.email = true,
                "offline_access" => scopes.offline_access = true,
                _ => {
                    let permission = graph_permission(item)
                        .ok_or_else(|| ScopeError::Invalid(item.to_owned()))?;
                    if permission.eq_ignore_ascii_case(".default") {
                        uses_default = true;
                        for configured in configured_permissions {
                            scopes.add_graph_permission(configured);
                        }
                    } else {
                        named += 1;
                        scopes.add_graph_permission(permission);
                    }
                }
            }
        }
        if !saw_any {
            return Err(ScopeError::Missing);
        }
        if uses_default && named > 0 {
            return Err(ScopeError::Invalid(raw.trim().to_owned()));
        }
        Ok(scopes)
    }

    fn add_graph_permission(&mut self, permission: &str) {
        let known = self
            .graph
            .iter()
            .any(|existing| existing.eq_ignore_ascii_case(permission));
        if !known {
            self.graph.push(permission.to_owned());
        }
    }

    /// The `scope` value of a token response. Microsoft lists the resource permissions and the
    /// identity scopes but not `offline_access`; clients must not look for it there.
    pub(crate) fn granted_scope_string(&self) -> String {
        let mut parts: Vec<&str> = self.graph.iter().map(String::as_str).collect();
        if self.openid {
            parts.push("openid");
        }
        if self.profile {
            parts.push("profile");
        }
        if self.email {
            parts.push("email");
        }
        parts.join(" ")
    }

    /// True when every Graph permission of `requested` was granted here.
    pub(crate) fn covers(&self, requested: &ScopeSet) -> bool {
        requested.graph.iter().all(|wanted| {
            self.graph
                .iter()
                .any(|granted| granted.eq_ignore_ascii_case(wanted))
        })
    }
}

/// The permission name of a Graph scope, or None for anything that is not a Graph scope.
fn graph_permission(item: &str) -> Option<&str> {
    let permission = GRAPH_PREFIXES
        .iter()
        .find_map(|prefix| strip_prefix_ignoring_case(item, prefix))
        .unwrap_or(item);
    let well_formed = !permission.is_empty()
        && permission
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    well_formed.then_some(permission)
}

fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AppScopeError {
    Missing,
    /// Not of the `{resource}/.default` form the client credentials grant requires.
    NotDefault(String),
    /// `{resource}/.default` for a resource the sandbox does not know.
    UnknownResource(String),
}

/// Checks the scope of a client credentials request: exactly one `{resource}/.default`,
/// and the resource must be Graph.
pub(crate) fn check_app_only_scope(raw: &str) -> Result<(), AppScopeError> {
    let items: Vec<&str> = raw.split_whitespace().collect();
    let [item] = items.as_slice() else {
        return if items.is_empty() {
            Err(AppScopeError::Missing)
        } else {
            Err(AppScopeError::NotDefault(raw.trim().to_owned()))
        };
    };
    let Some(resource) = item.strip_suffix("/.default") else {
        return Err(AppScopeError::NotDefault((*item).to_owned()));
    };
    let is_graph = GRAPH_PREFIXES
        .iter()
        .any(|prefix| prefix.trim_end_matches('/').eq_ignore_ascii_case(resource));
    if is_graph {
        Ok(())
    } else {
        Err(AppScopeError::UnknownResource(resource.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Vec<String> {
        vec!["User.Read".to_owned(), "Calendars.ReadWrite".to_owned()]
    }

    #[test]
    fn reads_the_calsync_scopes() {
        let scopes = ScopeSet::parse(
            "openid profile offline_access User.Read https://graph.microsoft.com/Calendars.ReadWrite",
            &[],
        )
        .unwrap();
        assert!(scopes.openid && scopes.profile && scopes.offline_access && !scopes.email);
        assert_eq!(scopes.graph, ["User.Read", "Calendars.ReadWrite"]);
        assert_eq!(
            scopes.granted_scope_string(),
            "User.Read Calendars.ReadWrite openid profile"
        );
    }

    #[test]
    fn rejects_other_resources_and_mixed_default() {
        assert_eq!(
            ScopeSet::parse("https://foo.microsoft.com/mail.read", &[]),
            Err(ScopeError::Invalid(
                "https://foo.microsoft.com/mail.read".to_owned()
            ))
        );
        assert!(ScopeSet::parse(".default User.Read", &configured()).is_err());
        assert_eq!(ScopeSet::parse("  ", &[]), Err(ScopeError::Missing));
        let expanded =
            ScopeSet::parse("https://graph.microsoft.com/.default", &configured()).unwrap();
        assert_eq!(expanded.graph, configured());
    }

    #[test]
    fn app_only_scope_must_be_graph_default() {
        assert_eq!(
            check_app_only_scope("https://graph.microsoft.com/.default"),
            Ok(())
        );
        assert_eq!(
            check_app_only_scope("User.Read"),
            Err(AppScopeError::NotDefault("User.Read".to_owned()))
        );
        assert_eq!(
            check_app_only_scope("https://example.com/.default"),
            Err(AppScopeError::UnknownResource(
                "https://example.com".to_owned()
            ))
        );
        assert_eq!(check_app_only_scope(""), Err(AppScopeError::Missing));
    }
}
