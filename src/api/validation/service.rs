//! Services, Endpoints and EndpointSlices.

use super::json::{arr_of, at, int_of, opt_str, present, str_of, sub};
use super::meta::validate_labels;
use super::names::{is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_port_num};
use super::pod::{validate_port_num_or_name, validate_protocol};
use super::render::{quote, string_slice};
use super::{FieldError, Path};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kubelet's port, which LoadBalancer services may not expose.
const KUBELET_PORT: i64 = 10250;

fn is_headless(spec: &Value) -> bool {
    str_of(spec, "clusterIP") == "None"
}

/// Upstream's `ValidateService` for the rules a user can hit: ports, type, affinity, selector,
/// clusterIP and externalName.
pub(crate) fn validate_service(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let svc_type = str_of(spec, "type");
    let ports = arr_of(spec, "ports");
    let mut errs = Vec::new();
    if ports.is_empty() && !is_headless(spec) && svc_type != "ExternalName" {
        errs.push(FieldError::required(&path.child("ports"), ""));
    }
    errs.extend(validate_by_type(spec, svc_type, &path));
    errs.extend(validate_service_ports(ports, &path.child("ports")));
    errs.extend(validate_labels(
        spec.get("selector"),
        &path.child("selector"),
    ));
    errs.extend(validate_session_affinity(spec, &path));
    errs.extend(validate_service_type(svc_type, &path.child("type")));
    errs.extend(validate_cluster_ip(spec, svc_type, &path));
    if svc_type == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_of(p, "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    &path.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    errs
}

/// Type-specific rules: no headless NodePort/LoadBalancer, ExternalName needs a DNS name.
fn validate_by_type(spec: &Value, svc_type: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let first_ip = || path.child("clusterIPs").index(0);
    match svc_type {
        "LoadBalancer" | "NodePort" if is_headless(spec) => {
            errs.push(FieldError::invalid(
                &first_ip(),
                quote("None"),
                &format!("may not be set to 'None' for {svc_type} services"),
            ));
        }
        "ExternalName" => {
            for field in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                let set = match present(spec, field) {
                    Some(Value::Array(a)) => !a.is_empty(),
                    Some(_) => true,
                    None => false,
                };
                if set {
                    errs.push(FieldError::forbidden(
                        &path.child(field),
                        "may not be set for ExternalName services",
                    ));
                }
            }
            let cname = str_of(spec, "externalName").trim_end_matches('.');
            let p = path.child("externalName");
            if cname.is_empty() {
                errs.push(FieldError::required(&p, ""));
            } else {
                errs.extend(
                    is_dns1123_subdomain(cname)
                        .iter()
                        .map(|m| FieldError::invalid(&p, quote(cname), m)),
                );
            }
        }
        _ => {}
    }
    if svc_type == "LoadBalancer" {
        for (i, p) in arr_of(spec, "ports").iter().enumerate() {
            if int_of(p, "port") == Some(KUBELET_PORT) {
                errs.push(FieldError::invalid(
                    &path.child("ports").index(i),
                    KUBELET_PORT.to_string(),
                    "may not expose port 10250 externally since it is used by kubelet",
                ));
            }
        }
    }
    errs
}

/// Ports: names required (and unique DNS labels) when there is more than one, valid port and
/// targetPort, protocol, and no duplicate (protocol, port) pairs.
fn validate_service_ports(ports: &[Value], path: &Path) -> Vec<FieldError> {
    let require_name = ports.len() > 1;
    let mut names = HashSet::new();
    let mut seen = HashSet::new();
    let mut errs = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = path.index(i);
        errs.extend(validate_service_port(p, require_name, &mut names, &idx));
        let key = (str_of(p, "protocol"), int_of(p, "port").unwrap_or(0));
        if !seen.insert(key) {
            errs.push(FieldError::duplicate(
                &idx,
                json!({"protocol": key.0, "port": key.1}).to_string(),
            ));
        }
    }
    errs
}

fn validate_service_port<'a>(
    p: &'a Value,
    require_name: bool,
    names: &mut HashSet<&'a str>,
    idx: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_of(p, "name");
    let name_path = idx.child("name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else if !name.is_empty() {
        errs.extend(
            is_dns1123_label(name)
                .iter()
                .map(|m| FieldError::invalid(&name_path, quote(name), m)),
        );
        if !names.insert(name) {
            errs.push(FieldError::duplicate(&name_path, quote(name)));
        }
    }
    let port = int_of(p, "port").unwrap_or(0);
    errs.extend(
        is_valid_port_num(port)
            .iter()
            .map(|m| FieldError::invalid(&idx.child("port"), port.to_string(), m)),
    );
    errs.extend(validate_protocol(p, &idx.child("protocol")));
    errs.extend(validate_port_num_or_name(
        p.get("targetPort"),
        &idx.child("targetPort"),
    ));
    if let Some(app) = opt_str(p, "appProtocol") {
        errs.extend(
            is_qualified_name(app)
                .iter()
                .map(|m| FieldError::invalid(&idx.child("appProtocol"), quote(app), m)),
        );
    }
    errs
}

fn validate_session_affinity(spec: &Value, path: &Path) -> Vec<FieldError> {
    let p = path.child("sessionAffinity");
    match str_of(spec, "sessionAffinity") {
        "" => vec![FieldError::required(&p, "")],
        "ClientIP" | "None" => Vec::new(),
        other => vec![FieldError::not_supported(
            &p,
            quote(other),
            &["ClientIP", "None"],
        )],
    }
}

fn validate_service_type(svc_type: &str, path: &Path) -> Vec<FieldError> {
    match svc_type {
        "" => vec![FieldError::required(path, "")],
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => Vec::new(),
        other => vec![FieldError::not_supported(
            path,
            quote(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )],
    }
}

/// clusterIP / clusterIPs entries are `None` (headless, first entry only) or IP addresses.
fn validate_cluster_ip(spec: &Value, svc_type: &str, path: &Path) -> Vec<FieldError> {
    if svc_type == "ExternalName" {
        return Vec::new();
    }
    let mut errs = Vec::new();
    let single = str_of(spec, "clusterIP");
    if !single.is_empty() && single != "None" && single.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(
            &path.child("clusterIP"),
            quote(single),
            "must be empty, 'None', or a valid IP address",
        ));
    }
    let ips = arr_of(spec, "clusterIPs");
    if let (Some(first), false) = (ips.first().and_then(Value::as_str), single.is_empty()) {
        if first != single {
            errs.push(FieldError::invalid(
                &path.child("clusterIPs"),
                ip_list(ips),
                "first value must match `clusterIP`",
            ));
        }
    }
    errs
}

fn ip_list(ips: &[Value]) -> String {
    let strs: Vec<&str> = ips.iter().filter_map(Value::as_str).collect();
    string_slice(&strs)
}

/// The primary cluster IP, from `clusterIPs[0]` or `clusterIP`.
fn primary_ip(spec: &Value) -> &str {
    arr_of(spec, "clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_of(spec, "clusterIP"))
}

/// The primary cluster IP may not change once allocated (unless ExternalName is involved). An
/// update that omits it keeps the allocated one (upstream carries it forward), so only an
/// explicit, different value is an error.
pub(crate) fn validate_service_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let (o, n) = (sub(old, &["spec"]), sub(new, &["spec"]));
    if str_of(o, "type") == "ExternalName" || str_of(n, "type") == "ExternalName" {
        return Vec::new();
    }
    let (old_ip, new_ip) = (primary_ip(o), primary_ip(n));
    if old_ip.is_empty() || new_ip.is_empty() || old_ip == new_ip {
        return Vec::new();
    }
    let shown = if arr_of(n, "clusterIPs").is_empty() {
        string_slice(&[new_ip])
    } else {
        ip_list(arr_of(n, "clusterIPs"))
    };
    vec![FieldError::invalid(
        &Path::new("spec").child("clusterIPs").index(0),
        shown,
        "may not change once set",
    )]
}

/// Endpoints: each subset needs addresses and ports; addresses are IPs; ports as services'.
pub(crate) fn validate_endpoints(obj: &Value) -> Vec<FieldError> {
    let path = Path::new("subsets");
    let mut errs = Vec::new();
    for (i, ss) in arr_of(obj, "subsets").iter().enumerate() {
        let idx = path.index(i);
        if arr_of(ss, "addresses").is_empty() && arr_of(ss, "notReadyAddresses").is_empty() {
            errs.push(FieldError::required(
                &idx,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for field in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr_of(ss, field).iter().enumerate() {
                let ip = str_of(a, "ip");
                if ip.parse::<IpAddr>().is_err() {
                    errs.push(FieldError::invalid(
                        &idx.child(field).index(j).child("ip"),
                        quote(ip),
                        "must be a valid IP address",
                    ));
                }
            }
        }
        errs.extend(validate_endpoint_ports(
            arr_of(ss, "ports"),
            &idx.child("ports"),
        ));
    }
    errs
}

fn validate_endpoint_ports(ports: &[Value], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = path.index(i);
        let name = str_of(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(&idx.child("name"), ""));
        } else if !name.is_empty() {
            errs.extend(
                is_dns1123_label(name)
                    .iter()
                    .map(|m| FieldError::invalid(&idx.child("name"), quote(name), m)),
            );
            if !names.insert(name) {
                errs.push(FieldError::duplicate(&idx.child("name"), quote(name)));
            }
        }
        let port = int_of(p, "port").unwrap_or(0);
        errs.extend(
            is_valid_port_num(port)
                .iter()
                .map(|m| FieldError::invalid(&idx.child("port"), port.to_string(), m)),
        );
        errs.extend(validate_protocol(p, &idx.child("protocol")));
    }
    errs
}

/// The per-slice limits upstream enforces.
const MAX_ADDRESSES: usize = 100;
const MAX_ENDPOINTS: usize = 1000;

/// EndpointSlice: addressType, endpoint addresses of that type, and ports.
pub(crate) fn validate_endpoint_slice(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let addr_type = str_of(obj, "addressType");
    let at_path = Path::new("addressType");
    match addr_type {
        "" => errs.push(FieldError::required(&at_path, "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(FieldError::not_supported(
            &at_path,
            quote(other),
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    let endpoints = arr_of(obj, "endpoints");
    let ep_path = Path::new("endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(FieldError::too_many(
            &ep_path,
            endpoints.len(),
            MAX_ENDPOINTS,
        ));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        errs.extend(validate_slice_endpoint(ep, addr_type, &ep_path.index(i)));
    }
    errs.extend(validate_slice_ports(
        arr_of(obj, "ports"),
        &Path::new("ports"),
    ));
    errs
}

fn validate_slice_endpoint(ep: &Value, addr_type: &str, path: &Path) -> Vec<FieldError> {
    let addresses = arr_of(ep, "addresses");
    let addr_path = path.child("addresses");
    let mut errs = Vec::new();
    if addresses.is_empty() {
        errs.push(FieldError::required(
            &addr_path,
            "must contain at least 1 address",
        ));
    } else if addresses.len() > MAX_ADDRESSES {
        errs.push(FieldError::too_many(
            &addr_path,
            addresses.len(),
            MAX_ADDRESSES,
        ));
    }
    for (i, a) in addresses.iter().enumerate() {
        let a = a.as_str().unwrap_or("");
        let p = addr_path.index(i);
        let msg = match addr_type {
            "IPv4" if a.parse::<Ipv4Addr>().is_err() => Some("must be a valid IPv4 address"),
            "IPv6" if a.parse::<Ipv6Addr>().is_err() => Some("must be a valid IPv6 address"),
            _ => None,
        };
        if let Some(m) = msg {
            errs.push(FieldError::invalid(&p, quote(a), m));
        }
        if addr_type == "FQDN" {
            errs.extend(
                is_dns1123_subdomain(a)
                    .iter()
                    .map(|m| FieldError::invalid(&p, quote(a), m)),
            );
        }
    }
    if let Some(host) = opt_str(ep, "hostname") {
        errs.extend(
            is_dns1123_label(host)
                .iter()
                .map(|m| FieldError::invalid(&path.child("hostname"), quote(host), m)),
        );
    }
    errs
}

fn validate_slice_ports(ports: &[Value], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = path.index(i);
        let name = str_of(p, "name");
        if !name.is_empty() {
            errs.extend(
                is_dns1123_label(name)
                    .iter()
                    .map(|m| FieldError::invalid(&idx.child("name"), quote(name), m)),
            );
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(&idx.child("name"), quote(name)));
        }
        if let Some(port) = int_of(p, "port") {
            errs.extend(
                is_valid_port_num(port)
                    .iter()
                    .map(|m| FieldError::invalid(&idx.child("port"), port.to_string(), m)),
            );
        }
        if at(p, &["protocol"]).is_some() {
            errs.extend(validate_protocol(p, &idx.child("protocol")));
        }
        if let Some(app) = opt_str(p, "appProtocol") {
            errs.extend(
                is_qualified_name(app)
                    .iter()
                    .map(|m| FieldError::invalid(&idx.child("appProtocol"), quote(app), m)),
            );
        }
    }
    errs
}
