//! Resource URLs: `/api/v1/namespaces/ns/pods/name/status` and friends.

use super::registry::{Registry, ResourceInfo, Subresource};
use super::status::{ApiError, ApiResult};

/// What a resource URL names.
#[derive(Debug, Clone)]
pub struct ResourcePath<'r> {
    pub resource: &'r ResourceInfo,
    /// The namespace in the URL (None for cluster-scoped resources and all-namespace lists).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

/// What any URL under `/api` or `/apis` names.
#[derive(Debug)]
pub enum ApiPath<'r> {
    /// `/api/v1` or `/apis/apps/v1`: the resource list of a group version.
    GroupVersion {
        group: String,
        version: String,
    },
    /// `/apis/apps`: a group.
    Group {
        group: String,
    },
    Resource(ResourcePath<'r>),
}

/// Parses the path after its `/api` or `/apis` prefix (`legacy` tells which).
pub fn parse<'r>(registry: &'r Registry, full: &str, legacy: bool) -> ApiResult<ApiPath<'r>> {
    let rest = if legacy {
        full.strip_prefix("/api")
    } else {
        full.strip_prefix("/apis")
    }
    .unwrap_or(full);
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = if legacy {
        match segments.split_first() {
            Some((v, rest)) => ("", *v, rest),
            None => return Err(ApiError::no_route(full)),
        }
    } else {
        match segments.as_slice() {
            [g] => {
                return Ok(ApiPath::Group {
                    group: g.to_string(),
                })
            }
            [g, v, rest @ ..] => (*g, *v, rest),
            _ => return Err(ApiError::no_route(full)),
        }
    };
    if rest.is_empty() {
        return Ok(ApiPath::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    let lookup = |plural: &str| {
        registry
            .find(group, version, plural)
            .ok_or_else(|| ApiError::no_route(full))
    };
    // `namespaces/{ns}/{plural}/...` names a namespaced resource, unless the third segment is a
    // subresource of the namespace itself (`namespaces/{name}/status`).
    if let ["namespaces", ns, plural, tail @ ..] = rest {
        if let Some(r) = registry
            .find(group, version, plural)
            .filter(|r| r.namespaced)
        {
            let (name, sub) = name_and_sub(r, tail, full)?;
            return Ok(ApiPath::Resource(ResourcePath {
                resource: r,
                namespace: Some(ns.to_string()),
                name,
                subresource: sub,
            }));
        }
    }
    let (plural, tail) = match rest.split_first() {
        Some((p, t)) => (*p, t),
        None => return Err(ApiError::no_route(full)),
    };
    let r = lookup(plural)?;
    let (name, sub) = name_and_sub(r, tail, full)?;
    Ok(ApiPath::Resource(ResourcePath {
        resource: r,
        namespace: None,
        name,
        subresource: sub,
    }))
}

fn name_and_sub(
    r: &ResourceInfo,
    tail: &[&str],
    full: &str,
) -> ApiResult<(Option<String>, Option<Subresource>)> {
    match tail {
        [] => Ok((None, None)),
        [name] => Ok((Some(decode(name)), None)),
        [name, sub] => {
            let found = r
                .subresources
                .iter()
                .copied()
                .find(|s| s.name() == *sub)
                .ok_or_else(|| ApiError::no_route(full))?;
            Ok((Some(decode(name)), Some(found)))
        }
        _ => Err(ApiError::no_route(full)),
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource<'r>(reg: &'r Registry, path: &str) -> ResourcePath<'r> {
        let legacy = path.starts_with("/api/");
        match parse(reg, path, legacy) {
            Ok(ApiPath::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_resource_urls() {
        let reg = Registry::builtin();
        let p = resource(&reg, "/api/v1/namespaces/default/pods/web-1/status");
        assert_eq!(p.resource.plural, "pods");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.name.as_deref(), Some("web-1"));
        assert_eq!(p.subresource, Some(Subresource::Status));

        let p = resource(&reg, "/api/v1/namespaces/demo");
        assert_eq!(p.resource.plural, "namespaces");
        assert_eq!(p.name.as_deref(), Some("demo"));

        let p = resource(&reg, "/api/v1/namespaces/demo/status");
        assert_eq!(p.resource.plural, "namespaces");
        assert_eq!(p.subresource, Some(Subresource::Status));

        let p = resource(&reg, "/api/v1/pods");
        assert!(p.namespace.is_none() && p.name.is_none());

        let p = resource(&reg, "/apis/apps/v1/namespaces/x/deployments/web/scale");
        assert_eq!(p.subresource, Some(Subresource::Scale));

        let p = resource(&reg, "/api/v1/nodes/n1");
        assert_eq!(p.name.as_deref(), Some("n1"));
    }

    #[test]
    fn unknown_urls_are_not_found() {
        let reg = Registry::builtin();
        for path in [
            "/api/v1/widgets",
            "/apis/apps/v1/namespaces/x/pods",
            "/api/v1/namespaces/x/pods/a/b/c",
            "/api/v1/namespaces/x/configmaps/a/status",
        ] {
            let legacy = path.starts_with("/api/");
            let err = parse(&reg, path, legacy).expect_err(path);
            assert_eq!(err.code.as_u16(), 404, "{path}");
        }
    }
}
