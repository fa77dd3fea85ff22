//! Core wasm modules: WASI preview 1 commands (`_start`), e.g. `wasm32-wasip1` binaries.

use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::container::{classify, Outcome};
use super::limits::{CpuGovernor, MemoryLimiter};
use crate::runtime::RuntimeError;

/// What a p1 guest's store holds.
pub(crate) struct P1State {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// The linker every p1 image is pre-instantiated against: WASI preview 1 and nothing else.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<P1State>, RuntimeError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut P1State| &mut s.wasi)
        .map_err(|e| RuntimeError::Create(format!("setting up WASI preview 1: {e:#}")))?;
    Ok(linker)
}

/// Resolves the module's imports once (so starting it later is cheap) and checks it is a
/// command.
pub(crate) fn pre(
    linker: &Linker<P1State>,
    module: &Module,
) -> Result<InstancePre<P1State>, RuntimeError> {
    match module.get_export("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
        Some(_) => {
            return Err(RuntimeError::InvalidImage(
                "the module's `_start` export is not a function without parameters and results"
                    .into(),
            ))
        }
        None => {
            return Err(RuntimeError::InvalidImage(
                "the module exports no `_start` function (not a WASI command)".into(),
            ))
        }
    }
    linker.instantiate_pre(module).map_err(|e| {
        RuntimeError::Create(format!(
            "the module needs imports this runtime does not provide: {e:#}"
        ))
    })
}

/// A store for one run, with the container's WASI context and limits.
pub(crate) fn store(
    engine: &Engine,
    wasi: &mut wasmtime_wasi::WasiCtxBuilder,
    limiter: MemoryLimiter,
    mut governor: CpuGovernor,
) -> Store<P1State> {
    let mut store = Store::new(
        engine,
        P1State {
            wasi: wasi.build_p1(),
            limiter,
        },
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| governor.on_deadline());
    store
}

/// Instantiates and runs `_start` to the end.
pub(crate) async fn run(mut store: Store<P1State>, pre: InstancePre<P1State>) -> Outcome {
    let instance = match pre.instantiate_async(&mut store).await {
        Ok(i) => i,
        Err(e) => return classify(e),
    };
    let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    match start.call_async(&mut store, ()).await {
        Ok(()) => Outcome::Exited(0),
        Err(e) => classify(e),
    }
}
