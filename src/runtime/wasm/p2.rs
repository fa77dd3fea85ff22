//! Components: WASI preview 2 commands exporting `wasi:cli/run`, e.g. `wasm32-wasip2`
//! binaries.

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::container::{classify, Outcome};
use super::limits::{CpuGovernor, MemoryLimiter};
use crate::runtime::RuntimeError;

/// What a p2 guest's store holds.
pub(crate) struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The linker every component is pre-instantiated against: WASI preview 2 (the `wasi:cli`
/// command world), nothing else.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<P2State>, RuntimeError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| RuntimeError::Create(format!("setting up WASI preview 2: {e:#}")))?;
    Ok(linker)
}

/// Resolves the component's imports once and checks it exports `wasi:cli/run`.
pub(crate) fn pre(
    linker: &Linker<P2State>,
    component: &Component,
) -> Result<CommandPre<P2State>, RuntimeError> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        RuntimeError::Create(format!(
            "the component needs imports this runtime does not provide: {e:#}"
        ))
    })?;
    CommandPre::new(pre).map_err(|e| {
        RuntimeError::InvalidImage(format!(
            "the component does not export `wasi:cli/run` (not a WASI command): {e:#}"
        ))
    })
}

/// A store for one run, with the container's WASI context and limits.
pub(crate) fn store(
    engine: &Engine,
    wasi: &mut wasmtime_wasi::WasiCtxBuilder,
    limiter: MemoryLimiter,
    mut governor: CpuGovernor,
) -> Store<P2State> {
    let mut store = Store::new(
        engine,
        P2State {
            ctx: wasi.build(),
            table: ResourceTable::new(),
            limiter,
        },
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| governor.on_deadline());
    store
}

/// Instantiates and calls `wasi:cli/run#run` to the end.
pub(crate) async fn run(mut store: Store<P2State>, pre: CommandPre<P2State>) -> Outcome {
    let command = match pre.instantiate_async(&mut store).await {
        Ok(c) => c,
        Err(e) => return classify(e),
    };
    match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => Outcome::Exited(0),
        Ok(Err(())) => Outcome::Exited(1),
        Err(e) => classify(e),
    }
}
