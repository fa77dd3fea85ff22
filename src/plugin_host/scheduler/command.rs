//! Plugins that are WASI preview 1 commands: stateless, one run per call, the full cluster
//! state on stdin as JSON and the answer on stdout (`wit/scheduler/README.md`). The host keeps
//! the state the deltas describe and sends all of it every time: slower, but any language with
//! a JSON parser and WASI preview 1 can write a plugin.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::I32Exit;

use super::guest::{Guest, GuestFactory};
use super::types::{BoundPod, Delta, NodeView, Normalization, PodView, PreFilter, Verdict};
use super::PluginError;
use crate::plugin_host::limits::{arm_deadline_blocking, classify, MemoryLimiter};
use crate::plugin_host::CallLimits;

/// The most a command may print; more is a malformed answer.
const MAX_OUTPUT_BYTES: usize = 4 << 20;

pub(crate) struct CommandState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

pub(crate) fn linker(engine: &Engine) -> Result<Linker<CommandState>, PluginError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut CommandState| &mut s.wasi)
        .map_err(|e| PluginError::Host(format!("setting up WASI preview 1: {e:#}")))?;
    Ok(linker)
}

pub(crate) struct CommandFactory {
    pub(crate) digest: String,
    pre: InstancePre<CommandState>,
}

impl CommandFactory {
    pub(crate) fn new(
        linker: &Linker<CommandState>,
        module: &Module,
        digest: String,
    ) -> Result<Self, PluginError> {
        match module.get_export("_start") {
            Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
            _ => {
                return Err(PluginError::Contract(
                    "a core module must be a WASI preview 1 command exporting `_start`".into(),
                ))
            }
        }
        let pre = linker.instantiate_pre(module).map_err(|e| {
            PluginError::Contract(format!("it imports more than WASI preview 1: {e:#}"))
        })?;
        Ok(CommandFactory { digest, pre })
    }
}

impl GuestFactory for CommandFactory {
    fn digest(&self) -> &str {
        &self.digest
    }

    fn instantiate(&self, limits: &CallLimits) -> Result<Box<dyn Guest>, PluginError> {
        Ok(Box::new(CommandGuest {
            pre: self.pre.clone(),
            limits: *limits,
            settings: Value::Object(Default::default()),
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
        }))
    }
}

/// The host-side state of a command plugin: what it is sent on every run.
pub(crate) struct CommandGuest {
    pre: InstancePre<CommandState>,
    limits: CallLimits,
    settings: Value,
    nodes: BTreeMap<u32, NodeView>,
    pods: BTreeMap<u32, BoundPod>,
}

impl CommandGuest {
    /// Runs the command once on `request` and parses its stdout.
    fn run(&self, request: &Value) -> Result<Value, PluginError> {
        let input = serde_json::to_vec(request)
            .map_err(|e| PluginError::Host(format!("encoding the request: {e}")))?;
        let stdout = MemoryOutputPipe::new(MAX_OUTPUT_BYTES);
        let stderr = MemoryOutputPipe::new(16 << 10);
        let wasi = crate::plugin_host::command::sealed_wasi("plugin", input, &stdout, &stderr);
        let state = CommandState {
            wasi,
            limiter: MemoryLimiter::new(self.limits.memory_bytes),
        };
        let mut store = Store::new(self.pre.module().engine(), state);
        store.limiter(|s| &mut s.limiter);
        arm_deadline_blocking(&mut store, self.limits.timeout);
        let instance = self.pre.instantiate(&mut store).map_err(|e| {
            if store.data().limiter.hit() {
                PluginError::MemoryLimit(self.limits.memory_bytes)
            } else {
                PluginError::Instantiate(format!("{e:#}"))
            }
        })?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| PluginError::Contract(format!("{e:#}")))?;
        let ran = start.call(&mut store, ());
        let code = match ran {
            Ok(()) => 0,
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => exit.0,
                None => return Err(classify(&e, store.data().limiter.hit(), &self.limits).into()),
            },
        };
        let err = stderr.contents();
        if code != 0 {
            let text = String::from_utf8_lossy(&err[..err.len().min(300)]).to_string();
            return Err(PluginError::BadAnswer(format!(
                "exited with status {code}: {text}"
            )));
        }
        serde_json::from_slice(&stdout.contents())
            .map_err(|e| PluginError::BadAnswer(format!("stdout is not JSON: {e}")))
    }

    fn request(&self, op: &str, pod: &PodView, candidates: &[u32]) -> Value {
        json!({
            "op": op,
            "settings": self.settings,
            "pod": pod,
            "candidates": candidates,
            "nodes": self.nodes.values().collect::<Vec<_>>(),
            "pods": self.pods.values().collect::<Vec<_>>(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigureAnswer {
    #[serde(default)]
    normalization: Normalization,
    error: Option<String>,
}

#[derive(Deserialize)]
struct FilterAnswer {
    verdicts: Vec<VerdictJson>,
}

#[derive(Deserialize)]
struct VerdictJson {
    pass: bool,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    unresolvable: bool,
}

#[derive(Deserialize)]
struct ScoreAnswer {
    scores: Vec<i64>,
}

#[derive(Deserialize)]
struct PreFilterAnswer {
    result: String,
    #[serde(default)]
    nodes: Vec<u32>,
}

fn parse<T: for<'de> Deserialize<'de>>(v: Value, what: &str) -> Result<T, PluginError> {
    serde_json::from_value(v).map_err(|e| PluginError::BadAnswer(format!("{what}: {e}")))
}

impl Guest for CommandGuest {
    fn configure(&mut self, settings: &str) -> Result<Result<Normalization, String>, PluginError> {
        self.settings = serde_json::from_str(settings)
            .map_err(|e| PluginError::Host(format!("settings are not JSON: {e}")))?;
        let answer: ConfigureAnswer = parse(
            self.run(&json!({ "op": "configure", "settings": self.settings }))?,
            "the configure answer",
        )?;
        Ok(match answer.error {
            Some(message) => Err(message),
            None => Ok(answer.normalization),
        })
    }

    fn sync(&mut self, delta: &Delta) -> Result<(), PluginError> {
        if delta.reset {
            self.nodes.clear();
            self.pods.clear();
        }
        for p in &delta.pods_removed {
            self.pods.remove(p);
        }
        for n in &delta.nodes_removed {
            self.nodes.remove(n);
        }
        for n in &delta.nodes {
            self.nodes.insert(n.handle, n.clone());
        }
        for p in &delta.pods {
            self.pods.insert(p.handle, p.clone());
        }
        Ok(())
    }

    fn pre_filter(&mut self, pod: &PodView) -> Result<PreFilter, PluginError> {
        let answer: PreFilterAnswer = parse(
            self.run(&self.request("pre-filter", pod, &[]))?,
            "the pre-filter answer",
        )?;
        match answer.result.as_str() {
            "skip" => Ok(PreFilter::Skip),
            "all" => Ok(PreFilter::All),
            "only" => Ok(PreFilter::Only(answer.nodes)),
            other => Err(PluginError::BadAnswer(format!(
                "pre-filter result {other:?} is not skip, all or only"
            ))),
        }
    }

    fn filter(&mut self, pod: &PodView, candidates: &[u32]) -> Result<Vec<Verdict>, PluginError> {
        let answer: FilterAnswer = parse(
            self.run(&self.request("filter", pod, candidates))?,
            "the filter answer",
        )?;
        Ok(answer
            .verdicts
            .into_iter()
            .map(|v| match v.pass {
                true => Verdict::Pass,
                false => Verdict::Reject {
                    reasons: v.reasons,
                    unresolvable: v.unresolvable,
                },
            })
            .collect())
    }

    fn score(&mut self, pod: &PodView, candidates: &[u32]) -> Result<Vec<i64>, PluginError> {
        let answer: ScoreAnswer = parse(
            self.run(&self.request("score", pod, candidates))?,
            "the score answer",
        )?;
        Ok(answer.scores)
    }
}
