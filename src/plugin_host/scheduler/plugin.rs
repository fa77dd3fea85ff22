//! A loaded scheduler plugin as a framework [`ExtensionPlugin`]: the cluster mirror and the
//! failure policy on the scheduler's side, the instance on a thread of its own.
//!
//! The instance runs on its own thread because plugin calls are synchronous (the scheduling
//! cycle is) and WASI's blocking calls must not run on an executor thread. One hop per
//! extension point per pod: PreFilter carries the delta, Filter and Score the candidates.
//! A failed call discards the instance (the next one is configured and sent everything) and
//! puts the plugin in a short cool-down, so a hostile plugin costs at most one timeout per
//! cool-down instead of one per pod.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::guest::{Guest, GuestFactory};
use super::mirror::Mirror;
use super::types::{Delta, Normalization, PodView, PreFilter, Verdict};
use super::PluginError;
use crate::plugin_host::CallLimits;
use crate::scheduler::framework::{
    default_normalize, Candidates, ExtensionPlugin, NodeInfo, PluginFailure, PodInfo, Reason,
    MAX_NODE_SCORE,
};

/// How long a failed plugin is left alone before a new instance is tried.
pub const COOLDOWN: Duration = Duration::from_secs(5);

/// How a `SchedulerPlugin` object configures its plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    pub pre_filter: bool,
    pub filter: bool,
    pub score: bool,
    pub weight: i64,
    /// `failurePolicy: Fail`.
    pub fail: bool,
    /// `spec.settings` as JSON text.
    pub settings: String,
    pub limits: CallLimits,
}

/// A change in a plugin's health, for its status and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Failed(String),
    Recovered,
}

/// Told about every [`Health`] change: (plugin name, change).
pub type Reporter = Arc<dyn Fn(&str, Health) + Send + Sync>;

type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// The plugin thread's side: the instance, made on demand.
struct Slot {
    factory: Arc<dyn GuestFactory>,
    spec: PluginSpec,
    guest: Option<Box<dyn Guest>>,
    normalization: Normalization,
}

impl Slot {
    /// The live instance, or a new one configured with the settings.
    fn guest(&mut self) -> Result<&mut Box<dyn Guest>, PluginError> {
        if self.guest.is_none() {
            let mut guest = self.factory.instantiate(&self.spec.limits)?;
            self.normalization = guest
                .configure(&self.spec.settings)?
                .map_err(PluginError::Settings)?;
            self.guest = Some(guest);
        }
        self.guest
            .as_mut()
            .ok_or_else(|| PluginError::Host("no instance".into()))
    }

    /// Runs `f` on the instance; any failure discards it.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Box<dyn Guest>, Normalization) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let normalization = self.normalization;
        let out = self.guest().and_then(|g| f(g, normalization));
        if out.is_err() {
            self.guest = None;
        }
        out
    }
}

/// The scheduler's side.
struct Side {
    mirror: Mirror,
    /// The pod of the current cycle (by uid), converted once.
    pod: Option<(String, PodView)>,
    cooling_until: Option<Instant>,
    last_error: String,
    degraded: bool,
}

pub struct WasmPlugin {
    spec: PluginSpec,
    digest: String,
    jobs: Mutex<mpsc::Sender<Job>>,
    side: Mutex<Side>,
    report: Reporter,
}

impl WasmPlugin {
    /// Starts the plugin's thread; the instance is made on the first call.
    pub fn start(
        spec: PluginSpec,
        factory: Arc<dyn GuestFactory>,
        report: Reporter,
    ) -> Result<Arc<Self>, PluginError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let digest = factory.digest().to_string();
        let mut slot = Slot {
            factory,
            spec: spec.clone(),
            guest: None,
            normalization: Normalization::None,
        };
        std::thread::Builder::new()
            .name(format!("schedplug-{}", spec.name))
            .spawn(move || {
                // Ends when the plugin is dropped (its sender with it).
                for job in rx {
                    job(&mut slot);
                }
            })
            .map_err(|e| PluginError::Host(format!("starting the plugin thread: {e}")))?;
        Ok(Arc::new(WasmPlugin {
            spec,
            digest,
            jobs: Mutex::new(tx),
            side: Mutex::new(Side {
                mirror: Mirror::default(),
                pod: None,
                cooling_until: None,
                last_error: String::new(),
                degraded: false,
            }),
            report,
        }))
    }

    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Makes the first instance now and checks the settings (the controller's load check).
    pub fn probe(&self) -> Result<(), PluginError> {
        self.run(|slot| slot.with(|_, _| Ok(())))
    }

    /// Runs a job on the plugin's thread and waits for it; the epoch deadline bounds it, the
    /// wait is bounded too in case the thread is gone.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Slot) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |slot| {
            let _ = tx.send(f(slot));
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if sent.is_err() {
            return Err(PluginError::Host("the plugin thread has stopped".into()));
        }
        let wait = self.spec.limits.timeout * 2 + Duration::from_secs(1);
        match rx.recv_timeout(wait) {
            Ok(out) => out,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PluginError::Timeout(wait)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(PluginError::Host("the plugin thread has stopped".into()))
            }
        }
    }

    fn side(&self) -> std::sync::MutexGuard<'_, Side> {
        self.side.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call failed: forget the instance's view, cool down, report, and apply the policy.
    fn failed<T>(&self, side: &mut Side, err: PluginError, ignored: T) -> Result<T, PluginFailure> {
        let message = err.to_string();
        warn!(plugin = %self.spec.name, error = %message, fail = self.spec.fail,
            "scheduler plugin failed");
        side.mirror = Mirror::default();
        side.pod = None;
        side.cooling_until = Some(Instant::now() + COOLDOWN);
        side.last_error = message.clone();
        side.degraded = true;
        (self.report)(&self.spec.name, Health::Failed(message));
        self.verdict_for(&side.last_error, ignored)
    }

    fn verdict_for<T>(&self, message: &str, ignored: T) -> Result<T, PluginFailure> {
        if self.spec.fail {
            Err(PluginFailure {
                plugin: self.spec.name.clone(),
                message: message.to_string(),
            })
        } else {
            Ok(ignored)
        }
    }

    fn succeeded(&self, side: &mut Side) {
        if side.degraded {
            side.degraded = false;
            debug!(plugin = %self.spec.name, "scheduler plugin recovered");
            (self.report)(&self.spec.name, Health::Recovered);
        }
    }

    fn pod_view(side: &mut Side, pod: &PodInfo) -> PodView {
        let key = format!("{}/{}", pod.uid, pod.key());
        match &side.pod {
            Some((k, view)) if *k == key => view.clone(),
            _ => {
                let view = PodView::from(pod);
                side.pod = Some((key, view.clone()));
                view
            }
        }
    }

    fn handles(side: &Side, nodes: &[&NodeInfo]) -> Result<Vec<u32>, PluginError> {
        nodes
            .iter()
            .map(|n| {
                side.mirror.handle(n).ok_or_else(|| {
                    PluginError::Host(format!("node {} was never sent to the plugin", n.name))
                })
            })
            .collect()
    }

    /// Whether the plugin is cooling down after a failure (then `Some` policy answer).
    fn cooling<T>(&self, side: &Side, ignored: T) -> Option<Result<T, PluginFailure>> {
        let until = side.cooling_until?;
        (Instant::now() < until).then(|| self.verdict_for(&side.last_error, ignored))
    }
}

impl ExtensionPlugin for WasmPlugin {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn weight(&self) -> i64 {
        self.spec.weight
    }

    fn pre_filter(&self, pod: &PodInfo, all: &[&NodeInfo]) -> Result<Candidates, PluginFailure> {
        let mut side = self.side();
        if let Some(answer) = self.cooling(&side, Candidates::Skip) {
            return answer;
        }
        let delta: Delta = side.mirror.diff(all);
        let view = Self::pod_view(&mut side, pod);
        let ask = self.spec.pre_filter;
        let answer = self.run(move |slot| {
            slot.with(|g, _| {
                if !delta.is_empty() {
                    g.sync(&delta)?;
                }
                if ask {
                    g.pre_filter(&view)
                } else {
                    Ok(PreFilter::All)
                }
            })
        });
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return self.failed(&mut side, e, Candidates::Skip),
        };
        self.succeeded(&mut side);
        Ok(match answer {
            PreFilter::Skip => Candidates::Skip,
            PreFilter::All => Candidates::All,
            PreFilter::Only(handles) => Candidates::Only(
                handles
                    .into_iter()
                    .filter_map(|h| side.mirror.name(h).map(str::to_string))
                    .collect(),
            ),
        })
    }

    fn filter(
        &self,
        pod: &PodInfo,
        candidates: &[&NodeInfo],
    ) -> Result<Option<Vec<Result<(), Reason>>>, PluginFailure> {
        if !self.spec.filter {
            return Ok(None);
        }
        let mut side = self.side();
        if let Some(answer) = self.cooling(&side, None) {
            return answer;
        }
        let view = Self::pod_view(&mut side, pod);
        let handles = match Self::handles(&side, candidates) {
            Ok(h) => h,
            Err(e) => return self.failed(&mut side, e, None),
        };
        let want = handles.len();
        let answer = self.run(move |slot| {
            slot.with(|g, _| {
                let verdicts = g.filter(&view, &handles)?;
                if verdicts.len() != want {
                    return Err(PluginError::BadAnswer(format!(
                        "filter returned {} verdicts for {want} candidates",
                        verdicts.len()
                    )));
                }
                Ok(verdicts)
            })
        });
        match answer {
            Ok(verdicts) => Ok(Some(verdicts.into_iter().map(|v| self.reason(v)).collect())),
            Err(e) => self.failed(&mut side, e, None),
        }
    }

    fn score(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Result<Option<Vec<i64>>, PluginFailure> {
        if !self.spec.score {
            return Ok(None);
        }
        let mut side = self.side();
        if let Some(answer) = self.cooling(&side, None) {
            return answer;
        }
        let view = Self::pod_view(&mut side, pod);
        let handles = match Self::handles(&side, nodes) {
            Ok(h) => h,
            Err(e) => return self.failed(&mut side, e, None),
        };
        let want = handles.len();
        let answer = self.run(move |slot| {
            slot.with(|g, normalization| {
                let mut scores = g.score(&view, &handles)?;
                if scores.len() != want {
                    return Err(PluginError::BadAnswer(format!(
                        "score returned {} scores for {want} candidates",
                        scores.len()
                    )));
                }
                normalize(normalization, &mut scores);
                Ok(scores)
            })
        });
        match answer {
            Ok(scores) => Ok(Some(scores)),
            Err(e) => self.failed(&mut side, e, None),
        }
    }
}

impl WasmPlugin {
    /// A rejection names the plugin, as upstream's messages name theirs.
    fn reason(&self, v: Verdict) -> Result<(), Reason> {
        match v {
            Verdict::Pass => Ok(()),
            Verdict::Reject {
                reasons,
                unresolvable,
            } => {
                let mut texts = reasons.into_iter();
                let first = texts.next().unwrap_or_else(|| {
                    format!("node(s) didn't satisfy plugin(s) [{}]", self.spec.name)
                });
                let reason = if unresolvable {
                    Reason::unresolvable(first)
                } else {
                    Reason::resolvable(first)
                };
                Err(texts.fold(reason, Reason::and))
            }
        }
    }
}

/// Maps raw scores into `0..=MAX_NODE_SCORE` as the plugin declared.
pub fn normalize(normalization: Normalization, scores: &mut [i64]) {
    match normalization {
        Normalization::None => {}
        Normalization::Scale => default_normalize(scores, false),
        Normalization::ScaleReverse => default_normalize(scores, true),
    }
    for s in scores.iter_mut() {
        *s = (*s).clamp(0, MAX_NODE_SCORE);
    }
}
