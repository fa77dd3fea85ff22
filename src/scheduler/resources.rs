//! Resource quantities and pod requests, summed the way kube-scheduler sums them.
//!
//! k8s-openapi keeps a `Quantity` as an opaque string, so the scheduler needs its own parser.
//! It is small and exact (integer arithmetic, rounding up like upstream's `MilliValue()` /
//! `Value()`), and lives here rather than borrowing the API server's validator so the
//! scheduler depends on nothing but the API types.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Resource names the scheduler treats specially; everything else is a "scalar" resource
/// (hugepages, extended resources such as `example.com/gpu`) compared by plain value.
pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// What upstream assumes a container without a cpu request uses, for scoring only
/// (`DefaultMilliCPURequest`): otherwise best-effort pods would all pile onto one node.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Same for memory (`DefaultMemoryRequest`, 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every resource a pod asks for or a node offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Other resources by name, as whole values (`Value()` upstream).
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a `ResourceList`; unparsable quantities count as zero (the API server validates
    /// them, so this only happens with objects that bypassed validation).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            CPU => self.milli_cpu = milli_value(q).unwrap_or(0),
            MEMORY => self.memory = value(q).unwrap_or(0),
            EPHEMERAL_STORAGE => self.ephemeral_storage = value(q).unwrap_or(0),
            // The pod count is not a request; nodes keep it apart as `allowed_pods`.
            PODS => {}
            other => {
                self.scalar.insert(other.to_string(), value(q).unwrap_or(0));
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
        self.scalar.retain(|_, v| *v != 0);
    }

    /// Element-wise maximum (how init containers combine with the regular ones).
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// A pod's effective requests, as upstream's `resourcehelper.PodRequests`: the sum of the
/// regular containers plus restartable init containers (sidecars, which keep running), or the
/// largest single init container step if that is bigger (init containers run one at a time,
/// each alongside the sidecars started before it), plus the RuntimeClass `overhead`.
///
/// `non_zero` substitutes upstream's defaults for containers that request no cpu/memory; the
/// scoring plugins use that variant, the fit filter the plain one.
pub fn pod_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let container_requests = |c: &Container| {
        let mut r = Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        if non_zero {
            let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            if !requests.is_some_and(|l| l.contains_key(CPU)) {
                r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
            }
            if !requests.is_some_and(|l| l.contains_key(MEMORY)) {
                r.memory = DEFAULT_MEMORY_REQUEST;
            }
        }
        r
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut step = own;
            step.add(&sidecars);
            step
        };
        init_peak.max_with(&step);
    }
    total.max_with(&init_peak);
    if let Some(overhead) = spec.overhead.as_ref() {
        total.add(&Resources::from_list(Some(overhead)));
    }
    total
}

/// `q.MilliValue()`: the quantity times 1000, rounded up.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 3)
}

/// `q.Value()`: the quantity rounded up to a whole number.
pub fn value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 0)
}

/// The quantity times `10^extra_exp10`, rounded up, saturating at `i64::MAX`.
fn scaled(text: &str, extra_exp10: i32) -> Option<i64> {
    let text = text.trim();
    let (negative, text) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = 0;
    for d in digits.bytes() {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(d - b'0'))?;
        if mantissa > i128::from(u64::MAX) << 20 {
            return Some(if negative { i64::MIN } else { i64::MAX });
        }
    }
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => (s[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    let frac_len = i32::try_from(frac_part.len()).ok()?;
    let exp = exp10 + extra_exp10 - frac_len;
    let mut v = mantissa;
    // Multiply by 2^exp2 and 10^exp (or divide, rounding up), saturating.
    let saturate = |neg: bool| Some(if neg { i64::MIN } else { i64::MAX });
    for _ in 0..exp2 {
        v = match v.checked_mul(2) {
            Some(x) => x,
            None => return saturate(negative),
        };
    }
    if exp >= 0 {
        for _ in 0..exp {
            v = match v.checked_mul(10) {
                Some(x) => x,
                None => return saturate(negative),
            };
            if v > i128::from(i64::MAX) {
                return saturate(negative);
            }
        }
    } else {
        let mut div: i128 = 1;
        for _ in 0..(-exp) {
            div = match div.checked_mul(10) {
                Some(x) => x,
                // Dividing by more than the mantissa can hold leaves 1 (rounded up) or 0.
                None => {
                    let one = i64::from(v != 0);
                    return Some(if negative { -one } else { one });
                }
            };
        }
        // Round away from zero like upstream's ScaledValue (ceil on magnitude).
        v = (v + div - 1) / div;
    }
    let v = i64::try_from(v).unwrap_or(i64::MAX);
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn quantities() {
        assert_eq!(milli_value(&q("500m")), Some(500));
        assert_eq!(milli_value(&q("2")), Some(2000));
        assert_eq!(milli_value(&q("0.1")), Some(100));
        assert_eq!(milli_value(&q("1.5")), Some(1500));
        assert_eq!(milli_value(&q("100u")), Some(1));
        assert_eq!(value(&q("1Gi")), Some(1 << 30));
        assert_eq!(value(&q("128974848")), Some(128_974_848));
        assert_eq!(value(&q("129e6")), Some(129_000_000));
        assert_eq!(value(&q("123Mi")), Some(123 * 1024 * 1024));
        assert_eq!(value(&q("1k")), Some(1000));
        assert_eq!(value(&q("1.5Ki")), Some(1536));
        assert_eq!(value(&q("500m")), Some(1), "rounds up");
        assert_eq!(value(&q("1E")), Some(1_000_000_000_000_000_000));
        assert_eq!(value(&q("100Ei")), Some(i64::MAX), "saturates");
        assert_eq!(value(&q("bogus")), None);
        assert_eq!(value(&q("1Xi")), None);
        assert_eq!(value(&q("")), None);
    }

    fn container(cpu: &str, mem: &str) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert(CPU.to_string(), q(cpu));
        }
        if !mem.is_empty() {
            req.insert(MEMORY.to_string(), q(mem));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(req),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_take_max_of_containers_and_init_containers_plus_overhead() {
        let spec = PodSpec {
            containers: vec![container("100m", "100Mi"), container("200m", "50Mi")],
            init_containers: Some(vec![container("1", "10Mi"), container("50m", "500Mi")]),
            overhead: Some(BTreeMap::from([(CPU.to_string(), q("10m"))])),
            ..Default::default()
        };
        let r = pod_requests(&spec, false);
        assert_eq!(r.milli_cpu, 1010);
        assert_eq!(r.memory, 500 * 1024 * 1024);
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_steps() {
        let mut sidecar = container("100m", "");
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container("200m", "")],
            init_containers: Some(vec![sidecar, container("250m", "")]),
            ..Default::default()
        };
        // regular 200 + sidecar 100 = 300; init step 250 + sidecar 100 = 350.
        assert_eq!(pod_requests(&spec, false).milli_cpu, 350);
    }

    #[test]
    fn non_zero_defaults_apply_per_container() {
        let spec = PodSpec {
            containers: vec![container("", ""), container("300m", "")],
            ..Default::default()
        };
        let r = pod_requests(&spec, true);
        assert_eq!(r.milli_cpu, 400);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
        assert!(pod_requests(&spec, false).memory == 0);
    }
}
