//! Server-side printing: the `meta.k8s.io/v1` `Table` columns and cells of each served kind.
//!
//! `kubectl get` asks the server for a `Table` and prints exactly the columns it is sent, so the
//! columns and cell values here follow the upstream apiserver's printers
//! (kubernetes `pkg/printers/internalversion/printers.go`) one for one: same column names (Title
//! Case; kubectl upper-cases them), same types and priorities, same cell values including the
//! `<none>` / `<unknown>` / `<unset>` placeholders.
//!
//! Upstream's apiserver always generates tables with `Wide: true` and lets the client hide
//! priority-1 columns, so [`cells`] always returns one cell per column of [`columns`], wide ones
//! included.
//!
//! Objects arrive as `serde_json::Value` in their JSON wire form. Every field is read defensively:
//! a missing or malformed field reads as Go's zero value (empty string, 0, false, nil), which is
//! what upstream's printers see for an unset field, so nothing here can panic.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::registry::ResourceInfo;

/// One column definition as in meta.k8s.io/v1 TableColumnDefinition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Human-readable column name, Title Case as upstream ("Name", "Nominated Node").
    pub name: &'static str,
    /// OpenAPI type of the cells: "string", "integer", "number", "boolean" or "date".
    pub type_: &'static str,
    /// "name" marks the column holding the object's name; "" otherwise.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for normal columns, 1 for columns kubectl shows only with `-o wide`.
    pub priority: i32,
}

/// Returns the column definitions of `resource`'s table, in cell order.
pub fn columns(resource: &ResourceInfo) -> Vec<Column> {
    Printer::of(resource).columns().to_vec()
}

/// The cells of one row, aligned with columns(resource). `now` makes AGE testable.
pub fn cells(resource: &ResourceInfo, object: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let p = Printer::of(resource);
    let cells = match p {
        Printer::Pod => pod_cells(object, now),
        Printer::Namespace => namespace_cells(object, now),
        Printer::Node => node_cells(object, now),
        Printer::CoreEvent => event_cells(&EventFields::core(object), now),
        Printer::EventsEvent => event_cells(&EventFields::events_v1(object), now),
        Printer::ConfigMap => configmap_cells(object, now),
        Printer::Secret => secret_cells(object, now),
        Printer::ServiceAccount => service_account_cells(object, now),
        Printer::Service => service_cells(object, now),
        Printer::Endpoints => endpoints_cells(object, now),
        Printer::EndpointSlice => endpoint_slice_cells(object, now),
        Printer::Lease => lease_cells(object, now),
        Printer::Deployment => deployment_cells(object, now),
        Printer::ReplicaSet => replica_set_cells(object, now),
        Printer::DaemonSet => daemon_set_cells(object, now),
        Printer::StatefulSet => stateful_set_cells(object, now),
        Printer::Job => job_cells(object, now),
        Printer::CronJob => cron_job_cells(object, now),
        Printer::PriorityClass => priority_class_cells(object, now),
        Printer::PodDisruptionBudget => pdb_cells(object, now),
        Printer::RuntimeClass => runtime_class_cells(object, now),
        Printer::AdmissionPolicy => admission_policy_cells(object, now),
        Printer::SchedulerPlugin => scheduler_plugin_cells(object, now),
        Printer::Other => default_cells(object, now),
    };
    debug_assert_eq!(cells.len(), p.columns().len(), "cells misaligned for {p:?}");
    cells
}

/// Serializes column definitions as JSON for the Table's columnDefinitions.
///
/// Every field is always present, as upstream's `TableColumnDefinition` has no `omitempty`.
pub fn column_definitions_json(cols: &[Column]) -> Value {
    Value::Array(
        cols.iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// Human age like upstream's duration.HumanDuration ("5s", "3m12s", "2d3h", "4y"...)
///
/// Precision shrinks as the duration grows (about 2-3 significant figures). Up to one second in
/// the future is shown as "0s" to tolerate clock skew between machines; further in the future
/// is "<invalid>".
pub fn human_duration(d: Duration) -> String {
    // Go converts the float seconds with int(), truncating toward zero; num_seconds does the same.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, dy);
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------------
// Which printer a resource uses, and its columns.
// ---------------------------------------------------------------------------------------------

/// The table layout of a kind: upstream prints the internal (version-independent) type, so
/// every served version of a kind shares one layout.
use super::registry::BuiltinKind as Printer;

impl Printer {
    fn columns(self) -> &'static [Column] {
        match self {
            Printer::Pod => POD_COLUMNS,
            Printer::Namespace => NAMESPACE_COLUMNS,
            Printer::Node => NODE_COLUMNS,
            Printer::CoreEvent | Printer::EventsEvent => EVENT_COLUMNS,
            Printer::ConfigMap => CONFIGMAP_COLUMNS,
            Printer::Secret => SECRET_COLUMNS,
            Printer::ServiceAccount => SERVICE_ACCOUNT_COLUMNS,
            Printer::Service => SERVICE_COLUMNS,
            Printer::Endpoints => ENDPOINTS_COLUMNS,
            Printer::EndpointSlice => ENDPOINT_SLICE_COLUMNS,
            Printer::Lease => LEASE_COLUMNS,
            Printer::Deployment => DEPLOYMENT_COLUMNS,
            Printer::ReplicaSet => REPLICA_SET_COLUMNS,
            Printer::DaemonSet => DAEMON_SET_COLUMNS,
            Printer::StatefulSet => STATEFUL_SET_COLUMNS,
            Printer::Job => JOB_COLUMNS,
            Printer::CronJob => CRON_JOB_COLUMNS,
            Printer::PriorityClass => PRIORITY_CLASS_COLUMNS,
            Printer::PodDisruptionBudget => PDB_COLUMNS,
            Printer::RuntimeClass => RUNTIME_CLASS_COLUMNS,
            Printer::AdmissionPolicy => ADMISSION_POLICY_COLUMNS,
            Printer::SchedulerPlugin => SCHEDULER_PLUGIN_COLUMNS,
            Printer::Other => DEFAULT_COLUMNS,
        }
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const SELECTOR_DESC: &str = "Label query over pods that should match the replica count. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// A normal column.
const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A column kubectl shows only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC);
const CONTAINERS: Column = wide("Containers", "string", CONTAINERS_DESC);
const IMAGES: Column = wide("Images", "string", IMAGES_DESC);
const SELECTOR: Column = wide("Selector", "string", SELECTOR_DESC);

const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

/// Upstream's event table leads with LAST SEEN and keeps the (name-formatted) Name column last,
/// shown only with `-o wide`.
const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DESC,
        priority: 1,
    },
];

const CONFIGMAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'."),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data."),
    col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'."),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    AGE,
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// Upstream gives PreemptionPolicy priority 0 (always shown), unlike most trailing columns.
const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
];

/// Upstream printRuntimeClass.
const RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        "string",
        "Handler is the name of the underlying runtime and configuration",
    ),
    AGE,
];

/// Upstream printPodDisruptionBudget: unset bounds print as N/A.
const PDB_COLUMNS: &[Column] = &[
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
    col("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
    AGE,
];

/// wkube.dev admission policies (no upstream printer: these are wkube's own columns).
const ADMISSION_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Mode",
        "string",
        "protect enforces the policy; monitor only warns.",
    ),
    col(
        "Status",
        "string",
        "Active, or Error when the module or its settings were refused.",
    ),
    AGE,
    wide("Mutating", "boolean", "Whether the policy mutates objects."),
    wide("Message", "string", "Why the policy is in Error."),
];

/// Kinds without a printer get the table a CustomResourceDefinition without
/// additionalPrinterColumns gets upstream: Name and an "Age" column of type date whose cells are
/// already human durations. (The generic built-in fallback, "Created At" with raw RFC 3339
/// timestamps, is what kubectl users never see for their own kinds, so it is not used.)
const DEFAULT_COLUMNS: &[Column] = &[NAME, col("Age", "date", AGE_DESC)];

// ---------------------------------------------------------------------------------------------
// Defensive JSON access: missing or mistyped fields read as Go zero values.
// ---------------------------------------------------------------------------------------------

/// The value at `path`, if every step exists.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

/// The string at `path`, or "" (Go's zero string) when absent or not a string.
fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, or 0 when absent or not a number.
fn int_at(v: &Value, path: &[&str]) -> i64 {
    at(v, path).map_or(0, as_int)
}

/// A JSON number as i64; fractional numbers are truncated as Go's int conversion does.
fn as_int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

/// The integer at `path`, distinguishing absent (a nil pointer upstream) from 0.
fn opt_int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).filter(|x| x.is_number()).map(as_int)
}

fn bool_at(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`, or an empty slice.
fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// Number of entries of the map (or list) at `path`, 0 when absent.
fn len_at(v: &Value, path: &[&str]) -> i64 {
    match at(v, path) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

/// The timestamp at `path`; `None` for absent, unparsable or Go-zero times (upstream's IsZero).
fn time_at(v: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let s = at(v, path)?.as_str()?;
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    // Go's zero time, 0001-01-01T00:00:00Z, counts as unset.
    if t.timestamp() == -62_135_596_800 {
        return None;
    }
    Some(t)
}

/// Upstream's translateTimestampSince: "<unknown>" for unset times, else the human age.
fn since(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

fn name(obj: &Value) -> Value {
    Value::String(str_at(obj, &["metadata", "name"]).to_string())
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::String(since(now, time_at(obj, &["metadata", "creationTimestamp"])))
}

fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text.to_string()
    }
}

/// upstream layoutContainerCells: comma-joined container names and images.
fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (s(names.join(",")), s(images.join(",")))
}

/// upstream labels.FormatLabels: sorted `k=v` pairs joined by ",", "<none>" when empty.
fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = match map.and_then(Value::as_object) {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect(),
        None => Vec::new(),
    };
    pairs.sort();
    or_none(&pairs.join(","))
}

/// Why a LabelSelector cannot be turned into a selector (upstream rejects it as invalid).
#[derive(Debug, PartialEq, Eq)]
struct InvalidSelector;

/// upstream metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key,
/// `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. A nil or empty selector prints as "".
fn label_selector_string(sel: Option<&Value>) -> Result<String, InvalidSelector> {
    let Some(sel) = sel.filter(|v| !v.is_null()) else {
        return Ok(String::new());
    };
    let sel = sel.as_object().ok_or(InvalidSelector)?;
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").filter(|v| !v.is_null()) {
        for (k, v) in labels.as_object().ok_or(InvalidSelector)? {
            let v = v.as_str().ok_or(InvalidSelector)?;
            check_label_key(k)?;
            check_label_value(v)?;
            reqs.push((k.clone(), format!("{k}={v}")));
        }
    }
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for expr in exprs {
        let key = str_at(expr, &["key"]);
        check_label_key(key)?;
        let mut values: Vec<&str> = Vec::new();
        for v in arr_at(expr, &["values"]) {
            let v = v.as_str().ok_or(InvalidSelector)?;
            check_label_value(v)?;
            values.push(v);
        }
        values.sort_unstable();
        let text = match str_at(expr, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => return Err(InvalidSelector),
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(InvalidSelector),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(InvalidSelector),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(","))
}

/// upstream metav1.FormatLabelSelector: "<none>" for nil/empty, "<error>" for invalid.
fn format_label_selector(sel: Option<&Value>) -> String {
    match label_selector_string(sel) {
        Ok(text) => or_none(&text),
        Err(InvalidSelector) => "<error>".to_string(),
    }
}

/// A label name part: at most 63 alphanumerics, '-', '_' or '.', starting and ending
/// alphanumeric.
fn is_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Label keys are qualified names: an optional DNS-subdomain prefix and '/' then a name.
fn check_label_key(key: &str) -> Result<(), InvalidSelector> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                let b = part.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            })
    });
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(InvalidSelector)
    }
}

fn check_label_value(value: &str) -> Result<(), InvalidSelector> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(InvalidSelector)
    }
}

/// Upstream's "a,b,c + N more..." shortening of long lists, "<unset>" when empty.
fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if more {
        return format!("{joined} + {} more...", count - max);
    }
    if joined.is_empty() {
        return "<unset>".to_string();
    }
    joined
}

/// `net.JoinHostPort`: IPv6 addresses are bracketed.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---------------------------------------------------------------------------------------------
// Pods.
// ---------------------------------------------------------------------------------------------

/// Node controller's reason for pods on unreachable nodes (upstream NodeUnreachablePodReason).
const NODE_LOST_REASON: &str = "NodeLost";

/// The latest of two optional times.
fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Upstream printPod: READY counts ready containers (plus started sidecars), STATUS walks the
/// phase, scheduling gates, init containers and container states in upstream's order.
fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec_containers = arr_at(pod, &["spec", "containers"]);
    let spec_init = arr_at(pod, &["spec", "initContainers"]);
    let conditions = arr_at(pod, &["status", "conditions"]);
    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);

    // Sidecars: init containers that keep running (restartPolicy Always).
    let is_sidecar = |container_name: &str| {
        spec_init.iter().any(|c| {
            str_at(c, &["name"]) == container_name && str_at(c, &["restartPolicy"]) == "Always"
        })
    };
    let mut total = spec_containers.len() as i64;
    total += spec_init
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count() as i64;

    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut ready: i64 = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    if conditions.iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, cs) in arr_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let cname = str_at(cs, &["name"]);
        let count = int_at(cs, &["restartCount"]);
        let finished = time_at(cs, &["lastState", "terminated", "finishedAt"]);
        restarts += count;
        last_restart = later(last_restart, finished);
        let sidecar = is_sidecar(cname);
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
        match terminated {
            Some(t) if int_at(t, &["exitCode"]) == 0 => continue,
            _ if sidecar && bool_at(cs, &["started"]) => {
                if bool_at(cs, &["ready"]) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                let treason = str_at(t, &["reason"]);
                reason = if !treason.is_empty() {
                    format!("Init:{treason}")
                } else if int_at(t, &["signal"]) != 0 {
                    format!("Init:Signal:{}", int_at(t, &["signal"]))
                } else {
                    format!("Init:ExitCode:{}", int_at(t, &["exitCode"]))
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => {
                reason = format!("Init:{i}/{}", spec_init.len());
            }
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == "Initialized")
        .is_some_and(|c| str_at(c, &["status"]) == "True");

    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walked backwards so that the first container's state has the last word.
        for cs in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(cs, &["restartCount"]);
            last_restart = later(
                last_restart,
                time_at(cs, &["lastState", "terminated", "finishedAt"]),
            );
            let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
            let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let treason = str_at(t, &["reason"]);
                reason = if !treason.is_empty() {
                    treason.to_string()
                } else if int_at(t, &["signal"]) != 0 {
                    format!("Signal:{}", int_at(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", int_at(t, &["exitCode"]))
                };
            } else if bool_at(cs, &["ready"])
                && at(cs, &["state", "running"]).is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose first container completed while another still runs is not "Completed".
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    if deleting && status_reason == NODE_LOST_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(now, Some(t))),
        _ => restarts.to_string(),
    };

    // The v1 -> internal conversion makes status.podIP authoritative over podIPs[0].
    let mut ip = str_at(pod, &["status", "podIP"]);
    if ip.is_empty() {
        ip = arr_at(pod, &["status", "podIPs"])
            .first()
            .map_or("", |p| str_at(p, &["ip"]));
    }
    let gates = arr_at(pod, &["spec", "readinessGates"]);
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let ctype = str_at(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == ctype)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        name(pod),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_text),
        age(pod, now),
        s(or_none(ip)),
        s(or_none(str_at(pod, &["spec", "nodeName"]))),
        s(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        s(gates_text),
    ]
}

// ---------------------------------------------------------------------------------------------
// Other core kinds.
// ---------------------------------------------------------------------------------------------

fn namespace_cells(ns: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(ns), s(str_at(ns, &["status", "phase"])), age(ns, now)]
}

/// Upstream printNode: Ready/NotReady/Unknown from the Ready condition, plus
/// ",SchedulingDisabled" for cordoned nodes.
fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let conditions = arr_at(node, &["status", "conditions"]);
    // Upstream indexes conditions by type, so a repeated type's last entry wins.
    let mut status: Vec<&str> = match conditions
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready")
    {
        Some(c) if str_at(c, &["status"]) == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();

    let address = |kind: &str| {
        arr_at(node, &["status", "addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == kind)
            .map_or("<none>", |a| str_at(a, &["address"]))
            .to_string()
    };
    let info = |field: &str| {
        let v = str_at(node, &["status", "nodeInfo", field]);
        if v.is_empty() { "<unknown>" } else { v }.to_string()
    };

    vec![
        name(node),
        s(status.join(",")),
        s(or_none(&roles.join(","))),
        age(node, now),
        s(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        s(address("InternalIP")),
        s(address("ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ]
}

/// The fields upstream's printEvent reads, taken from either event API's wire names.
struct EventFields<'a> {
    name: &'a str,
    kind: &'a str,
    object_name: &'a str,
    field_path: &'a str,
    type_: &'a str,
    reason: &'a str,
    message: &'a str,
    source_component: &'a str,
    source_host: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    event_time: Option<DateTime<Utc>>,
    count: i64,
    series: Option<(i64, Option<DateTime<Utc>>)>,
}

impl<'a> EventFields<'a> {
    fn series(ev: &'a Value) -> Option<(i64, Option<DateTime<Utc>>)> {
        at(ev, &["series"])
            .filter(|v| v.is_object())
            .map(|sr| (int_at(sr, &["count"]), time_at(sr, &["lastObservedTime"])))
    }

    /// core/v1 Event names.
    fn core(ev: &'a Value) -> Self {
        EventFields {
            name: str_at(ev, &["metadata", "name"]),
            kind: str_at(ev, &["involvedObject", "kind"]),
            object_name: str_at(ev, &["involvedObject", "name"]),
            field_path: str_at(ev, &["involvedObject", "fieldPath"]),
            type_: str_at(ev, &["type"]),
            reason: str_at(ev, &["reason"]),
            message: str_at(ev, &["message"]),
            source_component: str_at(ev, &["source", "component"]),
            source_host: str_at(ev, &["source", "host"]),
            reporting_controller: str_at(ev, &["reportingComponent"]),
            reporting_instance: str_at(ev, &["reportingInstance"]),
            first: time_at(ev, &["firstTimestamp"]),
            last: time_at(ev, &["lastTimestamp"]),
            event_time: time_at(ev, &["eventTime"]),
            count: int_at(ev, &["count"]),
            series: Self::series(ev),
        }
    }

    /// events.k8s.io/v1 Event names, mapped as upstream's conversion to the core type does.
    fn events_v1(ev: &'a Value) -> Self {
        EventFields {
            name: str_at(ev, &["metadata", "name"]),
            kind: str_at(ev, &["regarding", "kind"]),
            object_name: str_at(ev, &["regarding", "name"]),
            field_path: str_at(ev, &["regarding", "fieldPath"]),
            type_: str_at(ev, &["type"]),
            reason: str_at(ev, &["reason"]),
            message: str_at(ev, &["note"]),
            source_component: str_at(ev, &["deprecatedSource", "component"]),
            source_host: str_at(ev, &["deprecatedSource", "host"]),
            reporting_controller: str_at(ev, &["reportingController"]),
            reporting_instance: str_at(ev, &["reportingInstance"]),
            first: time_at(ev, &["deprecatedFirstTimestamp"]),
            last: time_at(ev, &["deprecatedLastTimestamp"]),
            event_time: time_at(ev, &["eventTime"]),
            count: int_at(ev, &["deprecatedCount"]),
            series: Self::series(ev),
        }
    }
}

/// Upstream printEvent: times fall back from lastTimestamp to firstTimestamp to eventTime, and
/// an event series supplies both the last-seen time and the count.
fn event_cells(ev: &EventFields<'_>, now: DateTime<Utc>) -> Vec<Value> {
    let first = match ev.first {
        Some(t) => since(now, Some(t)),
        None => since(now, ev.event_time),
    };
    let mut last = match ev.last {
        Some(t) => since(now, Some(t)),
        None => first.clone(),
    };
    let mut count = ev.count;
    if let Some((series_count, observed)) = ev.series {
        last = since(now, observed);
        count = series_count;
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let kind = ev.kind.to_lowercase();
    let target = if ev.object_name.is_empty() {
        kind
    } else {
        format!("{kind}/{}", ev.object_name)
    };
    let component = if ev.source_component.is_empty() {
        ev.reporting_controller
    } else {
        ev.source_component
    };
    let host = if ev.source_host.is_empty() {
        ev.reporting_instance
    } else {
        ev.source_host
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        s(last),
        s(ev.type_),
        s(ev.reason),
        s(target),
        s(ev.field_path),
        s(source),
        s(ev.message.trim()),
        s(first),
        Value::from(count),
        s(ev.name),
    ]
}

fn configmap_cells(cm: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let data = len_at(cm, &["data"]) + len_at(cm, &["binaryData"]);
    vec![name(cm), Value::from(data), age(cm, now)]
}

fn secret_cells(secret: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(secret),
        s(str_at(secret, &["type"])),
        Value::from(len_at(secret, &["data"])),
        age(secret, now),
    ]
}

fn service_account_cells(sa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(sa),
        Value::from(len_at(sa, &["secrets"])),
        age(sa, now),
    ]
}

/// Upstream printService. A missing `type` or port `protocol` reads as the API's defaults
/// (ClusterIP, TCP), which every stored Service carries upstream.
fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut svc_type = str_at(svc, &["spec", "type"]);
    if at(svc, &["spec", "type"]).is_none() {
        svc_type = "ClusterIP";
    }
    // The v1 -> internal conversion makes spec.clusterIP authoritative over clusterIPs[0].
    let mut cluster_ip = str_at(svc, &["spec", "clusterIP"]);
    if cluster_ip.is_empty() {
        cluster_ip = arr_at(svc, &["spec", "clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .unwrap_or("");
    }
    let external_ips: Vec<&str> = arr_at(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut lb: Vec<&str> = arr_at(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|ing| {
                    let ip = str_at(ing, &["ip"]);
                    let host = str_at(ing, &["hostname"]);
                    if !ip.is_empty() {
                        Some(ip)
                    } else if !host.is_empty() {
                        Some(host)
                    } else {
                        None
                    }
                })
                .collect();
            lb.sort_unstable();
            lb.dedup();
            // The server prints wide, so the list is never clipped.
            let mut all = lb;
            all.extend(external_ips.iter().copied());
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let node_port = int_at(p, &["nodePort"]);
            let mut proto = str_at(p, &["protocol"]);
            if proto.is_empty() {
                proto = "TCP";
            }
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    vec![
        name(svc),
        s(svc_type),
        s(or_none(cluster_ip)),
        s(external),
        s(or_none(&ports.join(","))),
        age(svc, now),
        s(format_labels(at(svc, &["spec", "selector"]))),
    ]
}

/// Upstream formatEndpoints: up to three `ip:port` pairs (bare IPs for port-less subsets),
/// then "+ N more...".
fn endpoints_cells(ep: &Value, now: DateTime<Utc>) -> Vec<Value> {
    const MAX: usize = 3;
    let subsets = arr_at(ep, &["subsets"]);
    let text = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut list: Vec<String> = Vec::new();
        let mut more = false;
        let mut count = 0usize;
        for ss in subsets {
            let addresses = arr_at(ss, &["addresses"]);
            let ports = arr_at(ss, &["ports"]);
            if ports.is_empty() {
                // Headless services may have no ports.
                count += addresses.len();
                for addr in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(str_at(addr, &["ip"]).to_string());
                }
                continue;
            }
            for port in ports {
                count += addresses.len();
                for addr in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(join_host_port(
                        str_at(addr, &["ip"]),
                        int_at(port, &["port"]),
                    ));
                }
            }
        }
        let joined = list.join(",");
        if more {
            format!("{joined} + {} more...", count - MAX)
        } else {
            joined
        }
    };
    vec![name(ep), s(text), age(ep, now)]
}

/// Upstream printEndpointSlice: port numbers (or names, or "*"), then endpoint addresses, each
/// list shortened after three entries.
fn endpoint_slice_cells(slice: &Value, now: DateTime<Utc>) -> Vec<Value> {
    const MAX: usize = 3;
    let mut ports: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for port in arr_at(slice, &["ports"]) {
        if ports.len() < MAX {
            let text = match opt_int_at(port, &["port"]) {
                Some(n) => n.to_string(),
                None => match at(port, &["name"]).and_then(Value::as_str) {
                    Some(n) => n.to_string(),
                    None => "*".to_string(),
                },
            };
            ports.push(text);
        } else if ports.len() == MAX {
            more = true;
        }
        count += 1;
    }
    let ports_text = list_with_more(&ports, more, count, MAX);

    let mut addrs: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for endpoint in arr_at(slice, &["endpoints"]) {
        for addr in arr_at(endpoint, &["addresses"]) {
            if addrs.len() < MAX {
                addrs.push(addr.as_str().unwrap_or("").to_string());
            } else if addrs.len() == MAX {
                more = true;
            }
            count += 1;
        }
    }
    let addrs_text = list_with_more(&addrs, more, count, MAX);

    vec![
        name(slice),
        s(str_at(slice, &["addressType"])),
        s(ports_text),
        s(addrs_text),
        age(slice, now),
    ]
}

fn lease_cells(lease: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(lease),
        s(str_at(lease, &["spec", "holderIdentity"])),
        age(lease, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Workloads.
// ---------------------------------------------------------------------------------------------

/// `spec.replicas`, defaulting to 1 when absent as the apps/v1 API does on write.
fn replicas(obj: &Value) -> i64 {
    opt_int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn template_containers(obj: &Value) -> &[Value] {
    arr_at(obj, &["spec", "template", "spec", "containers"])
}

fn deployment_cells(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(d));
    // Upstream prints this selector bare: "" when nil or empty, "<invalid>" when unparsable.
    let selector = label_selector_string(at(d, &["spec", "selector"]))
        .unwrap_or_else(|InvalidSelector| "<invalid>".to_string());
    vec![
        name(d),
        s(format!(
            "{}/{}",
            int_at(d, &["status", "readyReplicas"]),
            replicas(d)
        )),
        Value::from(int_at(d, &["status", "updatedReplicas"])),
        Value::from(int_at(d, &["status", "availableReplicas"])),
        age(d, now),
        names,
        images,
        s(selector),
    ]
}

fn replica_set_cells(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(rs));
    vec![
        name(rs),
        Value::from(replicas(rs)),
        Value::from(int_at(rs, &["status", "replicas"])),
        Value::from(int_at(rs, &["status", "readyReplicas"])),
        age(rs, now),
        names,
        images,
        s(format_label_selector(at(rs, &["spec", "selector"]))),
    ]
}

fn daemon_set_cells(ds: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(ds));
    let status = |field: &str| Value::from(int_at(ds, &["status", field]));
    vec![
        name(ds),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        s(format_labels(at(
            ds,
            &["spec", "template", "spec", "nodeSelector"],
        ))),
        age(ds, now),
        names,
        images,
        s(format_label_selector(at(ds, &["spec", "selector"]))),
    ]
}

fn stateful_set_cells(sts: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(sts));
    vec![
        name(sts),
        s(format!(
            "{}/{}",
            int_at(sts, &["status", "readyReplicas"]),
            replicas(sts)
        )),
        age(sts, now),
        names,
        images,
    ]
}

/// upstream hasJobCondition: the first condition of the type decides.
fn has_job_condition(job: &Value, ctype: &str) -> bool {
    arr_at(job, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == ctype)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// Upstream printJob: STATUS from conditions, COMPLETIONS "succeeded/completions" (or "/1 of P"
/// for work queues), DURATION from start to completion or to now while running.
fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int_at(job, &["status", "succeeded"]);
    let completions = match opt_int_at(job, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = int_at(job, &["spec", "parallelism"]);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = time_at(job, &["status", "startTime"]);
    let end = time_at(job, &["status", "completionTime"]);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let deleting = at(job, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    let status = if has_job_condition(job, "Complete") {
        "Complete"
    } else if has_job_condition(job, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has_job_condition(job, "Suspended") {
        "Suspended"
    } else if has_job_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(template_containers(job));
    vec![
        name(job),
        s(status),
        s(completions),
        s(duration),
        age(job, now),
        names,
        images,
        s(format_label_selector(at(job, &["spec", "selector"]))),
    ]
}

fn cron_job_cells(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = match at(cj, &["status", "lastScheduleTime"]).filter(|v| !v.is_null()) {
        Some(_) => since(now, time_at(cj, &["status", "lastScheduleTime"])),
        None => "<none>".to_string(),
    };
    let time_zone = at(cj, &["spec", "timeZone"])
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let suspend = match at(cj, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_template = at(cj, &["spec", "jobTemplate"]).unwrap_or(&Value::Null);
    let (names, images) = container_cells(template_containers(job_template));
    vec![
        name(cj),
        s(str_at(cj, &["spec", "schedule"])),
        s(time_zone),
        s(suspend),
        Value::from(len_at(cj, &["status", "active"])),
        s(last_schedule),
        age(cj, now),
        names,
        images,
        s(format_label_selector(at(
            job_template,
            &["spec", "selector"],
        ))),
    ]
}

fn priority_class_cells(pc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(pc),
        Value::from(int_at(pc, &["value"])),
        Value::Bool(bool_at(pc, &["globalDefault"])),
        age(pc, now),
        s(str_at(pc, &["preemptionPolicy"])),
    ]
}

fn runtime_class_cells(rc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(rc), s(str_at(rc, &["handler"])), age(rc, now)]
}

fn pdb_cells(pdb: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let bound = |key: &str| match at(pdb, &["spec", key]) {
        Some(Value::Number(n)) => s(n.to_string()),
        Some(Value::String(v)) => s(v.clone()),
        _ => s("N/A"),
    };
    vec![
        name(pdb),
        bound("minAvailable"),
        bound("maxUnavailable"),
        Value::from(int_at(pdb, &["status", "disruptionsAllowed"])),
        age(pdb, now),
    ]
}

fn admission_policy_cells(p: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(p),
        s(or(str_at(p, &["spec", "mode"]), "protect")),
        s(or(str_at(p, &["status", "phase"]), "Pending")),
        age(p, now),
        Value::Bool(bool_at(p, &["spec", "mutating"])),
        s(str_at(p, &["status", "message"])),
    ]
}

/// wkube.dev scheduler plugins (wkube's own columns).
const SCHEDULER_PLUGIN_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Extension Points",
        "string",
        "Where the plugin joins the framework.",
    ),
    col(
        "Weight",
        "integer",
        "Multiplies the plugin's normalized scores.",
    ),
    col(
        "Status",
        "string",
        "Active, or Error when the module, its settings or a call failed.",
    ),
    AGE,
    wide(
        "Profiles",
        "string",
        "The schedulerNames whose pods the plugin serves.",
    ),
    wide("Message", "string", "Why the plugin is in Error."),
];

fn scheduler_plugin_cells(p: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let list = |path: &str| -> Vec<String> {
        p.pointer(path)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let profiles = list("/spec/profiles");
    let phase = str_at(p, &["status", "phase"]);
    vec![
        name(p),
        s(list("/spec/extensionPoints").join(",")),
        Value::from(
            p.pointer("/spec/weight")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        ),
        s(if phase.is_empty() {
            "Pending".to_string()
        } else {
            phase.to_string()
        }),
        age(p, now),
        s(if profiles.is_empty() {
            crate::scheduler::DEFAULT_SCHEDULER_NAME.to_string()
        } else {
            profiles.join(",")
        }),
        s(str_at(p, &["status", "message"])),
    ]
}

fn default_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), age(obj, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::Registry;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    /// RFC 3339 text for `now() - secs`.
    fn ago(secs: i64) -> String {
        (now() - Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn info(group: &str, kind: &str) -> ResourceInfo {
        Registry::builtin()
            .resources()
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .cloned()
            .unwrap_or_else(|| panic!("{group}/{kind} is registered"))
    }

    fn names(cols: &[Column]) -> Vec<&'static str> {
        cols.iter().map(|c| c.name).collect()
    }

    fn wide_names(cols: &[Column]) -> Vec<&'static str> {
        cols.iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect()
    }

    fn row(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
        let r = info(group, kind);
        let cells = cells(&r, obj, now());
        assert_eq!(cells.len(), columns(&r).len(), "{kind} row misaligned");
        cells
    }

    // --- human_duration -----------------------------------------------------------------------

    #[test]
    fn human_duration_matches_upstream() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (364 * 86400, "364d"),
            (2 * 365 * 86400, "2y"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (8 * 365 * 86400, "8y"),
            (9 * 365 * 86400 + 50 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(Duration::seconds(*secs)),
                *want,
                "{secs} seconds"
            );
        }
        // Fractions of a second truncate toward zero, as Go's int() does.
        assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(Duration::milliseconds(1999)), "1s");
    }

    // --- columns and JSON -----------------------------------------------------------------------

    #[test]
    fn column_definitions_serialize_every_field() {
        let json = column_definitions_json(&columns(&info("", "Pod")));
        let first = &json[0];
        assert_eq!(first["name"], "Name");
        assert_eq!(first["type"], "string");
        assert_eq!(first["format"], "name");
        assert_eq!(first["priority"], 0);
        assert!(first["description"].as_str().is_some_and(|d| !d.is_empty()));
        let ip = &json[5];
        assert_eq!(ip["name"], "IP");
        assert_eq!(ip["format"], "");
        assert_eq!(ip["priority"], 1);
    }

    #[test]
    fn every_registered_kind_has_aligned_rows_for_empty_objects() {
        // Missing fields must never panic and every row must fit its columns.
        for r in Registry::builtin().resources() {
            for obj in [json!({}), json!(null), json!({"metadata": 5, "spec": "x"})] {
                let c = cells(r, &obj, now());
                assert_eq!(c.len(), columns(r).len(), "{}", r.kind);
            }
            assert_eq!(
                columns(r).iter().filter(|c| c.format == "name").count(),
                1,
                "{} has one name column",
                r.kind
            );
        }
    }

    #[test]
    fn unknown_kinds_get_name_and_age() {
        let mut r = info("", "ConfigMap");
        r.group = "wkube.dev";
        r.kind = "WasmModule";
        let cols = columns(&r);
        assert_eq!(names(&cols), ["Name", "Age"]);
        assert_eq!(cols[1].type_, "date");
        let obj = json!({"metadata": {"name": "hello", "creationTimestamp": ago(90)}});
        assert_eq!(cells(&r, &obj, now()), vec![json!("hello"), json!("90s")]);
        let obj = json!({"metadata": {"name": "fresh"}});
        assert_eq!(cells(&r, &obj, now())[1], "<unknown>");
    }

    // --- pods -------------------------------------------------------------------------------------

    #[test]
    fn pod_columns() {
        let cols = columns(&info("", "Pod"));
        assert_eq!(
            names(&cols),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(
            wide_names(&cols),
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
    }

    #[test]
    fn running_pod() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": ago(3 * 3600 + 5 * 60)},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "proxy"}],
                     "readinessGates": [{"conditionType": "example.com/lb"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}],
                "conditions": [{"type": "Ready", "status": "True"},
                               {"type": "example.com/lb", "status": "True"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "proxy", "ready": false, "restartCount": 0, "state": {"running": {}}}
                ]
            }
        });
        assert_eq!(
            row("", "Pod", &pod),
            vec![
                json!("web-1"),
                json!("1/2"),
                json!("Running"),
                json!("0"),
                json!("3h5m"),
                json!("10.0.0.7"),
                json!("node-a"),
                json!("<none>"),
                json!("1/1"),
            ]
        );
    }

    #[test]
    fn crash_looping_pod() {
        let pod = json!({
            "metadata": {"name": "crashy", "creationTimestamp": ago(600)},
            "spec": {"containers": [{"name": "app"}]},
            "status": {
                "phase": "Running",
                "podIPs": [{"ip": "fd00::5"}],
                "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                 "finishedAt": ago(120)}}
                }]
            }
        });
        let cells = row("", "Pod", &pod);
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3 (2m ago)");
        assert_eq!(cells[4], "10m");
        assert_eq!(cells[5], "fd00::5");
        assert_eq!(cells[6], "<none>");
        assert_eq!(cells[8], "<none>");
    }

    #[test]
    fn restarts_without_termination_time_have_no_suffix() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}}
            ]}
        });
        let cells = row("", "Pod", &pod);
        assert_eq!(cells[3], "2");
        assert_eq!(cells[4], "<unknown>");
    }

    #[test]
    fn init_container_pods() {
        let pending = json!({
            "metadata": {"name": "init"},
            "spec": {"initContainers": [{"name": "a"}, {"name": "b"}],
                     "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "False"}],
                "initContainerStatuses": [
                    {"name": "a", "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "restartCount": 0,
                     "state": {"waiting": {"reason": "PodInitializing"}}}
                ],
                "containerStatuses": [
                    {"name": "app", "restartCount": 0,
                     "state": {"waiting": {"reason": "PodInitializing"}}}
                ]
            }
        });
        let cells = row("", "Pod", &pending);
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "Init:0/2");

        let second = json!({
            "metadata": {"name": "init"},
            "spec": {"initContainers": [{"name": "a"}, {"name": "b"}],
                     "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "state": {"running": {}}}
            ]}
        });
        assert_eq!(row("", "Pod", &second)[2], "Init:1/2");

        let failed = json!({
            "metadata": {"name": "init"},
            "spec": {"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "restartCount": 4,
                 "state": {"terminated": {"exitCode": 2}},
                 "lastState": {"terminated": {"exitCode": 2, "finishedAt": ago(30)}}}
            ]}
        });
        let cells = row("", "Pod", &failed);
        assert_eq!(cells[2], "Init:ExitCode:2");
        assert_eq!(cells[3], "4 (30s ago)");

        let backoff = json!({
            "metadata": {"name": "init"},
            "spec": {"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        assert_eq!(row("", "Pod", &backoff)[2], "Init:CrashLoopBackOff");

        let signalled = json!({
            "metadata": {"name": "init"},
            "spec": {"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}
            ]}
        });
        assert_eq!(row("", "Pod", &signalled)[2], "Init:Signal:9");
    }

    #[test]
    fn sidecar_counts_toward_ready_and_restarts() {
        let pod = json!({
            "metadata": {"name": "side"},
            "spec": {"initContainers": [{"name": "log", "restartPolicy": "Always"}],
                     "containers": [{"name": "app"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "log", "started": true, "ready": true, "restartCount": 1,
                     "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}}
                ],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}
                ]
            }
        });
        let cells = row("", "Pod", &pod);
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "1 (5m ago)");
    }

    #[test]
    fn terminated_containers() {
        let completed = json!({
            "metadata": {"name": "job-pod"},
            "spec": {"containers": [{"name": "main"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "main", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}
        });
        assert_eq!(row("", "Pod", &completed)[2], "Completed");

        let error = json!({
            "metadata": {"name": "bad"},
            "spec": {"containers": [{"name": "main"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "main", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
            ]}
        });
        assert_eq!(row("", "Pod", &error)[2], "Error");

        let bare = json!({
            "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "main"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "main", "state": {"terminated": {"exitCode": 3}}}
            ]}
        });
        assert_eq!(row("", "Pod", &bare)[2], "ExitCode:3");

        // First container completed, second still running and ready.
        let mixed = json!({
            "metadata": {"name": "mixed"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "b", "ready": true, "state": {"running": {}}}
            ]}
        });
        let cells = row("", "Pod", &mixed);
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "NotReady");
    }

    #[test]
    fn terminating_and_special_pods() {
        let terminating = json!({
            "metadata": {"name": "going", "deletionTimestamp": ago(5)},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": true, "state": {"running": {}}}
            ]}
        });
        assert_eq!(row("", "Pod", &terminating)[2], "Terminating");

        let finished = json!({
            "metadata": {"name": "done", "deletionTimestamp": ago(5)},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}
        });
        assert_eq!(row("", "Pod", &finished)[2], "Completed");

        let lost = json!({
            "metadata": {"name": "lost", "deletionTimestamp": ago(5)},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "reason": "NodeLost"}
        });
        assert_eq!(row("", "Pod", &lost)[2], "Unknown");

        let gated = json!({
            "metadata": {"name": "gated"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
            ]}
        });
        assert_eq!(row("", "Pod", &gated)[2], "SchedulingGated");

        let evicted = json!({
            "metadata": {"name": "ev"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Failed", "reason": "Evicted"}
        });
        assert_eq!(row("", "Pod", &evicted)[2], "Evicted");

        let pending = json!({
            "metadata": {"name": "new"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "nominatedNodeName": "node-b",
                       "containerStatuses": [{"name": "app",
                           "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        });
        let cells = row("", "Pod", &pending);
        assert_eq!(cells[2], "ContainerCreating");
        assert_eq!(cells[7], "node-b");
    }

    // --- other core kinds -------------------------------------------------------------------------

    #[test]
    fn namespace_row() {
        let r = info("", "Namespace");
        assert_eq!(names(&columns(&r)), ["Name", "Status", "Age"]);
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(51 * 3600)},
                        "status": {"phase": "Active"}});
        assert_eq!(
            cells(&r, &ns, now()),
            vec![json!("default"), json!("Active"), json!("2d3h")]
        );
    }

    #[test]
    fn node_row() {
        let r = info("", "Node");
        let cols = columns(&r);
        assert_eq!(
            names(&cols),
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        assert_eq!(wide_names(&cols).len(), 5);
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": ago(10 * 86400),
                "labels": {"node-role.kubernetes.io/control-plane": "",
                           "node-role.kubernetes.io/worker": "",
                           "kubernetes.io/role": "edge",
                           "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"},
                              {"type": "Hostname", "address": "n1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "wkube",
                             "kernelVersion": "6.8.0", "containerRuntimeVersion": ""}
            }
        });
        assert_eq!(
            cells(&r, &node, now()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge,worker"),
                json!("10d"),
                json!("v1.32.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("wkube"),
                json!("6.8.0"),
                json!("<unknown>"),
            ]
        );
        let not_ready = json!({"metadata": {"name": "n2"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let c = cells(&r, &not_ready, now());
        assert_eq!(c[1], "NotReady");
        assert_eq!(c[2], "<none>");
        let bare = json!({"metadata": {"name": "n3"}});
        assert_eq!(cells(&r, &bare, now())[1], "Unknown");
    }

    #[test]
    fn core_event_row() {
        let r = info("", "Event");
        let cols = columns(&r);
        assert_eq!(
            names(&cols),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(
            wide_names(&cols),
            ["Subobject", "Source", "First Seen", "Count", "Name"]
        );
        assert_eq!(cols[9].format, "name");
        let ev = json!({
            "metadata": {"name": "web-1.17d", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1",
                               "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "type": "Warning",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": ago(3600), "lastTimestamp": ago(65), "count": 12
        });
        assert_eq!(
            cells(&r, &ev, now()),
            vec![
                json!("65s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{app}"),
                json!("kubelet, node-a"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(12),
                json!("web-1.17d"),
            ]
        );
        // New-style event recorded through core/v1: eventTime only, no count.
        let ev = json!({
            "metadata": {"name": "e2"},
            "involvedObject": {"kind": "Node"},
            "reason": "Starting", "type": "Normal", "message": "hi",
            "eventTime": "2025-06-01T11:59:30.123456Z",
            "reportingComponent": "wkube-node", "reportingInstance": "n1"
        });
        let c = cells(&r, &ev, now());
        assert_eq!(c[0], "29s");
        assert_eq!(c[3], "node");
        assert_eq!(c[5], "wkube-node, n1");
        assert_eq!(c[7], "29s");
        assert_eq!(c[8], 1);
    }

    #[test]
    fn events_k8s_io_event_row() {
        let r = info("events.k8s.io", "Event");
        assert_eq!(columns(&r), columns(&info("", "Event")));
        let ev = json!({
            "metadata": {"name": "web.1"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "reason": "ScalingReplicaSet", "type": "Normal",
            "note": "Scaled up replica set web-abc to 3",
            "reportingController": "deployment-controller",
            "eventTime": ago(600),
            "series": {"count": 4, "lastObservedTime": ago(90)}
        });
        assert_eq!(
            cells(&r, &ev, now()),
            vec![
                json!("90s"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/web"),
                json!(""),
                json!("deployment-controller"),
                json!("Scaled up replica set web-abc to 3"),
                json!("10m"),
                json!(4),
                json!("web.1"),
            ]
        );
        let old = json!({
            "metadata": {"name": "x"},
            "regarding": {"kind": "Pod", "name": "p"},
            "deprecatedFirstTimestamp": ago(7200), "deprecatedLastTimestamp": ago(30),
            "deprecatedCount": 2, "deprecatedSource": {"component": "kubelet"}
        });
        let c = cells(&r, &old, now());
        assert_eq!(c[0], "30s");
        assert_eq!(c[5], "kubelet");
        assert_eq!(c[7], "120m");
        assert_eq!(c[8], 2);
    }

    #[test]
    fn configmap_secret_serviceaccount_rows() {
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": ago(5)},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            row("", "ConfigMap", &cm),
            vec![json!("cfg"), json!(3), json!("5s")]
        );
        assert_eq!(
            names(&columns(&info("", "ConfigMap"))),
            ["Name", "Data", "Age"]
        );

        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            row("", "Secret", &secret),
            vec![
                json!("tls"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("<unknown>")
            ]
        );
        assert_eq!(
            names(&columns(&info("", "Secret"))),
            ["Name", "Type", "Data", "Age"]
        );

        let sa = json!({"metadata": {"name": "default", "creationTimestamp": ago(86400 * 400)}});
        assert_eq!(
            row("", "ServiceAccount", &sa),
            vec![json!("default"), json!(0), json!("400d")]
        );
        assert_eq!(
            names(&columns(&info("", "ServiceAccount"))),
            ["Name", "Secrets", "Age"]
        );
    }

    #[test]
    fn service_rows() {
        let cols = columns(&info("", "Service"));
        assert_eq!(
            names(&cols),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(wide_names(&cols), ["Selector"]);

        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(60)},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                               {"port": 53, "protocol": "UDP"}],
                     "selector": {"tier": "front", "app": "web"}}
        });
        assert_eq!(
            row("", "Service", &svc),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("60s"),
                json!("app=web,tier=front"),
            ]
        );

        let lb = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"],
                     "externalIPs": ["1.2.3.4"], "ports": [{"port": 443}]},
            "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"},
                                                    {"ip": "9.9.9.9"}]}}
        });
        let c = row("", "Service", &lb);
        assert_eq!(c[2], "10.96.0.11");
        assert_eq!(c[3], "9.9.9.9,lb.example.com,1.2.3.4");
        assert_eq!(c[4], "443/TCP");
        assert_eq!(c[6], "<none>");

        let pending = json!({"metadata": {"name": "p"}, "spec": {"type": "LoadBalancer"}});
        let c = row("", "Service", &pending);
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "<pending>");
        assert_eq!(c[4], "<none>");

        let ext = json!({"metadata": {"name": "e"},
                         "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(row("", "Service", &ext)[3], "db.example.com");

        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        let c = row("", "Service", &headless);
        assert_eq!(c[1], "ClusterIP");
        assert_eq!(c[2], "None");
    }

    #[test]
    fn endpoints_rows() {
        let ep = json!({
            "metadata": {"name": "web"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "ports": [{"name": "http", "port": 8080}, {"name": "m", "port": 9090}]},
                {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}
            ]
        });
        assert_eq!(
            row("", "Endpoints", &ep)[1],
            "10.0.0.1:8080,10.0.0.2:8080,10.0.0.1:9090 + 2 more..."
        );
        let small = json!({"metadata": {"name": "s"},
            "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
                        {"addresses": [{"ip": "10.1.1.1"}]}]});
        assert_eq!(row("", "Endpoints", &small)[1], "[fd00::1]:80,10.1.1.1");
        let empty = json!({"metadata": {"name": "e"}});
        assert_eq!(row("", "Endpoints", &empty)[1], "<none>");
    }

    #[test]
    fn endpoint_slice_rows() {
        let r = info("discovery.k8s.io", "EndpointSlice");
        assert_eq!(
            names(&columns(&r)),
            ["Name", "AddressType", "Ports", "Endpoints", "Age"]
        );
        let slice = json!({
            "metadata": {"name": "web-abc"},
            "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "grpc"}, {}, {"port": 9000}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]
        });
        let c = cells(&r, &slice, now());
        assert_eq!(c[1], "IPv4");
        assert_eq!(c[2], "80,grpc,* + 1 more...");
        assert_eq!(c[3], "10.0.0.1,10.0.0.2");
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        let c = cells(&r, &empty, now());
        assert_eq!(c[2], "<unset>");
        assert_eq!(c[3], "<unset>");
    }

    #[test]
    fn lease_row() {
        let r = info("coordination.k8s.io", "Lease");
        assert_eq!(names(&columns(&r)), ["Name", "Holder", "Age"]);
        let lease = json!({"metadata": {"name": "n1", "creationTimestamp": ago(7)},
                           "spec": {"holderIdentity": "n1"}});
        assert_eq!(
            cells(&r, &lease, now()),
            vec![json!("n1"), json!("n1"), json!("7s")]
        );
        let free = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(cells(&r, &free, now())[1], "");
    }

    // --- workloads ---------------------------------------------------------------------------------

    fn template(containers: Value) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
    }

    #[test]
    fn deployment_row() {
        let r = info("apps", "Deployment");
        let cols = columns(&r);
        assert_eq!(
            names(&cols),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(wide_names(&cols), ["Containers", "Images", "Selector"]);
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(4 * 86400)},
            "spec": {"replicas": 3,
                     "selector": {"matchLabels": {"app": "web"},
                                  "matchExpressions": [{"key": "tier", "operator": "In",
                                                        "values": ["b", "a"]}]},
                     "template": template(json!([{"name": "nginx", "image": "nginx:1.27"},
                                                 {"name": "side", "image": "busybox"}]))},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3,
                       "availableReplicas": 2}
        });
        assert_eq!(
            cells(&r, &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("4d"),
                json!("nginx,side"),
                json!("nginx:1.27,busybox"),
                json!("app=web,tier in (a,b)"),
            ]
        );
        // Defaulted replicas and a nil selector.
        let bare = json!({"metadata": {"name": "b"}});
        let c = cells(&r, &bare, now());
        assert_eq!(c[1], "0/1");
        assert_eq!(c[7], "");
        let invalid = json!({"metadata": {"name": "i"},
            "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
        assert_eq!(cells(&r, &invalid, now())[7], "<invalid>");
    }

    #[test]
    fn replica_set_row() {
        let r = info("apps", "ReplicaSet");
        assert_eq!(
            names(&columns(&r)),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let rs = json!({
            "metadata": {"name": "web-5d4f", "creationTimestamp": ago(30)},
            "spec": {"replicas": 2,
                     "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}},
                     "template": template(json!([{"name": "nginx", "image": "nginx"}]))},
            "status": {"replicas": 2, "readyReplicas": 1}
        });
        assert_eq!(
            cells(&r, &rs, now()),
            vec![
                json!("web-5d4f"),
                json!(2),
                json!(2),
                json!(1),
                json!("30s"),
                json!("nginx"),
                json!("nginx"),
                json!("app=web,pod-template-hash=5d4f"),
            ]
        );
        let bare = json!({"metadata": {"name": "b"}});
        assert_eq!(cells(&r, &bare, now())[7], "<none>");
    }

    #[test]
    fn daemon_set_row() {
        let r = info("apps", "DaemonSet");
        let cols = columns(&r);
        assert_eq!(
            names(&cols),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(wide_names(&cols), ["Containers", "Images", "Selector"]);
        let ds = json!({
            "metadata": {"name": "agent", "creationTimestamp": ago(3600)},
            "spec": {"selector": {"matchLabels": {"app": "agent"},
                                  "matchExpressions": [
                                      {"key": "gpu", "operator": "DoesNotExist"},
                                      {"key": "arch", "operator": "NotIn", "values": ["s390x"]},
                                      {"key": "zone", "operator": "Exists"}]},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                           "containers": [{"name": "a", "image": "agent:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                       "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}
        });
        assert_eq!(
            cells(&r, &ds, now()),
            vec![
                json!("agent"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("60m"),
                json!("a"),
                json!("agent:1"),
                json!("app=agent,arch notin (s390x),!gpu,zone"),
            ]
        );
        let bare = json!({"metadata": {"name": "b"}});
        assert_eq!(cells(&r, &bare, now())[6], "<none>");
    }

    #[test]
    fn stateful_set_row() {
        let r = info("apps", "StatefulSet");
        assert_eq!(
            names(&columns(&r)),
            ["Name", "Ready", "Age", "Containers", "Images"]
        );
        let sts = json!({
            "metadata": {"name": "db", "creationTimestamp": ago(120)},
            "spec": {"replicas": 3, "template": template(json!([{"name": "pg", "image": "postgres:16"}]))},
            "status": {"readyReplicas": 3}
        });
        assert_eq!(
            cells(&r, &sts, now()),
            vec![
                json!("db"),
                json!("3/3"),
                json!("2m"),
                json!("pg"),
                json!("postgres:16")
            ]
        );
    }

    #[test]
    fn job_rows() {
        let r = info("batch", "Job");
        let cols = columns(&r);
        assert_eq!(
            names(&cols),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let done = json!({
            "metadata": {"name": "pi", "creationTimestamp": ago(300)},
            "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                     "template": template(json!([{"name": "pi", "image": "perl:5.34"}]))},
            "status": {"succeeded": 1, "startTime": ago(290), "completionTime": ago(250),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                      {"type": "Complete", "status": "True"}]}
        });
        assert_eq!(
            cells(&r, &done, now()),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("40s"),
                json!("5m"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=abc"),
            ]
        );
        let running = json!({
            "metadata": {"name": "q"},
            "spec": {"parallelism": 4},
            "status": {"succeeded": 2, "startTime": ago(200)}
        });
        let c = cells(&r, &running, now());
        assert_eq!(c[1], "Running");
        assert_eq!(c[2], "2/1 of 4");
        assert_eq!(c[3], "3m20s");
        assert_eq!(c[7], "<none>");

        let failed = json!({"metadata": {"name": "f", "deletionTimestamp": ago(1)},
            "spec": {"completions": 3},
            "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        let c = cells(&r, &failed, now());
        assert_eq!(c[1], "Failed");
        assert_eq!(c[2], "0/3");
        assert_eq!(c[3], "");

        let deleting = json!({"metadata": {"name": "d", "deletionTimestamp": ago(1)}});
        assert_eq!(cells(&r, &deleting, now())[1], "Terminating");
        let suspended = json!({"metadata": {"name": "s"},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(cells(&r, &suspended, now())[1], "Suspended");
    }

    #[test]
    fn cron_job_row() {
        let r = info("batch", "CronJob");
        let cols = columns(&r);
        assert_eq!(
            names(&cols),
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let cj = json!({
            "metadata": {"name": "nightly", "creationTimestamp": ago(3 * 86400)},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Etc/UTC", "suspend": false,
                     "jobTemplate": {"spec": {"template": template(json!([
                         {"name": "backup", "image": "backup:2"}]))}}},
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(9 * 3600)}
        });
        assert_eq!(
            cells(&r, &cj, now()),
            vec![
                json!("nightly"),
                json!("0 3 * * *"),
                json!("Etc/UTC"),
                json!("False"),
                json!(1),
                json!("9h"),
                json!("3d"),
                json!("backup"),
                json!("backup:2"),
                json!("<none>"),
            ]
        );
        let bare = json!({"metadata": {"name": "b"}, "spec": {"schedule": "@hourly"}});
        let c = cells(&r, &bare, now());
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "<unset>");
        assert_eq!(c[4], 0);
        assert_eq!(c[5], "<none>");
    }

    #[test]
    fn priority_class_row() {
        let r = info("scheduling.k8s.io", "PriorityClass");
        let cols = columns(&r);
        assert_eq!(
            names(&cols),
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
        assert!(wide_names(&cols).is_empty());
        let pc = json!({"metadata": {"name": "system-node-critical",
                                     "creationTimestamp": ago(20 * 86400)},
                        "value": 2000001000, "globalDefault": false,
                        "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells(&r, &pc, now()),
            vec![
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("20d"),
                json!("PreemptLowerPriority"),
            ]
        );
    }

    #[test]
    fn runtime_class_row() {
        let r = info("node.k8s.io", "RuntimeClass");
        assert_eq!(names(&columns(&r)), ["Name", "Handler", "Age"]);
        let rc = json!({"metadata": {"name": "linux", "creationTimestamp": ago(3 * 3600)},
                        "handler": "linux"});
        assert_eq!(
            cells(&r, &rc, now()),
            vec![json!("linux"), json!("linux"), json!("3h")]
        );
    }

    #[test]
    fn label_selector_formatting() {
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchExpressions": [
                {"key": "env", "operator": "Bogus", "values": ["x"]}]}))),
            "<error>"
        );
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {"bad key": "x"}}))),
            "<error>"
        );
        assert_eq!(
            format_label_selector(Some(&json!({"matchExpressions": [
                {"key": "a", "operator": "Exists", "values": ["x"]}]}))),
            "<error>"
        );
        assert_eq!(
            format_labels(Some(&json!({"a.b": "2", "a": "1"}))),
            "a.b=2,a=1"
        );
    }
}
